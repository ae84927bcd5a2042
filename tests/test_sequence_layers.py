"""Recurrent and attention layers, activation layers and Embedding's padding row: torch's parameter
shapes and state_dict keys (weights load from one to the other), torch's outputs and gradients in
float64, finite differences, and the buffer the sequence layers fill in place."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import owngrad as og
from gradcheck import check_grads

RNG = np.random.default_rng(0)


def _load_from_torch(m: og.nn.Module, tm: Any) -> None:
    assert sorted(m.state_dict()) == sorted(tm.state_dict())
    for k, v in m.state_dict().items():
        assert v.shape == tuple(tm.state_dict()[k].shape), k
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_sequence_layers_match_torch(kind: str, batch_first: bool) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    g = og.Graph()
    m = getattr(og.nn, kind)(g, 3, 5, batch_first=batch_first, dtype=np.float64)
    tm = getattr(torch.nn, kind)(3, 5, batch_first=batch_first).double()
    _load_from_torch(m, tm)
    x0 = RNG.standard_normal((2, 4, 3) if batch_first else (4, 2, 3))
    x = g.param(x0)
    out, state = m(x)
    last = state if kind == "GRU" else state[1]
    loss = (out * out).sum() + last.sum()
    grads = g.backward(loss)
    tx = torch.tensor(x0, requires_grad=True)
    tout, tstate = tm(tx)
    tlast = tstate if kind == "GRU" else tstate[1]
    ((tout * tout).sum() + tlast.sum()).backward()
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads[x].numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-13)
    for (k, p), (tk, tp) in zip(m.named_parameters(), tm.named_parameters()):
        assert k == tk
        np.testing.assert_allclose(grads[p].numpy(), tp.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind", ["GRUCell", "LSTMCell"])
def test_cells_match_finite_differences(kind: str) -> None:
    def run(x: og.Tensor, h: og.Tensor) -> og.Tensor:
        cell = getattr(og.nn, kind)(x.graph, 3, 4, rng=1, dtype=np.float64)
        if kind == "GRUCell":
            return cell(x, h)  # type: ignore[no-any-return]
        h2, c2 = cell(x, (h, h * 0.5))
        return h2 + c2  # type: ignore[no-any-return]

    check_grads(run, RNG.standard_normal((2, 3)), RNG.standard_normal((2, 4)))


def test_gru_buffer_gives_the_gradients_of_the_stacked_recurrence() -> None:
    g = og.Graph()
    gru = og.nn.GRU(g, 3, 4, rng=0, dtype=np.float64)
    x = g.param(RNG.standard_normal((5, 2, 3)))
    out, _ = gru(x)
    g1 = g.backward((out * out).sum())[x].numpy()
    cell = og.nn.GRUCell(g, 3, 4, dtype=np.float64)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in gru.state_dict().items()})
    h = g.zeros((2, 4), dtype=np.float64)
    hs = []
    for t in range(5):
        h = cell(x[t], h)
        hs.append(h)
    stacked = og.stack(hs)
    g2 = g.backward((stacked * stacked).sum())[x].numpy()
    np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention_matches_torch_with_masks(batch_first: bool) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    g = og.Graph()
    m = og.nn.MultiheadAttention(g, 8, 2, batch_first=batch_first, dtype=np.float64)
    tm = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first).double()
    _load_from_torch(m, tm)
    q0 = RNG.standard_normal((3, 5, 8) if batch_first else (5, 3, 8))
    kv0 = RNG.standard_normal((3, 6, 8) if batch_first else (6, 3, 8))
    pad = np.zeros((3, 6), dtype=bool)
    pad[0, -2:] = True
    future = np.triu(np.ones((5, 6), dtype=bool), 2)
    q, kv = g.param(q0), g.param(kv0)
    out, w = m(q, kv, kv, key_padding_mask=pad, attn_mask=future)
    assert w is not None
    grads = g.backward((out * out).sum() + (w * w).sum())
    tq, tkv = torch.tensor(q0, requires_grad=True), torch.tensor(kv0, requires_grad=True)
    tout, tw = tm(tq, tkv, tkv, key_padding_mask=torch.tensor(pad), attn_mask=torch.tensor(future))
    ((tout * tout).sum() + (tw * tw).sum()).backward()
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grads[q].numpy(), tq.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads[kv].numpy(), tkv.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_causal_self_attention_equals_an_explicit_future_mask() -> None:
    g = og.Graph()
    m = og.nn.MultiheadAttention(g, 4, 2, rng=0, dtype=np.float64)
    x = g.constant(RNG.standard_normal((5, 2, 4)))
    a, _ = m(x, x, x, is_causal=True)
    b, _ = m(x, x, x, attn_mask=np.triu(np.ones((5, 5), dtype=bool), 1))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-14)


def test_attention_refuses_wrong_shapes() -> None:
    g = og.Graph()
    m = og.nn.MultiheadAttention(g, 4, 2, rng=0)
    with pytest.raises(og.ShapeError, match="query"):
        m(g.zeros((5, 2, 3)), g.zeros((5, 2, 4)), g.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match="divisible"):
        og.nn.MultiheadAttention(g, 5, 2)


@pytest.mark.parametrize("layer, fn", [
    (lambda: og.nn.GELU(), "gelu"), (lambda: og.nn.GELU("tanh"), "gelu_tanh"), (lambda: og.nn.SiLU(), "silu"),
    (lambda: og.nn.LeakyReLU(0.2), "leaky_relu"), (lambda: og.nn.Identity(), "identity"),
])
def test_activation_layers_match_torch(layer: Any, fn: str) -> None:
    torch = pytest.importorskip("torch")
    tf = {"gelu": torch.nn.GELU(), "gelu_tanh": torch.nn.GELU("tanh"), "silu": torch.nn.SiLU(),
          "leaky_relu": torch.nn.LeakyReLU(0.2), "identity": torch.nn.Identity()}[fn]
    g = og.Graph()
    x0 = RNG.standard_normal((3, 4))
    x = g.param(x0)
    y = layer()(x)
    grad = g.backward((y * y).sum())[x].numpy()
    tx = torch.tensor(x0, requires_grad=True)
    ty = tf(tx)
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-10)


def test_avg_pool_layer_matches_the_function() -> None:
    g = og.Graph()
    x = g.constant(RNG.standard_normal((1, 2, 6, 6)))
    np.testing.assert_array_equal(og.nn.AvgPool2d(3, 2, 1)(x).numpy(),
                                  og.nn.functional.avg_pool2d(x, 3, 2, 1).numpy())


def test_embedding_padding_row_starts_at_zero_and_gets_no_gradient() -> None:
    g = og.Graph()
    emb = og.nn.Embedding(g, 5, 3, padding_idx=0, rng=0, dtype=np.float64)
    np.testing.assert_array_equal(emb.weight.numpy()[0], 0.0)
    idx = np.array([[0, 2], [2, 0]])
    out = emb(idx)
    grads = g.backward((out * 3.0).sum())
    expect = np.zeros((5, 3))
    expect[2] = 6.0
    np.testing.assert_array_equal(grads[emb.weight].numpy(), expect)
    with pytest.raises(ValueError, match="padding_idx"):
        og.nn.Embedding(g, 5, 3, padding_idx=7)


def test_erf_without_scipy_matches_the_math_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import math

    from owngrad.nn import functional as F

    monkeypatch.setitem(F._SPECIAL, np, None)  # as on an install without scipy
    x = np.linspace(-7.0, 7.0, 2001)
    got = F._erf(np, x)
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)


def test_attention_dropout_acts_in_training_only_and_masks_take_lists() -> None:
    g = og.Graph()
    m = og.nn.MultiheadAttention(g, 4, 2, dropout=0.5, rng=0, dtype=np.float64)
    x = g.constant(RNG.standard_normal((3, 2, 4)))
    train_a, _ = m(x, x, x)
    train_b, _ = m(x, x, x)
    assert not np.allclose(train_a.numpy(), train_b.numpy())  # fresh masks each call
    m.eval()
    eval_a, _ = m(x, x, x)
    eval_b, _ = m(x, x, x)
    np.testing.assert_array_equal(eval_a.numpy(), eval_b.numpy())
    y = g.param(np.arange(3.0))
    np.testing.assert_array_equal(y.masked_fill([True, False, True], 7.0).numpy(), [7.0, 1.0, 7.0])
