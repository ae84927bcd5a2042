from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray

from ..graph import Graph
from ..modes import Mut, Shared
from ..tensor import Tensor
from .attention import MultiheadAttention
from .containers import ModuleList
from .modules import Dropout, LayerNorm, Linear, Module, _Rng

__all__ = ["TransformerEncoderLayer", "TransformerEncoder", "TransformerDecoderLayer", "TransformerDecoder",
           "Transformer"]

_Activation: TypeAlias = Literal["relu", "gelu"] | Callable[[Tensor[Mut]], Tensor[Mut]]

class _Block(Module):
    linear1: Linear
    linear2: Linear
    dropout: Dropout
    activation: _Activation
    norm_first: bool
    batch_first: bool
    self_attn: MultiheadAttention
    norm1: LayerNorm
    norm2: LayerNorm
    dropout1: Dropout
    dropout2: Dropout

class TransformerEncoderLayer(_Block):
    def __init__(self, g: Graph, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: _Activation = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, rng: _Rng = None, dtype: Any = ..., *,
                 name: str | None = None) -> None: ...
    def forward(self, src: Tensor[Shared], src_mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool = False) -> Tensor[Mut]: ...

class TransformerDecoderLayer(_Block):
    multihead_attn: MultiheadAttention
    norm3: LayerNorm
    dropout3: Dropout
    def __init__(self, g: Graph, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: _Activation = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, rng: _Rng = None, dtype: Any = ..., *,
                 name: str | None = None) -> None: ...
    def forward(self, tgt: Tensor[Shared], memory: Tensor[Shared], tgt_mask: Any = None, memory_mask: Any = None,
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False) -> Tensor[Mut]: ...

class TransformerEncoder(Module):
    layers: ModuleList
    num_layers: int
    norm: Module | None
    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Module | None = None, *,
                 name: str | None = None) -> None: ...
    def forward(self, src: Tensor[Shared], mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool | None = None) -> Tensor[Mut]: ...

class TransformerDecoder(Module):
    layers: ModuleList
    num_layers: int
    norm: Module | None
    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Module | None = None, *,
                 name: str | None = None) -> None: ...
    def forward(self, tgt: Tensor[Shared], memory: Tensor[Shared], tgt_mask: Any = None, memory_mask: Any = None,
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Tensor[Mut]: ...

class Transformer(Module):
    encoder: TransformerEncoder
    decoder: TransformerDecoder
    d_model: int
    nhead: int
    batch_first: bool
    def __init__(self, g: Graph, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: _Activation = "relu", custom_encoder: Module | None = None,
                 custom_decoder: Module | None = None, layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, rng: _Rng = None, dtype: Any = ..., *,
                 name: str | None = None) -> None: ...
    def forward(self, src: Tensor[Shared], tgt: Tensor[Shared], src_mask: Any = None, tgt_mask: Any = None,
                memory_mask: Any = None, src_key_padding_mask: Any = None, tgt_key_padding_mask: Any = None,
                memory_key_padding_mask: Any = None, src_is_causal: bool | None = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Tensor[Mut]: ...
    @staticmethod
    def generate_square_subsequent_mask(sz: int, dtype: Any = ...) -> NDArray[np.floating[Any]]: ...
