from typing import Any

from ..graph import Graph
from ..modes import Mut
from ..tensor import Tensor
from .modules import Linear, Module, _Rng

__all__ = ["MultiheadAttention"]

class MultiheadAttention(Module):
    embed_dim: int
    num_heads: int
    batch_first: bool
    in_proj_weight: Tensor[Mut]
    in_proj_bias: Tensor[Mut] | None
    out_proj: Linear
    dropout: float
    def __init__(self, g: Graph, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, rng: _Rng = None, dtype: Any = ..., *, name: str | None = None) -> None: ...
    def forward(self, query: Any, key: Any, value: Any, key_padding_mask: Any = None,
                need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor[Mut], Tensor[Mut] | None]: ...
