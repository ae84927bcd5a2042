"""Multi-head attention with PyTorch's parameters (``in_proj_weight``, ``in_proj_bias``, ``out_proj``),
masks and return values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import device_of, to_device
from ..errors import ShapeError
from ..graph import Graph
from ..handle import array_of
from ..ops import where
from ..tensor import Tensor
from ..tracer import recorded
from . import functional as F
from .modules import Linear, Module, Rng, _rng, _uniform

__all__ = ["MultiheadAttention"]


class MultiheadAttention(Module):
    """``MultiheadAttention(g, embed_dim, num_heads, dropout=0.0)``: ``forward(query, key, value, key_padding_mask=None,
    need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False) -> (out, weights)``.

    Shapes as torch: (L, B, E) inputs, or (B, L, E) with ``batch_first``. Masks as torch's module: a
    boolean ``attn_mask`` (L, S) or ``key_padding_mask`` (B, S) marks positions that may *not* be attended
    (True = masked); a float mask is added to the scores. ``is_causal`` masks the future. The weights
    returned are averaged over heads (B, L, S), or per head (B, heads, L, S)."""

    def __init__(self, g: Graph, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, rng: Rng = None, dtype: Any = np.float32) -> None:
        super().__init__(g)
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1), got {dropout}")
        gen = _rng(rng, g)
        self.embed_dim, self.num_heads, self.batch_first = embed_dim, num_heads, batch_first
        self.dropout = float(dropout)  # on the attention weights, in training mode (as torch)
        self._gen = gen
        bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))  # xavier_uniform_ over (3E, E), as torch
        self.in_proj_weight = g.param(_uniform(gen, bound, (3 * embed_dim, embed_dim), dtype), name="in_proj_weight")
        self.in_proj_bias = g.param(np.zeros(3 * embed_dim, dtype=dtype), name="in_proj_bias") if bias else None
        self.out_proj = Linear(g, embed_dim, embed_dim, bias=bias, rng=gen, dtype=dtype)
        if bias:
            with g.no_grad():
                self.out_proj.bias.zero_()  # type: ignore[union-attr]

    def _project(self, x: Tensor, i: int) -> Tensor:
        E = self.embed_dim
        bias = self.in_proj_bias[i * E:(i + 1) * E] if self.in_proj_bias is not None else None
        return F.linear(x, self.in_proj_weight[i * E:(i + 1) * E], bias)

    def _heads(self, x: Tensor) -> Tensor:
        """(L, B, E) -> (B, heads, L, E / heads)."""
        L, B = x.shape[0], x.shape[1]
        return x.reshape(L, B, self.num_heads, self.embed_dim // self.num_heads).transpose(1, 2, 0, 3)

    def forward(self, query: Any, key: Any, value: Any, key_padding_mask: Any = None,  # type: ignore[override]
                need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        q, k, v = (t.transpose(1, 0, 2) if self.batch_first else t for t in (query, key, value))
        for name, t in (("query", q), ("key", k), ("value", v)):
            if not isinstance(t, Tensor) or t.ndim != 3 or t.shape[-1] != self.embed_dim:
                raise ShapeError(f"MultiheadAttention: {name} must be a Tensor of shape (L, B, {self.embed_dim}) "
                                 f"(batch_first: (B, L, {self.embed_dim})), got {getattr(t, 'shape', t)}")
        L, B, S = q.shape[0], q.shape[1], k.shape[0]
        qh, kh, vh = (self._heads(self._project(t, i)) for i, t in enumerate((q, k, v)))
        scores = (qh @ kh.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(self.embed_dim // self.num_heads))
        scores = self._masked(scores, attn_mask, key_padding_mask, is_causal, L, S, B)
        weights = scores.softmax(axis=-1)
        dropped = F.dropout(weights, self.dropout, self.training, rng=self._gen) if self.dropout else weights
        out = (dropped @ vh).transpose(2, 0, 1, 3).reshape(L, B, self.embed_dim)
        out = self.out_proj(out)
        if self.batch_first:
            out = out.transpose(1, 0, 2)
        if not need_weights:
            return out, None
        return out, (weights.mean(axis=1) if average_attn_weights else weights)

    def _masked(self, scores: Tensor, attn_mask: Any, key_padding_mask: Any, is_causal: bool, L: int, S: int,
                B: int) -> Tensor:
        """Scores with the masks applied: boolean True (and -inf) masks a position, floats are added."""
        masks: list[Any] = []
        if is_causal:
            masks.append(~np.tril(np.ones((L, S), dtype=bool)))
        g = scores.graph
        if attn_mask is not None:
            a = array_of(attn_mask) if isinstance(attn_mask, Tensor) else _array(attn_mask)
            # (B * heads, L, S) as torch; recorded, as the mask may be a captured step's input
            masks.append(recorded(g, _reshaped, a, (B, self.num_heads, L, S)) if a.ndim == 3 else a)
        if key_padding_mask is not None:
            k = array_of(key_padding_mask) if isinstance(key_padding_mask, Tensor) else _array(key_padding_mask)
            masks.append(recorded(g, _reshaped, k, (B, 1, 1, S)))
        for m in masks:
            m = m if device_of(m) == scores.device else to_device(m, scores.device)  # a host mask, moved explicitly
            scores = where(m, -np.inf, scores) if m.dtype.kind == "b" else scores + m
        return scores

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


def _reshaped(a: Any, shape: tuple[int, ...]) -> Any:
    return a.reshape(shape)


def _array(mask: Any) -> Any:
    """A mask given as an array stays itself (a captured step's traced input included); lists become arrays."""
    return mask if hasattr(mask, "dtype") and hasattr(mask, "shape") else np.asarray(mask)
