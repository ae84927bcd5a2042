"""The typed contract of captured steps (``g.capture``)."""

from typing import Any, Generic, ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")

__all__ = ["CapturedStep"]

class CapturedStep(Generic[_P, _R]):
    """``step = g.capture(fn)``: called as ``fn`` (positional inputs); returns what ``fn`` returns, its
    tensors as constants holding the replayed values."""

    graph: Any
    fallback: bool
    verify: bool
    max_plans: int
    replays: int
    eager_calls: int
    @property
    def plans(self) -> int: ...
    def plans_of(self) -> list[Any]: ...
    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...
