"""The abstract domain of the flow check: objects, storage locations, values and the per-point state.

An abstract object (:class:`Obj`) stands for every run-time object made at one allocation site (one
expression, or one parameter of the function analysed), so the set of objects of a function is finite.
Its facts (the storage it lives in, what its node saved, its history, whether it requires grad) only
grow while the fixed point is computed. A :class:`State` maps names to values (sets of objects) and
every result to its backward state; states form a finite lattice whose join is :func:`join`.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class Kind(enum.Enum):
    """What an abstract object is."""

    PARAM = "param"  # g.param(...): a leaf that gets a gradient
    CONST = "constant"  # g.constant(...), g.zeros(...): a leaf without gradient
    MODULE = "module"  # a module built here (its params are leaves that get gradients)
    OPTIMIZER = "optimizer"  # updates the storage of the objects it was built over
    RESULT = "result"  # the output of a recorded op (pending until a backward or free consumes it)
    VIEW = "view"  # a view or an attribute of another object: its storage, its history
    DETACHED = "detached"  # t.detach(): t's storage without its history
    GRADS = "grads"  # what g.backward returns: the gradients of its losses
    GRAPH = "graph"  # an og.Graph
    OPAQUE = "opaque"  # a parameter of the function analysed, a global, an object of a user class


#: kinds whose objects are the roots of storage: a write through them or their views is a write to them
ROOT_KINDS = frozenset({Kind.PARAM, Kind.CONST, Kind.MODULE, Kind.RESULT, Kind.OPAQUE, Kind.OPTIMIZER})


@dataclass(frozen=True)
class Bound:
    """An index bound: ``sym + off`` (``sym`` a variable's name, or None for a constant)."""

    sym: str | None
    off: int


@dataclass(frozen=True)
class Interval:
    """``[lo, hi)`` along one axis; ``hi`` None runs to the end."""

    lo: Bound
    hi: Bound | None

    def disjoint(self, other: Interval) -> bool:
        return _before(self.hi, other.lo) or _before(other.hi, self.lo)


def _before(hi: Bound | None, lo: Bound) -> bool:
    """Provably ``hi <= lo``: constants, or the same variable (``w[:k]`` then ``w[k:]``)."""
    return hi is not None and hi.sym == lo.sym and hi.off <= lo.off


#: a region of a tensor: one interval per leading axis (None: the whole axis), or None for all of it
Region = tuple[Interval | None, ...]


def regions_overlap(a: Region | None, b: Region | None) -> bool:
    if a is None or b is None:
        return True
    return not any(x is not None and y is not None and x.disjoint(y) for x, y in zip(a, b))


@dataclass(frozen=True)
class Loc:
    """A storage location: a root object, a path of attributes into it (``("head", "weight")``), a region."""

    root: Obj
    path: tuple[str, ...] = ()
    region: Region | None = None

    def overlaps(self, other: Loc) -> bool:
        if self.root is not other.root:
            return False
        n = min(len(self.path), len(other.path))
        if self.path[:n] != other.path[:n]:
            return False
        return len(self.path) != len(other.path) or regions_overlap(self.region, other.region)

    def describe(self) -> str:
        return ".".join((self.root.name or self.root.kind.value, *self.path))


_ORDER = itertools.count()


@dataclass(eq=False)
class Obj:
    """One allocation site's objects. Identity is the site; the facts below only grow."""

    key: tuple[Any, ...]
    kind: Kind
    line: int
    name: str = ""
    #: the storage it lives in (its own root, or its base's for a view)
    locs: frozenset[Loc] = frozenset()
    #: for a result: the storage its node saved for backward (what a write must not overlap)
    saves: frozenset[Loc] = frozenset()
    #: history: the objects it was computed from (a result, view or Grads); an optimizer's params
    inputs: frozenset[Obj] = frozenset()
    #: requires grad: has gradient history from a param, or is (holds) a param
    rg: bool = False
    #: the declared class (a module, an optimizer, a user class), for attributes and methods
    cls: Any = None
    #: a module's sub-modules in call order (``Sequential(a, b)``), when they are known
    children: tuple[Obj, ...] = ()
    #: for a parameter of the function analysed: its index (a call site maps it to the argument)
    arg: int | None = None
    #: how a message names an unnamed result: the expression that made it (``model(...).sum()``)
    label: str = ""
    #: a view whose leading axis is not its base's (a transpose, a reshape): indexing it is not a row range
    scrambled: bool = False
    #: for an object of a user class made here: what its ``__init__`` was given, by parameter index
    init_args: dict[int, Val] | None = None
    order: int = field(default_factory=lambda: next(_ORDER))

    __hash__ = object.__hash__  # identity: an analysis makes one object per site

    def __repr__(self) -> str:
        return f"Obj({self.kind.value} {self.name or '?'}@{self.line})"

    def grow(self, locs: Iterable[Loc] = (), saves: Iterable[Loc] = (), inputs: Iterable[Obj] = (),
             rg: bool = False) -> bool:
        """Adds facts; True if anything changed (the fixed point must then run again)."""
        new_locs, new_saves, new_inputs = self.locs.union(locs), self.saves.union(saves), self.inputs.union(inputs)
        changed = (len(new_locs), len(new_saves), len(new_inputs), rg and not self.rg) != \
            (len(self.locs), len(self.saves), len(self.inputs), False)
        self.locs, self.saves, self.inputs, self.rg = new_locs, new_saves, new_inputs, self.rg or rg
        return changed

    def own(self, path: tuple[str, ...] = ()) -> Loc:
        return Loc(self, path)


@dataclass(frozen=True)
class Val:
    """What an expression evaluates to: the objects it may be; per position for a tuple; for a container
    (list, dict, an iterator) the value of its elements."""

    objs: frozenset[Obj] = frozenset()
    items: tuple[Val, ...] | None = None
    elem: Val | None = None

    @property
    def container(self) -> bool:
        return self.elem is not None

    def element(self) -> Val:
        """What iterating over it binds."""
        if self.elem is not None:
            return self.elem
        return Val(self.objs) if self.objs else NONE

    @property
    def rg(self) -> bool:
        return any(o.rg for o in self.all_objs())

    def all_objs(self) -> frozenset[Obj]:
        out = set(self.objs)
        for part in (*(self.items or ()), *((self.elem,) if self.elem is not None else ())):
            out |= part.all_objs()
        return frozenset(out)


NONE = Val()


def join_vals(a: Val, b: Val) -> Val:
    if a == b:
        return a
    items = None
    if a.items is not None and b.items is not None and len(a.items) == len(b.items):
        items = tuple(join_vals(x, y) for x, y in zip(a.items, b.items))
    elem = a.elem if b.elem is None else b.elem if a.elem is None else join_vals(a.elem, b.elem)
    return Val(a.objs | b.objs, items, elem)


def union(vals: Iterable[Val]) -> Val:
    """A value that may be any of ``vals`` (a list display, ``a or b``): objects joined, positions dropped."""
    objs: set[Obj] = set()
    for v in vals:
        objs |= v.all_objs() if v.items is not None or v.elem is not None else v.objs
    return Val(frozenset(objs)) if objs else NONE


class Status(enum.Enum):
    """A result's backward state at a program point (a three-point lattice; absent is bottom)."""

    PENDING = "pending"  # on every path: recorded, not yet consumed
    CONSUMED = "consumed"  # on every path: consumed by a backward or free
    MAYBE = "maybe"  # pending on some paths, consumed on others: reported on neither side


#: how ``State.done`` stores a result that is pending on some paths and consumed on others
_MAYBE = -1


@dataclass
class State:
    """The facts at one program point: names, results' states (with the line that consumed them), no_grad.

    The results pending on every path are kept apart (``live``) from the others (``done``: the line that
    consumed them, or -1 for MAYBE), so that a write looks only at what is pending, and a join compares the
    two dicts' items in C (only the few that differ are joined one by one)."""

    env: dict[str, Val] = field(default_factory=dict)
    live: dict[Obj, None] = field(default_factory=dict)
    done: dict[Obj, int] = field(default_factory=dict)
    no_grad: int = 0

    def copy(self) -> State:
        return State(dict(self.env), dict(self.live), dict(self.done), self.no_grad)

    def pending(self) -> list[Obj]:
        return list(self.live)

    def status(self, o: Obj) -> tuple[Status, int] | None:
        if o in self.live:
            return (Status.PENDING, 0)
        at = self.done.get(o)
        return None if at is None else (Status.MAYBE, 0) if at == _MAYBE else (Status.CONSUMED, at)

    def mark(self, o: Obj, status: Status, line: int = 0) -> None:
        if status is Status.PENDING:
            self.done.pop(o, None)
            self.live[o] = None
        else:
            self.live.pop(o, None)
            self.done[o] = _MAYBE if status is Status.MAYBE else line

    def consume_all(self, line: int) -> None:
        """``g.clear()``: every result is consumed (those consumed before keep their line)."""
        for o in self.live:
            self.done[o] = line
        self.live.clear()
        if _MAYBE in self.done.values():  # checked in C; rare
            for o, at in list(self.done.items()):
                if at == _MAYBE:
                    self.done[o] = line

    def results(self) -> list[tuple[Obj, tuple[Status, int]]]:
        return [(o, st) for o in (*self.live, *self.done) if (st := self.status(o)) is not None]


def join(a: State, b: State) -> State:
    """The least upper bound: a name bound on one side keeps its value; a result pending on one side and
    consumed on the other is MAYBE; a result absent on one side (not made there) keeps the other side's."""
    env = dict(a.env)
    for k, v in b.env.items():
        mine = env.get(k)
        env[k] = v if mine is None else mine if mine is v else join_vals(mine, v)
    live = {**a.live, **b.live}
    done = {**a.done, **b.done}
    for o, at in a.done.items() ^ b.done.items():  # consumed at different lines, or on one side only
        other = b.done.get(o) if o in a.done and a.done[o] == at else a.done.get(o)
        if other is not None and other != at:
            done[o] = _MAYBE if _MAYBE in (at, other) else min(at, other)
    for o in a.live.keys() ^ b.live.keys():  # pending on one side: consumed (or MAYBE) on the other?
        if o in done:
            live.pop(o)
            done[o] = _MAYBE
    for o in live:
        done.pop(o, None)
    return State(env, live, done, max(a.no_grad, b.no_grad))
