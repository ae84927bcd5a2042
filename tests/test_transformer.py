"""Transformer blocks against torch's in float64: parameter names and shapes (weights load from one to the
other), outputs and gradients with masks, norm_first, activations and batch_first; nn.Transformer's
xavier re-initialisation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import owngrad as og

RNG = np.random.default_rng(11)
D, H, FF = 8, 2, 16
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torch's notes on masks and nested tensors


def _load(m: og.nn.Module, tm: Any) -> None:
    assert list(m.state_dict()) == list(tm.state_dict())
    assert [v.shape for v in m.state_dict().values()] == [tuple(v.shape) for v in tm.state_dict().values()]
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


def _compare(out: og.Tensor, tout: Any, g: og.Graph, leaves: list[og.Tensor], tleaves: list[Any],
             m: og.nn.Module, tm: Any) -> None:
    seed = np.cos(np.arange(out.size)).reshape(out.shape)
    grads = g.backward(out, seed=seed)
    tout.backward(__import__("torch").tensor(seed))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    for a, ta in zip(leaves, tleaves):
        np.testing.assert_allclose(grads[a].numpy(), ta.grad.numpy(), rtol=1e-9, atol=1e-11)
    for (k, p), (_, tp) in zip(m.named_parameters(), tm.named_parameters()):
        np.testing.assert_allclose(grads[p].numpy(), tp.grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=k)


ENCODER_CONFIGS = [{}, {"norm_first": True, "activation": "gelu"}, {"batch_first": True},
                   {"bias": False, "layer_norm_eps": 1e-3}]


@pytest.mark.parametrize("kw", ENCODER_CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "plain")
def test_encoder_matches_torch_with_masks(kw: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    g = og.Graph()
    layer = og.nn.TransformerEncoderLayer(g, D, H, FF, dropout=0.0, dtype=np.float64, **kw)
    m = og.nn.TransformerEncoder(layer, 2, norm=og.nn.LayerNorm(g, D, dtype=np.float64))
    tlayer = torch.nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, **kw).double()
    tm = torch.nn.TransformerEncoder(tlayer, 2, norm=torch.nn.LayerNorm(D).double(), enable_nested_tensor=False)
    _load(m, tm)
    bf = kw.get("batch_first", False)
    x0 = RNG.standard_normal((3, 5, D) if bf else (5, 3, D))
    mask = og.nn.Transformer.generate_square_subsequent_mask(5, np.float64)
    pad = np.zeros((3, 5), dtype=bool)
    pad[1, -2:] = True
    x = g.param(x0)
    tx = torch.tensor(x0, requires_grad=True)
    out = m(x, mask=mask, src_key_padding_mask=pad)
    tout = tm(tx, mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(pad))
    _compare(out, tout, g, [x], [tx], m, tm)


@pytest.mark.parametrize("kw", [{}, {"norm_first": True, "batch_first": True, "activation": "gelu"}],
                         ids=["plain", "norm_first-batch_first-gelu"])
def test_full_transformer_matches_torch(kw: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    g = og.Graph()
    m = og.nn.Transformer(g, D, H, 2, 2, FF, dropout=0.0, dtype=np.float64, **kw)
    tm = torch.nn.Transformer(D, H, 2, 2, FF, dropout=0.0, **kw).double()
    _load(m, tm)
    bf = kw.get("batch_first", False)
    s0 = RNG.standard_normal((2, 6, D) if bf else (6, 2, D))
    t0 = RNG.standard_normal((2, 4, D) if bf else (4, 2, D))
    src, tgt = g.param(s0), g.param(t0)
    tsrc, ttgt = torch.tensor(s0, requires_grad=True), torch.tensor(t0, requires_grad=True)
    tgt_mask = og.nn.Transformer.generate_square_subsequent_mask(4, np.float64)
    mem_pad = np.zeros((2, 6), dtype=bool)
    mem_pad[0, -1] = True
    out = m(src, tgt, tgt_mask=tgt_mask, memory_key_padding_mask=mem_pad, tgt_is_causal=True)
    tout = tm(tsrc, ttgt, tgt_mask=torch.tensor(tgt_mask), memory_key_padding_mask=torch.tensor(mem_pad),
              tgt_is_causal=True)
    _compare(out, tout, g, [src, tgt], [tsrc, ttgt], m, tm)


def test_decoder_layer_with_a_callable_activation_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    m = og.nn.TransformerDecoderLayer(g, D, H, FF, dropout=0.0, activation=og.nn.functional.silu, dtype=np.float64)
    tm = torch.nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, activation=torch.nn.functional.silu).double()
    _load(m, tm)
    t0, m0 = RNG.standard_normal((4, 2, D)), RNG.standard_normal((3, 2, D))
    tgt, mem = g.param(t0), g.param(m0)
    ttgt, tmem = torch.tensor(t0, requires_grad=True), torch.tensor(m0, requires_grad=True)
    _compare(m(tgt, mem), tm(ttgt, tmem), g, [tgt, mem], [ttgt, tmem], m, tm)


def test_transformer_reinitialises_matrices_with_xavier_and_keeps_layer_norms() -> None:
    g = og.Graph()
    m = og.nn.Transformer(g, 16, 4, 2, 1, 32, rng=0, dtype=np.float64)
    n_matrices = 0
    for k, p in m.named_parameters():
        a = p.numpy()
        if a.ndim > 1:
            n_matrices += 1
            bound = math.sqrt(6.0 / (a.shape[0] + a.shape[1]))
            assert np.abs(a).max() <= bound and np.abs(a).max() > 0.8 * bound, k
        elif "norm" in k:
            assert np.all(a == (1.0 if k.endswith("weight") else 0.0)), k
    assert n_matrices == 2 * 4 + 1 * 6
    enc = m.encoder.layers  # the re-init draws each layer afresh: the clones no longer share values
    assert not np.array_equal(enc[0].linear1.weight.numpy(), enc[1].linear1.weight.numpy())  # type: ignore[attr-defined]


def test_encoder_clones_start_equal_and_dropout_acts_in_training_only() -> None:
    g = og.Graph()
    layer = og.nn.TransformerEncoderLayer(g, D, H, FF, dropout=0.5, rng=0, dtype=np.float64)
    enc = og.nn.TransformerEncoder(layer, 2)
    a, b = enc.layers[0].state_dict(), enc.layers[1].state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert enc.layers[0].linear1.weight is not enc.layers[1].linear1.weight  # type: ignore[attr-defined]
    x = g.constant(RNG.standard_normal((5, 2, D)))
    assert not np.allclose(enc(x).numpy(), enc(x).numpy())
    enc.eval()
    np.testing.assert_array_equal(enc(x).numpy(), enc(x).numpy())


def test_transformer_refuses_bad_arguments() -> None:
    g = og.Graph()
    with pytest.raises(ValueError, match="activation"):
        og.nn.TransformerEncoderLayer(g, D, H, activation="swish")
    with pytest.raises(ValueError, match="num_layers"):
        og.nn.TransformerEncoder(og.nn.TransformerEncoderLayer(g, D, H, FF), 0)
    with pytest.raises(ValueError, match="divisible"):
        og.nn.TransformerEncoderLayer(g, 5, 2)


def test_a_captured_transformer_step_with_dropout_equals_the_eager_one() -> None:
    def make() -> Any:
        g = og.Graph()
        m = og.nn.Transformer(g, D, H, 1, 1, FF, dropout=0.1, rng=0, dtype=np.float64)
        opt = og.optim.RMSprop(m.parameters(), lr=0.01, momentum=0.5, centered=True)
        mask = og.nn.Transformer.generate_square_subsequent_mask(4, np.float64)

        def step(src: og.Tensor, tgt: og.Tensor) -> og.Tensor:
            out = m(src, tgt, tgt_mask=mask)
            loss = (out * out).mean()
            opt.step(g.backward(loss))
            return loss
        return g, step

    (ge, eager), (gc, step) = make(), make()
    captured = gc.capture(step)
    for i in range(3):
        r = np.random.default_rng(i)
        s, t = r.standard_normal((5, 2, D)), r.standard_normal((4, 2, D))
        assert eager(ge.constant(s), ge.constant(t)).item() == captured(gc.constant(s), gc.constant(t)).item()
