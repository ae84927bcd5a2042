"""Argument checks shared by the layers and their functional forms."""

from __future__ import annotations

import numbers
from typing import Any

from ..tensor import Tensor

__all__ = ["pair", "tensor_of"]


def pair(v: Any, name: str, op: str, minimum: int) -> tuple[int, int]:
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(vals) != 2 or not all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in vals):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    out = (int(vals[0]), int(vals[1]))
    if min(out) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v!r}")
    return out


def tensor_of(x: object, op: str, what: str = "x") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {what} must be a Tensor, got {type(x).__name__}")
    return x
