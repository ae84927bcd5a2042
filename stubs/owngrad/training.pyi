from typing import Any, Callable, Iterable, Mapping

from typing_extensions import TypeAlias

from .modes import Frozen, Mut, Shared
from .nn.modules import Module
from .optim import Optimizer
from .tensor import Tensor

__all__ = ["fit", "accuracy"]

#: ``fn(output, y) -> float``; the output it gets is a frozen handle
_Metric: TypeAlias = Callable[[Tensor[Frozen], Tensor[Mut]], float]

def accuracy(logits: Tensor[Shared], labels: Tensor[Shared]) -> float: ...
def fit(model: Module, batches: Iterable[tuple[Any, Any]], loss_fn: Callable[[Tensor[Mut], Tensor[Mut]], Tensor[Shared]],
        opt: Optimizer, epochs: int = 1, metrics: Mapping[str, _Metric] | None = None,
        progress: bool = True) -> dict[str, list[float]]: ...
