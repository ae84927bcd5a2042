"""The README's two claims against PyTorch (where owngrad and PyTorch differ on in-place writes).

(a) A node saved ``x[0:2]`` while ``x[2:4]`` is written: PyTorch raises "modified by an inplace
    operation" at backward (all views of a tensor share one version counter); owngrad runs and
    its gradients are right (checked against a functional re-implementation and finite differences).
(b) A weight mutated between forward and backward: PyTorch raises at backward; owngrad raises
    BorrowError at the mutating line, naming the line that recorded the borrowing node.

The owngrad half always runs; the torch half skips cleanly when torch is not installed.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import owngrad as og

HERE = os.path.basename(__file__)
X0 = np.array([0.5, 1.5, 2.0, 3.0, 0.7])
C = np.array([1.0, -2.0, 0.5, 3.0, 1.5])


def _line() -> int:
    return sys._getframe(1).f_lineno


def _marker(tag: str) -> int:
    """The line of this file that carries the comment ``# <tag>``."""
    with open(__file__) as f:
        hits = [i for i, line in enumerate(f, 1) if line.rstrip().endswith(f"# <{tag}>")]
    assert len(hits) == 1, tag
    return hits[0]


# --- (a) disjoint slices ------------------------------------------------------------------

def functional_a(x: np.ndarray) -> float:
    """The same program as prog_a, out of place in numpy."""
    y = x * 2.0
    a = np.log(y[0:2])
    y2 = np.concatenate([y[0:2], np.full(2, 7.0), y[4:] * 3.0])
    return float(a.sum() + (y2 * y2 * C).sum())


def prog_a_owngrad(x: og.Tensor) -> og.Tensor:
    y = x * 2.0
    a = y[0:2].log()  # saves y[0:2]
    y[2:4] = 7.0  # writes y[2:4]: disjoint from what log saved
    y[4:] *= 3.0
    return a.sum() + (y * y * C).sum()


def fd(f: object, x0: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    out = np.zeros_like(x0)
    for i in range(x0.size):
        hi, lo = x0.copy(), x0.copy()
        hi[i] += eps
        lo[i] -= eps
        out[i] = (f(hi) - f(lo)) / (2 * eps)  # type: ignore[operator]
    return out


def test_a_owngrad_runs_with_correct_gradients() -> None:
    g = og.Graph()
    x = g.param(X0)
    loss = prog_a_owngrad(x)
    grads = g.backward(loss)
    assert loss.item() == pytest.approx(functional_a(X0), rel=1e-12)
    # analytic: d/dx log(2x) = 1/x on [0:2]; (2x)^2 C -> 8 x C on [0:2]; [2:4] overwritten -> 0;
    # (6x)^2 C -> 72 x C on [4]
    expect = np.r_[1 / X0[0:2] + 8 * X0[0:2] * C[0:2], 0.0, 0.0, 72 * X0[4] * C[4]]
    np.testing.assert_allclose(grads[x].numpy(), expect, rtol=1e-12)
    np.testing.assert_allclose(grads[x].numpy(), fd(functional_a, X0), rtol=1e-6, atol=1e-8)


def test_a_overlapping_write_is_refused_at_the_write() -> None:
    g = og.Graph()
    x = g.param(X0)
    y = x * 2.0
    a = y[0:2].log(); rec = _line()  # noqa: E702
    before = y.numpy()
    with pytest.raises(og.BorrowError) as ei:
        y[1:3] = 7.0  # <write-a>
    wline = _marker("write-a")
    msg = str(ei.value)
    assert f"{HERE}:{wline}" in msg and f"{HERE}:{rec}" in msg
    np.testing.assert_array_equal(y.numpy(), before)
    assert g.backward(a.sum())[x].numpy()[0] == pytest.approx(1 / X0[0])


def test_a_torch_rejects_the_disjoint_write() -> None:
    torch = pytest.importorskip("torch")
    x = torch.tensor(X0, requires_grad=True)
    y = x * 2.0
    a = y[0:2].log()
    y[2:4] = 7.0
    y[4:] *= 3.0
    loss = a.sum() + (y * y * torch.tensor(C)).sum()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_a_torch_agrees_once_the_slice_is_cloned() -> None:
    # what torch users must write instead (clone the saved slice); owngrad gives the same numbers
    torch = pytest.importorskip("torch")
    x = torch.tensor(X0, requires_grad=True)
    y = x * 2.0
    a = y[0:2].clone().log()
    y[2:4] = 7.0
    y[4:] *= 3.0
    loss = a.sum() + (y * y * torch.tensor(C)).sum()
    loss.backward()
    g = og.Graph()
    ox = g.param(X0)
    oloss = prog_a_owngrad(ox)
    np.testing.assert_allclose(g.backward(oloss)[ox].numpy(), x.grad.numpy(), rtol=1e-12)
    assert oloss.item() == pytest.approx(loss.item(), rel=1e-12)


# --- (b) a weight mutated between forward and backward ------------------------------------

XIN = np.random.default_rng(3).standard_normal((5, 3))
W1 = np.random.default_rng(4).standard_normal((3, 4))
W2 = np.random.default_rng(5).standard_normal((4, 2))


def test_b_owngrad_raises_at_the_mutating_line() -> None:
    g = og.Graph()
    x = g.constant(XIN)
    w1 = g.param(W1, name="w1")
    w2 = g.param(W2, name="w2")
    h = (x @ w1).tanh()
    out = h @ w2; rec = _line()  # noqa: E702  (saves w2 for h's gradient)
    loss = (out * out).sum()
    before = w2.numpy()
    pend = [n.id for n in g.pending()]
    ledger = [(b.region, b.kind) for b in w2._storage.ledger.live()]
    with pytest.raises(og.BorrowError) as ei:
        w2 -= 0.1  # <write-b>
    wline = _marker("write-b")
    msg = str(ei.value)
    assert f"at {HERE}:{wline}" in msg, msg  # the attempted write, at its line
    assert f"recorded at {HERE}:{rec}" in msg, msg  # the holder: the matmul, at its line
    assert "w2" in msg and "matmul" in msg and "help:" in msg
    # nothing changed: data, graph, ledger
    np.testing.assert_array_equal(w2.numpy(), before)
    assert [n.id for n in g.pending()] == pend
    assert [(b.region, b.kind) for b in w2._storage.ledger.live()] == ledger
    # the intended order works: backward first, then the update
    grads = g.backward(loss)
    w2 -= grads[w2] * 0.1
    np.testing.assert_allclose(w2.numpy(), before - 0.1 * grads[w2].numpy())


def test_b_owngrad_raises_under_no_grad_too() -> None:
    g = og.Graph()
    x = g.constant(XIN)
    w1 = g.param(W1)
    w2 = g.param(W2)
    out = (x @ w1).tanh() @ w2; rec = _line()  # noqa: E702
    with g.no_grad():
        with pytest.raises(og.BorrowError) as ei:
            w2.mul_(0.5)  # <write-b-nograd>
    assert f"{HERE}:{_marker('write-b-nograd')}" in str(ei.value) and f"{HERE}:{rec}" in str(ei.value)
    g.backward(out.sum())


def test_b_torch_raises_only_at_backward() -> None:
    torch = pytest.importorskip("torch")
    x = torch.tensor(XIN)
    w1 = torch.tensor(W1, requires_grad=True)
    w2 = torch.tensor(W2, requires_grad=True)
    h = (x @ w1).tanh()
    out = h @ w2
    loss = (out * out).sum()
    with torch.no_grad():
        w2 -= 0.1  # torch accepts the write ...
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()  # ... and fails here, far from it


def test_b_same_gradients_when_the_order_is_right() -> None:
    torch = pytest.importorskip("torch")
    tx = torch.tensor(XIN)
    tw1 = torch.tensor(W1, requires_grad=True)
    tw2 = torch.tensor(W2, requires_grad=True)
    tout = (tx @ tw1).tanh() @ tw2
    (tout * tout).sum().backward()
    g = og.Graph()
    w1 = g.param(W1)
    w2 = g.param(W2)
    out = (g.constant(XIN) @ w1).tanh() @ w2
    grads = g.backward((out * out).sum())
    np.testing.assert_allclose(grads[w1].numpy(), tw1.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(grads[w2].numpy(), tw2.grad.numpy(), rtol=1e-10)
