"""Transformer blocks with ``torch.nn``'s names, arguments, defaults, parameter names and
initialisation: :class:`TransformerEncoderLayer`, :class:`TransformerEncoder`,
:class:`TransformerDecoderLayer`, :class:`TransformerDecoder` and :class:`Transformer` (whose
parameters with more than one dimension are re-drawn with ``xavier_uniform_``, as torch's).

Inputs are (S, N, E), or (N, S, E) with ``batch_first``. Masks are torch's: a boolean mask marks
positions that may *not* be attended (True = masked), a float mask is added to the scores
(:meth:`Transformer.generate_square_subsequent_mask` gives the causal one); ``*_key_padding_mask``
(N, S) masks padded keys. The layers' dropouts act in training mode only, drawn from the graph's stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..graph import Graph
from ..tensor import Tensor
from . import functional as F
from . import init
from .attention import MultiheadAttention
from .containers import ModuleList
from .modules import Dropout, LayerNorm, Linear, Module, Rng, _rng

__all__ = ["TransformerEncoderLayer", "TransformerEncoder", "TransformerDecoderLayer", "TransformerDecoder",
           "Transformer"]

Activation = str | Callable[[Tensor], Tensor]


def _activation(name: str, activation: Activation) -> Activation:
    if isinstance(activation, str) and activation not in ("relu", "gelu"):
        raise ValueError(f"{name}: activation must be 'relu', 'gelu' or a callable, got {activation!r}")
    if not isinstance(activation, str) and not callable(activation):
        raise TypeError(f"{name}: activation must be 'relu', 'gelu' or a callable, got {type(activation).__name__}")
    return activation


def _apply(activation: Activation, x: Tensor) -> Tensor:
    if activation == "relu":
        return x.relu()
    if activation == "gelu":
        return F.gelu(x)
    assert callable(activation)
    return activation(x)


class _Block(Module):
    """What both layers share: the feed-forward part ``linear2(dropout(activation(linear1(x))))``, the
    attention blocks, and the residual wiring (post-norm, or ``norm_first``)."""

    linear1: Linear
    linear2: Linear
    dropout: Dropout
    activation: Activation
    norm_first: bool

    def _feed_forward(self, x: Tensor, out_dropout: Dropout) -> Tensor:
        return out_dropout(self.linear2(self.dropout(_apply(self.activation, self.linear1(x)))))

    @staticmethod
    def _attend(attn: MultiheadAttention, x: Tensor, mem: Tensor, mask: Any, padding: Any, causal: bool,
                out_dropout: Dropout) -> Tensor:
        out, _ = attn(x, mem, mem, key_padding_mask=padding, need_weights=False, attn_mask=mask,
                      is_causal=bool(causal))
        return out_dropout(out)

    def _residual(self, x: Tensor, norm: LayerNorm, block: Callable[[Tensor], Tensor]) -> Tensor:
        if self.norm_first:
            out: Tensor = x + block(norm(x))
            return out
        return norm(x + block(x))


def _parts(self: _Block, g: Graph, d_model: int, nhead: int, dim_feedforward: int, dropout: float,
           activation: Activation, layer_norm_eps: float, batch_first: bool, norm_first: bool, bias: bool,
           gen: np.random.Generator, dtype: Any, n_norms: int, n_attn: int) -> None:
    """Build a layer's modules in torch's registration order (its state_dict order)."""
    self.self_attn = MultiheadAttention(g, d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                        rng=gen, dtype=dtype)
    if n_attn == 2:
        self.multihead_attn = MultiheadAttention(g, d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first, rng=gen, dtype=dtype)
    self.linear1 = Linear(g, d_model, dim_feedforward, bias=bias, rng=gen, dtype=dtype)
    self.dropout = Dropout(dropout)
    self.linear2 = Linear(g, dim_feedforward, d_model, bias=bias, rng=gen, dtype=dtype)
    self.norm_first = norm_first
    for i in range(1, n_norms + 1):
        setattr(self, f"norm{i}", LayerNorm(g, d_model, eps=layer_norm_eps, bias=bias, dtype=dtype))
    for i in range(1, n_norms + 1):
        setattr(self, f"dropout{i}", Dropout(dropout))
    self.activation = _activation(type(self).__name__, activation)
    self.batch_first = batch_first


class TransformerEncoderLayer(_Block):
    """Self-attention then feed-forward, each with a residual connection and a LayerNorm, as
    ``torch.nn.TransformerEncoderLayer`` (``norm_first``: pre-norm). ``forward(src, src_mask=None,
    src_key_padding_mask=None, is_causal=False)``."""

    self_attn: MultiheadAttention
    norm1: LayerNorm
    norm2: LayerNorm
    dropout1: Dropout
    dropout2: Dropout

    def __init__(self, g: Graph, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Activation = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, rng: Rng = None, dtype: Any = np.float32) -> None:
        super().__init__(g)
        _parts(self, g, d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
               norm_first, bias, _rng(rng, g), dtype, n_norms=2, n_attn=1)

    def forward(self, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool = False) -> Tensor:
        x = self._residual(src, self.norm1, lambda h: self._attend(self.self_attn, h, h, src_mask,
                                                                   src_key_padding_mask, is_causal, self.dropout1))
        return self._residual(x, self.norm2, lambda h: self._feed_forward(h, self.dropout2))


class TransformerDecoderLayer(_Block):
    """Self-attention, attention over ``memory``, then feed-forward, each with a residual connection and a
    LayerNorm, as ``torch.nn.TransformerDecoderLayer``. ``forward(tgt, memory, tgt_mask=None,
    memory_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=False,
    memory_is_causal=False)``."""

    self_attn: MultiheadAttention
    multihead_attn: MultiheadAttention
    norm1: LayerNorm
    norm2: LayerNorm
    norm3: LayerNorm
    dropout1: Dropout
    dropout2: Dropout
    dropout3: Dropout

    def __init__(self, g: Graph, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Activation = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, rng: Rng = None, dtype: Any = np.float32) -> None:
        super().__init__(g)
        _parts(self, g, d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
               norm_first, bias, _rng(rng, g), dtype, n_norms=3, n_attn=2)

    def forward(self, tgt: Any, memory: Any, tgt_mask: Any = None, memory_mask: Any = None,
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False) -> Tensor:
        x = self._residual(tgt, self.norm1, lambda h: self._attend(self.self_attn, h, h, tgt_mask,
                                                                   tgt_key_padding_mask, tgt_is_causal,
                                                                   self.dropout1))
        x = self._residual(x, self.norm2, lambda h: self._attend(self.multihead_attn, h, memory, memory_mask,
                                                                 memory_key_padding_mask, memory_is_causal,
                                                                 self.dropout2))
        return self._residual(x, self.norm3, lambda h: self._feed_forward(h, self.dropout3))


def _clones(name: str, layer: Module, num_layers: int) -> ModuleList:
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers!r}")
    return ModuleList([layer.clone() for _ in range(num_layers)])  # independent copies, as torch's _get_clones


class TransformerEncoder(Module):
    """``num_layers`` copies of ``encoder_layer`` (``layers.0``, ``layers.1``, ...: each starts with the
    layer's weights, as torch) and an optional final ``norm``. ``forward(src, mask=None,
    src_key_padding_mask=None, is_causal=False)``."""

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Module | None = None) -> None:
        super().__init__()
        self.layers = _clones("TransformerEncoder", encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src: Any, mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool | None = None) -> Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return self.norm(x) if self.norm is not None else x


class TransformerDecoder(Module):
    """``num_layers`` copies of ``decoder_layer`` and an optional final ``norm``. ``forward(tgt, memory,
    tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    tgt_is_causal=False, memory_is_causal=False)``."""

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Module | None = None) -> None:
        super().__init__()
        self.layers = _clones("TransformerDecoder", decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt: Any, memory: Any, tgt_mask: Any = None, memory_mask: Any = None,
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Tensor:
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal)
        return self.norm(x) if self.norm is not None else x


class Transformer(Module):
    """An encoder-decoder transformer as ``torch.nn.Transformer`` (``encoder``, ``decoder``, each with a final
    LayerNorm, torch's keys), with torch's re-initialisation: every parameter with more than one dimension
    drawn again with ``xavier_uniform_``. ``forward(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
    src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None, ...)``."""

    encoder: TransformerEncoder
    decoder: TransformerDecoder

    def __init__(self, g: Graph, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Activation = "relu", custom_encoder: Module | None = None,
                 custom_decoder: Module | None = None, layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, rng: Rng = None, dtype: Any = np.float32) -> None:
        super().__init__(g)
        gen = _rng(rng, g)
        common = {"dim_feedforward": dim_feedforward, "dropout": dropout, "activation": activation,
                  "layer_norm_eps": layer_norm_eps, "batch_first": batch_first, "norm_first": norm_first,
                  "bias": bias, "rng": gen, "dtype": dtype}
        if custom_encoder is not None:
            self.encoder = custom_encoder  # type: ignore[assignment]
        else:
            self.encoder = TransformerEncoder(TransformerEncoderLayer(g, d_model, nhead, **common),
                                              num_encoder_layers,
                                              LayerNorm(g, d_model, eps=layer_norm_eps, bias=bias, dtype=dtype))
        if custom_decoder is not None:
            self.decoder = custom_decoder  # type: ignore[assignment]
        else:
            self.decoder = TransformerDecoder(TransformerDecoderLayer(g, d_model, nhead, **common),
                                              num_decoder_layers,
                                              LayerNorm(g, d_model, eps=layer_norm_eps, bias=bias, dtype=dtype))
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p, rng=gen)
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first

    def forward(self, src: Any, tgt: Any, src_mask: Any = None, tgt_mask: Any = None,
                memory_mask: Any = None, src_key_padding_mask: Any = None, tgt_key_padding_mask: Any = None,
                memory_key_padding_mask: Any = None, src_is_causal: bool | None = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Tensor:
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal,
                            memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz: int, dtype: Any = np.float32) -> np.ndarray:
        """The causal float mask (sz, sz): 0 on and below the diagonal, -inf above (torch's)."""
        return np.triu(np.full((sz, sz), -np.inf, dtype=dtype), k=1)
