from typing import Any

from ..modes import Mut
from ..tensor import Tensor
from .modules import Module

__all__ = ["NLLLoss", "MSELoss", "CrossEntropyLoss", "BCELoss", "BCEWithLogitsLoss", "L1Loss", "SmoothL1Loss",
           "HuberLoss", "KLDivLoss"]

class _Loss(Module):
    reduction: str
    def __init__(self, reduction: str = "mean", *, name: str | None = None) -> None: ...
    def forward(self, input: Any, target: Any) -> Tensor[Mut]: ...

class NLLLoss(_Loss):
    weight: Any
    ignore_index: int
    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean", *,
                 name: str | None = None) -> None: ...

class CrossEntropyLoss(_Loss):
    weight: Any
    ignore_index: int
    label_smoothing: float
    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0, *, name: str | None = None) -> None: ...

class MSELoss(_Loss): ...
class L1Loss(_Loss): ...

class SmoothL1Loss(_Loss):
    beta: float
    def __init__(self, reduction: str = "mean", beta: float = 1.0, *, name: str | None = None) -> None: ...

class HuberLoss(_Loss):
    delta: float
    def __init__(self, reduction: str = "mean", delta: float = 1.0, *, name: str | None = None) -> None: ...

class BCELoss(_Loss):
    weight: Any
    def __init__(self, weight: Any = None, reduction: str = "mean", *, name: str | None = None) -> None: ...

class BCEWithLogitsLoss(_Loss):
    weight: Any
    pos_weight: Any
    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None, *,
                 name: str | None = None) -> None: ...

class KLDivLoss(_Loss):
    log_target: bool
    def __init__(self, reduction: str = "mean", log_target: bool = False, *, name: str | None = None) -> None: ...
