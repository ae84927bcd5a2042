from typing import Any, Literal

from ..graph import Graph
from ..modes import Mut, Shared
from ..tensor import Tensor
from .modules import Module, _Rng

__all__ = ["RNNCell", "GRUCell", "LSTMCell", "RNN", "GRU", "LSTM"]

class _CellBase(Module):
    input_size: int
    hidden_size: int
    weight_ih: Tensor[Mut]
    weight_hh: Tensor[Mut]
    bias_ih: Tensor[Mut] | None
    bias_hh: Tensor[Mut] | None
    def __init__(self, g: Graph, input_size: int, hidden_size: int, bias: bool = True, rng: _Rng = None,
                 dtype: Any = ..., *, name: str | None = None) -> None: ...

class RNNCell(_CellBase):
    nonlinearity: str
    def __init__(self, g: Graph, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: Literal["tanh", "relu"] = "tanh", rng: _Rng = None, dtype: Any = ..., *,
                 name: str | None = None) -> None: ...
    def forward(self, x: Any, h: Tensor[Shared] | None = None) -> Tensor[Mut]: ...

class GRUCell(_CellBase):
    def forward(self, x: Any, h: Tensor[Shared] | None = None) -> Tensor[Mut]: ...

class LSTMCell(_CellBase):
    def forward(self, x: Any,
                state: tuple[Tensor[Shared], Tensor[Shared]] | None = None) -> tuple[Tensor[Mut], Tensor[Mut]]: ...

class _RNNBase(Module):
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    # the first layer's params; deeper layers' and reverse directions' (weight_ih_l1, bias_hh_l0_reverse, ...)
    # are reached with getattr or named_parameters(), as their names depend on the arguments
    weight_ih_l0: Tensor[Mut]
    weight_hh_l0: Tensor[Mut]
    bias_ih_l0: Tensor[Mut]
    bias_hh_l0: Tensor[Mut]
    def __init__(self, g: Graph, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, rng: _Rng = None,
                 dtype: Any = ..., *, name: str | None = None) -> None: ...
    @property
    def num_directions(self) -> int: ...

class RNN(_RNNBase):
    nonlinearity: str
    def __init__(self, g: Graph, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: Literal["tanh", "relu"] = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, rng: _Rng = None, dtype: Any = ..., *,
                 name: str | None = None) -> None: ...
    def forward(self, x: Any, hx: Tensor[Shared] | None = None) -> tuple[Tensor[Mut], Tensor[Mut]]: ...

class GRU(_RNNBase):
    def forward(self, x: Any, hx: Tensor[Shared] | None = None) -> tuple[Tensor[Mut], Tensor[Mut]]: ...

class LSTM(_RNNBase):
    def forward(self, x: Any, hx: tuple[Tensor[Shared], Tensor[Shared]] | None = None
                ) -> tuple[Tensor[Mut], tuple[Tensor[Mut], Tensor[Mut]]]: ...
