import os
from collections.abc import Mapping
from typing import Any

from numpy.typing import NDArray

from .nn.modules import Module

__all__ = ["save", "load"]

def save(path: str | os.PathLike[str], module_or_state: Module | Mapping[str, Any]) -> None: ...
def load(path: str | os.PathLike[str], into: Module | None = None) -> dict[str, NDArray[Any]]: ...
