"""Optimizers update ``Tensor[Mut]`` params in place; ``step`` takes only the ``Grads`` of a backward."""

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from ..graph import Grads
from ..modes import Mut
from ..nn.modules import Module
from ..tensor import Tensor
from . import lr_scheduler as lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "EMA", "lr_scheduler"]

_Params: TypeAlias = Iterable[Tensor[Mut]] | Iterable[Mapping[str, Any]]

class Optimizer:
    params: list[Tensor[Mut]]
    param_groups: list[dict[str, Any]]
    defaults: dict[str, Any]
    lr: float
    state: list[dict[str, Any]]
    def __init__(self, params: _Params, defaults: dict[str, Any]) -> None: ...
    def step(self, grads: Grads) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, sd: dict[str, Any]) -> None: ...

class SGD(Optimizer):
    momentum: float
    dampening: float
    nesterov: bool
    weight_decay: float
    def __init__(self, params: _Params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None: ...

class Adam(Optimizer):
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    def __init__(self, params: _Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None: ...

class AdamW(Adam):
    def __init__(self, params: _Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None: ...

class EMA:
    decay: float
    source: Module
    module: Module
    num_updates: int
    def __init__(self, model: Module, decay: float = 0.999) -> None: ...
    def update(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, sd: dict[str, Any]) -> None: ...
