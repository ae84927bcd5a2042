"""Conformance with PyTorch / numpy on adversarial programs (helper: review-semantics).

Each discrepancy found by the review is kept here (see notes/review-semantics.md, R1...): a check that
always runs (exact expected values or central finite differences, float64) and, where torch is
installed, the same program in torch. Behaviours verified against torch that no other test pins
(indexing gradients of every key kind, in-place programs through views, scalar dtypes) are here too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og

# --- helpers --------------------------------------------------------------------------------------

def _A(*shape: int) -> np.ndarray:
    return np.arange(1.0, 1 + int(np.prod(shape))).reshape(shape) / 7.0


def _torch() -> Any:
    return pytest.importorskip("torch")


def _og_run(src: str, override: dict[int, np.ndarray] | None = None,
            grads: bool = True) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """Run a `;`-separated program in owngrad: `P(a)` makes params (in order), `C(a)` constants,
    `ng()` is `g.no_grad()`; the program sets `loss`. Returns (loss, param values, gradients)."""
    g = og.Graph()
    params: list[og.Tensor] = []
    vals: list[np.ndarray] = []

    def P(a: Any) -> og.Tensor:
        arr = np.asarray(a, dtype=np.float64) if override is None else override[len(params)]
        vals.append(arr.copy())
        params.append(g.param(arr))
        return params[-1]

    ns: dict[str, Any] = {"np": np, "A": _A, "P": P, "C": lambda a: g.constant(np.asarray(a, dtype=np.float64)),
                          "ng": g.no_grad, "maximum": og.maximum, "where": og.where}
    for line in (s.strip() for s in src.split(";")):
        if line:
            exec(line, ns)
    loss = ns["loss"]
    if not grads:
        return float(loss.item()), vals, []
    G = g.backward(loss)
    return float(loss.item()), vals, [G[p].numpy() if p in G else np.zeros(p.shape) for p in params]


def _torch_run(src: str) -> tuple[float, list[np.ndarray]]:
    torch = _torch()
    params: list[Any] = []

    def P(a: Any) -> Any:
        params.append(torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True))
        return params[-1]

    ns: dict[str, Any] = {"np": np, "A": _A, "P": P, "C": lambda a: torch.tensor(np.asarray(a, dtype=np.float64)),
                          "ng": torch.no_grad, "maximum": torch.maximum, "where": torch.where}
    with torch.enable_grad():
        for line in (s.strip() for s in src.split(";")):
            if line:
                exec(line, ns)
        ns["loss"].backward()
    return float(ns["loss"].item()), [np.zeros(p.shape) if p.grad is None else p.grad.numpy() for p in params]


def _fd_check(src: str, eps: float = 1e-6) -> None:
    """owngrad's gradients of a program equal central finite differences of the program itself."""
    _, vals, grads = _og_run(src)
    for k, v in enumerate(vals):
        num = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            hi = [x.copy() for x in vals]
            lo = [x.copy() for x in vals]
            hi[k][idx] += eps
            lo[k][idx] -= eps
            num[idx] = (_og_run(src, dict(enumerate(hi)), False)[0] - _og_run(src, dict(enumerate(lo)), False)[0]) / (2 * eps)
        np.testing.assert_allclose(grads[k], num, rtol=1e-5, atol=1e-6, err_msg=f"param {k} of {src}")


def _grads(fn: Callable[..., og.Tensor], *arrays: np.ndarray) -> list[np.ndarray]:
    g = og.Graph()
    ps = [g.param(a) for a in arrays]
    G = g.backward(fn(*ps))
    return [G[p].numpy() for p in ps]


# --- R1: pow at base 0 (fixed) ---------------------------------------------------------------------

def test_pow_gradients_at_zero_base_are_torchs() -> None:
    a, b = np.array([0.0, 0.0, 2.0]), np.array([2.0, 0.0, 1.0])
    ga, gb = _grads(lambda x, y: (x ** y).sum(), a, b)
    np.testing.assert_allclose(ga, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(gb, [0.0, 0.0, 2 * np.log(2.0)])
    (gz,) = _grads(lambda x: (x ** 0.0).sum(), np.array([0.0, 1.0]))
    np.testing.assert_array_equal(gz, [0.0, 0.0])
    (gr,) = _grads(lambda x: (0.0 ** x).sum(), np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(gr, [0.0, 0.0, 0.0])


def test_pow_gradients_at_zero_base_match_torch() -> None:
    torch = _torch()
    a, b = np.array([0.0, 0.0, 2.0, 3.0]), np.array([2.0, 0.0, 1.0, 0.0])
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (ta ** tb).sum().backward()
    ga, gb = _grads(lambda x, y: (x ** y).sum(), a, b)
    np.testing.assert_allclose(ga, ta.grad.numpy())
    np.testing.assert_allclose(gb, tb.grad.numpy())


# --- R2: clip with tensor bounds at ties (fixed) ---------------------------------------------------

def test_clip_tensor_bounds_pass_gradient_at_ties_like_torch_clamp() -> None:
    x, lo, hi = np.array([0.0, 1.0, 0.5, -1.0, 2.0]), np.zeros(5), np.ones(5)
    gx, glo, ghi = _grads(lambda x, lo, hi: (og.clip(x, lo, hi) * np.arange(1.0, 6.0)).sum(), x, lo, hi)
    np.testing.assert_array_equal(gx, [1.0, 2.0, 3.0, 0.0, 0.0])
    np.testing.assert_array_equal(glo, [0.0, 0.0, 0.0, 4.0, 0.0])
    np.testing.assert_array_equal(ghi, [0.0, 0.0, 0.0, 0.0, 5.0])
    torch = _torch()
    tx, tlo, thi = (torch.tensor(a, requires_grad=True) for a in (x, lo, hi))
    (torch.clamp(tx, tlo, thi) * torch.arange(1.0, 6.0, dtype=torch.float64)).sum().backward()
    for mine, t in zip((gx, glo, ghi), (tx, tlo, thi)):
        np.testing.assert_array_equal(mine, t.grad.numpy())


# --- R3/R4/R5: reductions over 0-d, n <= ddof, empty axes (fixed) -----------------------------------

@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "logsumexp"])
@pytest.mark.parametrize("axis", [0, -1])
def test_zero_dim_reduction_with_axis_0_has_gradient_one(op: str, axis: int) -> None:
    (gx,) = _grads(lambda x: getattr(x, op)(axis=axis), np.array(3.0))
    assert gx.shape == () and gx == 1.0


def test_var_with_n_at_most_ddof_gives_inf_nan_not_an_exception() -> None:
    g = og.Graph()
    x = g.param(np.ones((3, 2)))
    G = g.backward(x.var(axis=0, ddof=3).sum())
    assert G[x].shape == (3, 2) and not np.isfinite(G[x].numpy()).any()
    e = g.param(np.ones((0, 3)))
    G = g.backward(e.var(axis=0).sum())
    assert G[e].shape == (0, 3)


def test_logsumexp_over_an_empty_axis_is_minus_inf() -> None:
    g = og.Graph()
    x = g.param(np.ones((0, 3)))
    y = x.logsumexp(axis=0)
    assert y.shape == (3,) and np.all(y.numpy() == -np.inf)
    assert g.backward(y.sum())[x].shape == (0, 3)


# --- R6: expand is a view in torch and numpy ------------------------------------------------------

EXPAND_THEN_WRITE = "w=P(A(3)); y=w*1; e=y.expand(2,3); y[0]=9.; loss=(e*C(A(2,3))).sum()"


def test_expand_sees_a_later_write_to_its_source() -> None:
    # numpy's broadcast_to and torch's expand are views: e[:, 0] is 9 after the write, and w[0]
    # (overwritten) gets no gradient through e.
    loss, _, (gw,) = _og_run(EXPAND_THEN_WRITE)
    c = _A(2, 3)
    y = _A(3).copy()
    y[0] = 9.0
    assert loss == pytest.approx((np.broadcast_to(y, (2, 3)) * c).sum())
    np.testing.assert_allclose(gw, [0.0, *c.sum(axis=0)[1:]])


def test_expand_then_write_matches_torch() -> None:
    tl, tg = _torch_run(EXPAND_THEN_WRITE)
    ol, _, og_ = _og_run(EXPAND_THEN_WRITE)
    assert ol == pytest.approx(tl)
    np.testing.assert_allclose(og_[0], tg[0])


# --- R7: numpy float64 scalars must not promote float32 tensors -----------------------------------

@pytest.mark.parametrize("scalar", [np.float64(2.0), np.sqrt(4.0), np.float32(2.0), np.int64(2), 2.0, 2],
                         ids=["np.float64", "np.sqrt", "np.float32", "np.int64", "float", "int"])
def test_scalars_keep_float32(scalar: Any) -> None:
    g = og.Graph()
    w = g.param(np.ones(3, np.float32))
    for y in (w * scalar, w / scalar, scalar * w, w + scalar, w - scalar, w ** scalar, og.maximum(w, scalar)):
        assert y.dtype == np.float32, (type(scalar), y)


# --- R8: handles keep the param's name --------------------------------------------------------------

def test_frozen_and_on_grad_handles_keep_the_name() -> None:
    g = og.Graph()
    w = g.param(np.ones(2), name="w")
    assert g.freeze(w).name == "w"
    seen: list[Any] = []
    g.backward((w * 2).sum(), on_grad=lambda leaf, grad: seen.append(leaf.name))
    assert seen == ["w"]


# --- R9: into= from another graph ------------------------------------------------------------------

def test_backward_into_grads_of_another_graph_is_a_graph_error() -> None:
    g, g2 = og.Graph(), og.Graph()
    w = g.param(np.ones(3))
    u = g2.param(np.ones(2))
    other = g2.backward(u.sum())
    loss = (w * 3).sum()
    with pytest.raises(og.GraphError):
        g.backward(loss, into=other)
    assert len(other) == 1
    assert g.backward(loss)[w].numpy().tolist() == [3.0, 3.0, 3.0]  # the failed call consumed nothing


# --- R10: 2 / y saves only what torch saves --------------------------------------------------------

RDIV_THEN_WRITE = "w=P(A(3)); y=w*1; z=2/y; y.add_(1.); loss=z.sum()"


def test_scalar_over_tensor_does_not_borrow_the_denominator() -> None:
    _, (w,), (gw,) = _og_run(RDIV_THEN_WRITE)
    np.testing.assert_allclose(gw, -2 / w ** 2)


def test_scalar_over_tensor_then_write_matches_torch() -> None:
    tl, tg = _torch_run(RDIV_THEN_WRITE)
    ol, _, og_ = _og_run(RDIV_THEN_WRITE)
    assert ol == pytest.approx(tl)
    np.testing.assert_allclose(og_[0], tg[0])


# --- verified behaviours: indexing gradients of every key kind -------------------------------------

_X = np.random.default_rng(3).standard_normal((4, 5, 6))
KEYS: list[Any] = [
    0, -1, (1, 2), (-1, -2, -3), slice(None, None, 2), slice(None, None, -1), slice(3, 0, -2), slice(-2, None),
    (slice(None), None, 2), (Ellipsis, 1), (None, Ellipsis, None), (1, Ellipsis, slice(1, 5, 3)),
    np.array([0, 0, 2]), [0, 0, 3, -1], np.array([[1, 1], [0, 3]]), (np.array([0, 1]), np.array([2, 2])),
    (slice(None), np.array([4, 4, 0])), (np.array([0, 2]), slice(1, 3), np.array([1, 1])),
    (1, np.array([0, 0]), slice(None)), (np.array([1, 1]), Ellipsis, np.array([5, 0])), _X[:, 0, 0] > 0,
    _X[:, :, 0] > 0, _X > 0, (slice(None), _X[0, :, 0] > 0), (_X[:, 0, 0] > 0, slice(None), 0),
    np.array([], dtype=np.int64), np.zeros(4, bool), (None, np.array([1, 3])), (np.array([0, 1]), None, np.array([1, 2])),
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


# --- verified behaviours: in-place programs against torch ------------------------------------------
# Programs PyTorch runs: owngrad runs them with the same loss and gradients.
TORCH_RUNS = [
    "w=P(A(4,3)); y=w*2; y[0:2]=0; loss=(y*y).sum()",
    "w=P(A(4,3)); y=w*2; v=y[1]; v.mul_(3); loss=(y*y).sum()",
    "w=P(A(4,3)); y=w*2; v=y[1:3]; u=v[:,0]; u.fill_(7.); loss=(y*C(A(4,3))).sum()",
    "w=P(A(4,3)); y=w*2; t=y.T; t[0]=1.; loss=(y*C(A(4,3))).sum()",
    "w=P(A(4,3)); y=w*2; t=y.T; t[0]*=3; loss=(t*C(A(3,4))).sum()",
    "w=P(A(4,3)); y=w*2; u=y.unsqueeze(0); u[0,1]=5.; loss=(y*y).sum()",
    "w=P(A(4,3)); y=w*2; r=y.reshape(12); r[3:6]=0.; loss=(y*y).sum()",
    "w=P(A(4,3)); y=w*2; v=y[1:3]; y[2]=0.; loss=(v*v).sum()",
    "w=P(A(4,3)); q=P(A(3)); y=w*2; y[1]=q*3; loss=(y*y).sum()",
    "w=P(A(4,3)); q=P(A(1)); y=w*2; y[1:3]=q; loss=(y*C(A(4,3))).sum()",
    "w=P(A(5)); y=w*2; y[y>0.5]=0.; loss=(y*y).sum()",
    "w=P(A(3)); q=P(A(3)); y=w*2; y*=q; loss=(y*C(A(3))).sum()",
    "w=P(A(3)); q=P(A(3)); y=w*2; y/=q; loss=(y*C(A(3))).sum()",
    "w=P(A(3)); y=w*2; y*=3; y*=w; loss=(y).sum()",
    "w=P(A(5)-0.4); y=w*2; y.clamp_(0,1); loss=(y*C(A(5))).sum()",
    "w=P(A(3)); q=P(A(3)); y=w*2; y.copy_(q*q); loss=(y*C(A(3))).sum()",
    "w=P(A(4)); y=w*2; y[0:2].copy_(y[2:4]); loss=(y*C(A(4))).sum()",
    "w=P(A(5)); y=w*2; y[1:]=y[:-1]*1; loss=(y*C(A(5))).sum()",
    "w=P(A(4)); y=w*2; y.fill_(2.); loss=(y*w).sum()",
    "w=P(A(4)); y=w*2; y[0:2].sub_(y[2:4]); loss=(y*C(A(4))).sum()",
    "w=P(A(3)); y=w*2; y+=y; loss=(y*C(A(3))).sum()",
    "w=P(A(4)); y=w*2; d=y.detach(); d.zero_(); loss=(y*C(A(4))).sum()",
    "w=P(A(4)); y=w*2; z=(y*C(A(4))).sum(); with ng(): y.add_(1.); loss=z",
    "w=P(A(2,3)); y=w*1; y[0]+=y[1]; y[1]*=2; loss=(y*C(A(2,3))).sum()",
    "w=P(A(1,3)); y=w*1; s=y.squeeze(0); s[1]=0.; loss=(y*C(A(1,3))).sum()",
    "w=P(A(3)); y=w*1; z=where(C(np.array([1.,0,1]))>0,y,C(A(3))); y.mul_(2); loss=z.sum()+y.sum()",
    "w=P(A(5)); y=w*1; z=y[np.array([0,0,1])].exp(); y[0]=9.; loss=z.sum()",
    "w=P(A(5)); y=w*1; z=y[1:3].exp(); y[np.array([0,4])]=0.; loss=z.sum()+(y*C(A(5))).sum()",
    "w=P(A(3)); s=(w*w).sum(); s*=3; loss=s",
    "w=P(A(3)); y=w*1; y[1]*=5; loss=(y*y).sum()",
    "w=P(A(2,3)); s=(w*w).sum(1); s[0]=0.; loss=(s*C(A(2))).sum()",
    "w=P(A(3,2)); x=P(A(4,3)); z=x@w; z[0]=0.; loss=(z*z).sum()",
    "w=P(A(4)); y=w*1; y.clamp_(0.2,0.4); z=y.exp(); loss=(z*C(A(4))).sum()",
    "w=P(A(3,4)); q=P(A(4)); y=w*1; y.copy_(q); loss=(y*C(A(3,4))).sum()",
    "w=P(A(3,4)); q=P(A(4)); y=w*1; y[1].copy_(q*2); loss=(y*y).sum()",
    "w=P(A(3)); y=w.exp(); z=y*1; z.sub_(1.); loss=(z*z).sum()",
    "w=P(A(4,4)); y=w*1; a=y[1:]; b=a[:,1:]; c=b.T; c[0]=c[1]*2; loss=(y*y).sum()",
    "w=P(A(4,4)); y=w*1; a=y[1:3]; y.mul_(2); b=a[0]; loss=(b*C(A(4))).sum()",
    "w=P(A(4)); q=P(A(4)); y=w*1; y[0:2]=q[0:2]; y[0:2]*=q[2:4]; loss=(y*C(A(4))).sum()",
    "w=P(A(3,4)); y=w*1; r=y.T.reshape(12); y[0]=0.; loss=(r*C(A(12))).sum()+y.sum()",
    "w=P(A(3,4)); y=w*1; r=y.reshape(-1); r[0]=5.; loss=(y*y).sum()",
    "w=P(A(3)); y=w*1; z=2-y; y.add_(1.); loss=(z*z).sum()",
    "w=P(A(3)); y=w*1; z=-y; y.mul_(2); loss=(z+y).sum()",
    # exp/softmax save their output, the sum's gradient reads nothing: writing the input is fine
    "w=P(A(3,2)); x=C(A(4,3)); z=(x@w).tanh(); with ng(): w.sub_(0.1); loss=z.sum()",
    "w=P(A(4,3)); y=w*2; v=y[1:3]; z=v.exp(); y[1]=0.; loss=z.sum()",
    "w=P(A(6)); y=w*2; z=y[::2].exp(); y[2::3]=0.; loss=z.sum()",
    "w=P(A(5)); y=w*1; z=y[1:3].exp(); y[np.array([2,4])]=0.; loss=z.sum()+y.sum()",
    "w=P(A(5)); y=w*1; z=y.exp(); y[y>0.3]=0.; loss=z.sum()",
    "w=P(A(3,4)); y=w*1; z=y[0].exp(); y.T[1,:]=0.; loss=z.sum()",
    "w=P(A(3)); s=(w*w).sum(); t=s.exp(); s+=3; loss=t",
    "w=P(A(3,4)); y=w*1; s=y.softmax(-1); y.zero_(); loss=(s*C(A(3,4))).sum()+y.sum()",
]


@pytest.mark.parametrize("src", TORCH_RUNS, ids=[f"p{i}" for i in range(len(TORCH_RUNS))])
def test_program_torch_runs_gives_torchs_gradients(src: str) -> None:
    tl, tg = _torch_run(src)
    ol, _, ograds = _og_run(src)
    assert ol == pytest.approx(tl, rel=1e-12)
    for a, b in zip(ograds, tg):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# Programs PyTorch rejects at backward ("modified by an inplace operation") although the write is
# elsewhere: owngrad refuses at the write (which line: the one whose op is the mutation).
TORCH_MODIFIED = [
    ("w=P(A(3)); y=w.exp(); y+=1; loss=y.sum()", 2),
    ("w=P(A(3)); y=w.exp(); z=y*1; y.mul_(2); loss=z.sum()", 3),
    ("w=P(A(3)); y=w.sigmoid(); y[0]=0; loss=y.sum()", 2),
    ("w=P(A(3)); y=w.sqrt(); v=y[1:]; v.zero_(); loss=y.sum()", 3),
    ("w=P(A(3)); y=w*1; z=y.log(); y.add_(1); loss=z.sum()", 3),
    ("w=P(A(3)); c=C(A(3)); y=w*c; c.add_(1); loss=y.sum()", 3),
    ("w=P(A(3)); q=P(A(3)); y=q*1; z=w*y; y.add_(1); loss=z.sum()", 4),
    ("w=P(A(3)-0.3); y=(w*1).relu(); z=y*1; y.zero_(); loss=z.sum()", 3),
    ("w=P(A(3)); q=P(A(3)); y=q*1; z=w/y; y.add_(1); loss=z.sum()", 4),
    ("w=P(A(3)); y=w*1; z=y**2; y.add_(1); loss=z.sum()", 3),
    ("w=P(A(3,2)); x=P(A(4,3)); y=x*1; z=y@w; y.add_(1); loss=z.sum()", 4),
    ("w=P(A(4)); y=w.exp(); with ng(): y.add_(1.); loss=y.sum()", 2),
    ("w=P(A(3)); y=w*1; z=maximum(y,C(A(3)*0+0.2)); y.mul_(2); loss=z.sum()", 3),
    ("w=P(A(3,2)); x=P(A(4,3)); y=x*1; z=y[0:2]@w; y[1:]=0.; loss=z.sum()", 4),
    ("w=P(A(3)); q=P(A(3)); e=q*1; z=w**e; e.add_(1.); loss=z.sum()", 4),
    ("w=P(A(3)); y=w*1; z=C(A(3))**y; y.add_(1.); loss=z.sum()", 3),
    ("w=P(A(3)); y=w*1; z=C(A(3))/y; y.add_(1.); loss=z.sum()", 3),
    ("w=P(A(3)); y=w*1; z=y.var(); y.add_(1.); loss=z", 3),
    ("w=P(A(4)); y=w*1; z=y*y; y.clamp_(0,0.3); loss=z.sum()", 3),
]


@pytest.mark.parametrize("src,line", TORCH_MODIFIED, ids=[f"m{i}" for i in range(len(TORCH_MODIFIED))])
def test_program_torch_rejects_at_backward_fails_at_the_write(src: str, line: int) -> None:
    lines = [s.strip() for s in src.split(";") if s.strip()]
    g = og.Graph()
    ns: dict[str, Any] = {"np": np, "A": _A, "P": lambda a: g.param(np.asarray(a, dtype=np.float64)),
                          "C": lambda a: g.constant(np.asarray(a, dtype=np.float64)), "ng": g.no_grad,
                          "maximum": og.maximum, "where": og.where}
    for i, stmt in enumerate(lines):
        if i == line:
            with pytest.raises(og.BorrowError):
                exec(stmt, ns)
            break
        exec(stmt, ns)
    else:
        pytest.fail("the program ran past its write")
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        _torch_run(src)
    del torch


# Programs torch rejects only because views share one version counter: owngrad runs them, exactly.
VERSION_COUNTER_ONLY = [
    "w=P(A(4,3)); q=P(A(2,3)); y=w*2; b=(y[0:2]*q).sum(); y[2:4]=0; loss=b",
    "w=P(A(4)); y=w*1; z=y[0:2].log(); y[2:4]=5; loss=z.sum()+y.sum()",
    "w=P(A(4)); y=w*2; y[0:2]/=y[2:4]; loss=(y*C(A(4))).sum()",
    "w=P(A(6)); y=w*2; z=y[::2].exp(); y[1::2]=0.; loss=z.sum()+(y*y).sum()",
    "w=P(A(3,4)); y=w*2; z=y[:,0].exp(); y[:,1]=y[:,2]*y[:,3]; loss=z.sum()+(y*y).sum()",
    "w=P(A(3,4)); y=w*2; t=y.T; t[1:3,::2]=t[0:2,1::2]*3; loss=(y*y*C(A(3,4))).sum()",
    "w=P(A(3,2)); x=P(A(4,3)); y=x*1; z=y[0:2]@w; y[2:]=0.; loss=z.sum()+(y*y).sum()",
    "w=P(A(3,4)); y=w*1; z=y[0].exp(); y.T[:,1]=0.; loss=z.sum()+(y*C(A(3,4))).sum()",
]


@pytest.mark.parametrize("src", VERSION_COUNTER_ONLY, ids=[f"v{i}" for i in range(len(VERSION_COUNTER_ONLY))])
def test_disjoint_write_runs_with_finite_difference_gradients(src: str) -> None:
    _fd_check(src)


# --- verified behaviours: matmul shapes (1-D, batched, broadcast batch dims) ----------------------

MATMUL_SHAPES = [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)),
                 ((1, 2, 3), (5, 3, 4)), ((5, 1, 2, 3), (4, 3, 2)), ((3,), (5, 3, 4)), ((5, 2, 3), (3,)),
                 ((2, 1, 2, 3), (1, 4, 3, 2)), ((0, 3), (3, 2))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES])
def test_matmul_shapes_match_torch(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    torch = _torch()
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    out_shape = np.matmul(a, b).shape
    c = rng.standard_normal(out_shape)
    ga, gb = _grads(lambda x, y: ((x @ y) * c).sum(), a, b)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ((ta @ tb) * torch.tensor(c)).sum().backward()
    np.testing.assert_allclose(ga, ta.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(gb, tb.grad.numpy(), atol=1e-12)


# --- R11: in-place arithmetic that cannot be cast back refuses, as numpy and torch do -------------

@pytest.mark.parametrize("write", [lambda c: c.__iadd__(0.5), lambda c: c.__imul__(1.5), lambda c: c.__itruediv__(2),
                                   lambda c: c.clamp_(0.5, 1.5), lambda c: c.add_(0.5)],
                         ids=["+=0.5", "*=1.5", "/=2", "clamp_", "add_"])
def test_inplace_float_result_into_int_constant_is_a_type_error(write: Callable[[og.Tensor], Any]) -> None:
    g = og.Graph()
    c = g.constant(np.array([1, 2, 3]))
    with pytest.raises(TypeError):
        write(c)
    np.testing.assert_array_equal(c.numpy(), [1, 2, 3])
    with g.no_grad():  # and the ledger is free again
        c[0] = 7
    assert c.numpy()[0] == 7


def test_setitem_and_fill_truncate_into_int_like_numpy() -> None:
    g = og.Graph()
    c = g.constant(np.array([1, 2, 3]))
    c[0] = 2.7
    assert c.numpy().tolist() == [2, 2, 3]
    c.fill_(2.5)
    assert c.numpy().tolist() == [2, 2, 2] and c.dtype == np.int64


def test_float32_nonleaf_plus_float64_history_matches_torch() -> None:
    src_grads = _grads(lambda w, q: ((lambda y: (y.__iadd__(q * q), y)[1])(w * 2) ** 2).sum(),
                       np.ones(3, np.float32), np.arange(3.0))
    assert src_grads[0].dtype == np.float32 and src_grads[1].dtype == np.float64
    np.testing.assert_allclose(src_grads[0], [8.0, 12.0, 24.0])
    np.testing.assert_allclose(src_grads[1], [0.0, 12.0, 48.0])


# --- R13: bad axis types are TypeErrors with owngrad's message -----------------------------------

def test_unsqueeze_float_axis_is_a_clear_type_error() -> None:
    g = og.Graph()
    with pytest.raises(TypeError, match="unsqueeze"):
        g.param(np.ones((2, 3))).unsqueeze(1.5)  # type: ignore[arg-type]


# --- verified behaviours: view properties as torch -------------------------------------------------

def test_view_properties_match_torch() -> None:
    g = og.Graph()
    w = g.param(np.ones((3, 4)))
    y = w * 2
    cases = {"w": (w, True, True, None), "y": (y, True, False, None), "y[0]": (y[0], True, False, y),
             "y[0][1:]": (y[0][1:], True, False, y), "w.T": (w.T, True, False, w), "w[0]": (w[0], True, False, w),
             "y.detach()": (y.detach(), False, True, None), "w[[0]]": (w[[0]], True, False, None),
             "y.reshape(12)": (y.reshape(12), True, False, y), "w.T.reshape(12)": (w.T.reshape(12), True, False, None)}
    for name, (t, req, leaf, base) in cases.items():
        assert (t.requires_grad, t.is_leaf) == (req, leaf), name
        assert t.base is base, name
    with g.no_grad():
        n = w * 2
    assert not n.requires_grad and n.is_leaf


# --- R14: where the gradient goes at NaN inputs (torch's rules) -----------------------------------

NAN_CASES: list[tuple[str, Callable[[og.Tensor], og.Tensor], list[float]]] = [
    ("relu", lambda x: x.relu(), [1.0, 1.0, 0.0]),
    ("abs", lambda x: x.abs(), [1.0, 0.0, -1.0]),
    ("maximum", lambda x: og.maximum(x, np.zeros(3)), [1.0, 1.0, 0.0]),
    ("minimum", lambda x: og.minimum(x, np.zeros(3)), [0.0, 1.0, 1.0]),
]


@pytest.mark.parametrize("name,fn,expected", NAN_CASES, ids=[c[0] for c in NAN_CASES])
def test_gradient_at_nan_input_as_torch(name: str, fn: Callable[[og.Tensor], og.Tensor], expected: list[float]) -> None:
    (gx,) = _grads(lambda x: fn(x).sum(), np.array([1.0, np.nan, -1.0]))
    np.testing.assert_array_equal(gx, expected)
    torch = pytest.importorskip("torch")
    t = torch.tensor([1.0, np.nan, -1.0], dtype=torch.float64, requires_grad=True)
    z = torch.zeros(3, dtype=torch.float64)
    tf = {"relu": torch.relu, "abs": torch.abs, "maximum": lambda v: torch.maximum(v, z),
          "minimum": lambda v: torch.minimum(v, z)}[name]
    tf(t).sum().backward()
    np.testing.assert_array_equal(gx, t.grad.numpy())
