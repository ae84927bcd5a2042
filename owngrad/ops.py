"""n-ary differentiable functions: ``og.maximum``, ``og.minimum``, ``og.where``, ``og.clip``,
``og.concatenate``, ``og.stack``, ``og.matmul``, plus a few unary conveniences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import GraphError, ShapeError
from .operands import operand, scalar
from .tensor import Tensor
from .tracer import recorded

__all__ = ["einsum", "split", "pad", "take_along_axis", "maximum", "minimum", "where", "clip", "concatenate",
           "stack", "matmul", "exp", "log", "tanh",
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
    return x.clip(lo, hi)


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


def _einsum_spec(subscripts: str, shapes: list[tuple[int, ...]]) -> tuple[tuple[str, ...], str]:
    """``"ij,jk->ik"`` as ``(("ij", "jk"), "ik")``, the output made explicit as numpy would."""
    if not isinstance(subscripts, str):
        raise TypeError(f"og.einsum: subscripts must be a string, got {type(subscripts).__name__}")
    s = subscripts.replace(" ", "")
    if "." in s:
        raise ValueError("og.einsum: ellipsis ('...') subscripts are not supported; name every axis")
    lhs, arrow, out = s.partition("->")
    ins = tuple(lhs.split(","))
    if len(ins) != len(shapes):
        raise ValueError(f"og.einsum: {len(ins)} operand subscripts for {len(shapes)} operands")
    for spec, shp in zip(ins, shapes):
        if not spec.isalpha() or len(spec) != len(shp):
            raise ShapeError(f"og.einsum: subscripts {spec!r} do not fit an operand of shape {shp}")
        if len(set(spec)) != len(spec):
            raise ValueError(f"og.einsum: a repeated subscript within one operand ({spec!r}, a diagonal) "
                             "is not supported")
    if not arrow:
        counts = {c: lhs.count(c) for c in set(lhs) if c.isalpha()}
        out = "".join(sorted(c for c, n in counts.items() if n == 1))
    if not out.isalpha() and out or any(c not in lhs for c in out):
        raise ValueError(f"og.einsum: the output subscripts {out!r} must name axes of the operands")
    return ins, out


def einsum(subscripts: str, *operands: Any) -> Tensor:
    """numpy's ``einsum`` (explicit or implicit output; no ellipsis, no repeated subscript within one
    operand), differentiable in every operand."""
    t, ops = _seq("einsum", list(operands))
    spec = _einsum_spec(subscripts, [tuple(getattr(o, "shape", ())) for o in ops])
    return t.graph.apply("einsum", tuple(ops), {"spec": spec})


def split(t: Tensor, indices_or_sections: Any, axis: int = 0) -> list[Tensor]:
    """numpy's ``split``: ``n`` equal parts, or cut before each index of a list; the parts are views."""
    if not isinstance(t, Tensor):
        raise TypeError(f"og.split: expected a Tensor, got {type(t).__name__}")
    if not isinstance(axis, int) or not -max(t.ndim, 1) <= axis < max(t.ndim, 1) or t.ndim == 0:
        raise ShapeError(f"og.split: axis {axis!r} is out of range for a tensor of shape {t.shape}")
    axis %= t.ndim
    n = t.shape[axis]
    if isinstance(indices_or_sections, int) and not isinstance(indices_or_sections, bool):
        k = indices_or_sections
        if k <= 0 or n % k:
            raise ShapeError(f"og.split: {k} sections do not divide axis {axis} of size {n} equally "
                             "(pass a list of indices for unequal parts)")
        cuts = [i * (n // k) for i in range(1, k)]
    else:
        cuts = [int(i) for i in indices_or_sections]
    bounds = [0, *cuts, n]
    lead = (slice(None),) * axis
    return [t[lead + (slice(a, max(a, b)),)] for a, b in zip(bounds[:-1], bounds[1:])]


def _pad_widths(pad_width: Any, ndim: int) -> tuple[tuple[int, int], ...]:
    arr = np.asarray(pad_width)
    if arr.dtype.kind not in "iu" or arr.size == 0:
        raise TypeError(f"og.pad: pad_width must be ints (numpy's forms), got {pad_width!r}")
    try:
        widths = np.broadcast_to(arr.reshape(-1, 2) if arr.ndim == 2 else arr, (ndim, 2))
    except ValueError:
        raise ShapeError(f"og.pad: pad_width {pad_width!r} does not fit a tensor of {ndim} dimensions") from None
    if (widths < 0).any():
        raise ValueError(f"og.pad: pad widths must be non-negative, got {pad_width!r}")
    return tuple((int(b), int(a)) for b, a in widths)


def pad(t: Tensor, pad_width: Any, value: float = 0.0) -> Tensor:
    """numpy's ``pad`` in constant mode (``pad_width``: an int, ``(before, after)``, or one pair per axis)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"og.pad: expected a Tensor, got {type(t).__name__}")
    if not isinstance(value, (int, float, np.generic)) or isinstance(value, bool):
        raise TypeError(f"og.pad: value must be a number, got {type(value).__name__}")
    return t.graph.apply("pad", (t,), {"widths": _pad_widths(pad_width, t.ndim), "value": scalar(value)})


def take_along_axis(t: Tensor, indices: Any, axis: int) -> Tensor:
    """numpy's ``take_along_axis`` (torch's ``gather``); repeated indices add up their gradients."""
    if not isinstance(t, Tensor):
        raise TypeError(f"og.take_along_axis: expected a Tensor, got {type(t).__name__}")
    raw = indices._data if isinstance(indices, Tensor) else indices  # noqa: SLF001 - the graph layer's data
    # the tensor's own index conversion, recorded: the indices may be a captured step's input
    idx = recorded(t.graph, t._index_arrays, raw)  # noqa: SLF001
    if getattr(idx, "dtype", None) is None or idx.dtype.kind not in "iu":
        raise TypeError("og.take_along_axis: indices must be an integer tensor, array or list")
    if not isinstance(axis, int) or not -max(t.ndim, 1) <= axis < max(t.ndim, 1):
        raise ShapeError(f"og.take_along_axis: axis {axis!r} is out of range for a tensor of shape {t.shape}")
    if idx.ndim != t.ndim:
        raise ShapeError(f"og.take_along_axis: indices of shape {tuple(idx.shape)} need {t.ndim} dimensions, "
                         f"as the tensor of shape {t.shape}")
    return t.graph.apply("take_along_axis", (t, idx), {"axis": axis % t.ndim})
