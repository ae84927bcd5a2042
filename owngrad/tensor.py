"""The user's handle: a Tensor is a view (maybe the whole) of a storage, with a graph role.

A *root* tensor owns its storage's whole array and its current graph node (``_node``). A
view (basic indexing, transpose, reshape of a contiguous array, squeeze/unsqueeze, and the
read-only expand) shares the root's storage; its node is derived on use from the root's *current* node plus the
view's path, so after an in-place write through any view -- which replaces the root's node by
a ``copy_slices`` node (PyTorch's CopySlices) -- every other view reads the new history.
"""

from __future__ import annotations

import numbers
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from .backend import Array, device_of, is_device_array, module_for, owned, to_device, xp_of
from .errors import BorrowError, DeviceError, GraphError, ShapeError
from .ledger import EXCLUSIVE, SHARED, BlockHolder, Region, Storage
from .rules import RULES
from .sites import Site, format_site, user_site
from .views import Layout, Step, check_broadcast_into, is_basic_key, normalize_key, sub_region

if TYPE_CHECKING:
    from .graph import Graph, Node

__all__ = ["Tensor", "as_array"]

_LAYOUTS = [tuple(range(n)) for n in range(8)]  # a root's layout: its axis i walks base axis i
_WEAK = {"b": False, "i": 0, "u": 0, "f": 0.0}  # a Python number of each kind: numpy treats those as weak
_WHOLE: Any = object()  # the key of an in-place op on the whole tensor (``None`` is a key: ``t[None] = v``)


def as_array(graph: Graph, data: Any, op: str) -> Array:
    """Copy ``data`` onto the graph's device: arrays keep their dtype, Python floats/lists become float32."""
    xp = graph.xp
    if isinstance(data, Tensor):
        raise TypeError(f"{op}: data is already a Tensor; use t.detach() or t.numpy() to copy its values")
    if isinstance(data, np.ndarray) or is_device_array(data):
        arr = data
        if device_of(arr) != graph.device:
            arr = to_device(arr, graph.device)
        check_dtype(arr.dtype, op)
        out = xp.array(arr, copy=True, order="C")
        return out
    if isinstance(data, np.generic):
        check_dtype(data.dtype, op)
        return xp.array(data, copy=True)
    if isinstance(data, (str, bytes)) or data is None:
        raise TypeError(f"{op}: cannot make a tensor from {type(data).__name__} data")
    try:
        host = np.asarray(data)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{op}: cannot make a tensor from this data ({e})") from None
    check_dtype(host.dtype, op)
    if host.dtype.kind != "b":
        host = host.astype(np.float32)
    return xp.array(host, copy=True, order="C")


def check_dtype(dtype: Any, op: str) -> None:
    if dtype.kind not in "biuf":
        raise TypeError(f"{op}: unsupported dtype {dtype} (object, string and complex data are not tensors)")


def _check_bound(op: str, lo: Any, hi: Any) -> None:
    for name, v in (("lo", lo), ("hi", hi)):
        if v is not None and not isinstance(v, (numbers.Real, np.generic, Tensor)) and not hasattr(v, "dtype"):
            raise TypeError(f"{op}: {name} must be a number, an array, a tensor or None, got {type(v).__name__}")


def _scalar(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


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


class Tensor:
    """An n-d array in a :class:`Graph`, with a gradient role and borrow-checked writes."""

    __slots__ = ("_graph", "_storage", "_data", "_region", "_layout", "_rootref", "_path", "_node",
                 "_vcache", "_kind", "_readonly", "_is_view", "_name", "_base", "__weakref__")

    __array_ufunc__ = None  # numpy defers to our reflected operators (ndarray * tensor -> Tensor)

    _graph: Graph
    _storage: Storage
    _data: Array
    _region: Region
    _layout: Layout
    _rootref: Tensor | None  # the root this view was cut from; None for a root (no self-cycle)
    _path: tuple[Step, ...]
    _node: Node | None
    _vcache: tuple[Node, Node] | None
    _kind: str
    _readonly: str | None
    _is_view: bool
    _name: str | None
    _base: Tensor | None  # what ``.base`` reports for a view: the handle the view chain was cut from

    def __class_getitem__(cls, mode: object) -> type[Tensor]:
        """``Tensor[Mut]`` is ``Tensor`` at run time: access modes exist for the type checker (stubs/)."""
        return cls

    def __init__(self) -> None:
        raise TypeError("Tensors are made by a graph: g.param(data), g.constant(data), or ops on tensors")

    # --- construction (internal) ---
    @classmethod
    def _root_of(cls, graph: Graph, array: Array, kind: str, node: Node | None, name: str | None,
                 label: str | tuple[str, Any], readonly: str | None = None) -> Tensor:
        t = object.__new__(cls)
        t._graph = graph
        shape = array.shape if type(array) is np.ndarray else tuple(array.shape)
        t._storage = Storage(array, label, "cpu" if type(array) is np.ndarray else device_of(array),
                             graph._ledger_lock)
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
                readonly: str | None, is_view: bool = True) -> Tensor:
        t = object.__new__(Tensor)
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

    def _handle(self, readonly: str) -> Tensor:
        """Another handle on the same data and history, read-only (keeping the name)."""
        t = self._derive(self._data, self._region, self._layout, self._path, readonly, self._is_view)
        t._name = self._name
        return t

    @property
    def _root(self) -> Tensor:
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
        if c is not None and c[0] is rn and c[1].consumed is None:
            return c[1]
        node = self._graph._new_node("view", (rn,), (root.shape,), register=False)
        node.path = self._path
        node.out = weakref.ref(self)
        node.shape = self.shape
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
    def graph(self) -> Graph:
        return self._graph

    @property
    def requires_grad(self) -> bool:
        return self._root._node is not None

    @property
    def is_leaf(self) -> bool:
        return not self.requires_grad or (self._root._kind == "param" and not self._path)

    @property
    def base(self) -> Tensor | None:
        """The tensor this view was cut from (the root of the chain), or None. A read-only view's
        base is read-only too: a frozen handle never leads back to a writable one."""
        if not self._is_view:
            return None
        base = self._base
        assert base is not None
        if self._readonly and not base._readonly:
            return base._handle(readonly=self._readonly)
        return base

    def numpy(self) -> np.ndarray:
        """A copy of the values, on the host."""
        return np.array(to_device(self._data, "cpu"), copy=True)

    def item(self) -> Any:
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

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(len(self)):
            yield self[i]

    def __bool__(self) -> bool:
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
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        with np.printoptions(precision=4, threshold=20, edgeitems=2):
            vals = np.array2string(self.numpy(), separator=", ", prefix="Tensor(")
        if self._root._kind == "param" and not self._path:
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
        holder = BlockHolder("a borrow() block", site, "end the `with t.borrow()` block before writing")
        b = self._storage.ledger.acquire(self._region, SHARED, holder, "borrowed for reading", site,
                                         access="borrow")
        arr = self._data.view()
        if hasattr(arr, "flags") and type(arr) is np.ndarray:
            arr.flags.writeable = False
        try:
            yield arr
        finally:
            b.ledger.release(b)

    @contextmanager
    def borrow_mut(self) -> Iterator[Array]:
        """A writable zero-copy array under an exclusive borrow; it stops being writable when the block ends.
        Writes through it are not recorded in the graph (like an optimizer's update)."""
        site = user_site()
        self._check_writable(site, "borrow_mut()")
        holder = BlockHolder("a borrow_mut() block", site, "end the `with t.borrow_mut()` block first")
        b = self._storage.ledger.acquire(self._region, EXCLUSIVE, holder, "borrowed for writing", site,
                                         access="borrow_mut")
        arr = self._data.view()
        try:
            yield arr
        finally:
            if type(arr) is np.ndarray:
                arr.flags.writeable = False
            b.ledger.release(b)

    def _check_writable(self, site: Site, what: str) -> None:
        if self._readonly:
            help_ = ("write into a copy instead (t.copy())" if self._readonly.startswith("an expanded view") else
                     "write through the tensor the graph gave you (g.param/g.constant or an op's result), "
                     "not through a frozen or gradient handle")
            raise BorrowError(
                f"cannot write {self._label()} ({what}) at {format_site(site)}: this handle is read-only: "
                f"{self._readonly}\n  help: {help_}")

    # --- operands ---
    def _operand(self, other: Any, op: str) -> Any:
        if isinstance(other, Tensor):
            return other
        if type(other) in (bool, int, float):  # np.float64 subclasses float: it goes below, to .item()
            return other
        if isinstance(other, np.generic):
            if other.dtype.kind not in "biuf":
                raise TypeError(f"{op}: unsupported operand of dtype {other.dtype}")
            return other.item()
        if isinstance(other, np.ndarray) or is_device_array(other):
            dev = device_of(other)
            if dev != self._storage.device:
                raise DeviceError(f"{op}: an array on {dev} cannot meet a tensor on {self._storage.device}; "
                                  "make it a tensor of the graph first (g.constant(a)) or move it")
            if other.dtype.kind not in "biuf":
                raise TypeError(f"{op}: unsupported operand of dtype {other.dtype}")
            return other
        if isinstance(other, (list, tuple)):
            try:
                arr = np.asarray(other)
            except ValueError as e:
                raise TypeError(f"{op}: cannot use this list as an operand ({e})") from None
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{op}: unsupported operand of dtype {arr.dtype}")
            # weak, like the Python numbers it holds: a float64 tensor times [0.1, 0.3] stays exactly
            # float64, a float32 one stays float32, an int tensor times [0.5] becomes float64 (as numpy)
            arr = arr.astype(np.result_type(self._data.dtype, _WEAK[arr.dtype.kind]))
            return arr if self._storage.device == "cpu" else to_device(arr, self._storage.device)
        raise TypeError(f"{op}: unsupported operand type {type(other).__name__}")

    def _binary(self, name: str, other: Any, reflected: bool = False) -> Tensor:
        o = other if type(other) is Tensor else self._operand(other, name)
        return self._graph._apply(name, (o, self) if reflected else (self, o))

    # --- arithmetic ---
    def __add__(self, o: Any) -> Tensor:
        return self._binary("add", o)

    def __radd__(self, o: Any) -> Tensor:
        return self._binary("add", o, True)

    def __sub__(self, o: Any) -> Tensor:
        return self._binary("sub", o)

    def __rsub__(self, o: Any) -> Tensor:
        return self._binary("sub", o, True)

    def __mul__(self, o: Any) -> Tensor:
        return self._binary("mul", o)

    def __rmul__(self, o: Any) -> Tensor:
        return self._binary("mul", o, True)

    def __truediv__(self, o: Any) -> Tensor:
        return self._binary("div", o)

    def __rtruediv__(self, o: Any) -> Tensor:
        return self._binary("rdiv", o, True)  # o is never a Tensor here: Tensor / Tensor is __truediv__

    def __pow__(self, o: Any) -> Tensor:
        return self._binary("pow", o)

    def __rpow__(self, o: Any) -> Tensor:
        return self._binary("pow", o, True)

    def __matmul__(self, o: Any) -> Tensor:
        return self._binary("matmul", o)

    def __rmatmul__(self, o: Any) -> Tensor:
        return self._binary("matmul", o, True)

    def __neg__(self) -> Tensor:
        return self._graph._apply("neg", (self,))

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return self.abs()

    # --- comparisons: constant boolean tensors ---
    def _compare(self, fn: Callable[[Any, Any], Any], other: Any, op: str) -> Tensor:
        o = self._operand(other, op)
        od = o._data if isinstance(o, Tensor) else o
        if isinstance(o, Tensor) and o._graph is not self._graph:
            raise GraphError(f"{op}: operands belong to different graphs")
        try:
            out = fn(self._data, od)
        except ValueError as e:
            raise ShapeError(f"{op}: operands of shapes {self.shape} and {tuple(getattr(od, 'shape', ()))} "
                             f"do not fit: {e}") from None
        return Tensor._root_of(self._graph, owned(out, self._graph.xp), "constant", None, None,
                               f"({op})")

    def __lt__(self, o: Any) -> Tensor:
        return self._compare(lambda a, b: a < b, o, "<")

    def __le__(self, o: Any) -> Tensor:
        return self._compare(lambda a, b: a <= b, o, "<=")

    def __gt__(self, o: Any) -> Tensor:
        return self._compare(lambda a, b: a > b, o, ">")

    def __ge__(self, o: Any) -> Tensor:
        return self._compare(lambda a, b: a >= b, o, ">=")

    def __eq__(self, o: Any) -> Tensor:  # type: ignore[override]
        return self._compare(lambda a, b: a == b, o, "==")

    def __ne__(self, o: Any) -> Tensor:  # type: ignore[override]
        return self._compare(lambda a, b: a != b, o, "!=")

    def __invert__(self) -> Tensor:
        if self.dtype.kind != "b":
            raise TypeError(f"~: only boolean tensors can be inverted, this one is {self.dtype}")
        return Tensor._root_of(self._graph, owned(~self._data, self._graph.xp), "constant", None, None, "(~)")

    def __and__(self, o: Any) -> Tensor:
        return self._compare(lambda a, b: a & b, o, "&")

    def __or__(self, o: Any) -> Tensor:
        return self._compare(lambda a, b: a | b, o, "|")

    def any(self) -> bool:
        return bool(self._data.any())

    def all(self) -> bool:
        return bool(self._data.all())

    def argmax(self, axis: int | None = None) -> Tensor:
        """Indices of the maxima (a constant int64 tensor)."""
        if axis is not None:
            self._check_axis("argmax", axis)
        out = self._graph.xp.asarray(self._data.argmax(axis=axis))
        return Tensor._root_of(self._graph, owned(out, self._graph.xp), "constant", None, None,
                               "(argmax)")

    # --- unary ---
    def exp(self) -> Tensor:
        return self._graph._apply("exp", (self,))

    def log(self) -> Tensor:
        return self._graph._apply("log", (self,))

    def sqrt(self) -> Tensor:
        return self._graph._apply("sqrt", (self,))

    def tanh(self) -> Tensor:
        return self._graph._apply("tanh", (self,))

    def sigmoid(self) -> Tensor:
        return self._graph._apply("sigmoid", (self,))

    def relu(self) -> Tensor:
        return self._graph._apply("relu", (self,))

    def abs(self) -> Tensor:
        return self._graph._apply("abs", (self,))

    def clip(self, lo: Any = None, hi: Any = None) -> Tensor:
        from .ops import clip

        return clip(self, lo, hi)

    def astype(self, dtype: Any) -> Tensor:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"astype: {dtype!r} is not a dtype") from None
        check_dtype(dt, "astype")
        if dt == self.dtype:
            return self
        return self._graph._apply("cast", (self,), {"dtype": dt})

    def to(self, device: str) -> Tensor:
        """This tensor on ``device`` (a recorded copy; the gradient flows back to this device)."""
        if device == self.device:
            return self
        module_for(device)  # DeviceError for an unknown device or a missing cupy/GPU
        return self._graph._apply("to", (self,), {"device": device}, {"src": self.device})

    def detach(self) -> Tensor:
        """A constant leaf on the same storage: its writes are checked against the same ledger."""
        t = self._derive(self._data, self._region, self._layout, (), self._readonly, is_view=False)
        t._rootref = None
        t._kind = "constant"
        return t

    # --- reductions ---
    def _reduce(self, name: str, axis: Any, keepdims: bool, **extra: Any) -> Tensor:
        if isinstance(axis, list):
            axis = tuple(axis)
        self._check_axis(name, axis)
        if self.ndim == 0:
            axis = None  # axis 0 / -1 of a 0-d tensor is the tensor itself (as torch)
        return self._graph._apply(name, (self,), {"axis": axis, "keepdims": keepdims, **extra})

    def _check_axis(self, name: str, axis: Any) -> None:
        axes = () if axis is None else axis if isinstance(axis, tuple) else (axis,)
        n = max(self.ndim, 1)
        for a in axes:
            if not isinstance(a, numbers.Integral) or isinstance(a, bool) or not -n <= int(a) < n:
                raise ShapeError(f"{name}: axis {a!r} is out of range for a tensor of shape {self.shape}")

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return self._reduce("sum", axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return self._reduce("mean", axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return self._reduce("max", axis, keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return self._reduce("min", axis, keepdims)

    def var(self, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
        if not isinstance(ddof, numbers.Integral) or isinstance(ddof, bool) or ddof < 0:
            raise TypeError(f"var: ddof must be a non-negative int, got {ddof!r}")
        return self._reduce("var", axis, keepdims, ddof=ddof)

    def logsumexp(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return self._reduce("logsumexp", axis, keepdims)

    def softmax(self, axis: int = -1) -> Tensor:
        self._check_axis("softmax", axis)
        return self._graph._apply("softmax", (self,), {"axis": axis if self.ndim else None})

    def log_softmax(self, axis: int = -1) -> Tensor:
        self._check_axis("log_softmax", axis)
        return self._graph._apply("log_softmax", (self,), {"axis": axis if self.ndim else None})

    # --- shape: views where numpy gives a view ---
    def _view(self, data: Array, region: Region, layout: Layout, step: Step) -> Tensor:
        return self._derive(data, region, layout, self._path + (step,), self._readonly)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        try:
            new = self._data.reshape(shape)
        except (ValueError, TypeError) as e:
            raise ShapeError(f"reshape: cannot reshape a tensor of shape {self.shape} into {shape}: {e}") from None
        new_shape = tuple(new.shape)
        if new_shape == self.shape:
            return self._view(new, self._region, self._layout, ("r", new_shape))
        if self._data.flags.c_contiguous:
            return self._view(new, self._region, None, ("r", new_shape))
        return self._graph._apply("reshape_copy", (self,), {"shape": new_shape}, {"src": self.shape})

    def flatten(self) -> Tensor:
        return self.reshape(-1)

    def transpose(self, *axes: Any) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(range(self.ndim))[::-1]
        try:
            perm = tuple(int(a) % self.ndim for a in axes) if self.ndim else ()
            if sorted(perm) != list(range(self.ndim)) or len(axes) != self.ndim:
                raise ValueError
        except (ValueError, TypeError, ZeroDivisionError):
            raise ShapeError(f"transpose: {axes} is not a permutation of the axes of shape {self.shape}") from None
        layout = None if self._layout is None else tuple(self._layout[p] for p in perm)
        return self._view(self._data.transpose(perm), self._region, layout, ("t", perm))

    def permute(self, *axes: Any) -> Tensor:
        return self.transpose(*axes)

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def squeeze(self, axis: Any = None) -> Tensor:
        if axis is None:
            axes = tuple(i for i, n in enumerate(self.shape) if n == 1)
        else:
            axes = axis if isinstance(axis, tuple) else (axis,)
            self._check_axis("squeeze", axes)
            axes = tuple(int(a) % max(self.ndim, 1) for a in axes)
            bad = [a for a in axes if a >= self.ndim or self.shape[a] != 1]
            if bad:
                raise ShapeError(f"squeeze: axis {bad[0]} of shape {self.shape} does not have size 1")
        layout = None if self._layout is None else tuple(b for i, b in enumerate(self._layout) if i not in axes)
        return self._view(self._data.squeeze(axes), self._region, layout, ("s", axes))

    def unsqueeze(self, axis: int) -> Tensor:
        if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
            raise TypeError(f"unsqueeze: axis must be an int, got {type(axis).__name__}")
        axis = int(axis)
        nd = self.ndim + 1
        if not -nd <= axis < nd:
            raise ShapeError(f"unsqueeze: axis {axis} is out of range for a tensor of shape {self.shape} (a result of {nd} dimensions)")
        a = axis % nd
        key = (slice(None),) * a + (None,)
        layout = None if self._layout is None else self._layout[:a] + (-1,) + self._layout[a:]
        return self._view(self._data[key], self._region, layout, ("u", key))

    def expand(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        lead = len(shape) - self.ndim
        full = tuple(self.shape[i - lead] if (n == -1 and i >= lead) else n for i, n in enumerate(shape))
        if lead < 0 or any(s != 1 and s != f for s, f in zip(self.shape, full[lead:])):
            raise ShapeError(f"expand: cannot expand a tensor of shape {self.shape} to {shape}")
        if full == self.shape:
            return self
        # a read-only view (as torch's expand and numpy's broadcast_to): it sees later writes to its
        # source, and writing into it would write one element many times, so it is refused
        data = self._graph.xp.broadcast_to(self._data, full) if type(self._data) is not np.ndarray \
            else np.broadcast_to(self._data, full)
        ro = self._readonly or "an expanded view (its elements share memory): .copy() it to write"
        return self._derive(data, self._region, None, self._path + (("e", full),), ro)

    # --- indexing ---
    def _index_arrays(self, key: Any) -> Any:
        """Tensors, lists and arrays inside a key become plain int/bool arrays (copies)."""
        items = key if isinstance(key, tuple) else (key,)
        out = []
        xp = self._graph.xp
        for k in items:
            if isinstance(k, Tensor):
                k = k._data.copy()
            elif isinstance(k, (list, np.ndarray)) or (hasattr(k, "dtype") and hasattr(k, "shape")):
                k = xp.asarray(k).copy()
                if k.dtype.kind == "f" and k.size == 0:
                    k = k.astype(np.int64)
            if hasattr(k, "dtype") and k.dtype.kind not in "biu":
                raise IndexError(f"tensor index: arrays used as indices must be integer or boolean, got {k.dtype}")
            out.append(k)
        return tuple(out) if isinstance(key, tuple) else out[0]

    def __getitem__(self, key: Any) -> Tensor:
        if is_basic_key(key):
            nk = normalize_key(key, self.shape)
            region, layout = sub_region(self._region, self._layout, nk, self.shape)
            nk += (Ellipsis,)  # so an all-int key gives a 0-d view, not a scalar copy
            return self._view(self._data[nk], region, layout, ("i", nk))
        return self._graph._apply("gather", (self,), {"key": self._index_arrays(key)})

    def __setitem__(self, key: Any, value: Any) -> None:
        self._inplace(key, "setitem", None, (value,))

    # --- in-place ---
    def __iadd__(self, o: Any) -> Tensor:
        self._inplace(_WHOLE, "+=", "add", (o,))
        return self

    def __isub__(self, o: Any) -> Tensor:
        self._inplace(_WHOLE, "-=", "sub", (o,))
        return self

    def __imul__(self, o: Any) -> Tensor:
        self._inplace(_WHOLE, "*=", "mul", (o,))
        return self

    def __itruediv__(self, o: Any) -> Tensor:
        self._inplace(_WHOLE, "/=", "div", (o,))
        return self

    def __ipow__(self, o: Any) -> Tensor:
        self._inplace(_WHOLE, "**=", "pow", (o,))
        return self

    def pow_(self, o: Any) -> Tensor:
        self._inplace(_WHOLE, "pow_", "pow", (o,))
        return self

    def add_(self, o: Any) -> Tensor:
        self._inplace(_WHOLE, "add_", "add", (o,))
        return self

    def sub_(self, o: Any) -> Tensor:
        self._inplace(_WHOLE, "sub_", "sub", (o,))
        return self

    def mul_(self, o: Any) -> Tensor:
        self._inplace(_WHOLE, "mul_", "mul", (o,))
        return self

    def div_(self, o: Any) -> Tensor:
        self._inplace(_WHOLE, "div_", "div", (o,))
        return self

    def zero_(self) -> Tensor:
        self._inplace(_WHOLE, "zero_", None, (0,))
        return self

    def fill_(self, value: Any) -> Tensor:
        if isinstance(value, Tensor) and value.size != 1:
            raise ShapeError(f"fill_: the value must be a scalar, got a tensor of shape {value.shape}")
        self._inplace(_WHOLE, "fill_", None, (value,))
        return self

    def copy_(self, src: Any) -> Tensor:
        self._inplace(_WHOLE, "copy_", None, (src,))
        return self

    def clamp_(self, lo: Any = None, hi: Any = None) -> Tensor:
        _check_bound("clamp_", lo, hi)
        if isinstance(lo, Tensor) or isinstance(hi, Tensor) or hasattr(lo, "shape") or hasattr(hi, "shape"):
            # bounds with a shape are operands (shape-checked, and differentiable as in og.clip)
            self._inplace(_WHOLE, "clamp_", "clip_t", (-float("inf") if lo is None else lo,
                                                     float("inf") if hi is None else hi))
            return self
        self._inplace(_WHOLE, "clamp_", "clip", (), {"lo": _scalar(lo), "hi": _scalar(hi)})
        return self

    def _inplace(self, key: Any, what: str, rule: str | None, operands: Sequence[Any],
                 attrs: dict[str, Any] | None = None) -> None:
        """Every write path. Checks (read-only, shapes, graph, borrows) all come before any change."""
        site = user_site()
        self._check_writable(site, what)
        g = self._graph
        root = self._root
        path = self._path
        region = self._region
        adv = None
        if key is _WHOLE:
            dest = self._data
        elif is_basic_key(key):
            nk = normalize_key(key, self.shape)
            region, _ = sub_region(self._region, self._layout, nk, self.shape)
            nk += (Ellipsis,)
            path = path + (("i", nk),)
            dest = self._data[nk]
            if (len(operands) == 1 and isinstance(operands[0], Tensor) and operands[0]._storage is self._storage
                    and operands[0]._path == path and rule is None):
                return  # ``t[k] op= v`` ends with ``t[k] = <the view just written>``: nothing left to do
        else:
            adv = self._index_arrays(key)
            try:
                dest = self._data[adv]
            except IndexError as e:
                raise IndexError(f"{what}: {e} (tensor shape {self.shape})") from None
        ops = [self._operand(o, what) for o in operands]
        for o in ops:
            if isinstance(o, Tensor):
                if o._graph is not g:
                    raise GraphError(f"{what}: the value belongs to another graph")
                if o._storage.device != self._storage.device:
                    raise DeviceError(f"{what}: the value is on {o._storage.device}, the destination on "
                                      f"{self._storage.device}; move it with .to(...)")
            shp = tuple(getattr(o._data if isinstance(o, Tensor) else o, "shape", ()))
            check_broadcast_into(what, tuple(dest.shape), shp)
        ledger = self._storage.ledger
        holder = BlockHolder(f"the in-place {what}", site, "wait for it to finish")
        b = ledger.acquire(region, EXCLUSIVE, holder, "writing", site, access=what if what != "setitem" else "write")
        try:
            if rule is not None and g._grad_enabled and root._kind != "param":
                self._refuse_saved_alias(rule, ops, region, what, site)
            self._write_locked(root, path, adv, dest, key, what, rule, ops, attrs, site)
        finally:
            ledger.release(b)

    def _refuse_saved_alias(self, rule: str, ops: list[Any], region: Region, what: str,
                            site: Site) -> None:
        """``y *= y``: the op would save (for backward) a value that this very write overwrites. PyTorch
        fails at backward there ("modified by an inplace operation"); owngrad refuses at the write."""
        mask = int(self._grad_node() is not None)
        for i, o in enumerate(ops, start=1):
            if isinstance(o, Tensor) and o._grad_node() is not None:
                mask |= 1 << i
        needs = RULES[rule].saves(mask)
        for i, o in enumerate(ops, start=2):
            if i in needs and isinstance(o, Tensor) and o._storage is self._storage and o._region.overlaps(region):
                dest = region.describe(self._storage.ledger.label, self._storage.ledger.shape)
                raise BorrowError(
                    f"cannot write {dest} (exclusive borrow for {what}) at {format_site(site)}\n"
                    f"  the value {o._label()} overlaps {dest}, and {rule} saves it for backward: "
                    "this write would change the value its gradient needs\n"
                    f"  help: compute out of place (y = y * v), or write a copy of the value (.copy())")

    def copy(self) -> Tensor:
        """A differentiable copy with its own storage (numpy's ``copy``, PyTorch's ``clone``)."""
        return self._graph._apply("copy", (self,))

    def _write_locked(self, root: Tensor, path: tuple[Step, ...], adv: Any, dest: Array, key: Any, what: str,
                      rule: str | None, ops: list[Any], attrs: dict[str, Any] | None,
                      site: Site) -> None:
        """The read-compute-write of an in-place op, run while its exclusive borrow is held (so two
        threads cannot interleave a read and a write), after every check has passed."""
        g = self._graph
        rhs_grad = g._grad_enabled and any(isinstance(o, Tensor) and o._grad_node() is not None for o in ops)
        if root._kind == "param" and rhs_grad:
            raise GraphError(
                f"{what} at {format_site(site)}: the value written into {self._label()} (a param, a leaf) depends "
                "on a param, and a param write is an untracked update, so that gradient history would be "
                "silently dropped\n  help: write under `with g.no_grad():` if dropping it is intended, or "
                "build a new tensor out of place")
        # a non-leaf's write is recorded; so is a write with history into a constant (a buffer filled
        # step by step: the constant becomes a non-leaf whose old values need no gradient, as in torch)
        recorded = g._grad_enabled and ((root._kind == "result" and root._node is not None) or
                                        (root._kind == "constant" and rhs_grad))
        if rule is not None:
            # as numpy and torch: `ints += 0.5` is refused, not silently truncated -- decided from the
            # dtypes before anything is computed or recorded
            try:
                bounds = [v for v in (attrs or {}).values() if v is not None]  # clamp_'s lo/hi
                nd = np.result_type(dest.dtype, *(o._data.dtype if isinstance(o, Tensor) else
                                                  getattr(o, "dtype", o) for o in [*ops, *bounds]))
                if rule == "div":  # true division: ints give floats
                    nd = np.result_type(nd, 1.0)
            except TypeError:
                nd = None
            if nd is not None and not np.can_cast(nd, dest.dtype, "same_kind"):
                raise TypeError(f"{what}: the result has dtype {nd}, which cannot be written into "
                                f"{self._label()} of dtype {dest.dtype} without truncating; "
                                "convert first (t.astype(...)) or build a new tensor")
        # sources that alias the destination's storage are read first (numpy's semantics for overlap)
        ops = [o._snapshot() if isinstance(o, Tensor) and o._storage is self._storage else o for o in ops]
        src_t: Tensor | None = None
        if recorded:
            if rule is None:
                src = ops[0]
                src_t = src if isinstance(src, Tensor) else None
                new = src._data if isinstance(src, Tensor) else src
            else:
                cur = self[adv] if adv is not None else (self if key is _WHOLE else self[key])
                old = cur._snapshot() if adv is None else cur
                src_t = g._apply(rule, (old, *ops), attrs or {})
                new = src_t._data
        else:
            if rule is None:
                new = ops[0]._data if isinstance(ops[0], Tensor) else ops[0]
            else:
                raw = [o._data if isinstance(o, Tensor) else o for o in ops]
                try:
                    new = RULES[rule].forward(xp_of(dest), dest, *raw, **(attrs or {}))
                except ValueError as e:
                    raise ShapeError(f"{what}: {e}") from None
                except TypeError as e:
                    raise TypeError(f"{what}: {e}") from None
        if adv is None:
            dest[...] = new
        else:
            self._data[adv] = new
        if recorded:
            src_node = src_t._grad_node() if src_t is not None else None
            in_shapes = (root.shape if root._node is not None else None,
                         src_t.shape if src_node is not None and src_t is not None else None)
            node = g._new_node("copy_slices", (root._node, src_node), in_shapes)
            node.path = path
            node.key = adv
            node.aux = _landed(self._data, adv) if adv is not None and src_node is not None else None
            node.out = weakref.ref(root)
            node.shape = root.shape
            root._node = node
            root._kind = "result"

    def _snapshot(self) -> Tensor:
        """A copy of the current values that keeps this tensor's graph history."""
        node = self._grad_node() if self._graph._grad_enabled else None
        return Tensor._root_of(self._graph, self._data.copy(), "result" if node is not None else "constant",
                               node, None, f"copy of {self._label()}")
