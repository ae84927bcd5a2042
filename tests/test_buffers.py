"""Constant buffers filled in place (``hs[t + 1] = cell(x[t], hs[t])``) record their writes and
give the gradients of the out-of-place program; the graph's constructors make such constants."""

from __future__ import annotations

import numpy as np
import pytest

import owngrad as og

T, B, H = 5, 3, 4


def _rnn(g: og.Graph, w: og.Tensor, x: og.Tensor, buffered: bool) -> og.Tensor:
    """A tanh recurrence, written with a preallocated buffer or with og.stack."""
    if buffered:
        hs = g.zeros((T + 1, B, H), dtype=np.float64)
        for t in range(T):
            hs[t + 1] = (x[t] + hs[t] @ w).tanh()
        return hs
    h = g.zeros((B, H), dtype=np.float64)
    out = [h]
    for t in range(T):
        h = (x[t] + h @ w).tanh()
        out.append(h)
    return og.stack(out)


def test_a_buffer_filled_in_place_gives_the_stacked_programs_gradients() -> None:
    rng = np.random.default_rng(0)
    w0, x0 = rng.standard_normal((H, H)) * 0.5, rng.standard_normal((T, B, H))
    results = []
    for buffered in (True, False):
        g = og.Graph()
        w, x = g.param(w0), g.param(x0)
        hs = _rnn(g, w, x, buffered)
        loss = (hs * hs).sum() + hs[-1].sum()
        grads = g.backward(loss)
        results.append((float(loss), grads[w].numpy(), grads[x].numpy()))
    (l1, gw1, gx1), (l2, gw2, gx2) = results
    assert l1 == l2
    np.testing.assert_array_equal(gw1, gw2)
    np.testing.assert_array_equal(gx1, gx2)


def test_a_buffer_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    w0, x0 = rng.standard_normal((H, H)) * 0.5, rng.standard_normal((T, B, H))
    g = og.Graph()
    w, x = g.param(w0), g.param(x0)
    hs = _rnn(g, w, x, True)
    got = g.backward((hs * hs).sum())[w].numpy()
    tw = torch.tensor(w0, requires_grad=True)
    tx = torch.tensor(x0)
    ths = torch.zeros((T + 1, B, H), dtype=torch.float64)
    for t in range(T):
        # torch needs the clone: its views share one version counter, so writing row t + 1 after
        # matmul saved row t fails at backward ("modified by an inplace operation"); owngrad
        # compares regions and runs the buffer as written
        ths[t + 1] = torch.tanh(tx[t] + ths[t].clone() @ tw)
    (ths * ths).sum().backward()
    assert tw.grad is not None
    np.testing.assert_allclose(got, tw.grad.numpy(), rtol=1e-12)


def test_a_constant_becomes_a_non_leaf_only_when_the_value_has_history() -> None:
    g = og.Graph()
    w = g.param(np.ones(3))
    buf = g.zeros(3, dtype=np.float64)
    buf[0] = 5.0  # no history: an untracked write
    assert not buf.requires_grad and buf.is_leaf
    with g.no_grad():
        buf[1] = w[1] * 2.0  # history dropped knowingly
    assert not buf.requires_grad
    view = buf[1:]
    buf[2] = w[2] * 3.0
    assert buf.requires_grad and not buf.is_leaf and view.requires_grad
    grads = g.backward((view * view).sum())  # the earlier view reads the new history
    np.testing.assert_array_equal(grads[w].numpy(), [0.0, 0.0, 18.0])


def test_an_in_place_op_with_history_on_a_buffer_is_recorded() -> None:
    g = og.Graph()
    w = g.param(np.array([1.0, 2.0]))
    acc = g.ones(2, dtype=np.float64)
    acc += w * w
    acc *= w
    np.testing.assert_array_equal(acc.numpy(), [2.0, 10.0])
    np.testing.assert_array_equal(g.backward(acc.sum())[w].numpy(), [1 + 3 * 1.0, 1 + 3 * 4.0])


def test_a_buffer_write_is_borrow_checked_like_any_other() -> None:
    g = og.Graph()
    w = g.param(np.ones(3))
    buf = g.zeros(3, dtype=np.float64)
    buf[0] = w[0] * 2.0
    pending = (buf[0:2] * buf[0:2]).sum()  # saves buf[0:2]
    buf[2] = w[2] * 2.0  # disjoint: fine
    with pytest.raises(og.BorrowError, match="saved for backward"):
        buf[1] = w[1] * 2.0
    assert float(g.backward(pending)[w].numpy()[0]) == 8.0


def test_a_value_with_history_into_a_param_is_still_refused() -> None:
    g = og.Graph()
    w = g.param(np.ones(3), name="w")
    v = g.param(np.ones(3), name="v")
    with pytest.raises(og.GraphError, match="no_grad"):
        w[0] = v[0] * 2.0
    np.testing.assert_array_equal(w.numpy(), np.ones(3))
    assert g.pending() == [] or all(n.op != "copy_slices" for n in g.pending())


# --- constructors ----------------------------------------------------------------------------

def test_constructors_follow_numpy_with_a_float32_default() -> None:
    g = og.Graph()
    cases = [
        (g.zeros((2, 3)), np.zeros((2, 3), np.float32)),
        (g.zeros(4, dtype=np.float64), np.zeros(4)),
        (g.ones([2]), np.ones(2, np.float32)),
        (g.full((2, 2), 2.5), np.full((2, 2), 2.5, np.float32)),
        (g.arange(5), np.arange(5, dtype=np.float32)),
        (g.arange(1, 7, 2, dtype=np.int64), np.arange(1, 7, 2)),
        (g.arange(0.0, 1.0, 0.25), np.arange(0.0, 1.0, 0.25, dtype=np.float32)),
        (g.eye(3), np.eye(3, dtype=np.float32)),
        (g.eye(2, 3, k=1, dtype=np.float64), np.eye(2, 3, 1)),
        (g.zeros_like(np.ones((2, 2), np.int32)), np.zeros((2, 2), np.int32)),
        (g.ones_like(g.param(np.ones(3))), np.ones(3)),
        (g.zeros_like(np.ones(3), dtype=np.float32), np.zeros(3, np.float32)),
    ]
    for t, want in cases:
        assert t.dtype == want.dtype and t.shape == want.shape
        np.testing.assert_array_equal(t.numpy(), want)
        assert not t.requires_grad and t.graph is g


def test_random_constructors_draw_from_the_graphs_stream() -> None:
    g1, g2 = og.Graph(), og.Graph()
    a, b = g1.randn(2, 3), g2.randn((2, 3))
    assert a.shape == (2, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a.numpy(), b.numpy())  # both graphs start from seed 0
    assert not np.array_equal(g1.randn(2, 3).numpy(), a.numpy())  # the stream moves on
    r = g1.rand(1000, dtype=np.float64)
    assert r.dtype == np.float64 and float(r.min()) >= 0.0 and float(r.max()) < 1.0


@pytest.mark.parametrize("make, exc, text", [
    (lambda g: g.zeros((2, -1)), ValueError, "negative"),
    (lambda g: g.zeros("3"), TypeError, "shape"),
    (lambda g: g.ones((2,), dtype=object), TypeError, "object"),
    (lambda g: g.full(3, "x"), TypeError, "fill_value"),
    (lambda g: g.arange(0, 5, 0), ValueError, "step"),
    (lambda g: g.randn(2, dtype=np.int64), TypeError, "floating"),
    (lambda g: g.zeros_like([1, 2]), TypeError, "Tensor or an array"),
])
def test_constructors_refuse_bad_arguments_clearly(make: object, exc: type, text: str) -> None:
    g = og.Graph()
    with pytest.raises(exc, match=text):
        make(g)  # type: ignore[operator]
