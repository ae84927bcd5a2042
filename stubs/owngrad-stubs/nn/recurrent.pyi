from typing import Any

from ..graph import Graph
from ..modes import Mut, Shared
from ..tensor import Tensor
from .modules import Module, _Rng

__all__ = ["GRUCell", "LSTMCell", "GRU", "LSTM"]

class _CellBase(Module):
    input_size: int
    hidden_size: int
    weight_ih: Tensor[Mut]
    weight_hh: Tensor[Mut]
    bias_ih: Tensor[Mut] | None
    bias_hh: Tensor[Mut] | None
    def __init__(self, g: Graph, input_size: int, hidden_size: int, bias: bool = True, rng: _Rng = None,
                 dtype: Any = ..., *, name: str | None = None) -> None: ...

class GRUCell(_CellBase):
    def forward(self, x: Any, h: Tensor[Shared] | None = None) -> Tensor[Mut]: ...

class LSTMCell(_CellBase):
    def forward(self, x: Any,
                state: tuple[Tensor[Shared], Tensor[Shared]] | None = None) -> tuple[Tensor[Mut], Tensor[Mut]]: ...

class _Sequence(Module):
    input_size: int
    hidden_size: int
    batch_first: bool
    weight_ih_l0: Tensor[Mut]
    weight_hh_l0: Tensor[Mut]
    bias_ih_l0: Tensor[Mut]
    bias_hh_l0: Tensor[Mut]
    def __init__(self, g: Graph, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, rng: _Rng = None, dtype: Any = ..., *, name: str | None = None) -> None: ...

class GRU(_Sequence):
    def forward(self, x: Any, h0: Tensor[Shared] | None = None) -> tuple[Tensor[Mut], Tensor[Mut]]: ...

class LSTM(_Sequence):
    def forward(self, x: Any, state: tuple[Tensor[Shared], Tensor[Shared]] | None = None
                ) -> tuple[Tensor[Mut], tuple[Tensor[Mut], Tensor[Mut]]]: ...
