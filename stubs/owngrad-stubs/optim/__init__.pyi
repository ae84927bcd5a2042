"""Optimizers update ``Tensor[Mut]`` params in place; ``step`` takes only the ``Grads`` of a backward."""

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeAlias

from ..graph import Grads
from ..modes import Mut, Shared
from ..nn.modules import Module
from ..tensor import Tensor
from . import lr_scheduler as lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adadelta", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam",
           "LBFGS", "EMA", "lr_scheduler"]

_Params: TypeAlias = Iterable[Tensor[Mut]] | Iterable[Mapping[str, Any]]

class Optimizer:
    # the extension point: a subclass lists its hyper-parameters and state entries, validates a group in
    # check_hyper and computes one param's step in update (arrays in, ``(scale, delta)`` out)
    hyper_keys: ClassVar[tuple[str, ...]]
    state_keys: ClassVar[tuple[str, ...]]
    params: list[Tensor[Mut]]
    param_groups: list[dict[str, Any]]
    defaults: dict[str, Any]
    lr: float
    state: list[dict[str, Any]]
    def __init__(self, params: _Params, defaults: dict[str, Any]) -> None: ...
    def step(self, grads: Grads) -> None: ...
    def check_hyper(self, group: dict[str, Any]) -> None: ...
    def update(self, p: Any, g: Any, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Any]: ...
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

class Adadelta(Optimizer):
    rho: float
    eps: float
    weight_decay: float
    def __init__(self, params: _Params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0) -> None: ...

class RMSprop(Optimizer):
    alpha: float
    eps: float
    weight_decay: float
    momentum: float
    centered: bool
    def __init__(self, params: _Params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None: ...

class Adagrad(Optimizer):
    lr_decay: float
    weight_decay: float
    initial_accumulator_value: float
    eps: float
    def __init__(self, params: _Params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None: ...

class _AdamFamily(Optimizer):
    betas: tuple[float, float]
    eps: float
    weight_decay: float

class Adamax(_AdamFamily):
    def __init__(self, params: _Params, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None: ...

class NAdam(_AdamFamily):
    momentum_decay: float
    decoupled_weight_decay: bool
    def __init__(self, params: _Params, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False) -> None: ...

class RAdam(_AdamFamily):
    decoupled_weight_decay: bool
    def __init__(self, params: _Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False) -> None: ...

class LBFGS(Optimizer):
    max_iter: int
    max_eval: int
    tolerance_grad: float
    tolerance_change: float
    history_size: int
    line_search_fn: str | None
    def __init__(self, params: _Params, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: Literal["strong_wolfe"] | None = None) -> None: ...
    # the closure evaluates the loss: it returns the loss tensor (the optimizer runs its backward) or
    # ``(loss, grads)``; the loss of its first evaluation is returned
    def step(self, closure: Callable[[], Tensor[Shared] | tuple[Tensor[Shared], Grads]]  # type: ignore[override]
             ) -> Tensor[Mut]: ...

class EMA:
    decay: float
    source: Module
    module: Module
    num_updates: int
    def __init__(self, model: Module, decay: float = 0.999) -> None: ...
    def update(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, sd: dict[str, Any]) -> None: ...
