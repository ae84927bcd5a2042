"""A second array backend on the CPU that is *not* numpy's ndarray: the test double for cupy.

``DArray`` wraps an ``np.ndarray`` and offers the part of cupy's ``ndarray`` that owngrad uses
(operators, indexing, shape attributes, reductions, ``get()``); ``dnp`` is the module-like
namespace (cupy's role) whose functions take and return ``DArray``. Registered as device
``"fake"``, so ``og.Graph(device="fake")`` runs every op on it.

It is stricter than cupy on purpose: any place where owngrad hands device data to numpy
fails loudly --

- ``np.asarray(d)`` / ``np.array(d)`` (``__array__``): TypeError, like cupy;
- ``np.exp(d)``, ``np.sum(d)``, ``np.concatenate([d, ...])`` (``__array_ufunc__``,
  ``__array_function__``): TypeError, where cupy would quietly dispatch to itself -- so a
  hard-coded ``np.`` call is caught even though it would happen to work on cupy;
- mixing a ``DArray`` with an ``np.ndarray`` in an operator or a ``dnp`` function: TypeError,
  like cupy's "Unsupported type <class 'numpy.ndarray'>"; the one exception, as in cupy, is
  the full-slice host->device copy ``d[...] = host`` / ``d[:] = host``;
- ``flags`` has ``c_contiguous``/``f_contiguous``/``owndata`` but no ``writeable`` (cupy's has none).

numpy scalars (``np.float64(2.0) * d``) and Python scalars mix freely, as on cupy. The only
transfers are ``d.get()`` (device->host, cupy's spelling) and ``dnp.asarray(host)``
(host->device). Integer indexing returns a 0-d *view* (cupy's behaviour), never a numpy scalar.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

import owngrad.backend as _backend

__all__ = ["DArray", "dnp", "DEVICE", "HostRoundTrip", "register", "TRANSFERS"]

DEVICE = "fake"

#: explicit transfers so far: ``get()`` calls (device->host) and ``dnp.asarray``/``dnp.array`` of
#: host data (numpy arrays, lists). Tests reset and read it to prove there are no hidden ones.
TRANSFERS = {"to_host": 0, "to_device": 0}

_MSG = "host round-trip / hard-coded numpy call on device data"


class HostRoundTrip(TypeError):
    """Raised when numpy is handed a device array (or a device array meets a numpy array)."""


def _unwrap(x: Any, what: str) -> Any:
    """A DArray's ndarray; scalars pass; numpy arrays are refused (no silent host->device mixing)."""
    if type(x) is DArray:
        return x._a
    if isinstance(x, np.ndarray):
        raise HostRoundTrip(f"{_MSG}: {what} got a numpy.ndarray (shape {x.shape}) next to device data; "
                            "transfer it explicitly with dnp.asarray(...)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, what) for v in x)
    return x


def _unwrap_key(key: Any) -> Any:
    """Index keys: DArrays become their ndarrays; lists and numpy index arrays pass (cupy takes them)."""
    if type(key) is DArray:
        return key._a
    if isinstance(key, tuple):
        return tuple(k._a if type(k) is DArray else k for k in key)
    return key


def _wrap(r: Any) -> Any:
    if isinstance(r, np.ndarray):
        return DArray(r)
    if isinstance(r, np.generic):  # cupy never hands out numpy scalars: 0-d arrays instead
        return DArray(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


class _Flags:
    """cupy's ``flags``: contiguity and ownership, and no ``writeable``."""

    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, a: np.ndarray) -> None:
        self.c_contiguous = bool(a.flags.c_contiguous)
        self.f_contiguous = bool(a.flags.f_contiguous)
        self.owndata = bool(a.flags.owndata)

    def __getitem__(self, name: str) -> bool:
        return bool(getattr(self, name.lower()))

    def __repr__(self) -> str:
        return f"  C_CONTIGUOUS : {self.c_contiguous}\n  F_CONTIGUOUS : {self.f_contiguous}\n  OWNDATA : {self.owndata}"


def _operand(x: Any, what: str) -> Any:
    """An operator's other operand: DArrays and scalars; numpy arrays and sequences are refused (cupy too)."""
    if isinstance(x, (list, tuple)):
        raise HostRoundTrip(f"{_MSG}: {what} got a {type(x).__name__} next to device data "
                            "(cupy refuses sequences: transfer with dnp.asarray(...))")
    return _unwrap(x, what)


def _binop(fn: Callable[[Any, Any], Any], name: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def fwd(self: DArray, other: Any) -> Any:
        return _wrap(fn(self._a, _operand(other, name)))

    def rev(self: DArray, other: Any) -> Any:
        return _wrap(fn(_operand(other, name), self._a))

    return fwd, rev


def _iop(fn: Callable[[Any, Any], Any], name: str) -> Callable[..., Any]:
    def inplace(self: DArray, other: Any) -> DArray:
        fn(self._a, _operand(other, name))
        return self

    return inplace


# ufuncs numpy may route through __array_ufunc__ when a *numpy scalar* meets a DArray
# (``np.float64(2) * d``); cupy supports these, so they are forwarded. Anything else raises.
_SCALAR_UFUNCS = {
    "add", "subtract", "multiply", "true_divide", "divide", "floor_divide", "power", "remainder",
    "matmul", "less", "less_equal", "greater", "greater_equal", "equal", "not_equal",
    "bitwise_and", "bitwise_or", "bitwise_xor", "logical_and", "logical_or",
}


class DArray:
    """A device array of the fake backend: a wrapped ndarray with cupy's ndarray surface."""

    __slots__ = ("_a",)
    __hash__ = None  # type: ignore[assignment]  # elementwise __eq__, as cupy

    def __init__(self, a: np.ndarray) -> None:
        if type(a) is not np.ndarray:
            raise TypeError(f"DArray wraps a numpy.ndarray, got {type(a).__name__}")
        self._a = a

    # --- the loud failures ---
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise HostRoundTrip(f"{_MSG}: numpy tried to convert a {self.shape} DArray on device "
                            f"{DEVICE!r} (use .get() for an explicit transfer)")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise HostRoundTrip(f"{_MSG}: numpy.{getattr(func, '__name__', func)} was called on a DArray; "
                            "use the array's module (owngrad.backend.xp_of(a)) instead")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        others = [x for x in inputs if type(x) is not DArray]
        if (method == "__call__" and not kwargs and ufunc.__name__ in _SCALAR_UFUNCS
                and all(isinstance(x, (np.generic, int, float, bool)) for x in others)):
            return _wrap(ufunc(*[x._a if type(x) is DArray else x for x in inputs]))
        raise HostRoundTrip(f"{_MSG}: numpy.{ufunc.__name__}{'' if method == '__call__' else '.' + method} "
                            "was called on a DArray; use the array's module (owngrad.backend.xp_of(a)) instead")

    # --- explicit transfer (cupy's spelling) ---
    def get(self) -> np.ndarray:
        """A host copy (device->host)."""
        TRANSFERS["to_host"] += 1
        return np.array(self._a, copy=True)

    # --- attributes ---
    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._a.dtype

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def size(self) -> int:
        return self._a.size

    @property
    def nbytes(self) -> int:
        return self._a.nbytes

    @property
    def itemsize(self) -> int:
        return self._a.itemsize

    @property
    def strides(self) -> tuple[int, ...]:
        return self._a.strides

    @property
    def flags(self) -> _Flags:
        return _Flags(self._a)

    @property
    def base(self) -> DArray | None:
        b = self._a.base
        return DArray(b) if type(b) is np.ndarray else None

    @property
    def T(self) -> DArray:
        return DArray(self._a.T)

    @property
    def device(self) -> str:
        return DEVICE

    def __repr__(self) -> str:
        return f"DArray({np.array2string(self._a, separator=', ')}, dtype={self._a.dtype})"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        for i in range(len(self)):
            yield self[i]

    # scalar conversions: a device sync on cupy, allowed there
    def __bool__(self) -> bool:
        return bool(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __index__(self) -> int:
        return operator.index(self._a)

    def item(self) -> Any:
        return self._a.item()

    def tolist(self) -> Any:
        return self._a.tolist()

    # --- operators ---
    __add__, __radd__ = _binop(operator.add, "+")
    __sub__, __rsub__ = _binop(operator.sub, "-")
    __mul__, __rmul__ = _binop(operator.mul, "*")
    __truediv__, __rtruediv__ = _binop(operator.truediv, "/")
    __floordiv__, __rfloordiv__ = _binop(operator.floordiv, "//")
    __mod__, __rmod__ = _binop(operator.mod, "%")
    __pow__, __rpow__ = _binop(operator.pow, "**")
    __matmul__, __rmatmul__ = _binop(operator.matmul, "@")
    __and__, __rand__ = _binop(operator.and_, "&")
    __or__, __ror__ = _binop(operator.or_, "|")
    __xor__, __rxor__ = _binop(operator.xor, "^")
    __lt__, _ = _binop(operator.lt, "<")
    __le__, _ = _binop(operator.le, "<=")
    __gt__, _ = _binop(operator.gt, ">")
    __ge__, _ = _binop(operator.ge, ">=")
    __eq__, _ = _binop(operator.eq, "==")  # type: ignore[assignment]
    __ne__, _ = _binop(operator.ne, "!=")  # type: ignore[assignment]
    del _

    __iadd__ = _iop(operator.iadd, "+=")
    __isub__ = _iop(operator.isub, "-=")
    __imul__ = _iop(operator.imul, "*=")
    __itruediv__ = _iop(operator.itruediv, "/=")
    __ipow__ = _iop(operator.ipow, "**=")
    __iand__ = _iop(operator.iand, "&=")
    __ior__ = _iop(operator.ior, "|=")

    def __neg__(self) -> DArray:
        return _wrap(-self._a)  # type: ignore[no-any-return]

    def __pos__(self) -> DArray:
        return _wrap(+self._a)  # type: ignore[no-any-return]

    def __abs__(self) -> DArray:
        return _wrap(abs(self._a))  # type: ignore[no-any-return]

    def __invert__(self) -> DArray:
        return _wrap(~self._a)  # type: ignore[no-any-return]

    # --- indexing ---
    def __getitem__(self, key: Any) -> DArray:
        k = _unwrap_key(key)
        r = self._a[k]
        if not isinstance(r, np.ndarray):  # all-int key: cupy gives a 0-d view, numpy a scalar copy
            kt = k if isinstance(k, tuple) else (k,)
            r = self._a[kt + (Ellipsis,)] if Ellipsis not in kt else r
            if not isinstance(r, np.ndarray):  # a 0-d index array: advanced indexing, a copy anyway
                r = np.asarray(r)
        return DArray(r)

    def __setitem__(self, key: Any, value: Any) -> None:
        full = key is Ellipsis or key == slice(None) if not isinstance(key, (tuple, DArray, np.ndarray)) \
            else False
        if isinstance(value, np.ndarray) and full:  # cupy's one host->device setitem (cupy#2079)
            self._a[...] = value
            return
        self._a[_unwrap_key(key)] = _unwrap(value, "__setitem__")

    # --- methods ---
    def reshape(self, *shape: Any, order: str = "C") -> DArray:
        return DArray(self._a.reshape(*shape, order=order))

    def ravel(self) -> DArray:
        return DArray(self._a.ravel())

    def flatten(self) -> DArray:
        return DArray(self._a.flatten())

    def transpose(self, *axes: Any) -> DArray:
        return DArray(self._a.transpose(*axes))

    def swapaxes(self, a: int, b: int) -> DArray:
        return DArray(self._a.swapaxes(a, b))

    def squeeze(self, axis: Any = None) -> DArray:
        return DArray(self._a.squeeze(axis=axis))

    def copy(self, order: str = "C") -> DArray:
        return DArray(self._a.copy(order=order))

    def view(self, dtype: Any = None) -> DArray:
        return DArray(self._a.view() if dtype is None else self._a.view(dtype))

    def astype(self, dtype: Any, copy: bool = True, order: str = "K") -> DArray:
        return DArray(self._a.astype(dtype, copy=copy, order=order))

    def fill(self, value: Any) -> None:
        self._a.fill(_unwrap(value, "fill"))

    def _red(name: str) -> Callable[..., Any]:  # type: ignore[misc]  # noqa: N805
        def red(self: DArray, *args: Any, **kwargs: Any) -> Any:
            kw = {k: _unwrap(v, name) for k, v in kwargs.items()}
            return _wrap(getattr(self._a, name)(*args, **kw))

        red.__name__ = name
        return red

    sum = _red("sum")
    mean = _red("mean")
    max = _red("max")
    min = _red("min")
    var = _red("var")
    std = _red("std")
    prod = _red("prod")
    all = _red("all")
    any = _red("any")
    argmax = _red("argmax")
    argmin = _red("argmin")
    cumsum = _red("cumsum")
    clip = _red("clip")
    nonzero = _red("nonzero")
    del _red

    def take(self, indices: Any, axis: Any = None) -> DArray:
        return DArray(np.take(self._a, _unwrap_key(indices), axis=axis))

    def dot(self, other: Any) -> DArray:
        return _wrap(self._a.dot(_unwrap(other, "dot")))


# --- the module (cupy's role) -------------------------------------------------------------

class _Ufunc:
    """A ufunc of the fake module: callable on DArrays/scalars, with ``.at`` for scatter-add."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.__name__ = f.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        a = [_unwrap(x, f"dnp.{self.__name__}") for x in args]
        if any(isinstance(x, (list, tuple)) for x in a):  # cupy ufuncs refuse sequences (cupy#594)
            raise HostRoundTrip(f"dnp.{self.__name__}: unsupported argument type list/tuple")
        kw = {k: _unwrap(v, f"dnp.{self.__name__}") for k, v in kwargs.items()}
        if "out" in kw:
            out = kwargs["out"]
            kw["out"] = out._a if type(out) is DArray else out
            self._f(*a, **kw)
            return out
        return _wrap(self._f(*a, **kw))

    def at(self, a: DArray, indices: Any, b: Any = None) -> None:
        if type(a) is not DArray:
            raise HostRoundTrip(f"{_MSG}: dnp.{self.__name__}.at needs a DArray target, got {type(a).__name__}")
        args = (a._a, _unwrap_key(indices)) + (() if b is None else (_unwrap(b, f"dnp.{self.__name__}.at"),))
        self._f.at(*args)

    def reduce(self, a: DArray, *args: Any, **kwargs: Any) -> Any:
        return _wrap(self._f.reduce(_unwrap(a, f"dnp.{self.__name__}.reduce"), *args, **kwargs))


def _function(f: Any) -> Callable[..., Any]:
    def fn(*args: Any, **kwargs: Any) -> Any:
        a = [_unwrap(x, f"dnp.{f.__name__}") for x in args]
        kw = {k: _unwrap(v, f"dnp.{f.__name__}") for k, v in kwargs.items()}
        return _wrap(f(*a, **kw))

    fn.__name__ = f.__name__
    fn.__doc__ = f"dnp.{f.__name__}: numpy.{f.__name__} on DArrays (never on numpy arrays)"
    return fn


def _as_device(a: Any, dtype: Any = None, copy: Any = None, order: str = "K") -> DArray:
    """Host->device: numpy arrays, scalars and nested lists become DArrays (the explicit transfer)."""
    if type(a) is DArray:
        src = a._a
    else:
        src = a
        if isinstance(a, (np.ndarray, list, tuple)):
            TRANSFERS["to_device"] += 1
    if copy:
        return DArray(np.array(src, dtype=dtype, copy=True, order=order))
    return DArray(np.asarray(src, dtype=dtype, order=order))


def _array(a: Any, dtype: Any = None, copy: bool = True, order: str = "K", ndmin: int = 0) -> DArray:
    src = a._a if type(a) is DArray else a
    if isinstance(a, (np.ndarray, list, tuple)):
        TRANSFERS["to_device"] += 1
    return DArray(np.array(src, dtype=dtype, copy=copy, order=order, ndmin=ndmin))


def _creator(f: Any) -> Callable[..., DArray]:
    def fn(*args: Any, **kwargs: Any) -> DArray:
        return DArray(np.asarray(f(*args, **kwargs)))

    fn.__name__ = f.__name__
    return fn


def _like(f: Any) -> Callable[..., DArray]:
    def fn(a: Any, *args: Any, **kwargs: Any) -> DArray:
        return DArray(f(_unwrap(a, f"dnp.{f.__name__}"), *args, **kwargs))

    fn.__name__ = f.__name__
    return fn


class _FakeModule:
    """``dnp``: the numpy API subset owngrad calls, on DArrays. Unknown names raise AttributeError,
    so a function cupy lacks, or that the double does not know yet, shows up as a failure."""

    __name__ = "dnp"

    ndarray = DArray
    newaxis = None
    inf = np.inf
    nan = np.nan
    pi = np.pi
    e = np.e

    def __init__(self) -> None:
        for name in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                     "float16", "float32", "float64", "complex64", "complex128", "dtype", "finfo", "iinfo",
                     "result_type", "promote_types", "can_cast", "issubdtype", "floating", "integer",
                     "number", "signedinteger", "unsignedinteger", "bool", "intp"):
            setattr(self, name, getattr(np, name))
        for name in ("exp", "log", "log1p", "expm1", "sqrt", "tanh", "sin", "cos", "abs", "absolute",
                     "sign", "negative", "square", "reciprocal", "floor", "ceil", "rint", "isfinite",
                     "isnan", "isinf", "logical_not", "logical_and", "logical_or", "maximum", "minimum",
                     "fmax", "fmin", "add", "subtract", "multiply", "divide", "true_divide", "power",
                     "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "invert",
                     "exp2", "log2", "log10", "arctan", "arctanh", "sinh", "cosh", "tan", "matmul"):
            setattr(self, name, _Ufunc(getattr(np, name)))
        for name in ("sum", "mean", "max", "min", "amax", "amin", "var", "std", "prod", "all", "any",
                     "argmax", "argmin", "where", "clip", "expand_dims", "broadcast_to", "concatenate",
                     "stack", "take", "take_along_axis", "put_along_axis", "reshape", "transpose",
                     "swapaxes", "moveaxis", "squeeze", "ascontiguousarray", "einsum", "dot", "tensordot",
                     "outer", "cumsum", "nonzero", "count_nonzero", "allclose", "isclose", "array_equal",
                     "tile", "repeat", "pad", "flip", "diagonal", "trace", "tril", "triu", "atleast_1d",
                     "atleast_2d", "broadcast_arrays", "split", "array_split", "argsort", "sort",
                     "unique", "bincount", "logaddexp", "copyto", "shape", "ndim", "size", "ravel"):
            if hasattr(np, name):
                setattr(self, name, _function(getattr(np, name)))
        for name in ("zeros_like", "ones_like", "empty_like", "full_like"):
            setattr(self, name, _like(getattr(np, name)))
        for name in ("zeros", "ones", "empty", "full", "arange", "eye", "identity", "linspace"):
            setattr(self, name, _creator(getattr(np, name)))
        self.asarray = _as_device
        self.array = _array
        self.asanyarray = _as_device
        self.random = _Random()
        self.lib = _Lib()

    def __repr__(self) -> str:
        return "<module 'dnp' (owngrad's fake device backend, tests/backend_double.py)>"

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the fake device module dnp has no attribute {name!r} "
                             "(add it to tests/backend_double.py if cupy has it too)")


class _StrideTricks:
    @staticmethod
    def as_strided(x: DArray, shape: Any = None, strides: Any = None) -> DArray:
        return DArray(np.lib.stride_tricks.as_strided(_unwrap(x, "as_strided"), shape=shape, strides=strides))

    @staticmethod
    def sliding_window_view(x: DArray, window_shape: Any, axis: Any = None) -> DArray:
        return DArray(np.lib.stride_tricks.sliding_window_view(_unwrap(x, "sliding_window_view"), window_shape,
                                                               axis=axis))


class _Lib:
    """``dnp.lib``: ``stride_tricks`` (cupy.lib.stride_tricks has as_strided and sliding_window_view)."""

    stride_tricks = _StrideTricks()


class _Random:
    """``dnp.random``: a device RNG (cupy.random's role)."""

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)

    def default_rng(self, seed: Any = None) -> _Generator:
        return _Generator(np.random.default_rng(seed))

    def random(self, size: Any = None, dtype: Any = np.float64) -> DArray:
        return DArray(np.asarray(self._rng.random(size, dtype=dtype)))


class _Generator:
    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def random(self, size: Any = None, dtype: Any = np.float64) -> DArray:
        return DArray(np.asarray(self._rng.random(size, dtype=dtype)))

    def standard_normal(self, size: Any = None, dtype: Any = np.float64) -> DArray:
        return DArray(np.asarray(self._rng.standard_normal(size, dtype=dtype)))

    def integers(self, low: Any, high: Any = None, size: Any = None) -> DArray:
        return DArray(np.asarray(self._rng.integers(low, high, size)))

    def permutation(self, n: Any) -> DArray:
        return DArray(np.asarray(self._rng.permutation(n)))


dnp = _FakeModule()


def register() -> None:
    """Make ``"fake"`` a device of owngrad (idempotent)."""
    _backend.register_backend(DArray, dnp, DEVICE)


register()
