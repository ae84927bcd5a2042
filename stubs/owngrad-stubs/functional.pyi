"""Derivatives of a function at a point, reverse over reverse (``og.functional``)."""

from collections.abc import Callable, Sequence
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

from .modes import Mut, Shared
from .tensor import Tensor

__all__ = ["hvp", "jacobian", "hessian"]

_Fn = Callable[[Tensor[Mut]], Tensor[Any]]

_Vec = Tensor[Any] | NDArray[np.floating[Any]]

@overload
def hvp(f: _Fn, x: Tensor[Any], v: _Vec) -> tuple[Tensor[Any], Tensor[Shared]]: ...
@overload
def hvp(f: Callable[..., Tensor[Any]], x: Sequence[Tensor[Any]],
        v: Sequence[_Vec]) -> tuple[Tensor[Any], tuple[Tensor[Shared], ...]]: ...
def jacobian(f: _Fn, x: Tensor[Any], create_graph: bool = False) -> Tensor[Shared]: ...
def hessian(f: _Fn, x: Tensor[Any]) -> Tensor[Shared]: ...
