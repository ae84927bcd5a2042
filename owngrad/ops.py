"""n-ary differentiable functions: ``og.maximum``, ``og.minimum``, ``og.where``, ``og.clip``,
``og.concatenate``, ``og.stack``, ``og.matmul``, plus a few unary conveniences."""

from __future__ import annotations

from typing import Any, Sequence

from .errors import GraphError, ShapeError
from .tensor import Tensor, _check_bound, _scalar

__all__ = ["maximum", "minimum", "where", "clip", "concatenate", "stack", "matmul", "exp", "log", "tanh",
           "sqrt", "sigmoid", "relu", "abs"]


def _first_tensor(op: str, *xs: Any) -> Tensor:
    for x in xs:
        if isinstance(x, Tensor):
            return x
    raise TypeError(f"og.{op}: at least one operand must be a Tensor")


def maximum(x: Any, y: Any) -> Tensor:
    t = _first_tensor("maximum", x, y)
    return t._graph._apply("maximum", (t._operand(x, "maximum"), t._operand(y, "maximum")))


def minimum(x: Any, y: Any) -> Tensor:
    t = _first_tensor("minimum", x, y)
    return t._graph._apply("minimum", (t._operand(x, "minimum"), t._operand(y, "minimum")))


def where(cond: Any, x: Any, y: Any) -> Tensor:
    t = _first_tensor("where", cond, x, y)
    c = t._operand(cond, "where")
    if getattr(c._data if isinstance(c, Tensor) else c, "dtype", None) is None or \
            (c._data if isinstance(c, Tensor) else c).dtype.kind != "b":
        raise TypeError("og.where: the condition must be a boolean tensor or array (e.g. x > 0)")
    if isinstance(c, Tensor) and c.requires_grad:
        raise GraphError("og.where: the condition cannot need a gradient")
    return t._graph._apply("where", (c, t._operand(x, "where"), t._operand(y, "where")))


def clip(x: Tensor, lo: Any = None, hi: Any = None) -> Tensor:
    """Clamp to ``[lo, hi]``; the gradient passes where ``lo <= x <= hi`` (as torch.clamp). Tensor
    bounds get the gradient where they are the result (as torch.clamp with tensor min/max)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"og.clip: x must be a Tensor, got {type(x).__name__}")
    _check_bound("og.clip", lo, hi)
    if isinstance(lo, Tensor) or isinstance(hi, Tensor):
        lo_ = x._operand(-float("inf") if lo is None else lo, "og.clip")
        hi_ = x._operand(float("inf") if hi is None else hi, "og.clip")
        return x._graph._apply("clip_t", (x, lo_, hi_))
    return x._graph._apply("clip", (x,), {"lo": _scalar(lo), "hi": _scalar(hi)})


def _seq(op: str, xs: Sequence[Any]) -> tuple[Tensor, list[Any]]:
    if not isinstance(xs, (list, tuple)) or not xs:
        raise TypeError(f"og.{op}: expected a non-empty list of tensors")
    t = _first_tensor(op, *xs)
    return t, [t._operand(x, op) for x in xs]


def concatenate(xs: Sequence[Any], axis: int = 0) -> Tensor:
    t, ops = _seq("concatenate", xs)
    shapes = [tuple(getattr(o._data if isinstance(o, Tensor) else o, "shape", ())) for o in ops]
    nd = len(shapes[0])
    if not all(len(s) == nd for s in shapes) or not -nd <= axis < max(nd, 1) or nd == 0:
        raise ShapeError(f"og.concatenate: shapes {shapes} cannot be joined along axis {axis}")
    ax = axis % nd
    return t._graph._apply("concatenate", tuple(ops), {"axis": ax}, {"sizes": tuple(s[ax] for s in shapes)})


def stack(xs: Sequence[Any], axis: int = 0) -> Tensor:
    t, ops = _seq("stack", xs)
    shapes = [tuple(getattr(o._data if isinstance(o, Tensor) else o, "shape", ())) for o in ops]
    nd = len(shapes[0]) + 1
    if len(set(shapes)) != 1 or not -nd <= axis < nd:
        raise ShapeError(f"og.stack: shapes {shapes} cannot be stacked along axis {axis}")
    return t._graph._apply("stack", tuple(ops), {"axis": axis % nd})


def matmul(x: Any, y: Any) -> Tensor:
    t = _first_tensor("matmul", x, y)
    return t._graph._apply("matmul", (t._operand(x, "matmul"), t._operand(y, "matmul")))


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
