from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, SupportsFloat, TypeAlias

from .distributed import World
from .modes import Frozen, Mut, Shared
from .nn.modules import Module
from .optim import Optimizer
from .tensor import Tensor

__all__ = ["fit", "accuracy"]

#: ``fn(output, y) -> float``; the output it gets is a frozen handle; fit takes ``float(...)`` of what it
#: returns, so a numpy scalar or a scalar tensor is fine too
_Metric: TypeAlias = Callable[[Tensor[Frozen], Tensor[Mut]], SupportsFloat]

def accuracy(logits: Tensor[Shared], labels: Tensor[Shared]) -> float: ...
def fit(model: Module, batches: Iterable[tuple[Any, Any]],
        loss_fn: Callable[[Tensor[Mut], Tensor[Mut]], Tensor[Shared]],
        opt: Optimizer, epochs: int = 1, metrics: Mapping[str, _Metric] | Sequence[_Metric] | None = None,
        progress: bool = True, world: World | None = None, capture: bool = True) -> dict[str, list[float]]: ...
