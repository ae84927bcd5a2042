"""In-place updates, each rule on its own.

Every program below is written once against a tiny adapter (owngrad or torch), run on owngrad
and checked against central finite differences in float64 (always), and against torch's
gradients where torch is importable (a separate test per program, skipped cleanly without it).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import owngrad as og

RNG = np.random.default_rng(1)


# --- the adapters ----------------------------------------------------------------------

class OG:
    """owngrad side: params, constants, raw arrays; leaf writes need no context (untracked updates)."""

    def __init__(self) -> None:
        self.g = og.Graph()

    def param(self, a: np.ndarray) -> Any:
        return self.g.param(a)

    def const(self, a: Any) -> Any:
        return self.g.constant(np.asarray(a, dtype=np.float64))

    def arr(self, a: Any) -> Any:
        return np.asarray(a, dtype=np.float64)

    @contextlib.contextmanager
    def leafctx(self) -> Iterator[None]:
        yield

    def src(self, t: Any) -> Any:
        return t  # owngrad reads a source that aliases the destination first (numpy's semantics)

    def copy(self, t: Any) -> Any:
        return t.copy()


class TH:
    """torch side: a leaf write must sit under no_grad; an aliasing source must be cloned."""

    def __init__(self) -> None:
        self.torch = pytest.importorskip("torch")

    def param(self, a: np.ndarray) -> Any:
        return self.torch.tensor(a, dtype=self.torch.float64, requires_grad=True)

    def const(self, a: Any) -> Any:
        return self.torch.tensor(np.asarray(a, dtype=np.float64))

    def arr(self, a: Any) -> Any:
        return self.const(a)

    def leafctx(self) -> Any:
        return self.torch.no_grad()

    def src(self, t: Any) -> Any:
        return t.clone()

    def copy(self, t: Any) -> Any:
        return t.clone()


def run_og(prog: Callable[..., Any], inputs: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    L = OG()
    ps = [L.param(a) for a in inputs]
    loss = prog(L, *ps)
    grads = L.g.backward(loss)
    return float(loss.item()), [grads[p].numpy() if p in grads else np.zeros_like(a) for p, a in zip(ps, inputs)]


def value_og(prog: Callable[..., Any], inputs: list[np.ndarray]) -> float:
    L = OG()
    return float(prog(L, *[L.param(a) for a in inputs]).item())


def run_torch(prog: Callable[..., Any], inputs: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    L = TH()
    torch = L.torch
    ps = [L.param(a) for a in inputs]
    loss = prog(L, *ps)
    gs = torch.autograd.grad(loss, ps, allow_unused=True)
    return float(loss.item()), [np.zeros_like(a) if gr is None else gr.numpy() for gr, a in zip(gs, inputs)]


def fd_grads(prog: Callable[..., Any], inputs: list[np.ndarray], eps: float = 1e-6) -> list[np.ndarray]:
    out = []
    for k, a in enumerate(inputs):
        gk = np.zeros_like(a)
        for i in range(a.size):
            hi = [b.copy() for b in inputs]
            lo = [b.copy() for b in inputs]
            hi[k].reshape(-1)[i] += eps
            lo[k].reshape(-1)[i] -= eps
            gk.reshape(-1)[i] = (value_og(prog, hi) - value_og(prog, lo)) / (2 * eps)
        out.append(gk)
    return out


# --- the programs ------------------------------------------------------------------------

C34 = RNG.standard_normal((3, 4))
C4 = RNG.standard_normal(4)


def p_spec_example(L: Any, x: Any) -> Any:
    y = x * 2
    y[0:2] = 0
    return (y * y).sum()


def p_setitem_tensor_needing_grad(L: Any, x: Any, w: Any) -> Any:
    y = x * 1.5 - 0.2
    y[1] = w
    return (y * y * L.const(C34)).sum()


def p_setitem_scalar_column_then_read_base(L: Any, x: Any) -> Any:
    y = x * 1.5
    y[:, 1] = 3.0
    return (y.tanh() * L.const(C34)).sum()


def p_setitem_array_broadcast(L: Any, x: Any) -> Any:
    y = x * x
    y[0:2] = L.arr([1.0, -2.0, 0.5, 4.0])  # (4,) broadcast into (2, 4)
    return (y * L.const(C34)).sum() + y.sum()


def p_setitem_tensor_broadcast(L: Any, x: Any, w: Any) -> Any:
    y = x * 0.5
    y[1:3] = w  # (4,) broadcast into (2, 4): w's gradient sums both rows
    y[0, 1:3] = w[2]  # a 0-d tensor broadcast into two elements
    return (y * y * L.const(C34)).sum()


def p_setitem_strided_and_negative(L: Any, x: Any, w: Any) -> Any:
    y = x * 1.0
    y[::2, ::-1] = w  # rows 0 and 2, reversed columns
    y[1, ::-2] = w[1::2]
    return (y.exp() * L.const(C34)).sum()


def p_setitem_3d_view_of_view(L: Any, x: Any, w: Any) -> Any:
    y = x.reshape(2, 3, 2) * 1.0
    v = y[:, 1:][..., 0]  # (2, 2)
    v[1] = w[0:2]
    y.permute(2, 1, 0)[1, 0] = w[2:4]  # y[0, :, 1] -> y[0, 0:2, 1]... through a reversed-axes view
    return (y * y * L.const(C34.reshape(2, 3, 2))).sum()


def p_iadd_view_tensor(L: Any, x: Any, w: Any) -> Any:
    y = x * 2
    y[1:] += w
    return (y * y).sum()


def p_isub_view_scalar(L: Any, x: Any) -> Any:
    y = x.tanh() * 1.0  # tanh saved its output; the copy is free to change
    y[:, ::3] -= 2.0
    return (y * y * L.const(C34)).sum()


def p_imul_view_tensor(L: Any, x: Any, w: Any) -> Any:
    y = x + 0.0
    y[0:2] *= w
    return (y * L.const(C34)).sum() + (y * y).sum()


def p_idiv_column_tensor(L: Any, x: Any, w: Any) -> Any:
    y = x * 1.0
    y[:, 2] /= (w[0:3] * w[0:3] + 1.0)
    return (y * y * L.const(C34)).sum()


def p_iops_whole_nonleaf(L: Any, x: Any, w: Any) -> Any:
    y = x * 1.0
    y += w
    y *= x
    y -= 0.5
    y /= 2.0
    return (y * y).sum()


def p_iops_with_itself(L: Any, x: Any) -> Any:
    y = x.tanh() + 0.0
    y += y
    y *= L.copy(y)  # `y *= y` itself is refused: mul would save the y it overwrites (see below)
    return (y * L.const(C34)).sum()


def p_view_mul_and_friends(L: Any, x: Any, w: Any) -> Any:
    y = x.exp() * 1.0
    y[0].mul_(w)
    y[1, 1:].add_(w[1:])
    y[2].sub_(3.0)
    y[:, 0].div_(2.0)
    y.T[3].mul_(-1.0)
    return (y * y * L.const(C34)).sum()


def p_clamp_view(L: Any, x: Any) -> Any:
    y = x * 2.0
    y[1:].clamp_(-0.7, 0.9)
    y[0].clamp_(None, 0.1)
    return (y * y * L.const(C34)).sum()


def p_fill_zero_copy(L: Any, x: Any, w: Any) -> Any:
    y = x * 3.0
    y[0].fill_(1.25)
    y[1, ::2].fill_(w[3])  # a 0-d tensor needing grad
    y[:, 3].zero_()
    y[2].copy_(w)
    y[1, 1:3].copy_(w[0:2] * w[0:2])
    return (y.tanh() * L.const(C34)).sum()


def p_copy_broadcast(L: Any, x: Any, w: Any) -> Any:
    y = x * 1.0
    y.copy_(w)  # (4,) into (3, 4)
    return (y * L.const(C34) * x).sum()


def p_views_taken_before_write_read_after(L: Any, x: Any, w: Any) -> Any:
    y = x * 1.0
    col = y[:, 1]
    rows = y[1:]
    y[1] = w  # writes through the base: col and rows must see it, with its history
    rows[1, 2:] *= 2.0  # a write through another view
    return (col * col).sum() + (rows * L.const(C34[1:])).sum() + (y * y).sum()


def p_overlapping_views(L: Any, x: Any) -> Any:
    y = x * 1.0
    a = y[0:2]
    b = y[1:3]
    a *= 3.0
    b += 1.0
    return (a * a).sum() + (b * L.const(C34[1:])).sum()


def p_advanced_setitem(L: Any, x: Any, w: Any) -> Any:
    y = x * 1.0
    y[L.arr([0, 2]).astype(np.int64) if isinstance(L, OG) else [0, 2]] = w * w
    return (y * y * L.const(C34)).sum()


def p_advanced_iadd(L: Any, x: Any, w: Any) -> Any:
    y = x.tanh() * 1.0
    idx = [2, 0]
    y[idx] += w
    y[:, [1, 3]] *= 2.0
    return (y * y * L.const(C34)).sum()


def p_mask_setitem(L: Any, x: Any) -> Any:
    y = x * 1.0
    y[y > 0.3] = 0.3
    return (y * y * L.const(C34)).sum()


def p_write_then_saved_by_later_op(L: Any, x: Any, w: Any) -> Any:
    y = x * 1.0
    y[0] = w
    z = y.exp()  # saves its output, not y: later writes to y are fine
    y[1] = 0.0
    return (z * L.const(C34)).sum() + (y * y).sum()


def p_overlap_shift_right(L: Any, x: Any) -> Any:
    y = x * 1.0
    y[1:] = L.src(y[:-1])
    return (y * y * L.const(C34)).sum()


def p_overlap_shift_left_2d(L: Any, x: Any) -> Any:
    y = x.tanh() - 1.0
    y[:, :-1] = L.src(y[:, 1:])
    return (y * L.const(C34)).sum()


def p_overlap_reverse(L: Any, x: Any) -> Any:
    y = x * 2.0
    y[0] = L.src(y[0, ::-1])
    return (y * y * L.const(C34)).sum()


def p_overlap_iadd_shift(L: Any, x: Any) -> Any:
    y = x * 1.0
    y[1:] += L.src(y[:-1])
    return (y * y * L.const(C34)).sum()


def p_overlap_imul_strided(L: Any, x: Any) -> Any:
    y = x + 1.0
    y[:, 1:] *= L.copy(y[:, :-1])  # without the copy: refused, mul saves the source it overwrites
    return (y * L.const(C34)).sum()


def p_overlap_copy_transpose(L: Any, x: Any) -> Any:
    y = x[:, 0:3] * 1.0  # a fresh non-leaf of shape (3, 3)
    y.copy_(L.src(y.T))
    return (y * L.const(C34[:, 0:3])).sum()


X34 = RNG.standard_normal((3, 4))
W4 = RNG.uniform(0.5, 1.5, 4)

PROGRAMS: dict[str, tuple[Callable[..., Any], list[np.ndarray]]] = {
    "spec_example": (p_spec_example, [X34]),
    "setitem_tensor_needing_grad": (p_setitem_tensor_needing_grad, [X34, W4]),
    "setitem_scalar_column_then_read_base": (p_setitem_scalar_column_then_read_base, [X34]),
    "setitem_array_broadcast": (p_setitem_array_broadcast, [X34]),
    "setitem_tensor_broadcast": (p_setitem_tensor_broadcast, [X34, W4]),
    "setitem_strided_and_negative": (p_setitem_strided_and_negative, [X34, W4]),
    "setitem_3d_view_of_view": (p_setitem_3d_view_of_view, [X34, W4]),
    "iadd_view_tensor": (p_iadd_view_tensor, [X34, W4]),
    "isub_view_scalar": (p_isub_view_scalar, [X34]),
    "imul_view_tensor": (p_imul_view_tensor, [X34, W4]),
    "idiv_column_tensor": (p_idiv_column_tensor, [X34, W4]),
    "iops_whole_nonleaf": (p_iops_whole_nonleaf, [X34, W4]),
    "iops_with_itself": (p_iops_with_itself, [X34]),
    "view_mul_and_friends": (p_view_mul_and_friends, [X34, W4]),
    "clamp_view": (p_clamp_view, [X34 * 0.5]),
    "fill_zero_copy": (p_fill_zero_copy, [X34, W4]),
    "copy_broadcast": (p_copy_broadcast, [X34, W4]),
    "views_taken_before_write_read_after": (p_views_taken_before_write_read_after, [X34, W4]),
    "overlapping_views": (p_overlapping_views, [X34]),
    "advanced_setitem": (p_advanced_setitem, [X34, W4]),
    "advanced_iadd": (p_advanced_iadd, [X34, W4]),
    "mask_setitem": (p_mask_setitem, [X34]),
    "write_then_saved_by_later_op": (p_write_then_saved_by_later_op, [X34, W4]),
    "overlap_shift_right": (p_overlap_shift_right, [X34]),
    "overlap_shift_left_2d": (p_overlap_shift_left_2d, [X34]),
    "overlap_reverse": (p_overlap_reverse, [X34]),
    "overlap_iadd_shift": (p_overlap_iadd_shift, [X34]),
    "overlap_imul_strided": (p_overlap_imul_strided, [X34]),
    "overlap_copy_transpose": (p_overlap_copy_transpose, [X34]),
}


def _numpy_reference(name: str, x: np.ndarray, w: np.ndarray | None = None) -> float | None:
    """Pure numpy (out of place) versions of a few programs, to pin the forward values too."""
    if name == "spec_example":
        y = x * 2
        y = np.where(np.arange(3)[:, None] < 2, 0.0, y)
        return float((y * y).sum())
    if name == "overlap_shift_right":
        y = np.concatenate([x[:1], x[:-1]])
        return float((y * y * C34).sum())
    if name == "overlap_iadd_shift":
        y = np.concatenate([x[:1], x[1:] + x[:-1]])
        return float((y * y * C34).sum())
    if name == "overlap_copy_transpose":
        return float((x[:, 0:3].T * C34[:, 0:3]).sum())
    if name == "setitem_tensor_broadcast":
        assert w is not None
        y = x * 0.5
        y = np.stack([y[0], w, w])
        y = y.copy()
        y[0, 1:3] = w[2]
        return float((y * y * C34).sum())
    return None


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_program_matches_finite_differences(name: str) -> None:
    prog, inputs = PROGRAMS[name]
    loss, grads = run_og(prog, inputs)
    ref = _numpy_reference(name, *inputs)
    if ref is not None:
        assert loss == pytest.approx(ref, rel=1e-12)
    for got, want in zip(grads, fd_grads(prog, inputs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


NO_TORCH = {  # torch has no negative-step slicing
    "setitem_strided_and_negative", "overlap_reverse",
}
TORCH_REJECTS: set[str] = set()

# An in-place op whose own backward needs (saves) a source that overlaps what it writes: torch saves
# the source and then sees it modified ("modified by an inplace operation" at backward); owngrad
# refuses at the writing line, before anything changes.
SAVING_ALIAS: list[tuple[str, Callable[[Any], None]]] = [
    ("imul_self", lambda y: y.__imul__(y)),
    ("idiv_self", lambda y: y.__itruediv__(y)),
    ("imul_shifted_view", lambda y: y[:, 1:].__imul__(y[:, :-1])),
    ("mul_rows", lambda y: y[1:].mul_(y[:-1])),
]


@pytest.mark.parametrize("name,fn", SAVING_ALIAS, ids=[n for n, _ in SAVING_ALIAS])
def test_inplace_op_saving_its_aliased_source_is_refused_at_the_write(name: str, fn: Callable[[Any], None]) -> None:
    g = og.Graph()
    x = g.param(X34 + 2.0)
    y = x * 1.0
    before = (y.numpy(), [n.id for n in g.pending()], len(y._storage.ledger.live()))
    with pytest.raises(og.BorrowError, match="saves it for backward") as info:
        fn(y)
    assert "test_inplace.py" in str(info.value)
    assert (y.numpy() == before[0]).all() and [n.id for n in g.pending()] == before[1]
    assert len(y._storage.ledger.live()) == before[2]
    torch = pytest.importorskip("torch")
    xt = torch.tensor(X34 + 2.0, requires_grad=True)
    yt = xt * 1.0
    with pytest.raises(RuntimeError, match="modified by an inplace operation|single memory location"):
        fn(yt)  # torch refuses some partial overlaps at once; the rest at backward
        (yt * yt).sum().backward()


@pytest.mark.parametrize("name", [n for n in PROGRAMS if n not in NO_TORCH | TORCH_REJECTS])
def test_program_matches_torch(name: str) -> None:
    prog, inputs = PROGRAMS[name]
    tloss, tgrads = run_torch(prog, inputs)  # skips without torch
    loss, grads = run_og(prog, inputs)
    assert loss == pytest.approx(tloss, rel=1e-10, abs=1e-12)
    for got, want in zip(grads, tgrads):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_spec_example_exact_values() -> None:
    x0 = np.arange(1.0, 13.0).reshape(3, 4)
    _, (gx,) = run_og(p_spec_example, [x0])
    expect = 8 * x0
    expect[0:2] = 0.0
    np.testing.assert_array_equal(gx, expect)


def test_nonleaf_write_is_recorded_as_copy_slices() -> None:
    g = og.Graph()
    x = g.param(np.ones(4))
    y = x * 2
    before = {n.id for n in g.pending()}
    y[0:2] = 0.0
    new = [n for n in g.pending() if n.id not in before]
    assert any(n.op == "copy_slices" for n in new)
    assert y.requires_grad and not y.is_leaf


def test_setitem_ellipsis_and_none() -> None:
    def prog(L: Any, x: Any, w: Any) -> Any:
        y = x * 1.0
        y[..., 1] = w[0:3]
        y[None, 2, ...] = 0.5
        return (y * y * L.const(C34)).sum()

    loss, grads = run_og(prog, [X34, W4])
    for got, want in zip(grads, fd_grads(prog, [X34, W4])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_setitem_value_with_leading_unit_axes_like_numpy() -> None:
    # numpy (and torch) accept a value with extra leading 1-sized axes: a[0:2] = ones((1, 2, 4))
    g = og.Graph()
    c = g.constant(np.zeros((3, 4)))
    c[0:2] = np.ones((1, 2, 4))
    ref = np.zeros((3, 4))
    ref[0:2] = np.ones((1, 2, 4))
    np.testing.assert_array_equal(c.numpy(), ref)


# --- BorrowError on non-leaves: at the write, nothing changed --------------------------------

def _state(g: og.Graph, *ts: og.Tensor) -> Any:
    return ([t.numpy() for t in ts], [n.id for n in g.pending()],
            [[(b.region, b.kind, b.holder) for b in t._storage.ledger.live()] for t in ts])


def _same(a: Any, b: Any) -> None:
    for x, y in zip(a[0], b[0]):
        np.testing.assert_array_equal(x, y)
    assert a[1] == b[1]
    assert a[2] == b[2]


WRITES: dict[str, Callable[[og.Tensor, og.Tensor], None]] = {
    "setitem_scalar": lambda y, w: y.__setitem__(slice(1, 3), 0.0),
    "setitem_tensor": lambda y, w: y.__setitem__((slice(1, 3), 0), w[0:2]),
    "setitem_adv": lambda y, w: y.__setitem__([1, 2], 0.0),
    "iadd_view": lambda y, w: y[1].__iadd__(w[0:4]),
    "imul": lambda y, w: y.__imul__(2.0),
    "mul_": lambda y, w: y[0:2, 1].mul_(w[1]),
    "clamp_": lambda y, w: y.clamp_(-1.0, 1.0),
    "fill_": lambda y, w: y[:, 1].fill_(3.0),
    "zero_": lambda y, w: y.T[0].zero_(),
    "copy_": lambda y, w: y[0].copy_(w),
    "div_": lambda y, w: y[::2].div_(w),
}


@pytest.mark.parametrize("what", list(WRITES))
def test_nonleaf_write_into_saved_region_raises_and_changes_nothing(what: str) -> None:
    g = og.Graph()
    x = g.param(RNG.uniform(1, 2, (3, 4)))
    w = g.param(RNG.uniform(1, 2, 4))
    y = x * 1.0
    kept = y.log()  # saves all of y
    before = _state(g, x, w, y)
    with pytest.raises(og.BorrowError) as ei:
        WRITES[what](y, w)
    line = inspect.getsourcelines(WRITES[what])[1]
    assert f"test_inplace.py:{line}" in str(ei.value)
    assert "saved for backward" in str(ei.value)
    _same(before, _state(g, x, w, y))
    # the graph still works and gives the right gradient
    grads = g.backward(kept.sum())
    np.testing.assert_allclose(grads[x].numpy(), 1 / x.numpy())


def test_advanced_index_write_region_is_conservative() -> None:
    # an integer-array write takes the whole tensor's region (documented conservative case):
    # y[[1, 2]] = 0 is refused while y[0] is saved, though rows 1, 2 and row 0 are disjoint
    g = og.Graph()
    x = g.param(np.ones((3, 4)))
    y = x * 1.0
    kept = y[0].log()
    with pytest.raises(og.BorrowError):
        y[[1, 2]] = 0.0
    g.backward(kept.sum())
    y[[1, 2]] = 0.0


KEEP: dict[str, Any] = {
    "setitem_scalar": (0, slice(2, None)), "setitem_tensor": (slice(None), slice(1, None)),
    "setitem_adv": None, "iadd_view": (slice(0, 1), slice(None)), "imul": None, "mul_": (slice(None), slice(2, None)),
    "clamp_": None, "fill_": (slice(None), slice(2, None)), "zero_": (slice(None), slice(1, None)),
    "copy_": slice(1, None), "div_": 1,
}


@pytest.mark.parametrize("what", list(WRITES))
def test_nonleaf_write_outside_saved_region_is_fine(what: str) -> None:
    g = og.Graph()
    x = g.param(RNG.uniform(1, 2, (3, 4)))
    w = g.param(RNG.uniform(1, 2, 4))
    y = x * 1.0
    key = KEEP[what]
    kept = None if key is None else y[key].log()  # a saved region disjoint from the write
    WRITES[what](y, w)
    if kept is not None:
        grads = g.backward(kept.sum())
        expect = np.zeros((3, 4))
        expect[key] = 1 / x.numpy()[key]
        np.testing.assert_allclose(grads[x].numpy(), expect)


# --- leaves: untracked updates, subject to borrows -----------------------------------------

def test_leaf_inplace_is_an_untracked_update() -> None:
    g = og.Graph()
    w0 = RNG.standard_normal(4)
    w = g.param(w0)
    w[0:2] += 1.0
    w.mul_(2.0)
    w[3] = 5.0
    w[::2].clamp_(-1.0, 1.0)
    assert g.pending() == []  # nothing recorded
    assert w.is_leaf and w.requires_grad
    ref = w0.copy()
    ref[0:2] += 1.0
    ref *= 2.0
    ref[3] = 5.0
    ref[::2] = np.clip(ref[::2], -1.0, 1.0)
    np.testing.assert_allclose(w.numpy(), ref)
    grads = g.backward((w * w).sum())
    np.testing.assert_allclose(grads[w].numpy(), 2 * ref)  # the gradient at the new value


def test_leaf_inplace_matches_torch_no_grad_update() -> None:
    def prog(L: Any, w: Any, v: Any) -> Any:
        a = (w * v).sum()  # saves w and v
        b = w.exp()  # saves its output only
        with L.leafctx():
            w[2:] -= 0.5  # w is saved by the mul (for v's gradient)
        return a + (b * L.const(C4)).sum()

    # the write above hits a region saved by `w * v`: owngrad refuses it at the write
    with pytest.raises(og.BorrowError):
        run_og(prog, [W4, W4 + 1])
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        run_torch(prog, [W4, W4 + 1])
    del torch


def test_leaf_update_between_uses_matches_torch() -> None:
    def prog(L: Any, w: Any, v: Any) -> Any:
        a = (w * 3.0).sum() + (v * w[0:2].sum()).sum()  # saves v and w[0:2] only
        with L.leafctx():
            w[2:] *= 0.5  # disjoint from the saved w[0:2] (a separate tensor in torch: no version clash)
            v.zero_()  # saved by the mul: refused
        return a

    with pytest.raises(og.BorrowError):
        run_og(prog, [W4, W4[:3]])

    def prog2(L: Any, w: Any, v: Any) -> Any:
        a = (w * 3.0).sum() + (v * w.sum()).sum()  # saves v and the sum (not w itself)
        with L.leafctx():
            w[2:] *= 0.5
            w.add_(1.0)
        return a + (w * w).sum()

    loss, grads = run_og(prog2, [W4, W4[:3]])
    w1 = W4.copy()
    w1[2:] *= 0.5
    w1 += 1.0
    np.testing.assert_allclose(grads[0], 3.0 + W4[:3].sum() + 2 * w1)
    torch = pytest.importorskip("torch")
    tloss, tgrads = run_torch(prog2, [W4, W4[:3]])
    assert loss == pytest.approx(tloss)
    for a, b in zip(grads, tgrads):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    del torch


def test_leaf_write_blocked_while_saved_then_allowed_after_backward() -> None:
    g = og.Graph()
    w = g.param(np.arange(1.0, 5.0))
    a = w[0:2].log()
    w[2:4] -= 1.0  # disjoint: fine
    before = _state(g, w)
    with pytest.raises(og.BorrowError) as ei:
        w[1:3] -= 1.0  # overlaps the saved w[0:2]
    _same(before, _state(g, w))
    assert "log" in str(ei.value)
    grads = g.backward(a.sum())
    np.testing.assert_allclose(grads[w].numpy(), [1.0, 0.5, 0.0, 0.0])
    w[1:3] -= 1.0  # the borrow ended with the backward
    np.testing.assert_allclose(w.numpy(), [1.0, 1.0, 1.0, 3.0])


def test_leaf_write_blocked_inside_no_grad_too() -> None:
    g = og.Graph()
    w = g.param(np.arange(1.0, 5.0))
    v = g.param(np.ones(4))
    _ = w * v  # saves both
    with g.no_grad():
        with pytest.raises(og.BorrowError):
            w.sub_(0.1)
        with pytest.raises(og.BorrowError):
            v[0] = 2.0


def test_constant_leaf_write_subject_to_borrows() -> None:
    g = og.Graph()
    c = g.constant(np.arange(1.0, 5.0))
    w = g.param(np.ones(4))
    _ = w * c  # saves c (for w's gradient)
    with pytest.raises(og.BorrowError):
        c[0] = 0.0
    g.clear()
    c[0] = 0.0
    assert c.numpy()[0] == 0.0


# --- a right-hand side with history into a leaf --------------------------------------------

# each case: (the right-hand side, computed from v before the write; the write of it into w)
LEAF_WRITES: dict[str, tuple[Callable[[og.Tensor], og.Tensor], Callable[[og.Tensor, og.Tensor], None]]] = {
    "setitem": (lambda v: v[0:2] * 2.0, lambda w, r: w.__setitem__(slice(0, 2), r)),
    "iadd": (lambda v: v, lambda w, r: w.__iadd__(r)),
    "view_isub": (lambda v: v[1:].tanh(), lambda w, r: w[1:].__isub__(r)),
    "mul_": (lambda v: v, lambda w, r: w.mul_(r)),
    "copy_": (lambda v: v, lambda w, r: w.copy_(r)),
    "fill_": (lambda v: v[0], lambda w, r: w.fill_(r)),
    "adv_setitem": (lambda v: v[1:3], lambda w, r: w.__setitem__([0, 3], r)),
}


def _leaf_write(what: str, w: og.Tensor, r: og.Tensor) -> None:
    LEAF_WRITES[what][1](w, r)


@pytest.mark.parametrize("what", list(LEAF_WRITES))
def test_rhs_with_history_into_param_raises_graph_error(what: str) -> None:
    g = og.Graph()
    w = g.param(np.arange(4.0))
    v = g.param(np.arange(10.0, 14.0))
    r = LEAF_WRITES[what][0](v)
    before = _state(g, w, v)
    with pytest.raises(og.GraphError) as ei:
        _leaf_write(what, w, r)
    assert "no_grad" in str(ei.value)
    np.testing.assert_array_equal(w.numpy(), before[0][0])
    np.testing.assert_array_equal(v.numpy(), before[0][1])
    _same(before, _state(g, w, v))


@pytest.mark.parametrize("what", list(LEAF_WRITES))
def test_rhs_with_history_into_constant_is_recorded_as_torch_does(what: str) -> None:
    """A constant written with a value that has history becomes a non-leaf: its later readers get
    torch's gradients (the same lambdas run on torch tensors)."""
    torch = pytest.importorskip("torch")
    g = og.Graph()
    w = g.constant(np.arange(4.0))
    v = g.param(np.arange(10.0, 14.0))
    _leaf_write(what, w, LEAF_WRITES[what][0](v))
    assert w.requires_grad and not w.is_leaf
    coef = np.array([1.0, -2.0, 3.0, 0.5])
    grad_v = g.backward((w * w * coef).sum())[v].numpy()
    tw = torch.arange(4.0, dtype=torch.float64)
    tv = torch.arange(10.0, 14.0, dtype=torch.float64, requires_grad=True)
    _leaf_write(what, tw, LEAF_WRITES[what][0](tv))
    (tw * tw * torch.tensor(coef)).sum().backward()
    np.testing.assert_array_equal(w.numpy(), tw.detach().numpy())
    assert tv.grad is not None
    np.testing.assert_allclose(grad_v, tv.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("what", list(LEAF_WRITES))
def test_rhs_with_history_into_leaf_graph_error_leaves_graph_unchanged(what: str) -> None:
    g = og.Graph()
    w = g.param(np.arange(4.0))
    v = g.param(np.arange(10.0, 14.0))
    r = LEAF_WRITES[what][0](v)
    pend = [n.id for n in g.pending()]
    with pytest.raises(og.GraphError):
        _leaf_write(what, w, r)
    # a failed call leaves the graph as it was (no stray recorded nodes)
    assert [n.id for n in g.pending()] == pend


@pytest.mark.parametrize("what", list(LEAF_WRITES))
def test_rhs_with_history_into_leaf_fine_under_no_grad(what: str) -> None:
    g = og.Graph()
    w = g.param(np.arange(4.0))
    v = g.param(np.arange(10.0, 14.0))
    ref = np.arange(4.0)
    vv = np.arange(10.0, 14.0)
    r = LEAF_WRITES[what][0](v)
    with g.no_grad():
        _leaf_write(what, w, r)
    expect = {
        "setitem": lambda: ref.__setitem__(slice(0, 2), vv[0:2] * 2.0),
        "iadd": lambda: ref.__iadd__(vv),
        "view_isub": lambda: ref[1:].__isub__(np.tanh(vv[1:])),
        "mul_": lambda: ref.__imul__(vv),
        "copy_": lambda: ref.__setitem__(Ellipsis, vv),
        "fill_": lambda: ref.fill(vv[0]),
        "adv_setitem": lambda: ref.__setitem__([0, 3], vv[1:3]),
    }
    expect[what]()
    np.testing.assert_allclose(w.numpy(), ref)
    assert w.is_leaf


def test_scalars_arrays_constants_and_grad_handles_into_leaf_are_fine() -> None:
    g = og.Graph()
    w = g.param(np.arange(1.0, 5.0))
    v = g.param(np.ones(4))
    c = g.constant(np.full(4, 7.0))
    grads = g.backward((w * v * 3.0).sum())
    w[0] = 1.5
    w[1:3] = np.array([2.5, 3.5])
    w[3:] = c[3:]
    w -= grads[w] * 0.1  # a gradient handle is not a param's history
    w.add_(grads[v][::-1])
    v.copy_(grads[w])
    ref = np.array([1.5, 2.5, 3.5, 7.0]) - 0.3 + (3 * np.arange(1.0, 5.0))[::-1]
    np.testing.assert_allclose(w.numpy(), ref)
    np.testing.assert_allclose(v.numpy(), 3.0)


def test_read_only_handles_refuse_writes() -> None:
    g = og.Graph()
    w = g.param(np.arange(4.0))
    grads = g.backward((w * w).sum())
    with pytest.raises(og.BorrowError):
        grads[w][0:2] += 1.0
    with pytest.raises(og.BorrowError):
        g.freeze(w)[1] = 0.0
    with pytest.raises(og.BorrowError):
        g.freeze(w).T[::2].zero_()
    np.testing.assert_array_equal(w.numpy(), np.arange(4.0))
    np.testing.assert_array_equal(grads[w].numpy(), 2 * np.arange(4.0))


# --- overlapping source and destination: numpy's result (the source is read first) ------------

OVERLAP_CASES: list[tuple[str, Callable[[Any], None]]] = [
    ("shift_right", lambda a: a.__setitem__(slice(1, None), a[:-1])),
    ("shift_left", lambda a: a.__setitem__(slice(None, -1), a[1:])),
    ("reverse_all", lambda a: a.__setitem__(slice(None, None, -1), a)),
    ("strided_into_strided", lambda a: a.__setitem__(slice(1, None, 2), a[::2])),
    ("strided_into_shifted", lambda a: a.__setitem__(slice(2, None, 2), a[:-2:2])),
    ("iadd_shift", lambda a: a[1:].__iadd__(a[:-1])),
    ("isub_reverse", lambda a: a.__isub__(a[::-1])),
    ("imul_shift_left", lambda a: a[:-1].__imul__(a[1:])),
]

OVERLAP_2D: list[tuple[str, Callable[[Any], None]]] = [
    ("rows_down", lambda a: a.__setitem__(slice(1, None), a[:-1])),
    ("cols_left", lambda a: a.__setitem__((slice(None), slice(None, -1)), a[:, 1:])),
    ("transpose_into_self", lambda a: a.__setitem__(Ellipsis, a.T)),
    ("transpose_iadd", lambda a: a.__iadd__(a.T)),
    ("diag_block", lambda a: a.__setitem__((slice(1, None), slice(1, None)), a[:-1, :-1])),
    ("copy_from_transpose", lambda a: a.copy_(a.T) if hasattr(a, "copy_") else a.__setitem__(Ellipsis, a.T)),
]


SAVES_ALIASED_SOURCE = {"imul_shift_left"}  # on a non-leaf, mul would save the source it overwrites


def _np_overlap(fn: Callable[[Any], None], base: np.ndarray) -> np.ndarray:
    a = base.copy()
    fn(a)
    return a


@pytest.mark.parametrize("name,fn", OVERLAP_CASES + OVERLAP_2D, ids=[n for n, _ in OVERLAP_CASES + OVERLAP_2D])
@pytest.mark.parametrize("kind", ["constant", "param"])
def test_overlap_on_leaves_gives_numpy_result(name: str, fn: Callable[[Any], None], kind: str) -> None:
    base = np.arange(1.0, 7.0) if (name, fn) in OVERLAP_CASES else np.arange(1.0, 10.0).reshape(3, 3)
    expect = _np_overlap(fn, base)
    g = og.Graph()
    if kind == "constant":
        t = g.constant(base)
        fn(t)
    else:
        t = g.param(base)
        with pytest.raises(og.GraphError):  # the source is a view of a param: it has history
            fn(t)
        np.testing.assert_array_equal(t.numpy(), base)
        with g.no_grad():
            fn(t)
    np.testing.assert_array_equal(t.numpy(), expect)


@pytest.mark.parametrize("name,fn", OVERLAP_CASES + OVERLAP_2D, ids=[n for n, _ in OVERLAP_CASES + OVERLAP_2D])
def test_overlap_on_non_leaves_values_and_gradients(name: str, fn: Callable[[Any], None]) -> None:
    base = RNG.uniform(0.5, 1.5, 6) if (name, fn) in OVERLAP_CASES else RNG.uniform(0.5, 1.5, (3, 3))
    coeff = RNG.standard_normal(base.shape)

    def prog(L: Any, x: Any) -> Any:
        y = x * 1.0
        fn(y)
        return (y * y * L.const(coeff)).sum()

    if name in SAVES_ALIASED_SOURCE:
        g = og.Graph()
        y = g.param(base) * 1.0
        with pytest.raises(og.BorrowError, match="saves it for backward"):
            fn(y)
        np.testing.assert_array_equal(y.numpy(), base)
        return
    # pure numpy reference of the forward: numpy's overlap semantics on a copy
    y_ref = _np_overlap(fn, base)
    loss, (gx,) = run_og(prog, [base])
    assert loss == pytest.approx(float((y_ref * y_ref * coeff).sum()), rel=1e-12)
    np.testing.assert_allclose(gx, fd_grads(prog, [base])[0], rtol=1e-5, atol=1e-6)

# torch refuses a copy whose source aliases its destination; the overlap_* programs in PROGRAMS
# compare with torch by cloning the source there (test_program_matches_torch).


def test_detached_handle_writes_are_checked_against_the_same_ledger() -> None:
    g = og.Graph()
    x = g.param(np.arange(1.0, 5.0))
    y = x * 1.0
    a = y[0:2].log()
    d = y.detach()
    with pytest.raises(og.BorrowError):
        d[1] = 0.0
    d[2:] = 0.0  # disjoint: fine, and visible through y (same storage)
    np.testing.assert_array_equal(y.numpy(), [1.0, 2.0, 0.0, 0.0])
    grads = g.backward(a.sum())
    np.testing.assert_allclose(grads[x].numpy(), [1.0, 0.5, 0.0, 0.0])


def test_free_releases_the_borrow_a_write_needs() -> None:
    g = og.Graph()
    x = g.param(np.arange(1.0, 5.0))
    y = x * 1.0
    a = y[0:2].log()
    with pytest.raises(og.BorrowError):
        y[0] = 0.0
    g.free(a)
    y[0] = 0.0
    grads = g.backward((y * y).sum())
    np.testing.assert_allclose(grads[x].numpy(), [0.0, 4.0, 6.0, 8.0])


def test_write_through_view_of_view_then_read_other_views() -> None:
    def prog(L: Any, x: Any, w: Any) -> Any:
        y = x * 1.0
        inner = y[1:][:, 1:3]  # rows 1..2, columns 1..2
        other = y[:, 2]  # column 2 meets inner at (1, 2), (2, 2)
        inner[0] = w[0:2]
        inner.T[1] *= w[2:4]
        return (other * other).sum() + (y * L.const(C34)).sum()

    loss, grads = run_og(prog, [X34, W4])
    for got, want in zip(grads, fd_grads(prog, [X34, W4])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    pytest.importorskip("torch")
    tloss, tgrads = run_torch(prog, [X34, W4])
    assert loss == pytest.approx(tloss, rel=1e-12)
    for got, want in zip(grads, tgrads):
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_clamp_with_array_bounds_checks_shapes_first_and_records_nothing_on_failure() -> None:
    g = og.Graph()
    w = g.param(np.ones((2, 3)))
    y = w * 2.0
    before = [n.id for n in g.pending()]
    with pytest.raises(og.ShapeError):
        y.clamp_(lo=np.zeros((3, 2)))
    assert [n.id for n in g.pending()] == before
    np.testing.assert_array_equal(y.numpy(), np.full((2, 3), 2.0))


def test_clamp_with_tensor_bounds_is_differentiable_like_og_clip() -> None:
    g = og.Graph()
    x = g.param(np.array([0.0, 1.0, 2.0, -1.0]))
    lo = g.param(np.zeros(4))
    hi = g.param(np.ones(4))
    y = x * 1.0
    y.clamp_(lo, hi)
    grads = g.backward(y.sum())
    np.testing.assert_array_equal(y.numpy(), [0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(grads[x].numpy(), [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(grads[lo].numpy(), [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(grads[hi].numpy(), [0.0, 0.0, 1.0, 0.0])
