"""What a tensor computes: arithmetic, comparisons, unary functions and reductions.

Every differentiable method is one call into the graph (``self._graph.apply(rule, operands)``),
which runs the rule's forward and records a node when an input needs a gradient; comparisons,
``argmax`` and ``~`` return constant tensors.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import module_for, owned
from .errors import ShapeError
from .handle import TensorHandle
from .operands import check_bound, check_dtype, operand, same_graph, scalar
from .roles import Role

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["MathOps"]


class MathOps(TensorHandle):
    """Arithmetic, comparisons, unary functions and reductions (a mixin of :class:`~owngrad.tensor.Tensor`)."""

    __slots__ = ()

    # --- arithmetic: each a direct graph.apply call (no intermediate frame on the hot path) ---
    def __add__(self, o: Any) -> Self:
        return self._graph.apply("add", (self, o if isinstance(o, TensorHandle) else operand(self, o, "add")))

    def __radd__(self, o: Any) -> Self:
        return self._graph.apply("add", (o if isinstance(o, TensorHandle) else operand(self, o, "add"), self))

    def __sub__(self, o: Any) -> Self:
        return self._graph.apply("sub", (self, o if isinstance(o, TensorHandle) else operand(self, o, "sub")))

    def __rsub__(self, o: Any) -> Self:
        return self._graph.apply("sub", (o if isinstance(o, TensorHandle) else operand(self, o, "sub"), self))

    def __mul__(self, o: Any) -> Self:
        return self._graph.apply("mul", (self, o if isinstance(o, TensorHandle) else operand(self, o, "mul")))

    def __rmul__(self, o: Any) -> Self:
        return self._graph.apply("mul", (o if isinstance(o, TensorHandle) else operand(self, o, "mul"), self))

    def __truediv__(self, o: Any) -> Self:
        return self._graph.apply("div", (self, o if isinstance(o, TensorHandle) else operand(self, o, "div")))

    def __rtruediv__(self, o: Any) -> Self:  # o is never a Tensor here: Self / Tensor is __truediv__
        return self._graph.apply("rdiv", (o if isinstance(o, TensorHandle) else operand(self, o, "rdiv"), self))

    def __pow__(self, o: Any) -> Self:
        return self._graph.apply("pow", (self, o if isinstance(o, TensorHandle) else operand(self, o, "pow")))

    def __rpow__(self, o: Any) -> Self:
        return self._graph.apply("pow", (o if isinstance(o, TensorHandle) else operand(self, o, "pow"), self))

    def __matmul__(self, o: Any) -> Self:
        return self._graph.apply("matmul", (self, o if isinstance(o, TensorHandle) else operand(self, o, "matmul")))

    def __rmatmul__(self, o: Any) -> Self:
        return self._graph.apply("matmul", (o if isinstance(o, TensorHandle) else operand(self, o, "matmul"), self))

    def __neg__(self) -> Self:
        return self._graph.apply("neg", (self,))

    def __pos__(self) -> Self:
        return self

    def __abs__(self) -> Self:
        return self.abs()

    # --- comparisons: constant boolean tensors ---
    def _compare(self, fn: Callable[[Any, Any], Any], other: Any, op: str) -> Self:
        o = operand(self, other, op)
        od = o._data if isinstance(o, TensorHandle) else o
        if isinstance(o, TensorHandle):
            same_graph(op, self._graph, o)
        try:
            return self._constant(fn, (self._data, od), f"({op})")
        except ValueError as e:
            raise ShapeError(f"{op}: operands of shapes {self.shape} and {tuple(getattr(od, 'shape', ()))} "
                             f"do not fit: {e}") from None

    def _constant(self, fn: Callable[..., Any], args: tuple[Any, ...], label: str) -> Self:
        """A constant computed from arrays without a gradient (comparisons, argmax, sign): ``fn(*args)``,
        recorded when a step is being captured (its value changes with the step's data)."""
        g, tr = self._graph, self._graph._tracer
        out = owned(fn(*args), g.xp) if tr is None else tr.call(owned, tr.call(fn, *args), g.xp)
        return self._root_of(g, out, Role.CONSTANT, None, None, label)

    def __lt__(self, o: Any) -> Self:
        return self._compare(lambda a, b: a < b, o, "<")

    def __le__(self, o: Any) -> Self:
        return self._compare(lambda a, b: a <= b, o, "<=")

    def __gt__(self, o: Any) -> Self:
        return self._compare(lambda a, b: a > b, o, ">")

    def __ge__(self, o: Any) -> Self:
        return self._compare(lambda a, b: a >= b, o, ">=")

    def __eq__(self, o: Any) -> Self:  # type: ignore[override]
        return self._compare(lambda a, b: a == b, o, "==")

    def __ne__(self, o: Any) -> Self:  # type: ignore[override]
        return self._compare(lambda a, b: a != b, o, "!=")

    __hash__ = TensorHandle.__hash__  # defining __eq__ would otherwise make tensors unhashable

    def __invert__(self) -> Self:
        if self.dtype.kind != "b":
            raise TypeError(f"~: only boolean tensors can be inverted, this one is {self.dtype}")
        return self._constant(operator.invert, (self._data,), "(~)")

    def __and__(self, o: Any) -> Self:
        return self._compare(lambda a, b: a & b, o, "&")

    def __or__(self, o: Any) -> Self:
        return self._compare(lambda a, b: a | b, o, "|")

    def any(self) -> bool:
        self._to_python("t.any()")
        return bool(self._data.any())

    def all(self) -> bool:
        self._to_python("t.all()")
        return bool(self._data.all())

    def argmax(self, axis: int | None = None) -> Self:
        """Indices of the maxima (a constant int64 tensor)."""
        if axis is not None:
            self._check_axis("argmax", axis)
        return self._constant(_arg_extreme, (self._graph.xp, self._data, "argmax", axis), "(argmax)")

    # --- unary ---
    def exp(self) -> Self:
        return self._graph.apply("exp", (self,))

    def log(self) -> Self:
        return self._graph.apply("log", (self,))

    def sqrt(self) -> Self:
        return self._graph.apply("sqrt", (self,))

    def tanh(self) -> Self:
        return self._graph.apply("tanh", (self,))

    def sigmoid(self) -> Self:
        return self._graph.apply("sigmoid", (self,))

    def relu(self) -> Self:
        return self._graph.apply("relu", (self,))

    def abs(self) -> Self:
        return self._graph.apply("abs", (self,))

    def clip(self, lo: Any = None, hi: Any = None) -> Self:
        """Clamp to ``[lo, hi]``; the gradient passes where ``lo <= x <= hi`` (as torch.clamp). Tensor
        bounds get the gradient where they are the result (as torch.clamp with tensor min/max)."""
        check_bound("og.clip", lo, hi)
        if isinstance(lo, TensorHandle) or isinstance(hi, TensorHandle):
            lo_ = operand(self, -float("inf") if lo is None else lo, "og.clip")
            hi_ = operand(self, float("inf") if hi is None else hi, "og.clip")
            return self._graph.apply("clip_t", (self, lo_, hi_))
        return self._graph.apply("clip", (self,), {"lo": scalar(lo), "hi": scalar(hi)})

    def astype(self, dtype: Any) -> Self:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"astype: {dtype!r} is not a dtype") from None
        check_dtype(dt, "astype")
        if dt == self.dtype:
            return self
        return self._graph.apply("cast", (self,), {"dtype": dt})

    def to(self, device: str) -> Self:
        """This tensor on ``device`` (a recorded copy; the gradient flows back to this device)."""
        if device == self.device:
            return self
        module_for(device)  # DeviceError for an unknown device or a missing cupy/GPU
        return self._graph.apply("to", (self,), {"device": device}, {"src": self.device})

    # --- reductions ---
    def _reduce(self, name: str, axis: Any, keepdims: bool, **extra: Any) -> Self:
        if isinstance(axis, list):
            axis = tuple(axis)
        self._check_axis(name, axis)
        if self.ndim == 0:
            axis = None  # axis 0 / -1 of a 0-d tensor is the tensor itself (as torch)
        return self._graph.apply(name, (self,), {"axis": axis, "keepdims": keepdims, **extra})

    def sum(self, axis: Any = None, keepdims: bool = False) -> Self:
        return self._reduce("sum", axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Self:
        return self._reduce("mean", axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Self:
        return self._reduce("max", axis, keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Self:
        return self._reduce("min", axis, keepdims)

    def var(self, axis: Any = None, keepdims: bool = False, ddof: int = 0, *, unbiased: bool | None = None,
            correction: int | None = None) -> Self:
        """Variance with numpy's ``ddof`` (0 by default); torch's spellings ``unbiased=True`` (ddof 1) and
        ``correction=`` are accepted too."""
        ddof = _ddof("var", ddof, unbiased, correction)
        if not isinstance(ddof, numbers.Integral) or isinstance(ddof, bool) or ddof < 0:
            raise TypeError(f"var: ddof must be a non-negative int, got {ddof!r}")
        return self._reduce("var", axis, keepdims, ddof=ddof)

    def logsumexp(self, axis: Any = None, keepdims: bool = False) -> Self:
        return self._reduce("logsumexp", axis, keepdims)

    def softmax(self, axis: int = -1) -> Self:
        self._check_axis("softmax", axis)
        return self._graph.apply("softmax", (self,), {"axis": axis if self.ndim else None})

    def log_softmax(self, axis: int = -1) -> Self:
        self._check_axis("log_softmax", axis)
        return self._graph.apply("log_softmax", (self,), {"axis": axis if self.ndim else None})

    # --- more unary functions ---
    def sin(self) -> Self:
        return self._graph.apply("sin", (self,))

    def cos(self) -> Self:
        return self._graph.apply("cos", (self,))

    def log1p(self) -> Self:
        """``log(1 + x)``, accurate near 0."""
        return self._graph.apply("log1p", (self,))

    def expm1(self) -> Self:
        """``exp(x) - 1``, accurate near 0."""
        return self._graph.apply("expm1", (self,))

    def square(self) -> Self:
        return self._graph.apply("square", (self,))

    def sign(self) -> Self:
        """-1, 0 or 1 per element: a constant (no gradient), as comparisons."""
        return self._constant(self._graph.xp.sign, (self._data,), "(sign)")

    def argmin(self, axis: int | None = None) -> Self:
        """Indices of the minima (a constant int64 tensor)."""
        if axis is not None:
            self._check_axis("argmin", axis)
        return self._constant(_arg_extreme, (self._graph.xp, self._data, "argmin", axis), "(argmin)")

    def std(self, axis: Any = None, keepdims: bool = False, ddof: int = 0, *, unbiased: bool | None = None,
            correction: int | None = None) -> Self:
        """Standard deviation (numpy's ``ddof``, or torch's ``unbiased``/``correction``): ``sqrt(var)``."""
        return self.var(axis, keepdims, _ddof("std", ddof, unbiased, correction)).sqrt()

    def norm(self, axis: Any = None, keepdims: bool = False) -> Self:
        """The 2-norm over ``axis`` (all elements for None); its gradient at 0 is 0, as torch's."""
        return self._reduce("norm", axis, keepdims)

    def cumsum(self, axis: int | None = None) -> Self:
        """Running sum along ``axis`` (numpy: None sums the flattened tensor)."""
        if axis is not None:
            self._check_axis("cumsum", axis)
            if not isinstance(axis, numbers.Integral):
                raise ShapeError(f"cumsum: axis must be an int or None, got {axis!r}")
            axis = int(axis) % max(self.ndim, 1) if self.ndim else None
        return self._graph.apply("cumsum", (self,), {"axis": axis})

    def flip(self, axis: Any = None) -> Self:
        """Reverse the order along ``axis`` (every axis for None), as numpy's ``flip`` (a copy)."""
        if isinstance(axis, list):
            axis = tuple(axis)
        self._check_axis("flip", axis)
        return self._graph.apply("flip", (self,), {"axis": axis})

    def _triangle(self, name: str, k: int) -> Self:
        if self.ndim < 2:
            raise ShapeError(f"{name}: needs a tensor of at least 2 dimensions, got shape {self.shape}")
        if not isinstance(k, numbers.Integral) or isinstance(k, bool):
            raise TypeError(f"{name}: k must be an int, got {k!r}")
        return self._graph.apply(name, (self,), {"k": int(k)})

    def tril(self, k: int = 0) -> Self:
        """The lower triangle (on and below diagonal ``k``) of the last two axes; zeros above."""
        return self._triangle("tril", k)

    def triu(self, k: int = 0) -> Self:
        """The upper triangle (on and above diagonal ``k``) of the last two axes; zeros below."""
        return self._triangle("triu", k)

    def masked_fill(self, mask: Any, value: Any) -> Self:
        """``value`` where ``mask`` (a boolean tensor or array broadcasting to this shape) is True."""
        m = _mask_operand(self, mask, "masked_fill")
        return self._graph.apply("masked_fill", (self, m), {"value": _fill_value(value, "masked_fill")})


def _mask_operand(t: TensorHandle, mask: Any, op: str) -> Any:
    if isinstance(mask, (list, tuple)):  # a mask given as a list stays boolean (not a weak numeric operand)
        mask = np.asarray(mask)
    m = operand(t, mask, op)
    if getattr(m, "dtype", None) is None or m.dtype.kind != "b":
        raise TypeError(f"{op}: the mask must be a boolean tensor or array (e.g. x > 0), got "
                        f"{getattr(m, 'dtype', type(m).__name__)}")
    if isinstance(m, TensorHandle) and m.requires_grad:
        raise TypeError(f"{op}: the mask cannot need a gradient")
    shp = tuple(getattr(m, "shape", ()))
    try:
        if np.broadcast_shapes(shp, t.shape) != t.shape:
            raise ValueError
    except ValueError:
        raise ShapeError(f"{op}: a mask of shape {shp} does not broadcast to the tensor's shape {t.shape}") from None
    return m


def _fill_value(value: Any, op: str) -> Any:
    if isinstance(value, TensorHandle):
        if value.size != 1:
            raise ShapeError(f"{op}: the value must be a scalar, got a tensor of shape {value.shape}")
        return value.item()
    if not isinstance(value, (numbers.Real, np.generic)):
        raise TypeError(f"{op}: the value must be a number, got {type(value).__name__}")
    return value.item() if isinstance(value, np.generic) else value


def _arg_extreme(xp: Any, a: Any, which: str, axis: int | None) -> Any:
    """``argmax``/``argmin`` of ``a`` as an array (numpy gives a scalar for ``axis=None``)."""
    return xp.asarray(a.argmax(axis=axis) if which == "argmax" else a.argmin(axis=axis))


def _ddof(op: str, ddof: Any, unbiased: Any, correction: Any) -> Any:
    """numpy's ``ddof`` from whichever of ``ddof``, ``unbiased`` (torch: True is ddof 1) and ``correction``
    (torch's name for ddof) was given; two of them at once are refused."""
    given = [k for k, v in (("ddof", ddof if ddof != 0 else None), ("unbiased", unbiased),
                            ("correction", correction)) if v is not None]
    if len(given) > 1:
        raise TypeError(f"{op}: give one of ddof, unbiased or correction, got {', '.join(given)}")
    if unbiased is not None:
        if not isinstance(unbiased, bool):
            raise TypeError(f"{op}: unbiased must be True or False, got {unbiased!r}")
        return 1 if unbiased else 0
    return correction if correction is not None else ddof
