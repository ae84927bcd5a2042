"""Index keys as regions (``w[0:2]``, ``w[:k]``, ``w[t - 1]``, ``w[:, 2:4]``) and the names messages use."""

from __future__ import annotations

from mypy.nodes import (
    CallExpr,
    EllipsisExpr,
    Expression,
    IndexExpr,
    IntExpr,
    MemberExpr,
    NameExpr,
    OpExpr,
    SliceExpr,
    TupleExpr,
    UnaryExpr,
)

from .lattice import Bound, Interval, Region
from .tables import VIEW_METHODS


def bound_of(e: Expression | None) -> Bound | None:
    """``3``, ``k``, ``k + 1``, ``t - 1`` as a bound; None for anything else (negative ints included)."""
    if isinstance(e, IntExpr):
        return Bound(None, e.value) if e.value >= 0 else None
    if isinstance(e, NameExpr):
        return Bound(e.name, 0)
    if isinstance(e, OpExpr) and e.op in ("+", "-") and isinstance(e.left, NameExpr) and isinstance(e.right, IntExpr):
        return Bound(e.left.name, e.right.value if e.op == "+" else -e.right.value)
    return None


def interval_of(e: Expression) -> Interval | None:
    """One axis of a basic key as an interval (None: the whole axis, or not known)."""
    if isinstance(e, SliceExpr):
        if e.stride is not None and not (isinstance(e.stride, IntExpr) and e.stride.value == 1):
            return None
        lo = bound_of(e.begin_index) if e.begin_index is not None else Bound(None, 0)
        hi = bound_of(e.end_index) if e.end_index is not None else None
        if lo is None or (e.end_index is not None and hi is None):
            return None
        return Interval(lo, hi)
    b = bound_of(e)
    return Interval(b, Bound(b.sym, b.off + 1)) if b is not None else None


def region_of(key: Expression) -> Region | None:
    """The region a basic key selects on its base's leading axes (None: all of it)."""
    items = key.items if isinstance(key, TupleExpr) else [key]
    out: list[Interval | None] = []
    for item in items:
        if isinstance(item, EllipsisExpr):
            break
        if isinstance(item, NameExpr) and item.name == "None":
            continue  # a new axis: consumes none of the base's
        out.append(interval_of(item))
    return tuple(out) if any(i is not None for i in out) else None


def is_advanced(key: Expression) -> bool:
    """An integer-array or boolean key (a call, a list, a comparison): indexing with it copies."""
    items = key.items if isinstance(key, TupleExpr) else [key]
    return any(not isinstance(i, (IntExpr, SliceExpr, NameExpr, OpExpr, UnaryExpr, EllipsisExpr)) for i in items)


def compose(outer: Region | None, inner: Region | None) -> Region | None:
    """The region of a view of a view: the outer one (a sub-view stays inside it), or the inner one."""
    return outer if outer is not None else inner


def dotted(e: Expression) -> str | None:
    if isinstance(e, NameExpr):
        return e.name
    if isinstance(e, MemberExpr):
        base = dotted(e.expr)
        return None if base is None else f"{base}.{e.name}"
    return None


def lvalue_root(e: Expression, writers: frozenset[str]) -> Expression:
    """``w`` for ``w[0:2]``, ``w.T[1]``, ``w[2:4].reshape(8)``, ``w.mul_(2)``: the tensor a write goes through."""
    while True:
        if isinstance(e, IndexExpr):
            e = e.base
        elif isinstance(e, MemberExpr) and e.name in VIEW_METHODS:
            e = e.expr
        elif isinstance(e, CallExpr) and isinstance(e.callee, MemberExpr) and \
                (e.callee.name in VIEW_METHODS or e.callee.name in writers):
            e = e.callee.expr
        else:
            return e


def label(e: Expression, depth: int = 0) -> str:
    """A short rendering of the expression that made an unnamed result: ``model(...).sum()``."""
    if depth > 4:
        return "..."
    if isinstance(e, NameExpr):
        return e.name
    if isinstance(e, MemberExpr):
        return f"{label(e.expr, depth + 1)}.{e.name}"
    if isinstance(e, CallExpr):
        return f"{label(e.callee, depth + 1)}({'...' if e.args else ''})"
    if isinstance(e, IndexExpr):
        return f"{label(e.base, depth + 1)}[...]"
    return "(...)"
