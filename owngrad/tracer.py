"""The engine's record: every array call of a step being captured becomes one equation.

A :class:`Tracer` sits on a graph while a step is captured (``g._tracer``; None otherwise, so eager
code pays one attribute read per op). Library code runs its array work through
:meth:`Tracer.call` (or :func:`recorded`), which runs the call on the real values (traced inputs
unwrapped) and appends one :class:`Eqn` -- the function, its operands as slots (values the step
produced, or its inputs) or constants, its output slots and the user's line. A list of equations
is run by :func:`interpret`; capture.py turns it into a plan. The tracer also keeps what it needs
to undo the run (the first value of every array it writes, the objects of recorded methods, the
state of generators drawn from).

This module names no tensor, graph or gradient type: it sits below all of them.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .roles import Role
from .sites import Site, format_site, user_site
from .traced import ACTIVE, TracedGenerator, TracedNumber, refusal, refuse_foreign, unwrap

__all__ = ["Eqn", "Tracer", "interpret", "name_of", "note_module", "recorded", "recorded_number", "SLOT", "CONST",
           "SEQ", "activate", "deactivate", "value_check", "ValueCheck", "path_check", "PURE", "pure", "value_of"]

SLOT, CONST, SEQ = 0, 1, 2  # operand specs: (SLOT, k), (CONST, value), (SEQ, type, specs)
_SLOT, _CONST, _SEQ = SLOT, CONST, SEQ
_PLAIN = (bool, int, float, str)
_ACTIVE = ACTIVE  # the tracer of the capture running in this thread (modules' modes, work on other graphs)
_CAPTURING = 0  # how many captures are running, in any thread (changed under _COUNT_LOCK)
_COUNT_LOCK = threading.Lock()


class Eqn(NamedTuple):
    """One recorded array call: ``out = fn(*args, **kwargs)``; operands are slot or constant specs; ``rule``
    names it (the op's rule, ``matmul.vjp[1]`` for a vjp, else the function's name)."""

    rule: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any  # (slot, element slots or None) or None
    site: Site


class ValueCheck:
    """A check library code records (a label or index range, ``check_finite``): it raises on bad values, at
    capture and at every replay; a replay that raises there leaves pending what the eager step would
    (``Tracer.failable``). Made by the decorator :func:`value_check`.

    A *path check* (:func:`path_check`) guards a decision library code made on the capture-time values (which
    path ``cross_entropy`` takes): ``fn`` returns what would decide otherwise (or None). A replay runs its path
    checks first, on its inputs: inputs that decide otherwise are not the plan's, and get (or capture) another
    plan for the same signature. Inside a plan, where it could not run first, it refuses."""

    __slots__ = ("fn", "__qualname__", "refuses", "help")

    def __init__(self, fn: Callable[..., Any], refuses: bool = False, help: str = "") -> None:
        self.fn = fn
        self.__qualname__ = fn.__qualname__
        self.refuses = refuses
        self.help = help

    def __call__(self, *args: Any) -> None:
        what = self.fn(*args)
        if self.refuses and what:  # (a replay checks its inputs first: see capture.Plan.mismatch)
            raise refusal(what, "a replay", self.help)


def value_check(fn: Callable[..., None]) -> ValueCheck:
    """``@value_check``: ``fn`` as a :class:`ValueCheck`."""
    return ValueCheck(fn)


def path_check(help: str) -> Callable[[Callable[..., str | None]], ValueCheck]:
    """``@path_check(help)``: ``fn(*args) -> str | None`` as a path check (see :class:`ValueCheck`)."""
    return lambda fn: ValueCheck(fn, refuses=True, help=help)


#: functions that compute from their operands alone, writing and drawing nothing (conversions, copies):
#: a replay may run them early, to check its inputs before anything changes
PURE: set[Callable[..., Any]] = set()


def pure(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``fn`` in :data:`PURE`."""
    PURE.add(fn)
    return fn


def name_of(fn: Any) -> str:
    """A recorded function's name, for plans and messages."""
    return getattr(fn, "__qualname__", None) or type(fn).__name__


class Tracer:
    """Records the array calls of one eager run of a step, with their operands as slots or constants,
    and keeps what it needs to undo the run (the first value of everything it wrote)."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        #: the capturing thread: work other threads do on the graph meanwhile is not part of the step
        self.thread = threading.get_ident()
        self.ids: dict[int, int] = {}
        self.keep: list[Any] = []  # slot k's capture-time object is keep[k]: ids are not reused
        self.alive: list[Any] = []  # traced values handed to the step, kept alive for the same reason
        self.eqns: list[Eqn] = []
        self.modules: dict[int, tuple[Any, bool]] = {}
        self.reads: dict[int, Any] = {}  # the params read (tensor handles)
        self.writes: dict[int, Any] = {}  # the tensors written in place
        self.undo: dict[int, tuple[Any, Any]] = {}  # id(array) -> (array, its first value)
        self.objects: dict[int, tuple[Any, dict[str, Any]]] = {}  # objects whose recorded methods ran
        self.generators: dict[int, tuple[np.random.Generator, Any]] = {}  # drawn from by recorded calls
        self.exempt: set[tuple[int, Any]] = set()  # (object, attribute) changed by recorded calls
        self.prev: Tracer | None = None  # the tracer this one's capture interrupted in this thread, if any
        #: the graph's pending nodes when the capture began
        self.pending_before: set[Any] = set()
        self.ninputs = 0  # the step's inputs are slots 0 .. ninputs - 1
        self.input_writes: set[int] = set()  # the input tensors the step writes in place
        #: equation -> the borrows the step's pending nodes held when it ran, for the equations a replay can
        #: raise in (value checks, gathers): an eager step that raises there leaves those nodes pending
        self.failable: dict[int, list[tuple[Any, Any]]] = {}
        self.rng: Any = None  # the graph's generator, while g.rng is traced
        self.rebound_rng: Any = None  # what the step set g.rng to, if it rebound it

    # --- slots ---
    def slot(self, obj: Any) -> int:
        k = len(self.keep)
        self.ids[id(obj)] = k
        self.keep.append(obj)
        return k

    def ref(self, v: Any) -> tuple[Any, ...]:
        k = self.ids.get(id(v))
        if k is not None:
            return (_SLOT, k)
        if type(v) in (tuple, list) and any(id(x) in self.ids or type(x) in (tuple, list) for x in v):
            return (_SEQ, type(v), tuple(self.ref(x) for x in v))
        return (_CONST, v.value if type(v) is TracedGenerator else v)  # the plan draws from the generator itself

    def _out(self, out: Any) -> Any:
        if out is None or type(out) in _PLAIN:  # exactly: numpy's float64 scalars are floats too
            return None
        k = self.slot(out)
        if type(out) is tuple:
            return (k, tuple(None if x is None or type(x) in _PLAIN else self.slot(x) for x in out))
        return (k, None)

    # --- recording ---
    def mine(self) -> bool:
        return threading.get_ident() == self.thread

    def note(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], out: Any,
             rule: str | None = None) -> None:
        """Record ``out = fn(*args, **kwargs)``, a call that has just run."""
        if self.mine():
            self.eqns.append(Eqn(rule or name_of(fn), fn, tuple(self.ref(a) for a in args),
                                 {k: self.ref(v) for k, v in kwargs.items()}, self._out(out), user_site()))
            if type(fn) is ValueCheck or rule == "gather":
                self.failable[len(self.eqns) - 1] = [(b.ledger, b.region) for n in self.graph._pending
                                                     if n not in self.pending_before for b in n.borrows]

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the real values of ``args`` and record it."""
        return self.call_rule(None, fn, *args, **kwargs)

    def call_rule(self, rule: str | None, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """:meth:`call`, the equation named ``rule``."""
        if not self.mine():  # another thread's eager work on the graph (g.rng may be traced meanwhile)
            return fn(*[unwrap(a) for a in args], **kwargs)
        real = tuple(unwrap(a) for a in args)
        self._before(fn, real)
        own = fn.__self__ if type(fn) is types.MethodType else None
        before = dict(vars(own)) if own is not None and id(own) in self.objects else None
        out = fn(*real, **{k: unwrap(v) for k, v in kwargs.items()})
        if before is not None:
            self.exempt.update((id(own), k) for k, v in vars(own).items() if before.get(k, self) is not v)
        self.note(fn, args, kwargs, out, rule)
        return out

    def number(self, fn: Callable[..., Any], label: str, *args: Any) -> Any:
        """``fn(*args)``, a Python number computed from the step's values: recorded, and traced (a
        :class:`TracedNumber` that stands for the number)."""
        value = self.call(fn, *args)
        traced = TracedNumber(value, label)
        eqn = self.eqns[-1]
        self.eqns[-1] = eqn._replace(out=(self.slot(value), None))
        self.ids[id(traced)] = self.ids[id(value)]
        self.alive.append(traced)
        return traced

    def _before(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """What a recorded call may change, kept for undo: its object's attributes, generators it draws from."""
        own = fn.__self__ if type(fn) is types.MethodType else None  # a Python method: its object's state
        if own is not None and hasattr(own, "__dict__") and not getattr(type(own), "_capture_stop", False) \
                and id(own) not in self.objects:
            self.objects[id(own)] = (own, dict(vars(own)))
        for a in args:
            gen = a if isinstance(a, np.random.Generator) else \
                unwrap(getattr(a, "rng", None)) if a is self.graph else None
            if isinstance(gen, np.random.Generator) and id(gen) not in self.generators:
                self.generators[id(gen)] = (gen, gen.bit_generator.state)

    def read(self, t: Any) -> None:
        root = t._root
        if root._kind is Role.PARAM and self.mine():
            self.reads[id(root)] = root

    def write(self, ts: Sequence[Any]) -> None:
        """Tensors about to be written in place: a replay borrows them exclusively, an undo restores them."""
        if not self.mine():
            return
        for t in ts:
            root = t._root
            arr = root._data
            k = self.ids.get(id(arr), self.ids.get(id(t._data)))
            if k is not None and k < self.ninputs:  # an input tensor: each call's own input is borrowed
                self.input_writes.add(k)
            else:
                self.writes[id(root)] = root
            if id(arr) not in self.undo and (id(arr) not in self.ids or k is not None and k < self.ninputs):
                self.undo[id(arr)] = (arr, arr.copy())  # the step's own new arrays need no undo

    def refuse(self, what: str, site: Site | None = None, help: str = "") -> None:
        """Something the plan cannot reproduce: a GraphError at the user's line."""
        if not self.mine():
            return
        help = help or "keep it outside the captured function (return the tensor and convert it after the call)"
        raise refusal(what, format_site(site if site is not None else user_site()), help)

    def rollback(self) -> None:
        """Undo what the run changed: arrays written, objects of recorded methods, generators drawn from."""
        for arr, old in self.undo.values():
            arr[...] = old
        for obj, attrs in self.objects.values():
            vars(obj).clear()
            vars(obj).update(attrs)
        for gen, state in self.generators.values():
            gen.bit_generator.state = state


def recorded(graph: Any, fn: Callable[..., Any], *args: Any, writes: Sequence[Any] = ()) -> Any:
    """``fn(*args)``, recorded when ``graph`` is capturing a step: array work library code does outside
    the rule table (a dropout mask drawn, a label range checked, an optimizer's update). ``writes``: the
    tensors ``fn`` updates in place, which a replay borrows exclusively."""
    tr = graph._tracer
    if tr is None:
        if _CAPTURING:  # an optimizer or a buffer of another graph, updated inside a captured step
            refuse_foreign(name_of(fn))
        return fn(*args)
    tr.write(list(writes))
    return tr.call(fn, *args)


def recorded_number(graph: Any, fn: Callable[..., Any], label: str, *args: Any) -> Any:
    """``fn(*args)``, a number computed from the step's values; while capturing, a traced number."""
    tr = graph._tracer
    if tr is None or not tr.mine():
        return fn(*args)
    return tr.number(fn, label, *args)


def note_module(module: Any) -> None:
    """A module called while a step is being captured: its train/eval mode becomes part of the plan."""
    if not _CAPTURING:  # the eager fast path: one global read per module call
        return
    tr: Tracer | None = getattr(_ACTIVE, "tracer", None)
    if tr is not None and id(module) not in tr.modules:
        tr.modules[id(module)] = (module, bool(module.training))


def value_of(spec: tuple[Any, ...], env: dict[int, Any]) -> Any:
    """An operand spec's value in ``env`` (slot -> value)."""
    return _value(spec, env)


def _value(spec: tuple[Any, ...], env: dict[int, Any]) -> Any:
    if spec[0] == _SLOT:
        return env[spec[1]]
    if spec[0] == _SEQ:
        return spec[1](_value(p, env) for p in spec[2])
    return spec[1]


def interpret(eqns: Sequence[Eqn], inputs: Sequence[Any], where: list[int] | None = None) -> dict[int, Any]:
    """Run a plan's equations on ``inputs``; every slot's value. If one raises, its index goes into ``where``."""
    env: dict[int, Any] = dict(enumerate(inputs))
    for at, e in enumerate(eqns):
        try:
            out = e.fn(*[_value(a, env) for a in e.args], **{k: _value(v, env) for k, v in e.kwargs.items()})
        except BaseException:
            if where is not None:
                where.append(at)
            raise
        if e.out is not None:
            k, elems = e.out
            env[k] = out
            for j, kk in enumerate(elems or ()):
                if kk is not None:
                    env[kk] = out[j]
    return env


def activate(tr: Tracer) -> Tracer | None:
    """Make ``tr`` this thread's capturing tracer (modules report their mode to it); the previous one."""
    global _CAPTURING
    prev: Tracer | None = getattr(_ACTIVE, "tracer", None)
    _ACTIVE.tracer = tr
    with _COUNT_LOCK:
        _CAPTURING += 1
    return prev


def deactivate(prev: Tracer | None) -> None:
    global _CAPTURING
    _ACTIVE.tracer = prev
    with _COUNT_LOCK:
        _CAPTURING -= 1
