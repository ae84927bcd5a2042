"""Guards: what a captured step read from outside its inputs, and whether it is still the same.

A plan is valid only while everything the step read outside its inputs is unchanged, as under
``torch.compile``. :func:`collect` walks what the step function can reach -- its closure cells,
the globals its code names (and those of the user functions it names), defaults, a bound method's
object, the attributes of objects (modules and their hyper-parameters and train/eval mode,
optimizers, user objects), dict entries and list items -- and keeps one :class:`Guard` per place:
numbers, strings and numpy scalars by value, small arrays by their bytes, everything else (params,
buffers, optimizers, generators, modules, functions) by identity. A replay first checks every guard
(:func:`first_changed`); a changed one means a new plan is captured.

The same walk finds the step's Python side effects, which a replay would not repeat: a guarded
place whose value changed while the step was captured (a counter, a list appended to, a scheduler
stepped, a numpy generator drawn from outside a recorded call) refuses the capture.

Objects say how they want to be walked with two class attributes: ``_capture_live`` (attributes a
replay reads at run time, such as an optimizer's hyper-parameters: watched for side effects, not
guarded) and ``_capture_skip`` (attributes the plan replays itself, such as an optimizer's state).
"""

from __future__ import annotations

import contextlib
import functools
import io
import operator
import os
import random
import sysconfig
import types
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

__all__ = ["Guard", "Place", "Reach", "collect", "compile_checks", "first_changed", "same"]

_PLAIN = (bool, int, float, complex, str, bytes, type(None), np.generic)
_MAX_GUARDS = 4000
_MAX_DEPTH = 10
_ARRAY_BYTES = 1 << 18  # arrays up to this size are guarded by value, larger ones by identity
_PKG = os.path.dirname(os.path.abspath(__file__)) + os.sep
_LIBRARY_MODULES = ("numpy", "owngrad", "builtins", "functools", "typing", "collections", "abc", "torch",
                    "cupy", "scipy", "pytest", "_pytest", "threading", "contextlib")


class Place(Enum):
    """How a guard reads its value from its container."""

    ATTR = 1
    ITEM = 2
    CELL = 3
    ARRAY = 4  # the bytes of an array
    KEYS = 5  # the keys of a dict or an object's attributes (side effects only)
    ITEMS = 6  # the items of a list, by identity
    MEMBERS = 7  # the members of a set of plain values
    STATE = 8  # the state of a Python random.Random or the items of a deque (side effects only)


@dataclass(slots=True)
class Guard:
    """One place the step read: ``place`` of ``container`` at ``key``; ``value`` when captured."""

    place: Place
    container: Any
    key: Any
    value: Any
    label: str
    live: bool  # read by the replay itself: watched for side effects, never guarded

    def read(self) -> Any:
        place, c = self.place, self.container
        if place is Place.ATTR:
            return getattr(c, self.key, _MISSING)
        if place is Place.ITEM:
            return c.get(self.key, _MISSING) if type(c) is dict else c[self.key]
        if place is Place.CELL:
            try:
                return c.cell_contents
            except ValueError:
                return _MISSING
        if place is Place.ARRAY:
            return c.tobytes()
        if place is Place.KEYS:
            return tuple(vars(c)) if not isinstance(c, dict) else tuple(c)
        if place is Place.MEMBERS:
            return frozenset(c)
        if place is Place.STATE:
            return _state_of(c)
        return tuple(c)

    def holds(self) -> bool:
        try:
            return same(self.value, self.read(), self.place)
        except Exception:  # noqa: BLE001 - a place that cannot be read any more has changed, as far as we know
            return False

    def restore(self) -> None:
        """Put the captured value back (a refused capture changes nothing it can undo)."""
        with contextlib.suppress(Exception):  # a place that refuses the old value keeps the new one
            self._restore()

    def _restore(self) -> None:
        place, c = self.place, self.container
        if place is Place.ATTR and self.value is not _MISSING:
            if isinstance(c, (type, types.ModuleType)):
                setattr(c, self.key, self.value)
            else:  # as it was stored: around a class's own __setattr__ (a Module registers params there)
                object.__setattr__(c, self.key, self.value)
        elif place is Place.ITEM:
            if self.value is not _MISSING:
                c[self.key] = self.value
            elif self.key in c:
                del c[self.key]
        elif place is Place.CELL and self.value is not _MISSING:
            c.cell_contents = self.value
        elif place is Place.ITEMS:
            c[:] = list(self.value)
        elif place is Place.STATE:
            _set_state(c, self.value)
        elif place is Place.MEMBERS and type(c) is set:
            c.clear()
            c.update(self.value)
        elif place is Place.KEYS:
            d = c if isinstance(c, dict) else vars(c)
            for k in [k for k in d if k not in self.value]:
                del d[k]


_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<unset>"})()


def same(a: Any, b: Any, place: Place = Place.ATTR) -> bool:
    """Whether a guarded value still holds: plain values by type and value (NaN equals NaN), sequences of
    identities item by item, anything else by identity."""
    if a is b:
        return True
    if place in (Place.ITEMS, Place.KEYS, Place.STATE):
        return len(a) == len(b) and all(x is y or (type(x) in _PLAIN and same(x, y)) for x, y in zip(a, b))
    if place in (Place.ARRAY, Place.MEMBERS):
        return bool(a == b)
    ta = type(a)
    if ta is not type(b) or not isinstance(a, _PLAIN):
        return False
    if a == b:
        return True
    return bool(a != a and b != b)  # NaN


def first_changed(guards: list[Guard]) -> Guard | None:
    """The first guard (not live) whose value changed, or None."""
    for gd in guards:
        if not gd.live and not gd.holds():
            return gd
    return None


def compile_checks(guards: list[Guard]) -> Callable[[], int]:
    """The guards (not live) as one generated function: ``check()`` is the index in ``guards`` of the
    first that no longer holds, or -1 -- a read and an identity test per guard on the hot path."""
    space: dict[str, Any] = {"_same": same, "_M": _MISSING, "ITEMS": Place.ITEMS, "ARRAY": Place.ARRAY,
                             "MEMBERS": Place.MEMBERS, "_is": operator.is_}
    lines = ["def check():"]
    for i, gd in enumerate(guards):
        if gd.live:
            continue
        space[f"c{i}"], space[f"v{i}"] = gd.container, gd.value
        read = {Place.ATTR: f"getattr(c{i}, {gd.key!r}, _M)", Place.CELL: f"c{i}.cell_contents",
                Place.ITEM: f"c{i}.get({gd.key!r}, _M)" if type(gd.container) is dict else f"c{i}[{gd.key!r}]",
                Place.ARRAY: f"c{i}.tobytes()", Place.ITEMS: f"tuple(c{i})",
                Place.MEMBERS: f"frozenset(c{i})"}.get(gd.place)
        if read is None or (gd.place is Place.ITEM and not _literal(gd.key)):
            space[f"g{i}"] = gd
            lines.append(f"    if not g{i}.holds(): return {i}")
            continue
        if gd.place is Place.ITEMS:  # a list: its items by identity first (at C speed), then by value
            lines.append(f"    x = c{i}")
            lines.append(f"    if (len(x) != {len(gd.value)} or not all(map(_is, x, v{i}))) and "
                         f"not _same(v{i}, tuple(x), ITEMS): return {i}")
            continue
        kind = {Place.ITEMS: "ITEMS", Place.ARRAY: "ARRAY", Place.MEMBERS: "MEMBERS"}.get(gd.place)
        test = f"not _same(v{i}, x, {kind})" if kind else f"x is not v{i} and not _same(v{i}, x)"
        lines.append(f"    x = {read}")
        lines.append(f"    if {test}: return {i}")
    lines.append("    return -1")
    exec(compile("\n".join(lines) + "\n", "<owngrad guards>", "exec"), space)  # noqa: S102 - generated above
    check: Callable[[], int] = space["check"]
    return check


def _literal(key: Any) -> bool:
    """A dict key that its repr writes back exactly."""
    return type(key) in (str, int, bool, type(None)) or (type(key) is tuple and all(_literal(k) for k in key))


def _is_library(obj: Any) -> bool:
    mod = getattr(obj, "__module__", None) or ""
    return mod.split(".")[0] in _LIBRARY_MODULES


_LIBRARY_DIRS = tuple(os.path.abspath(p) + os.sep for key in ("stdlib", "platstdlib", "purelib", "platlib")
                      if (p := sysconfig.get_paths().get(key)))


def _is_user_module(mod: types.ModuleType) -> bool:
    """A module of the user's own code (not owngrad, numpy, the standard library or an installed package)."""
    if mod.__name__.split(".")[0] in _LIBRARY_MODULES:
        return False
    path = getattr(mod, "__file__", None)
    if not path:  # a module made in code (types.ModuleType, a config namespace) is the user's; built-ins are not
        spec = getattr(mod, "__spec__", None)
        return spec is None or getattr(spec, "origin", None) not in ("built-in", "frozen")
    return not os.path.abspath(str(path)).startswith(_LIBRARY_DIRS)


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _code_names(c)


class _Walker:
    """Collects the guards of everything reachable from a step function."""

    def __init__(self, stop: Callable[[Any], bool]) -> None:
        self.guards: list[Guard] = []
        self.seen: set[int] = set()
        self.keep: list[Any] = []  # what was seen stays alive while walking: ids are not reused
        self.generators: list[tuple[str, np.random.Generator]] = []
        self.iterators: list[tuple[str, Any]] = []  # generators and library iterators (their state is hidden)
        self.stop = stop
        self.names: set[str] = set()  # every name the user code walked mentions (attributes it may read)

    def add(self, place: Place, container: Any, key: Any, value: Any, label: str, live: bool, depth: int) -> None:
        if len(self.guards) >= _MAX_GUARDS:
            return
        if isinstance(value, np.ndarray) and value.nbytes <= _ARRAY_BYTES and value.dtype != object:
            self.guards.append(Guard(place, container, key, value, label, live))
            self.guards.append(Guard(Place.ARRAY, value, None, value.tobytes(), f"the values of {label}", live))
            return
        self.guards.append(Guard(place, container, key, value, label, live))
        self.visit(value, label, live, depth + 1)

    def visit(self, obj: Any, label: str, live: bool, depth: int) -> None:
        if isinstance(obj, _PLAIN) or depth > _MAX_DEPTH or id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        self.keep.append(obj)
        n = len(self.guards)
        try:
            self._visit(obj, label, live, depth)
        except Exception:  # noqa: BLE001 - an object that resists the walk (a raising property, a proxy)
            del self.guards[n:]  # is guarded by identity only, by its container's guard

    def _visit(self, obj: Any, label: str, live: bool, depth: int) -> None:
        if callable(obj) and not isinstance(obj, type):  # a decorated function: what the decorator wraps
            wrapped = _own_attr(obj, "__wrapped__")
            if wrapped is not _MISSING:
                self.visit(wrapped, label, live, depth + 1)
        if isinstance(obj, np.random.Generator):
            self.generators.append((label, obj))
            return
        if isinstance(obj, (random.Random, deque)):  # consumed inside the step: a side effect, undone on refusal
            self.guards.append(Guard(Place.STATE, obj, None, _state_of(obj), f"the state of {label}", True))
            return
        if _opaque_iterator(obj):
            self.iterators.append((label, obj))
            return
        if isinstance(obj, type):
            if not _is_library(obj) and obj.__module__ != "builtins":
                self.klass(obj, label, live, depth)
            return
        if self.stop(obj) or isinstance(obj, (types.ModuleType, np.ndarray, types.BuiltinFunctionType)):
            return
        if type(obj) in (set, frozenset):
            if all(isinstance(x, _PLAIN) for x in obj):
                self.guards.append(Guard(Place.MEMBERS, obj, None, frozenset(obj), f"the members of {label}", live))
            return
        if isinstance(obj, types.FunctionType):
            self.function(obj, label, live, depth)
        elif isinstance(obj, types.MethodType):
            self.visit(obj.__self__, label.rsplit(".", 1)[0], live, depth)
            self.visit(obj.__func__, label, live, depth)
        elif isinstance(obj, functools.partial):  # what it binds, and what its function reads
            self.visit(obj.func, label, live, depth)
            self.visit(obj.args, f"{label}'s bound arguments", live, depth + 1)
            self.visit(obj.keywords, f"{label}'s bound keywords", live, depth + 1)
        elif type(obj) is dict:
            self.guards.append(Guard(Place.KEYS, obj, None, tuple(obj), f"the keys of {label}", True))
            for k, v in list(obj.items())[:256]:
                self.add(Place.ITEM, obj, k, v, f"{label}[{k!r}]", live, depth)
        elif type(obj) is list:
            self.guards.append(Guard(Place.ITEMS, obj, None, tuple(obj), f"the items of {label}", live))
            for i, v in enumerate(obj[:256]):
                self.visit(v, f"{label}[{i}]", live, depth + 1)
        elif isinstance(obj, tuple):  # named tuples too
            for i, v in enumerate(obj):
                self.visit(v, f"{label}[{i}]", live, depth + 1)
        elif _has_dict(obj) and not _is_library(type(obj)) or _walkable_owngrad(obj):
            self.instance(obj, label, live, depth)
        elif not _is_library(type(obj)):  # a user object with __slots__ only (a slotted dataclass)
            for name in _slot_names(type(obj)):
                value = _own_attr(obj, name)
                if value is not _MISSING:
                    self.add(Place.ATTR, obj, name, value, f"{label}.{name}", live, depth)
            self.visit(type(obj), label, live, depth + 1)

    def function(self, fn: types.FunctionType, label: str, live: bool, depth: int) -> None:
        if _is_library(fn):
            return
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            self.add(Place.CELL, cell, None, value, f"the closure variable {name!r}", live, depth)
        glob = fn.__globals__
        names = list(dict.fromkeys(_code_names(fn.__code__)))
        self.names.update(names)
        for name in names:
            if name in glob:
                value = glob[name]
                self.add(Place.ITEM, glob, name, value, f"the global {name!r}", live, depth)
                if isinstance(value, types.ModuleType) and _is_user_module(value):
                    self.module_attrs(value, names, name, live, depth)
        # the defaults by identity (rebinding ``fn.__defaults__`` changes them) and what they hold
        self.add(Place.ATTR, fn, "__defaults__", fn.__defaults__, f"the defaults of {fn.__name__}", live, depth)
        self.add(Place.ATTR, fn, "__kwdefaults__", fn.__kwdefaults__, f"the keyword defaults of {fn.__name__}",
                 live, depth)

    def module_attrs(self, mod: types.ModuleType, names: list[str], label: str, live: bool, depth: int) -> None:
        """A user module the code names (``cfg.lr``): the attributes the code could read from it."""
        attrs = vars(mod)
        for name in names:
            if name in attrs and not name.startswith("__"):
                self.add(Place.ATTR, mod, name, attrs[name], f"{label}.{name}", live, depth)

    def klass(self, cls: type, label: str, live: bool, depth: int) -> None:
        """A user class: its plain class attributes (a config namespace) and what its methods read."""
        for k, v in list(vars(cls).items()):
            if k.startswith("__"):
                continue
            if isinstance(v, (staticmethod, classmethod)):
                self.visit(v.__func__, f"{cls.__name__}.{k}", live, depth + 1)
            elif isinstance(v, property):
                self.visit(v.fget, f"{cls.__name__}.{k}", live, depth + 1)
            elif isinstance(v, types.FunctionType):
                self.visit(v, f"{cls.__name__}.{k}", live, depth + 1)
            elif isinstance(v, _PLAIN) or type(v) in (dict, list, tuple, set, frozenset):
                self.add(Place.ATTR, cls, k, v, f"{cls.__name__}.{k}", live, depth)

    def instance(self, obj: Any, label: str, live: bool, depth: int) -> None:
        cls = type(obj)
        if not _is_library(cls):  # a user class: what its methods read (globals, class attributes)
            self.visit(cls, label, live, depth + 1)
        attrs = vars(obj)
        skip = getattr(cls, "_capture_skip", ())
        watch = getattr(cls, "_capture_live", ())
        self.guards.append(Guard(Place.KEYS, obj, None, tuple(attrs), f"the attributes of {label}", True))
        for k, v in list(attrs.items()):
            if k in skip:
                continue
            self.add(Place.ATTR, obj, k, v, f"{label}.{k}", live or k in watch, depth)
        call = cls.__dict__.get("__call__")  # a callable object: what its __call__ reads
        if isinstance(call, types.FunctionType):
            self.visit(call, f"{label}.__call__", live, depth + 1)


def _opaque_iterator(obj: Any) -> bool:
    """A generator, or an iterator of a library (``iter(list)``, ``itertools.count()``): its position is not
    an attribute the walk can guard, so a replay could not tell that the step advanced it."""
    return isinstance(obj, types.GeneratorType) or (
        isinstance(obj, Iterator) and not _has_dict(obj) and not isinstance(obj, io.IOBase))


def _state_of(obj: Any) -> tuple[Any, ...]:
    """A ``random.Random``'s state (flat) or a deque's items."""
    if isinstance(obj, random.Random):
        version, internal, gauss = obj.getstate()
        return (version, *internal, gauss)
    return tuple(obj)


def _set_state(obj: Any, state: tuple[Any, ...]) -> None:
    if isinstance(obj, random.Random):
        obj.setstate((state[0], tuple(state[1:-1]), state[-1]))
    else:
        obj.clear()
        obj.extend(state)


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else [s for s in slots if s not in ("__dict__", "__weakref__")]
    return names


def _walkable_owngrad(obj: Any) -> bool:
    return _has_dict(obj) and bool(getattr(type(obj), "_capture_walk", False))


def _own_attr(obj: Any, name: str) -> Any:
    """``obj.name`` without its class's ``__getattr__`` fallback (which may raise anything); _MISSING if unset."""
    try:
        return object.__getattribute__(obj, name)
    except AttributeError:
        return _MISSING


def _has_dict(obj: Any) -> bool:
    return isinstance(_own_attr(obj, "__dict__"), dict)


@dataclass(slots=True)
class Reach:
    """What a step function can reach: the guards, the numpy generators, the iterators whose position is
    hidden, and the ids of every object seen (``keep`` holds them, so the ids stay theirs while a capture
    runs)."""

    guards: list[Guard]
    generators: list[tuple[str, np.random.Generator]]
    iterators: list[tuple[str, Any]]
    seen: set[int]
    keep: list[Any]


def collect(fn: Any, stop: Callable[[Any], bool]) -> Reach:
    """The guards of what ``fn`` can reach (``stop(obj)``: an object guarded by identity only, such as a
    tensor or a graph)."""
    w = _Walker(stop)
    label = getattr(fn, "__qualname__", "the step function")
    w.visit(fn, label, False, 0)
    if _has_dict(fn) and _is_library(type(fn)) and not isinstance(fn, (types.FunctionType, types.MethodType)):
        with contextlib.suppress(Exception):  # a library's callable wrapping the step: what it holds
            w.instance(fn, label, False, 1)
    # a plain user object's attributes are guarded when user code names them (a trainer's counter that
    # the step never reads does not invalidate the plan); owngrad's objects are read by owngrad: all of them
    guards = [gd for gd in w.guards if gd.place is not Place.ATTR or gd.key in w.names or
              not _plain_user_object(gd.container)]
    return Reach(guards, w.generators, w.iterators, w.seen, w.keep)


def _plain_user_object(obj: Any) -> bool:
    return not isinstance(obj, (type, types.ModuleType)) and not getattr(type(obj), "_capture_walk", False) \
        and not _is_library(type(obj))
