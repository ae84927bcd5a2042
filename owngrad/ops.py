"""n-ary differentiable functions: ``og.maximum``, ``og.minimum``, ``og.where``, ``og.clip``,
``og.concatenate``, ``og.stack``, ``og.matmul``, plus a few unary conveniences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import GraphError, ShapeError
from .operands import check_bound, operand, scalar
from .tensor import Tensor

__all__ = ["maximum", "minimum", "where", "clip", "concatenate", "stack", "matmul", "exp", "log", "tanh",
           "sqrt", "sigmoid", "relu", "abs"]


def _first_tensor(op: str, *xs: Any) -> Tensor:
    for x in xs:
        if isinstance(x, Tensor):
            return x
    raise TypeError(f"og.{op}: at least one operand must be a Tensor")


def maximum(x: Any, y: Any) -> Tensor:
    t = _first_tensor("maximum", x, y)
    return t.graph.apply("maximum", (operand(t, x, "maximum"), operand(t, y, "maximum")))


def minimum(x: Any, y: Any) -> Tensor:
    t = _first_tensor("minimum", x, y)
    return t.graph.apply("minimum", (operand(t, x, "minimum"), operand(t, y, "minimum")))


def where(cond: Any, x: Any, y: Any) -> Tensor:
    t = _first_tensor("where", cond, x, y)
    c = operand(t, cond, "where")
    if getattr(c, "dtype", None) is None or c.dtype.kind != "b":
        raise TypeError("og.where: the condition must be a boolean tensor or array (e.g. x > 0)")
    if isinstance(c, Tensor) and c.requires_grad:
        raise GraphError("og.where: the condition cannot need a gradient")
    return t.graph.apply("where", (c, operand(t, x, "where"), operand(t, y, "where")))


def clip(x: Tensor, lo: Any = None, hi: Any = None) -> Tensor:
    """Clamp to ``[lo, hi]``; the gradient passes where ``lo <= x <= hi`` (as torch.clamp). Tensor
    bounds get the gradient where they are the result (as torch.clamp with tensor min/max)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"og.clip: x must be a Tensor, got {type(x).__name__}")
    check_bound("og.clip", lo, hi)
    if isinstance(lo, Tensor) or isinstance(hi, Tensor):
        lo_ = operand(x, -float("inf") if lo is None else lo, "og.clip")
        hi_ = operand(x, float("inf") if hi is None else hi, "og.clip")
        return x.graph.apply("clip_t", (x, lo_, hi_))
    return x.graph.apply("clip", (x,), {"lo": scalar(lo), "hi": scalar(hi)})


def _seq(op: str, xs: Sequence[Any]) -> tuple[Tensor, list[Any]]:
    if not isinstance(xs, (list, tuple)) or not xs:
        raise TypeError(f"og.{op}: expected a non-empty list of tensors")
    t = _first_tensor(op, *xs)
    return t, [operand(t, x, op) for x in xs]


def concatenate(xs: Sequence[Any], axis: int = 0) -> Tensor:
    t, ops = _seq("concatenate", xs)
    shapes = [tuple(getattr(o, "shape", ())) for o in ops]
    nd = len(shapes[0])
    if not all(len(s) == nd for s in shapes) or not -nd <= axis < max(nd, 1) or nd == 0:
        raise ShapeError(f"og.concatenate: shapes {shapes} cannot be joined along axis {axis}")
    ax = axis % nd
    return t.graph.apply("concatenate", tuple(ops), {"axis": ax}, {"sizes": tuple(s[ax] for s in shapes)})


def stack(xs: Sequence[Any], axis: int = 0) -> Tensor:
    t, ops = _seq("stack", xs)
    shapes = [tuple(getattr(o, "shape", ())) for o in ops]
    nd = len(shapes[0]) + 1
    if len(set(shapes)) != 1 or not -nd <= axis < nd:
        raise ShapeError(f"og.stack: shapes {shapes} cannot be stacked along axis {axis}")
    return t.graph.apply("stack", tuple(ops), {"axis": axis % nd})


def matmul(x: Any, y: Any) -> Tensor:
    t = _first_tensor("matmul", x, y)
    return t.graph.apply("matmul", (operand(t, x, "matmul"), operand(t, y, "matmul")))


def exp(x: Tensor) -> Tensor:
    return x.exp()


def log(x: Tensor) -> Tensor:
    return x.log()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def sqrt(x: Tensor) -> Tensor:
    return x.sqrt()


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def relu(x: Tensor) -> Tensor:
    return x.relu()


def abs(x: Tensor) -> Tensor:  # noqa: A001 - numpy's name
    return x.abs()
