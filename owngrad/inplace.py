"""The in-place engine: every write (``+= -= *= /= **=``, ``t[k] = v``, ``zero_ fill_ copy_ clamp_``,
``add_ sub_ mul_ div_ pow_``) goes through :meth:`InplaceOps._inplace`.

The life of a write, in order -- every check before any change:

1. the handle must be writable (a frozen or gradient handle raises ``BorrowError``);
2. the key is located (:class:`_Target`: the region of the base it writes, the view path, the
   destination array) and the operands are checked (graph, device, shapes);
3. an exclusive borrow of that region is taken (``ledger.borrowing``): any overlapping borrow --
   a pending node that saved it, a ``borrow()`` block, a running backward -- refuses the write;
4. under the borrow: an op whose own backward would save an operand that this write
   overwrites (``y *= y``) is refused; a value with history written into a param is refused
   (``GraphError``); a result dtype the destination cannot hold is refused;
5. the new value is computed (sources that alias the destination are read first, as numpy)
   and written; a write with history, or into a non-leaf, is recorded by the graph as a
   ``copy_slices`` node that becomes the root's current node.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import Array, xp_of
from .errors import BorrowError, GraphError, ShapeError
from .handle import TensorHandle
from .ledger import EXCLUSIVE, BlockHolder, Region, borrowing
from .operands import check_bound, operand, same_device, same_graph, scalar
from .roles import Role
from .rules import RULES
from .sites import Site, format_site, user_site
from .tensor_math import _fill_value, _mask_operand
from .traced import refuse_foreign
from .tracer import value_check
from .views import Step, StepKind, check_broadcast_into, is_basic_key, normalize_key, sub_region

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["InplaceOps"]

_OWN_SHAPE_CHECK = frozenset({"index_add"})  # ops whose operands do not broadcast into the destination
_WHOLE: Any = object()  # the key of an in-place op on the whole tensor (``None`` is a key: ``t[None] = v``)


def _landed(view: Array, key: Any) -> Array | None:
    """For ``view[key] = v`` with an advanced key: which positions of ``view[key]`` are the write that
    landed (numpy keeps the last of repeated indices), or None when every position lands. Only the
    values that landed get a gradient -- the derivative of the forward that ran."""
    xp = xp_of(view)
    picked_shape = view[key].shape
    ids = xp.arange(int(np.prod(picked_shape)), dtype=np.int64).reshape(picked_shape)
    tmp = xp.full(view.shape, -1, dtype=np.int64)
    tmp[key] = ids
    landed = tmp[key] == ids
    return None if bool(landed.all()) else landed


class _Target:
    """Where a write lands: the base region it covers, the view path from the root, and the
    destination array (``adv`` is an advanced key applied to the written handle's array)."""

    __slots__ = ("path", "region", "adv", "dest")

    def __init__(self, path: tuple[Step, ...], region: Region, adv: Any, dest: Array) -> None:
        self.path = path
        self.region = region
        self.adv = adv
        self.dest = dest


class InplaceOps(TensorHandle):
    """In-place writes (a mixin of :class:`~owngrad.tensor.Tensor`)."""

    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> None:
        self._inplace(key, "setitem", None, (value,))

    def __iadd__(self, o: Any) -> Self:
        return self._inplace(_WHOLE, "+=", "add", (o,))

    def __isub__(self, o: Any) -> Self:
        return self._inplace(_WHOLE, "-=", "sub", (o,))

    def __imul__(self, o: Any) -> Self:
        return self._inplace(_WHOLE, "*=", "mul", (o,))

    def __itruediv__(self, o: Any) -> Self:
        return self._inplace(_WHOLE, "/=", "div", (o,))

    def __ipow__(self, o: Any) -> Self:
        return self._inplace(_WHOLE, "**=", "pow", (o,))

    def pow_(self, o: Any) -> Self:
        return self._inplace(_WHOLE, "pow_", "pow", (o,))

    def add_(self, o: Any) -> Self:
        return self._inplace(_WHOLE, "add_", "add", (o,))

    def sub_(self, o: Any) -> Self:
        return self._inplace(_WHOLE, "sub_", "sub", (o,))

    def mul_(self, o: Any) -> Self:
        return self._inplace(_WHOLE, "mul_", "mul", (o,))

    def div_(self, o: Any) -> Self:
        return self._inplace(_WHOLE, "div_", "div", (o,))

    def zero_(self) -> Self:
        return self._inplace(_WHOLE, "zero_", None, (0,))

    def fill_(self, value: Any) -> Self:
        if isinstance(value, TensorHandle) and value.size != 1:
            raise ShapeError(f"fill_: the value must be a scalar, got a tensor of shape {value.shape}")
        return self._inplace(_WHOLE, "fill_", None, (value,))

    def copy_(self, src: Any) -> Self:
        return self._inplace(_WHOLE, "copy_", None, (src,))

    def clamp_(self, lo: Any = None, hi: Any = None) -> Self:
        check_bound("clamp_", lo, hi)
        if isinstance(lo, TensorHandle) or isinstance(hi, TensorHandle) or hasattr(lo, "shape") or \
                hasattr(hi, "shape"):
            # bounds with a shape are operands (shape-checked, and differentiable as in og.clip)
            return self._inplace(_WHOLE, "clamp_", "clip_t", (-float("inf") if lo is None else lo,
                                                              float("inf") if hi is None else hi))
        return self._inplace(_WHOLE, "clamp_", "clip", (), {"lo": scalar(lo), "hi": scalar(hi)})

    def masked_fill_(self, mask: Any, value: Any) -> Self:
        """Write ``value`` where ``mask`` is True, in place."""

        m = _mask_operand(self, mask, "masked_fill_")
        return self._inplace(_WHOLE, "masked_fill_", "masked_fill", (m,), {"value": _fill_value(value, "masked_fill_")})

    def lerp_(self, end: Any, weight: Any) -> Self:
        """``self += weight * (end - self)``, in place (torch's ``lerp_``; ``weight`` a number or a tensor)."""
        return self._inplace(_WHOLE, "lerp_", "lerp", (end, weight))

    def index_add_(self, axis: int, index: Any, src: Any) -> Self:
        """Add ``src`` into the rows ``index`` along ``axis``, in place; repeated indices accumulate
        (torch's ``index_add_``)."""
        op = "index_add_"
        if not isinstance(axis, int) or isinstance(axis, bool) or not -max(self.ndim, 1) <= axis < max(self.ndim, 1):
            raise ShapeError(f"{op}: axis {axis!r} is out of range for a tensor of shape {self.shape}")
        axis %= max(self.ndim, 1)
        tr = self._graph._tracer
        convert = self._index_arrays  # type: ignore[attr-defined]  # ViewOps, beside this mixin in Tensor
        # a captured step converts (and checks) the index at each replay: it may come from the step's input
        idx = convert(index) if tr is None else tr.call(convert, index._data if isinstance(index, TensorHandle)
                                                        else index)
        if getattr(idx, "ndim", None) != 1 or idx.dtype.kind not in "iu":
            raise TypeError(f"{op}: index must be a 1-d integer tensor, array or list")
        n = self.shape[axis]
        if idx.size:
            (_check_index if tr is None else functools.partial(tr.call, _check_index))(idx, n, axis)
        s = operand(self, src, op)
        want = self.shape[:axis] + (len(idx),) + self.shape[axis + 1:]
        if tuple(getattr(s, "shape", ())) != want:
            raise ShapeError(f"{op}: src must have shape {want} (index of length {len(idx)} along axis {axis}), "
                             f"got {tuple(getattr(s, 'shape', ()))}")
        return self._inplace(_WHOLE, op, "index_add", (s,), {"axis": axis, "index": idx})

    # --- the engine ---
    def _inplace(self, key: Any, what: str, rule: str | None, operands: Sequence[Any],
                 attrs: dict[str, Any] | None = None) -> Self:
        """Every write path. Checks (read-only, shapes, graph, borrows) all come before any change."""
        me = self
        site = user_site()
        self._check_writable(site, what)
        tr = self._graph._tracer
        if tr is not None and key is not _WHOLE and not is_basic_key(key):
            tr.refuse(f"the in-place write {what} into {self._label()} with an integer-array or boolean key", site,
                      "write through basic indexing (ints, slices), or build the value out of place "
                      "(og.where, or an index_add into zeros)")
        target = self._locate(key, what)
        if target is None:
            return me
        if tr is not None:  # a captured step replays the write: into the same array, or one of its own
            tr.write([self])
        else:
            refuse_foreign(f"the in-place {what} into {self._label()}")
        if target.adv is None and rule is None and len(operands) == 1 and isinstance(operands[0], TensorHandle) \
                and operands[0]._storage is self._storage and operands[0]._path == target.path:
            return me  # ``t[k] op= v`` ends with ``t[k] = <the view just written>``: nothing left to do
        ops = self._check_operands(operands, what, target.dest, rule not in _OWN_SHAPE_CHECK)
        holder = BlockHolder(f"the in-place {what}", site, "wait for it to finish")
        access = what if what != "setitem" else "write"
        with borrowing([(self._storage.ledger, target.region)], EXCLUSIVE, holder, "writing", site, access):
            root = self._root
            if rule is not None and self._graph.grad_enabled and root._kind is not Role.PARAM:
                self._refuse_saved_alias(rule, ops, target.region, what, site)
            self._write_locked(target, key, what, rule, ops, attrs or {}, site)
        return me

    def _locate(self, key: Any, what: str) -> _Target | None:
        if key is _WHOLE:
            return _Target(self._path, self._region, None, self._data)
        if is_basic_key(key):
            nk = normalize_key(key, self.shape)
            region, _ = sub_region(self._region, self._layout, nk, self.shape)
            nk += (Ellipsis,)
            dest = self._data[nk]
            tr = self._graph._tracer
            if tr is not None:
                tr.note(operator.getitem, (self._data, nk), {}, dest)
            return _Target(self._path + ((StepKind.INDEX, nk),), region, None, dest)
        adv = self._index_arrays(key)  # type: ignore[attr-defined]  # ViewOps, beside this mixin in Tensor
        try:
            dest = self._data[adv]
        except IndexError as e:
            raise IndexError(f"{what}: {e} (tensor shape {self.shape})") from None
        return _Target(self._path, self._region, adv, dest)

    def _check_operands(self, operands: Sequence[Any], what: str, dest: Array, broadcast: bool) -> list[Any]:
        ops = [operand(self, o, what) for o in operands]
        for o in ops:
            if isinstance(o, TensorHandle):
                same_graph(what, self._graph, o)
                same_device(what, self.device, o)
            if broadcast:
                shp = tuple(getattr(o._data if isinstance(o, TensorHandle) else o, "shape", ()))
                check_broadcast_into(what, tuple(dest.shape), shp)
        return ops

    def _refuse_saved_alias(self, rule: str, ops: list[Any], region: Region, what: str, site: Site) -> None:
        """``y *= y``: the op would save (for backward) a value that this very write overwrites. PyTorch
        fails at backward there ("modified by an inplace operation"); owngrad refuses at the write."""
        mask = int(self._grad_node() is not None)
        for i, o in enumerate(ops, start=1):
            if isinstance(o, TensorHandle) and o._grad_node() is not None:
                mask |= 1 << i
        needs = RULES[rule].saves(mask)
        for i, o in enumerate(ops, start=2):
            if i in needs and isinstance(o, TensorHandle) and o._storage is self._storage and \
                    o._region.overlaps(region):
                dest = region.describe(self._storage.ledger.label, self._storage.ledger.shape)
                raise BorrowError(
                    f"cannot write {dest} (exclusive borrow for {what}) at {format_site(site)}\n"
                    f"  the value {o._label()} overlaps {dest}, and {rule} saves it for backward: "
                    "this write would change the value its gradient needs\n"
                    f"  help: compute out of place (y = y * v), or write a copy of the value (.copy())")

    def _refuse_history_into_param(self, ops: list[Any], what: str, site: Site) -> bool:
        """Whether the value has gradient history; a param refuses it (its writes are untracked updates)."""
        rhs_grad = self._graph.grad_enabled and any(
            isinstance(o, TensorHandle) and o._grad_node() is not None for o in ops)
        if rhs_grad and self._root._kind is Role.PARAM:
            raise GraphError(
                f"{what} at {format_site(site)}: the value written into {self._label()} (a param, a leaf) depends "
                "on a param, and a param write is an untracked update, so that gradient history would be "
                "silently dropped\n  help: write under `with g.no_grad():` if dropping it is intended, or "
                "build a new tensor out of place")
        return rhs_grad

    def _refuse_truncation(self, rule: str, ops: list[Any], attrs: dict[str, Any], dest: Array, what: str) -> None:
        """As numpy and torch: ``ints += 0.5`` is refused, not silently truncated -- decided from the
        dtypes before anything is computed or recorded."""
        try:
            bounds = [v for k, v in attrs.items() if k in ("lo", "hi") and v is not None]  # clamp_'s bounds
            nd = np.result_type(dest.dtype, *(o._data.dtype if isinstance(o, TensorHandle) else
                                              getattr(o, "dtype", o) for o in [*ops, *bounds]))
            if rule == "div":  # true division: ints give floats
                nd = np.result_type(nd, 1.0)
        except TypeError:
            return
        if not np.can_cast(nd, dest.dtype, "same_kind"):
            raise TypeError(f"{what}: the result has dtype {nd}, which cannot be written into "
                            f"{self._label()} of dtype {dest.dtype} without truncating; "
                            "convert first (t.astype(...)) or build a new tensor")

    def _write_locked(self, target: _Target, key: Any, what: str, rule: str | None, ops: list[Any],
                      attrs: dict[str, Any], site: Site) -> None:
        """The read-compute-write of an in-place op, run while its exclusive borrow is held (so two
        threads cannot interleave a read and a write), after every check has passed."""
        g = self._graph
        root = self._root
        rhs_grad = self._refuse_history_into_param(ops, what, site)
        # a non-leaf's write is recorded; so is a write with history into a constant (a buffer filled
        # step by step: the constant becomes a non-leaf whose old values need no gradient, as in torch)
        recorded = g.grad_enabled and ((root._kind is Role.RESULT and root._node is not None) or
                                       (root._kind is Role.CONSTANT and rhs_grad))
        if rule is not None:
            self._refuse_truncation(rule, ops, attrs, target.dest, what)
        # sources that alias the destination's storage are read first (numpy's semantics for overlap)
        ops = [o._snapshot() if isinstance(o, TensorHandle) and o._storage is self._storage else o for o in ops]
        if recorded:
            new, src_t = self._compute_recorded(target, key, rule, ops, attrs)
        else:
            new, src_t = self._compute_untracked(target.dest, what, rule, ops, attrs), None
        tr = g._tracer
        if target.adv is None:
            if tr is None:
                target.dest[...] = new
            else:
                tr.call(_fill, target.dest, new)
        else:
            self._data[target.adv] = new
        if recorded:
            src_node = src_t._grad_node() if src_t is not None else None
            landed = _landed(self._data, target.adv) if target.adv is not None and src_node is not None else None
            g.record_write(root, src_t if src_node is not None else None, target.path, target.adv, landed)

    def _compute_recorded(self, target: _Target, key: Any, rule: str | None, ops: list[Any],
                          attrs: dict[str, Any]) -> tuple[Any, Self | None]:
        """The new value, and the tensor whose history it carries (an op on the old value, recorded)."""
        if rule is None:
            src = ops[0]
            return (src._data, src) if isinstance(src, type(self)) else (src, None)
        adv = target.adv
        cur = self[adv] if adv is not None else (self if key is _WHOLE else self[key])  # type: ignore[index]
        old = cur._snapshot() if adv is None else cur
        src_t = self._graph.apply(rule, (old, *ops), attrs)
        return src_t._data, src_t

    def _compute_untracked(self, dest: Array, what: str, rule: str | None, ops: list[Any],
                           attrs: dict[str, Any]) -> Any:
        if rule is None:
            return ops[0]._data if isinstance(ops[0], TensorHandle) else ops[0]
        raw = [o._data if isinstance(o, TensorHandle) else o for o in ops]
        tr = self._graph._tracer
        try:
            if tr is not None:
                return tr.call_rule(rule, RULES[rule].forward, xp_of(dest), dest, *raw, **attrs)
            return RULES[rule].forward(xp_of(dest), dest, *raw, **attrs)
        except ValueError as e:
            raise ShapeError(f"{what}: {e}") from None
        except TypeError as e:
            raise TypeError(f"{what}: {e}") from None


@value_check
def _check_index(idx: Array, n: int, axis: int) -> None:
    if int(idx.min()) < -n or int(idx.max()) >= n:
        raise IndexError(f"index_add_: index out of range for axis {axis} of size {n}")


def _fill(dest: Any, value: Any) -> None:
    """``dest[...] = value`` (a plain function, so a captured step can replay the write)."""
    dest[...] = value
