"""The user's handle: a tensor is a view (maybe the whole) of a storage, with a graph role.

A *root* tensor owns its storage's whole array and its current graph node (``_node``). A
view (basic indexing, transpose, reshape of a contiguous array, squeeze/unsqueeze, and the
read-only expand) shares the root's storage; its node is derived on use from the root's
*current* node plus the view's path, so after an in-place write through any view -- which
replaces the root's node by a ``copy_slices`` node (PyTorch's CopySlices) -- every other view
reads the new history.

This module holds what a handle *is* (construction, properties, repr, borrow blocks); what it
*does* lives in mixins: arithmetic and reductions (tensor_math.py), views (tensor_views.py) and
in-place writes (inplace.py), joined in tensor.py.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import Array, copy_of, device_of, to_device
from .errors import BorrowError, ShapeError
from .ledger import EXCLUSIVE, SHARED, BlockHolder, Region, Storage, borrowing
from .node import PENDING
from .roles import ReadOnly, Role
from .sites import Site, format_site, user_site
from .traced import refuse_foreign
from .views import Layout, Step

if TYPE_CHECKING:
    from typing_extensions import Self

    from .graph_api import GraphAPI
    from .node import Node

__all__ = ["TensorHandle", "exclusive", "shared", "is_param", "array_of", "arrays_of", "check_writable", "label_of",
           "relabel"]

_LAYOUTS = [tuple(range(n)) for n in range(8)]  # a root's layout: its axis i walks base axis i


# --- for owngrad's own upper layers (optimizers, modules, checkpoints), which work on a tensor's
# array under borrows they hold; these are the only ways those layers reach into a handle ---

def array_of(t: TensorHandle) -> Array:
    """The tensor's array itself (not a copy): read or written only under a borrow the caller holds."""
    return t._data


def arrays_of(ts: list[Any]) -> list[Array]:
    """The arrays of several tensors (see :func:`array_of`)."""
    return [t._data for t in ts]


def check_writable(ts: TensorHandle | list[Any], site: Site, what: str) -> None:
    """Raise BorrowError if ``ts`` (a tensor or a list of them) holds a read-only handle (frozen,
    gradient, expanded view)."""
    for t in ts if isinstance(ts, list) else (ts,):
        if t._readonly is not None:
            t._check_writable(site, what)


def label_of(t: TensorHandle) -> str:
    """``w`` or ``w[0:2]``: how messages name the tensor."""
    return t._label()


def relabel(t: TensorHandle, label: str) -> None:
    """Name the tensor's storage in messages (a module names its params ``body.0.weight``)."""
    t._storage.ledger.label = label


def shared(ts: list[Any], site: Site, what: str) -> borrowing:
    """Shared borrows on every tensor, all or none, for a ``with`` block that only reads them."""
    holder = BlockHolder(what, site, "wait for it to finish")
    return borrowing(_requests(ts), SHARED, holder, "reading", site, what)


def is_param(t: object) -> bool:
    """Whether ``t`` is a param itself (made by ``g.param``), not a view or another handle on one."""
    return isinstance(t, TensorHandle) and t._root is t and t._kind is Role.PARAM


def exclusive(ts: list[Any], site: Site, what: str, holder: Any = None, why: str = "writing") -> borrowing:
    """Exclusive borrows on every tensor, all or none, for a ``with`` block: owngrad's multi-tensor
    updates (optimizer steps, gradient clipping, running statistics, loading a checkpoint, gradients in
    flight in an all-reduce). ``holder`` (default: the block itself) is who messages name."""
    holder = BlockHolder(what, site, "wait for it to finish") if holder is None else holder
    return borrowing(_requests(ts), EXCLUSIVE, holder, why, site, what)


def _requests(ts: list[Any]) -> list[tuple[Any, Region]]:
    """``(ledger, region)`` of every tensor, for a borrow (a storage makes its ledger on first use)."""
    out = []
    for t in ts:
        st = t._storage
        led = st._ledger
        out.append((st.ledger if led is None else led, t._region))
    return out


class TensorHandle:
    """An n-d array in a :class:`Graph`, with a gradient role and borrow-checked writes."""

    _capture_stop = True  # a captured step guards it by identity, never walks into it
    __slots__ = ("_graph", "_storage", "_data", "_region", "_layout", "_rootref", "_path", "_node",
                 "_vcache", "_kind", "_readonly", "_is_view", "_name", "_base", "__weakref__")

    __array_ufunc__ = None  # numpy defers to our reflected operators (ndarray * tensor -> Self)

    _graph: GraphAPI[Self]
    _storage: Storage
    _data: Array
    _region: Region
    _layout: Layout
    _rootref: Self | None  # the root this view was cut from; None for a root (no self-cycle)
    _path: tuple[Step, ...]
    _node: Node | None
    _vcache: tuple[Node, Node] | None
    _kind: Role
    _readonly: ReadOnly | None
    _is_view: bool
    _name: str | None
    _base: Self | None  # what ``.base`` reports for a view: the handle the view chain was cut from

    def __class_getitem__(cls, mode: object) -> type[Self]:
        """``Tensor[Mut]`` is ``Tensor`` at run time: access modes exist for the type checker (stubs/)."""
        return cls

    def __init__(self) -> None:
        raise TypeError("Tensors are made by a graph: g.param(data), g.constant(data), or ops on tensors")

    # --- construction (internal) ---
    @classmethod
    def _root_of(cls, graph: GraphAPI[Self], array: Array, kind: Role, node: Node | None, name: str | None,
                 label: str | tuple[str, int], readonly: ReadOnly | None = None) -> Self:
        t = object.__new__(cls)
        t._graph = graph
        if type(array) is np.ndarray:
            shape = array.shape
            t._storage = Storage(array, label, "cpu", graph.ledger_lock)
        else:
            shape = tuple(array.shape)
            t._storage = Storage(array, label, device_of(array), graph.ledger_lock)
        t._data = array
        t._region = Region.full(shape)
        t._layout = _LAYOUTS[len(shape)] if len(shape) < 8 else tuple(range(len(shape)))
        t._rootref = None
        t._path = ()
        t._node = node
        t._vcache = None
        t._kind = kind
        t._readonly = readonly
        t._is_view = False
        t._name = name
        t._base = None
        return t

    def _derive(self, data: Array, region: Region, layout: Layout, path: tuple[Step, ...],
                readonly: ReadOnly | None, is_view: bool = True) -> Self:
        t = object.__new__(type(self))
        t._graph = self._graph
        t._storage = self._storage
        t._data = data
        t._region = region
        t._layout = layout
        t._rootref = self._root
        t._path = path
        t._node = None
        t._vcache = None
        t._kind = self._kind
        t._readonly = readonly
        t._is_view = is_view
        t._name = None
        t._base = self._base if self._is_view else self
        return t

    def _handle(self, readonly: ReadOnly) -> Self:
        """Another handle on the same data and history, read-only (keeping the name)."""
        t = self._derive(self._data, self._region, self._layout, self._path, readonly, self._is_view)
        t._name = self._name
        return t

    @property
    def _root(self) -> Self:
        """The tensor owning this storage's history: itself for a root, else the root of the view chain."""
        r = self._rootref
        return self if r is None else r

    def _grad_node(self) -> Node | None:
        """This tensor's current graph node (derived for views from the root's current node)."""
        root = self._rootref
        if root is None:
            return self._node
        rn = root._node
        if rn is None or not self._path:
            return rn
        c = self._vcache
        if c is not None and c[0] is rn and c[1].state is PENDING:
            return c[1]
        node = self._graph.record_view(rn, root.shape, self._path, self)
        self._vcache = (rn, node)
        return node

    def _label(self) -> str:
        """``w`` for a root, ``w[0:2]`` for a view (or a detached/frozen handle on part of a storage)."""
        led = self._storage.ledger
        return self._region.describe(led.label, led.shape)  # the whole storage reads as its plain label

    # --- properties ---
    @property
    def name(self) -> str | None:
        """The name given at creation (params, constants) or set later; used in error messages."""
        return self._name

    @name.setter
    def name(self, value: str | None) -> None:
        self._name = value
        if value and (self._root is self or not self._is_view):
            self._storage.ledger.label = value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def dtype(self) -> Any:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return int(self._data.ndim)

    @property
    def size(self) -> int:
        return int(self._data.size)

    @property
    def device(self) -> str:
        return self._storage.device

    @property
    def graph(self) -> GraphAPI[Self]:
        return self._graph

    @property
    def requires_grad(self) -> bool:
        return self._root._node is not None

    @property
    def is_leaf(self) -> bool:
        return not self.requires_grad or (self._root._kind is Role.PARAM and not self._path)

    @property
    def base(self) -> Self | None:
        """The tensor this view was cut from (the root of the chain), or None. A read-only view's
        base is read-only too: a frozen handle never leads back to a writable one."""
        if not self._is_view:
            return None
        base = self._base
        assert base is not None
        if self._readonly and not base._readonly:
            return base._handle(readonly=self._readonly)
        return base

    def _to_python(self, what: str) -> None:
        """A value leaves the graph for Python: refused while a step is being captured (its value would be fixed)."""
        tr = self._graph._tracer
        if tr is not None:
            tr.refuse(f"{what} of {self._label()}")
        else:  # a tensor of another graph, read while this thread captures a step
            refuse_foreign(f"{what} of {self._label()}")

    def numpy(self) -> np.ndarray:
        """A copy of the values, on the host."""
        self._to_python("t.numpy()")
        return np.array(to_device(self._data, "cpu"), copy=True)

    def item(self) -> Any:
        self._to_python("t.item()")
        if self.size != 1:
            raise ValueError(f"item(): only a tensor with one element converts to a Python scalar, "
                             f"this one has shape {self.shape}")
        return self._data.item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __bool__(self) -> bool:
        self._to_python("bool(t) (a Python branch on a tensor's value)")
        if self.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; use .any() or .all()")
        return bool(self._data.item())

    def __format__(self, spec: str) -> str:
        """``f"{loss:.4f}"`` formats a one-element tensor's value (as torch does for 0-d tensors)."""
        if spec and self.size == 1:
            return format(self.item(), spec)
        if spec:
            raise TypeError(f"format spec {spec!r} needs a one-element tensor, this one has shape {self.shape}")
        return repr(self)

    def __float__(self) -> float:
        self._to_python("float(t)")
        return float(self.item())

    def __int__(self) -> int:
        self._to_python("int(t)")
        return int(self.item())

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        with np.printoptions(precision=4, threshold=20, edgeitems=2):
            vals = np.array2string(self.numpy(), separator=", ", prefix="Tensor(")
        if self._root._readonly is ReadOnly.GRADIENT:  # not a constant of the graph: no op recorded it
            role = self._label()
        elif self._root._kind is Role.PARAM and not self._path:
            role = f"param {self._storage.ledger.label!r}"
        elif self._is_view:
            role = f"view {self._label()}" + (", requires grad" if self.requires_grad else "")
        elif self.requires_grad:
            node = self._root._node
            role = f"grad_fn={node.op}#{node.id}" if node is not None else "requires grad"
        else:
            role = "constant"
        live = self._storage.ledger.live()
        mine = [b for b in live if b.region.overlaps(self._region)]
        if mine:
            n_sh = sum(1 for b in mine if b.kind == SHARED)
            state = f"borrowed: {n_sh} shared" + (", exclusive" if n_sh < len(mine) else "")
        else:
            state = "not borrowed"
        ro = ", read-only" if self._readonly else ""
        return f"Tensor({vals}, dtype={self.dtype}, device={self.device}, {role}{ro}, {state})"

    # --- borrowing the raw array ---
    @contextmanager
    def borrow(self) -> Iterator[Array]:
        """A read-only zero-copy array under a shared borrow, for the block's duration."""
        site = user_site()
        self._to_python("t.borrow() (the raw array)")
        holder = BlockHolder("a borrow() block", site, "end the `with t.borrow()` block before writing")
        with borrowing([(self._storage.ledger, self._region)], SHARED, holder, "borrowed for reading", site,
                       "borrow"):
            arr = self._data.view()
            if type(arr) is np.ndarray:
                arr.flags.writeable = False
            yield arr

    @contextmanager
    def borrow_mut(self) -> Iterator[Array]:
        """A writable zero-copy array under an exclusive borrow; it stops being writable when the block ends.
        Writes through it are not recorded in the graph (like an optimizer's update)."""
        site = user_site()
        self._to_python("t.borrow_mut() (a write no recorded call makes)")
        self._check_writable(site, "borrow_mut()")
        holder = BlockHolder("a borrow_mut() block", site, "end the `with t.borrow_mut()` block first")
        with borrowing([(self._storage.ledger, self._region)], EXCLUSIVE, holder, "borrowed for writing", site,
                       "borrow_mut"):
            arr = self._data.view()
            try:
                yield arr
            finally:
                if type(arr) is np.ndarray:
                    arr.flags.writeable = False

    def _check_writable(self, site: Site, what: str) -> None:
        ro = self._readonly
        if ro is not None:
            raise BorrowError(
                f"cannot write {self._label()} ({what}) at {format_site(site)}: this handle is read-only: "
                f"{ro.reason}\n  help: {ro.help_text}")

    def _check_axis(self, name: str, axis: Any) -> None:
        axes = () if axis is None else axis if isinstance(axis, tuple) else (axis,)
        n = max(self.ndim, 1)
        for a in axes:
            if not isinstance(a, numbers.Integral) or isinstance(a, bool) or not -n <= int(a) < n:
                raise ShapeError(f"{name}: axis {a!r} is out of range for a tensor of shape {self.shape}")

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """A copy in the same graph with no history: a param copies to a new param (with the same
        name), anything else to a constant -- what ``copy.deepcopy(module)`` needs for an EMA or a
        target network."""
        arr = to_device(self._data, "cpu") if self.device != "cpu" else self._data
        if is_param(self):
            return self._graph.param(arr, name=self._name)
        return self._graph.constant(arr, name=self._name)

    def _snapshot(self) -> Self:
        """A copy of the current values that keeps this tensor's graph history."""
        node = self._grad_node() if self._graph.grad_enabled else None
        tr = self._graph._tracer
        data = self._data.copy() if tr is None else tr.call(copy_of, self._data)
        return self._root_of(self._graph, data, Role.RESULT if node is not None else Role.CONSTANT,
                             node, None, f"copy of {self._label()}")

    def detach(self) -> Self:
        """A constant leaf on the same storage: its writes are checked against the same ledger."""
        t = self._derive(self._data, self._region, self._layout, (), self._readonly, is_view=False)
        t._rootref = None
        t._base = None  # it keeps the storage, not the tensor with history (whose node may then be abandoned)
        t._kind = Role.CONSTANT
        return t
