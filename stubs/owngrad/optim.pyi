"""Optimizers update ``Tensor[Mut]`` params in place; ``step`` takes only the ``Grads`` of a backward."""

from collections.abc import Iterable
from typing import Any

from .graph import Grads
from .modes import Mut
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]

class Optimizer:
    params: list[Tensor[Mut]]
    lr: float
    state: list[dict[str, Any]]
    def __init__(self, params: Iterable[Tensor[Mut]], lr: float) -> None: ...
    def step(self, grads: Grads) -> None: ...
    def zero_grad(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, sd: dict[str, Any]) -> None: ...

class SGD(Optimizer):
    momentum: float
    dampening: float
    nesterov: bool
    weight_decay: float
    def __init__(self, params: Iterable[Tensor[Mut]], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None: ...

class Adam(Optimizer):
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    def __init__(self, params: Iterable[Tensor[Mut]], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None: ...

class AdamW(Adam):
    def __init__(self, params: Iterable[Tensor[Mut]], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None: ...
