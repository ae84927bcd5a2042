"""Views and indexing: basic keys give views sharing storage, advanced keys give
copies, every kind of indexing is differentiable (finite differences in float64), and the borrow
ledger decides overlap between views exactly, on the base storage's index space."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import owngrad as og

RNG = np.random.default_rng(0)


# --- helpers -------------------------------------------------------------------------------

def fd_grad(f: Callable[[np.ndarray], float], x0: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of a scalar function of one float64 array."""
    x0 = np.asarray(x0, dtype=np.float64)
    out = np.zeros_like(x0)
    flat = out.reshape(-1)
    for i in range(x0.size):
        xp = x0.copy().reshape(-1)
        xm = x0.copy().reshape(-1)
        xp[i] += eps
        xm[i] -= eps
        flat[i] = (f(xp.reshape(x0.shape)) - f(xm.reshape(x0.shape))) / (2 * eps)
    return out


def og_loss_and_grad(prog: Callable[[og.Tensor], og.Tensor], x0: np.ndarray) -> tuple[float, np.ndarray]:
    g = og.Graph()
    x = g.param(x0)
    loss = prog(x)
    grads = g.backward(loss)
    return loss.item(), grads[x].numpy()


def og_value(prog: Callable[[og.Tensor], og.Tensor], x0: np.ndarray) -> float:
    g = og.Graph()
    x = g.param(x0)
    return float(prog(x).item())


def shares(a: og.Tensor, b: og.Tensor) -> bool:
    with a.borrow() as aa, b.borrow() as bb:
        return bool(np.shares_memory(aa, bb))


def ledger_state(t: og.Tensor) -> list[tuple[Any, str]]:
    return [(b.region, b.kind) for b in t._storage.ledger.live()]


# --- basic indexing returns views ---------------------------------------------------------

BASIC_KEYS: list[Any] = [
    1, -1, (1, 2), (slice(None), 2), slice(1, 3), slice(None, None, 2), (slice(None), slice(1, None, 3)),
    slice(None, None, -1), slice(2, None, -1), (slice(None), slice(None, None, -2)),
    (slice(3, 0, -1), slice(4, 0, -2)), (None, 1), (1, None, slice(None)), Ellipsis, (Ellipsis, 1),
    (1, Ellipsis), (None, Ellipsis, slice(1, 3)), (slice(0, 0),), (-2, slice(-1, -5, -1), None),
    (slice(10, -10, -1),),
]


@pytest.mark.parametrize("key", BASIC_KEYS, ids=repr)
def test_basic_keys_are_views(key: Any) -> None:
    base = np.arange(3 * 5 * 4, dtype=np.float64).reshape(3, 5, 4)
    g = og.Graph()
    x = g.constant(base)
    v = x[key]
    expect = base[key]
    assert v.shape == expect.shape
    np.testing.assert_array_equal(v.numpy(), expect)
    assert v.base is x
    if expect.size:
        assert shares(v, x)
    # a write through the view lands in the base where numpy's view would put it
    v.fill_(-1.0)
    ref = base.copy()
    ref[key] = -1.0
    np.testing.assert_array_equal(x.numpy(), ref)


def test_views_of_views_and_transposes_keep_the_root_as_base() -> None:
    base = np.arange(60.0).reshape(3, 4, 5)
    g = og.Graph()
    x = g.constant(base)
    v = x[1:, ::2][:, :, 1:4].transpose(2, 0, 1)[::-1][0]
    ref = base[1:, ::2][:, :, 1:4].transpose(2, 0, 1)[::-1][0]
    assert v.shape == ref.shape
    np.testing.assert_array_equal(v.numpy(), ref)
    assert v.base is x
    assert x.T.base is x and x.T[1].base is x
    assert x.base is None
    v.fill_(0.0)
    ref_base = base.copy()
    ref_base[1:, ::2][:, :, 1:4].transpose(2, 0, 1)[::-1][0] = 0.0
    np.testing.assert_array_equal(x.numpy(), ref_base)


def test_view_of_param_and_of_result_share_storage() -> None:
    g = og.Graph()
    w = g.param(RNG.standard_normal((4, 3)))
    y = w * 2
    assert w[1:3].base is w and shares(w[1:3], w)
    assert y[:, 1].base is y and shares(y[:, 1], y)
    assert w[1:3].requires_grad and y[0].requires_grad


@pytest.mark.parametrize("key", [
    [0, 2], np.array([2, 0, 2]), (np.array([0, 1]), np.array([1, 3])), (slice(None), [0, 0, 3]),
    np.array([True, False, True]), (1, [3, 0]),
], ids=repr)
def test_advanced_keys_are_copies(key: Any) -> None:
    base = np.arange(12.0).reshape(3, 4)
    g = og.Graph()
    x = g.constant(base)
    c = x[key]
    np.testing.assert_array_equal(c.numpy(), base[key])
    assert c.base is None
    assert not shares(c, x)
    c.fill_(-5.0)
    np.testing.assert_array_equal(x.numpy(), base)  # the base did not change


def test_boolean_mask_tensor_is_a_copy() -> None:
    base = np.arange(12.0).reshape(3, 4)
    g = og.Graph()
    x = g.constant(base)
    c = x[x > 4]
    np.testing.assert_array_equal(c.numpy(), base[base > 4])
    assert c.base is None
    c.zero_()
    np.testing.assert_array_equal(x.numpy(), base)


# --- every indexing is differentiable -----------------------------------------------------

GRAD_KEYS: list[Any] = [
    1, (1, 2), slice(1, 3), (slice(None), slice(None, None, 2)), (slice(None), slice(None, None, -1)),
    (slice(None, None, -2), 1), (None, 0, slice(1, 4)), (Ellipsis, 2), (slice(2, 0, -1), slice(3, None, -2)),
    [0, 0, 2],                                   # repeated rows: scatter-add
    (np.array([0, 2, 0]), np.array([1, 1, 1])),  # repeated element (0, 1) twice
    (slice(None), [3, 3, 0, 3]),
    np.array([True, False, True]),
    (1, np.array([True, False, True, True])),
    ([[0, 1], [1, 1]], slice(1, 3)),
]


@pytest.mark.parametrize("key", GRAD_KEYS, ids=repr)
def test_indexing_gradient_matches_fd_and_scatter_add(key: Any) -> None:
    x0 = RNG.standard_normal((3, 4))
    coeff = RNG.standard_normal(np.asarray(x0[key]).shape)

    def prog(x: og.Tensor) -> og.Tensor:
        return (x[key].tanh() * coeff).sum()

    loss, grad = og_loss_and_grad(prog, x0)
    assert loss == pytest.approx(float((np.tanh(x0[key]) * coeff).sum()))
    np.testing.assert_allclose(grad, fd_grad(lambda a: og_value(prog, a), x0), rtol=1e-5, atol=1e-7)
    # the exact answer: scatter-add of the upstream gradient (np.add.at adds repeated indices)
    expect = np.zeros_like(x0)
    np.add.at(expect, key if not isinstance(key, list) else np.array(key), coeff * (1 - np.tanh(x0[key]) ** 2))
    np.testing.assert_allclose(grad, expect, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("key", GRAD_KEYS[:9], ids=repr)
def test_indexing_a_non_leaf_and_views_of_views_gradient(key: Any) -> None:
    x0 = RNG.standard_normal((3, 4))

    def prog(x: og.Tensor) -> og.Tensor:
        y = (x * x).exp()
        v = y.T[::-1].T[key]  # a view of a view of a non-leaf
        return (v * v).sum() + y[0].sum()

    _, grad = og_loss_and_grad(prog, x0)
    np.testing.assert_allclose(grad, fd_grad(lambda a: og_value(prog, a), x0), rtol=1e-5, atol=1e-6)


def test_repeated_index_gradient_counts_every_use() -> None:
    g = og.Graph()
    w = g.param(np.arange(4.0))
    grads = g.backward(w[[0, 0, 0, 3]].sum())
    np.testing.assert_array_equal(grads[w].numpy(), [3.0, 0.0, 0.0, 1.0])


def test_negative_step_view_values_and_gradient() -> None:
    g = og.Graph()
    w = g.param(np.arange(6.0))
    v = w[::-1]
    np.testing.assert_array_equal(v.numpy(), np.arange(6.0)[::-1])
    grads = g.backward((v * np.arange(6.0)).sum())
    np.testing.assert_array_equal(grads[w].numpy(), np.arange(6.0)[::-1])


def test_negative_step_partial_views() -> None:
    a = np.arange(6.0)
    g = og.Graph()
    w = g.constant(a)
    for k in [slice(4, None, -1), slice(None, None, -2), slice(-1, -7, -1), slice(5, 0, -1), slice(3, -10, -3),
              slice(-8, None, -1), slice(-7, 2, -2)]:
        np.testing.assert_array_equal(w[k].numpy(), a[k], err_msg=repr(k))


# --- region exactness at the Tensor level --------------------------------------------------

def _element_ids(shape: tuple[int, ...], chain: Sequence[Any]) -> set[int]:
    ids = np.arange(int(np.prod(shape))).reshape(shape)
    for step in chain:
        ids = ids.T if step == "T" else ids[step]
    return set(np.asarray(ids).ravel().tolist())


def _apply_chain(t: og.Tensor, chain: Sequence[Any]) -> og.Tensor:
    for step in chain:
        t = t.T if step == "T" else t[step]
    return t


def _check_pair(shape: tuple[int, ...], saved: Sequence[Any], written: Sequence[Any], leaf: bool) -> None:
    """A node that saved ``saved(y)`` blocks a write to ``written(y)`` exactly when they share an element."""
    g = og.Graph()
    w = g.param(RNG.uniform(1.0, 2.0, size=shape))
    y = w if leaf else w * 1.0
    kept = _apply_chain(y, saved).log()  # log saves its input: a shared borrow on exactly that region
    overlap = bool(_element_ids(shape, saved) & _element_ids(shape, written))
    before_data = y.numpy()
    before_ledger = ledger_state(y)
    before_pending = [n.id for n in g.pending()]
    target = _apply_chain(y, written)
    if overlap:
        with pytest.raises(og.BorrowError) as ei:
            target.fill_(0.0)
        assert "saved for backward" in str(ei.value)
        np.testing.assert_array_equal(y.numpy(), before_data)
        assert ledger_state(y) == before_ledger
        assert [n.id for n in g.pending()] == before_pending
    else:
        target.fill_(0.0)
        # and the saved part still gives the right gradient
        grads = g.backward(kept.sum())
        expect = np.zeros(shape)
        ids = np.arange(expect.size).reshape(shape)
        sel = _apply_chain_np(ids, saved)
        np.add.at(expect.reshape(-1), np.asarray(sel).ravel(),
                  1.0 / np.asarray(_apply_chain_np(before_data, saved)).ravel())
        np.testing.assert_allclose(grads[w].numpy(), expect, rtol=1e-12)


def _apply_chain_np(a: np.ndarray, chain: Sequence[Any]) -> Any:
    for step in chain:
        a = a.T if step == "T" else a[step]
    return a


S = slice
EXACT_PAIRS: list[tuple[tuple[int, ...], list[Any], list[Any]]] = [
    ((8,), [S(0, 2)], [S(2, 4)]),
    ((8,), [S(0, 3)], [S(2, 4)]),
    ((8,), [S(None, None, 2)], [S(1, None, 2)]),
    ((9,), [S(0, None, 3)], [S(2, None, 3)]),
    ((9,), [S(0, None, 3)], [S(3, None, 3)]),
    ((12,), [S(0, None, 4)], [S(2, None, 6)]),   # {0,4,8} vs {2,8}: overlap at 8
    ((12,), [S(1, None, 4)], [S(3, None, 6)]),   # {1,5,9} vs {3,9}: overlap at 9
    ((12,), [S(0, None, 4)], [S(2, None, 4)]),   # {0,4,8} vs {2,6,10}
    ((12,), [S(1, 11, 3)], [S(2, 12, 3)]),
    ((12,), [S(1, 11, 3)], [S(10, 11)]),         # {1,4,7,10} vs {10}
    ((12,), [S(1, 10, 3)], [S(10, 11)]),         # {1,4,7} vs {10}
    ((12,), [S(None, None, 2)], [S(None, None, 2), S(1, None, 2)]),  # view of a view
    ((12,), [S(1, None, 2)], [S(None, None, 2), S(1, None, 2)]),
    ((12,), [S(2, 10), S(None, None, 3)], [S(3, 12, 3)]),  # {2,5,8} vs {3,6,9}
    ((12,), [S(2, 10), S(None, None, 3)], [S(5, 6)]),
    ((4, 5), [1], [2]),                           # rows
    ((4, 5), [(S(None), 1)], [(S(None), 3)]),     # columns
    ((4, 5), [1], [(S(None), 3)]),                # a row meets a column
    ((4, 5), [(S(0, 2), S(0, 2))], [(S(2, 4), S(0, 2))]),
    ((4, 5), [(S(0, 2), S(0, 2))], [(S(0, 2), S(2, 5))]),
    ((4, 5), [(S(0, 2), S(0, 2))], [(S(1, 3), S(1, 3))]),
    ((4, 5), [(S(None, None, 2), S(None, None, 2))], [(S(1, None, 2), S(None, None, 2))]),
    ((4, 5), [(S(None, None, 2), S(None, None, 2))], [(S(None, None, 2), S(1, None, 2))]),
    ((4, 5), ["T", 1], [(S(None), 2)]),           # transposed view: column 1 vs column 2
    ((4, 5), ["T", 1], [(S(None), 1)]),
    ((4, 5), ["T", S(1, 3)], [(S(None), 3)]),
    ((4, 5), ["T", S(None, None, 2), 0], [0]),   # column 0 restricted to rows ::2 vs row 0
    ((4, 5), ["T", S(None, None, 2), 0], [1]),
    ((2, 3, 4), [(0, 1)], [(1, 1)]),
    ((2, 3, 4), [(S(None), 1)], [(S(None), 2)]),
    ((2, 3, 4), [(S(None), S(None), 0)], [(S(None), 1, S(1, None))]),
    ((2, 3, 4), [(S(None), S(None), 0)], [(S(None), 1, S(0, None))]),
    ((2, 3, 4), [(1, S(None), S(None, None, 2))], [(S(None), 2, S(1, None, 2))]),
    ((2, 3, 4), [(1, S(None), S(None, None, 2))], [(S(None), 2, S(2, None, 2))]),
    ((2, 3, 4), ["T", 0], [(S(None), S(None), 1)]),
    ((2, 3, 4), [(None, 1, Ellipsis)], [(0,)]),
    ((2, 3, 4), [(None, 1, None)], [(S(None), 2)]),
    ((2, 3, 4), [(1,), "T", 2], [(1, 2)]),       # views of views through a transpose
    ((2, 3, 4), [(1,), "T", 2], [(1, S(None), 2)]),
]


@pytest.mark.parametrize("leaf", [False, True], ids=["nonleaf", "leaf"])
@pytest.mark.parametrize("shape,saved,written", EXACT_PAIRS, ids=[f"{s}:{a}|{b}" for s, a, b in EXACT_PAIRS])
def test_region_overlap_is_exact(shape: tuple[int, ...], saved: list[Any], written: list[Any], leaf: bool) -> None:
    _check_pair(shape, saved, written, leaf)


def test_disjoint_halves_both_directions_and_message() -> None:
    g = og.Graph()
    w = g.param(np.arange(1.0, 5.0))
    y = w * 1.0
    a = y[0:2].log()
    y[2:4] = 0.0  # disjoint from the saved y[0:2]: allowed
    with pytest.raises(og.BorrowError) as ei:
        y[1:3] = 0.0
    msg = str(ei.value)
    assert "[1:3]" in msg and "[:2]" in msg and "log" in msg and "test_views.py" in msg
    grads = g.backward(a.sum() + (y * y).sum())
    np.testing.assert_allclose(grads[w].numpy(), [1 / 1 + 2, 1 / 2 + 4, 0, 0])


@st.composite
def _key_for(draw: Any, shape: tuple[int, ...], neg: bool) -> Any:
    items: list[Any] = []
    for n in shape:
        kind = draw(st.sampled_from(["int", "slice", "slice", "full"]))
        if draw(st.booleans()) and draw(st.booleans()):
            items.append(None)
        if kind == "int" and n > 0:
            items.append(draw(st.integers(-n, n - 1)))
        elif kind == "full":
            items.append(slice(None))
        else:
            steps = [-3, -2, -1, 1, 2, 3] if neg else [1, 2, 3]
            step = draw(st.sampled_from(steps))
            start = draw(st.one_of(st.none(), st.integers(-n - 1, n + 1)))
            stop = draw(st.one_of(st.none(), st.integers(-n - 1, n + 1)))
            items.append(slice(start, stop, step))
    return tuple(items)


@st.composite
def _chain(draw: Any, shape: tuple[int, ...], neg: bool) -> list[Any]:
    chain: list[Any] = []
    cur = np.zeros(shape)
    for _ in range(draw(st.integers(1, 3))):
        if cur.ndim >= 2 and draw(st.booleans()):
            chain.append("T")
            cur = cur.T
            continue
        k = draw(_key_for(tuple(cur.shape), neg))
        chain.append(k)
        cur = cur[k]
    return chain


@st.composite
def _pair(draw: Any, neg: bool) -> tuple[tuple[int, ...], list[Any], list[Any], bool]:
    shape = draw(st.sampled_from([(7,), (12,), (4, 6), (3, 4, 5)]))
    return shape, draw(_chain(shape, neg)), draw(_chain(shape, neg)), draw(st.booleans())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pair(neg=False))
def test_region_overlap_exact_random_positive_steps(p: tuple[tuple[int, ...], list[Any], list[Any], bool]) -> None:
    _check_pair(*p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pair(neg=True))
def test_region_overlap_exact_random_any_steps(p: tuple[tuple[int, ...], list[Any], list[Any], bool]) -> None:
    shape, saved, written, _ = p
    ids = np.arange(int(np.prod(shape))).reshape(shape)
    g = og.Graph()
    y = g.constant(ids.astype(np.float64))
    # the views' values are numpy's (the region and the data agree) ...
    np.testing.assert_array_equal(_apply_chain(y, saved).numpy(), _apply_chain_np(ids, saved))
    np.testing.assert_array_equal(_apply_chain(y, written).numpy(), _apply_chain_np(ids, written))
    # ... and the overlap decision is exact
    _check_pair(*p)


# --- the one conservative case, documented ------------------------------------------------

def test_reshape_of_contiguous_view_is_a_view_with_a_conservative_region() -> None:
    g = og.Graph()
    w = g.param(np.arange(1.0, 13.0))
    y = w * 1.0
    r = y[0:6].reshape(2, 3)
    assert r.base is y and shares(r, y)
    a = r[0].log()  # saves r[0] == y[0:3], but the ledger only knows "somewhere in y[0:6]"
    with pytest.raises(og.BorrowError):
        r[1].fill_(0.0)  # y[3:6]: disjoint in truth, refused (conservative, never unsound)
    y[6:] = 0.0  # outside the reshaped view's region: still exact
    with pytest.raises(og.BorrowError):
        y[4] = 0.0
    grads = g.backward(a.sum())
    np.testing.assert_allclose(grads[w].numpy(), np.r_[1 / np.arange(1.0, 4.0), np.zeros(9)])


def test_reshape_of_non_contiguous_view_copies_like_numpy() -> None:
    base = np.arange(12.0)
    g = og.Graph()
    x = g.constant(base)
    r = x[::2].reshape(2, 3)  # numpy copies here too
    np.testing.assert_array_equal(r.numpy(), base[::2].reshape(2, 3))
    assert not shares(r, x)
    r.fill_(-1.0)
    np.testing.assert_array_equal(x.numpy(), base)
    t = g.constant(base.reshape(3, 4)).T.reshape(-1)
    np.testing.assert_array_equal(t.numpy(), base.reshape(3, 4).T.reshape(-1))


def test_reshape_of_non_contiguous_view_is_differentiable() -> None:
    x0 = RNG.standard_normal((3, 4))
    c = RNG.standard_normal(6)

    def prog(x: og.Tensor) -> og.Tensor:
        return (x.T[::2].reshape(-1).tanh() * c).sum()

    _, grad = og_loss_and_grad(prog, x0)
    np.testing.assert_allclose(grad, fd_grad(lambda a: og_value(prog, a), x0), rtol=1e-5, atol=1e-7)


def test_advanced_index_out_of_range_is_an_index_error_naming_the_shape() -> None:
    g = og.Graph()
    w = g.param(np.ones((4, 2)))
    with pytest.raises(IndexError, match=r"tensor index: .*\(tensor shape \(4, 2\)\)"):
        w[np.array([0, 7])]
    assert g.pending() == []


# --- indexing: every key kind, value and gradient against numpy's scatter-add ---------------------

_X = np.random.default_rng(3).standard_normal((4, 5, 6))
KEYS: list[Any] = [
    0, -1, (1, 2), (-1, -2, -3), slice(None, None, 2), slice(None, None, -1), slice(3, 0, -2), slice(-2, None),
    (slice(None), None, 2), (Ellipsis, 1), (None, Ellipsis, None), (1, Ellipsis, slice(1, 5, 3)),
    np.array([0, 0, 2]), [0, 0, 3, -1], np.array([[1, 1], [0, 3]]), (np.array([0, 1]), np.array([2, 2])),
    (slice(None), np.array([4, 4, 0])), (np.array([0, 2]), slice(1, 3), np.array([1, 1])),
    (1, np.array([0, 0]), slice(None)), (np.array([1, 1]), Ellipsis, np.array([5, 0])), _X[:, 0, 0] > 0,
    _X[:, :, 0] > 0, _X > 0, (slice(None), _X[0, :, 0] > 0), (_X[:, 0, 0] > 0, slice(None), 0),
    np.array([], dtype=np.int64), np.zeros(4, bool), (None, np.array([1, 3])),
    (np.array([0, 1]), None, np.array([1, 2])),
    (slice(None, None, -1), np.array([0, 0])), np.array(2), np.array([-4, 3]), (0, 0, 0), (Ellipsis,), (),
    (np.array([[0], [1]]), np.array([[1, 2, 3]])),
]


@pytest.mark.parametrize("key", KEYS, ids=[f"k{i}" for i in range(len(KEYS))])
def test_indexing_value_and_gradient_match_numpy_scatter_add(key: Any) -> None:
    ref = _X[key]
    w = np.random.default_rng(4).standard_normal(ref.shape)
    g = og.Graph()
    x = g.param(_X)
    y = x[key]
    assert y.shape == ref.shape
    np.testing.assert_array_equal(y.numpy(), ref)
    expected = np.zeros_like(_X)
    np.add.at(expected, key, w)
    np.testing.assert_allclose(g.backward((y * w).sum())[x].numpy(), expected)
    if isinstance(key, np.ndarray) or (isinstance(key, tuple) and any(isinstance(k, np.ndarray) for k in key)):
        kt = tuple(g.constant(k) if isinstance(k, np.ndarray) else k for k in key) if isinstance(key, tuple) \
            else g.constant(key)
        np.testing.assert_array_equal(x[kt].numpy(), ref)  # tensors as indices
