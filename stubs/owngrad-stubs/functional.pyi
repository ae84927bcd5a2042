"""Derivatives of a function at a point, reverse over reverse (``og.functional``)."""

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .modes import Mut, Shared
from .tensor import Tensor

__all__ = ["hvp", "jacobian", "hessian"]

_Fn = Callable[[Tensor[Mut]], Tensor[Any]]

def hvp(f: _Fn, x: Tensor[Any], v: Tensor[Any] | NDArray[np.floating[Any]]) -> tuple[Tensor[Any], Tensor[Shared]]: ...
def jacobian(f: _Fn, x: Tensor[Any], create_graph: bool = False) -> Tensor[Shared]: ...
def hessian(f: _Fn, x: Tensor[Any]) -> Tensor[Shared]: ...
