import os
from contextlib import AbstractContextManager
from typing import Any

from .collective import Header, Phase
from .collective import RankFailed as RankFailed
from .collective import World as World
from .graph import Grads
from .modes import Shared
from .nn.modules import Module
from .optim import Optimizer
from .tensor import Tensor

__all__ = ["World", "RankFailed", "init", "current", "broadcast_parameters", "broadcast_optimizer_state", "save",
           "DataParallel"]

def init(comm: Any = None, timeout: float = 300.0) -> World: ...
def current() -> World | None: ...
def broadcast_parameters(model: Module, world: World, root: int = 0) -> None: ...
def broadcast_optimizer_state(opt: Optimizer, world: World, root: int = 0) -> None: ...
def save(path: str | os.PathLike[str], module_or_state: Any, world: World) -> None: ...

class DataParallel:
    model: Module
    world: World
    names: list[str]
    params: list[Tensor[Any]]
    buffers: list[Tensor[Any]]
    bucket_bytes: int
    find_unused_parameters: bool
    broadcast_buffers: bool
    plan: list[list[int]]
    layout: tuple[Any, ...]
    digest: str
    steps: int
    def __init__(self, model: Module, world: World, bucket_mb: float = 25.0, find_unused_parameters: bool = False,
                 broadcast_buffers: bool = True) -> None: ...
    def header(self, phase: Phase, site: str, samples: int) -> Header: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def no_sync(self) -> AbstractContextManager[None]: ...
    def backward(self, loss: Tensor[Shared], samples: int | None = None, into: Grads | None = None,
                 overlap: bool = True) -> Grads: ...
    def empty_backward(self) -> Grads: ...
    def join(self, opt: Optimizer | None = None) -> AbstractContextManager[None]: ...

