"""Traced values: what a step's raw array inputs (and the values it hands to Python) are while it is captured.

A captured step replays owngrad's recorded array calls only. Work done on an input outside them --
``np.eye(C)[y]``, ``(x - x.mean()) / x.std()``, ``y - 1``, ``x /= 4`` -- would be fixed at its
capture-time value. So while a step is captured each raw array input is a :class:`TracedArray`: it
knows its shape, dtype and size (a step may read those: they are part of the plan's signature) and
refuses everything else -- numpy functions and ufuncs, methods, operators, indexing, conversion to
Python -- with a :class:`CaptureRefused` naming the user's line, as JAX's tracers do. owngrad's own
entry points take traced arrays as they take arrays; the recorder (:func:`unwrap`) hands the real
array to the recorded call, so a plan replays the same call on each new input.

:class:`TracedNumber` is the same for a number a recorded call returns (``grads.clip_norm_``'s norm):
returned from the step it is the replayed value; used in Python inside the step it refuses.
"""

from __future__ import annotations

import threading
from typing import Any, NoReturn

from .errors import GraphError
from .sites import format_site, user_site

__all__ = ["CaptureRefused", "TracedArray", "TracedGenerator", "TracedNumber", "unwrap", "refusal", "ACTIVE",
           "refuse_foreign"]

_HELP = ("make the input a tensor (g.constant(x)) and use tensor ops, or prepare the array before the call and "
         "pass it in")


class CaptureRefused(GraphError):
    """A ``GraphError`` raised while a step is captured: something the plan cannot reproduce."""


ACTIVE = threading.local()  # ``.tracer``: the tracer of the capture running in this thread, if any


def refuse_foreign(what: str) -> None:
    """``what``, done on a graph that no capture records, while this thread captures a step of another
    graph: a replay of that step would not do it, so the capture refuses at the user's line."""
    tr = getattr(ACTIVE, "tracer", None)
    if tr is not None:
        tr.refuse(f"{what}, work on another graph (not part of the captured step, so a replay would not do it),",
                  None, "do it before or after the call, or build what the step uses on the step's own graph")


def refusal(what: str, where: str, help: str) -> CaptureRefused:
    """The error for ``what`` done at ``where`` (a formatted user site)."""
    return CaptureRefused(f"g.capture: {what} at {where} cannot be captured: a captured step replays "
                          f"owngrad's recorded array calls only, so its result would be fixed at capture\n"
                          f"  help: {help}, or pass fallback=True to run such steps eagerly")


class _Traced:
    __slots__ = ("value", "label")
    __array_priority__ = 1e9  # numpy defers binary operators to ours, which refuse

    def __init__(self, value: Any, label: str) -> None:
        self.value = value
        self.label = label

    def _refuse(self, what: str) -> NoReturn:
        raise refusal(f"{what} on {self.label}", format_site(user_site()), _HELP)

    def refuse_use(self, what: str) -> NoReturn:
        """Refuse ``what`` (a use owngrad itself cannot record), at the user's line."""
        self._refuse(what)

    def __array__(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("converting to a numpy array")

    def __array_ufunc__(self, ufunc: Any, method: str, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse(f"numpy's {getattr(ufunc, '__name__', ufunc)}")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> NoReturn:
        self._refuse(f"numpy's {getattr(func, '__name__', func)}")

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # protocols numpy or copy probe for: absent, not refused
        self._refuse(f".{name}")

    def __repr__(self) -> str:
        return f"<{self.label} (traced by g.capture)>"

    __hash__ = object.__hash__


def _refuser(name: str) -> Any:
    def method(self: _Traced, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse(f"the operator {name}")
    method.__name__ = name
    return method


_OPERATORS = ["add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv", "rfloordiv", "mod",
              "rmod", "pow", "rpow", "matmul", "rmatmul", "and", "rand", "or", "ror", "xor", "rxor", "lshift",
              "rlshift", "rshift", "rrshift", "iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow",
              "imatmul", "iand", "ior", "ixor", "ilshift", "irshift", "neg", "pos", "abs", "invert", "lt", "le", "eq",
              "ne", "gt", "ge", "bool", "int", "float", "complex", "index", "iter", "contains", "getitem", "setitem",
              "delitem", "round", "trunc", "floor", "ceil", "divmod", "rdivmod", "copy", "deepcopy", "reduce",
              "reduce_ex", "format"]
for _name in _OPERATORS:
    setattr(_Traced, f"__{_name}__", _refuser(f"__{_name}__"))


class TracedArray(_Traced):
    """A raw array input of a step being captured: shape, dtype, ndim, size and len; nothing else. It
    answers ``isinstance(x, np.ndarray)`` as the array it stands for, so the step takes the branches it
    takes eagerly (and then refuses the numpy work there, rather than skipping it)."""

    __slots__ = ()

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # noqa: D105
        return type(self.value)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    @property
    def ndim(self) -> int:
        return int(self.value.ndim)

    @property
    def size(self) -> int:
        return int(self.value.size)

    def __len__(self) -> int:
        return len(self.value)


class TracedNumber(_Traced):
    """A number computed from the step's values (``grads.clip_norm_``'s norm) while the step is captured."""

    __slots__ = ()

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # noqa: D105
        return type(self.value)

    def _refuse(self, what: str) -> NoReturn:
        raise refusal(f"using {self.label} in Python ({what})", format_site(user_site()),
                      "return it from the step and use it after the call")


class TracedGenerator(_Traced):
    """``g.rng`` while a step of ``g`` is captured: owngrad's recorded draws (``g.randn``, dropout masks) use
    the generator at each replay; a draw made directly in the step would be fixed at capture, so it refuses.
    Other threads (eager work on the same graph meanwhile) use the generator as it is."""

    __slots__ = ("thread",)

    def __init__(self, value: Any, label: str) -> None:
        super().__init__(value, label)
        self.thread = threading.get_ident()

    def __getattr__(self, name: str) -> Any:
        if threading.get_ident() != self.thread:
            return getattr(self.value, name)
        return super().__getattr__(name)

    def _refuse(self, what: str) -> NoReturn:
        raise refusal(f"drawing from {self.label} directly ({what})", format_site(user_site()),
                      "use g.randn / g.rand / F.dropout, or draw before the call and pass the values in")


_TRACED = (TracedArray, TracedNumber, TracedGenerator)


def unwrap(v: Any) -> Any:
    """The real value of a traced one; sequences (a key tuple, a list of operands) item by item."""
    t = type(v)
    if t is TracedArray or t is TracedNumber or t is TracedGenerator:
        return v.value
    if (t is tuple or t is list) and any(type(x) in _TRACED or type(x) in (tuple, list) for x in v):
        return t(unwrap(x) for x in v)
    return v
