"""Programs with in-place writes and views, run in owngrad and in PyTorch.

Each program is a `;`-separated script over params ``P(a)`` and constants ``C(a)``. Programs that
PyTorch runs give PyTorch's loss and gradients; programs PyTorch rejects at backward ("modified by
an inplace operation") fail in owngrad at the write; programs PyTorch rejects only because views
share one version counter run in owngrad with gradients equal to central finite differences. The
checks that need no torch always run (exact values or finite differences, float64).
"""

from __future__ import annotations

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
            up, down = _og_run(src, dict(enumerate(hi)), False)[0], _og_run(src, dict(enumerate(lo)), False)[0]
            num[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[k], num, rtol=1e-5, atol=1e-6, err_msg=f"param {k} of {src}")


# --- expand is a view (as numpy's broadcast_to and torch's expand): it sees a later write -----------

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


# --- 2 / y saves only what torch saves (the result, not the denominator) --------------------------

RDIV_THEN_WRITE = "w=P(A(3)); y=w*1; z=2/y; y.add_(1.); loss=z.sum()"


def test_scalar_over_tensor_does_not_borrow_the_denominator() -> None:
    _, (w,), (gw,) = _og_run(RDIV_THEN_WRITE)
    np.testing.assert_allclose(gw, -2 / w ** 2)


def test_scalar_over_tensor_then_write_matches_torch() -> None:
    tl, tg = _torch_run(RDIV_THEN_WRITE)
    ol, _, og_ = _og_run(RDIV_THEN_WRITE)
    assert ol == pytest.approx(tl)
    np.testing.assert_allclose(og_[0], tg[0])


# --- in-place programs against torch --------------------------------------------------------------
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


# --- view properties as torch ---------------------------------------------------------------------

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


