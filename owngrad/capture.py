"""Captured steps: check the borrows once, then replay the step as a flat list of array calls.

``step = g.capture(fn)`` returns a :class:`CapturedStep`. Its first call for a signature (the
inputs' shapes, dtypes and devices, the non-array inputs' values, and the train/eval mode of
every module the step calls) runs ``fn`` eagerly -- every borrow check, every error, at the
user's lines -- while a :class:`Tracer` on the graph records each array call the step makes:
the rules' forwards and vjps, views, gradient accumulation, the optimizer's update, random
draws (dropout masks), running statistics. Each recorded call names its operands as *slots*
(arrays produced earlier in the step, or the step's inputs) or as constants (params and
optimizer state, which the step updates in place, and values that do not depend on the
inputs). Later calls with the same signature replay that list: the same array functions in the
same order on the new inputs, so losses, gradients and parameters are bitwise those of an
eager step, without a Node or a Tensor per op.

What the plan cannot reproduce is refused at capture, at the line that does it (a
:class:`~owngrad.errors.GraphError`), or, with ``fallback=True``, makes that signature run
eagerly every time: converting a traced value to Python (``float(loss)``, ``.item()``, a
branch on ``bool(t)``), an in-place tensor write other than the optimizer's, creating params,
``on_grad`` hooks, and results left pending when ``fn`` returns.

A replay takes its borrows as one holder, "captured step at file:line": exclusive on what it
updates (the params its optimizers step, running statistics), shared on the params it reads.
A pending eager result that saved one of those params, or any other live borrow, refuses the
replay with the same :class:`~owngrad.errors.BorrowError` an eager step would raise.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import device_of
from .errors import BorrowError, GraphError
from .handle import TensorHandle
from .ledger import EXCLUSIVE, SHARED, acquire_all, release_all
from .roles import Role
from .sites import Site, format_site, user_site

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["CapturedStep"]

_SLOT, _CONST, _SEQ = 0, 1, 2
_PLAIN = (bool, int, float, str)
_ACTIVE = threading.local()  # the tracer of the capture running in this thread (for modules' train/eval mode)
_CAPTURING = 0  # how many captures are running, in any thread (changed under _COUNT_LOCK)
_COUNT_LOCK = threading.Lock()


class Tracer:
    """Records the array calls of one eager run of a step, with their operands as slots or constants."""

    def __init__(self, graph: Graph, fallback: bool, site: Site | None = None) -> None:
        self.graph = graph
        self.graph_site = site
        #: the capturing thread: work other threads do on the graph meanwhile is not part of the step
        self.thread = threading.get_ident()
        self.fallback = fallback
        self.ids: dict[int, int] = {}
        self.keep: list[Any] = []  # every slot's capture-time object stays alive: ids are not reused
        self.steps: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Any]] = []
        self.nslots = 0
        self.refused: str | None = None
        self.modules: dict[int, tuple[Any, bool]] = {}
        self.reads: dict[int, TensorHandle] = {}
        self.writes: dict[int, TensorHandle] = {}

    # --- slots ---
    def slot(self, obj: Any) -> int:
        k = self.nslots
        self.nslots += 1
        self.ids[id(obj)] = k
        self.keep.append(obj)
        return k

    def ref(self, v: Any) -> tuple[Any, ...]:
        k = self.ids.get(id(v))
        if k is not None:
            return (_SLOT, k)
        if type(v) in (tuple, list) and any(id(x) in self.ids for x in v):
            return (_SEQ, type(v), tuple(self.ref(x) for x in v))
        return (_CONST, v)

    def _out(self, out: Any) -> Any:
        if out is None or type(out) in _PLAIN:  # exactly: numpy's float64 scalars are floats too
            return None
        k = self.slot(out)
        if type(out) is tuple:
            return (k, tuple(None if x is None or type(x) in _PLAIN else self.slot(x) for x in out))
        return (k, None)

    # --- recording ---
    def note(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        """Record ``out = fn(*args, **kwargs)``, a call that has just run."""
        if threading.get_ident() != self.thread:
            return
        self.steps.append((fn, tuple(self.ref(a) for a in args), {k: self.ref(v) for k, v in kwargs.items()},
                           self._out(out)))

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        self.note(fn, args, kwargs, out)
        return out

    def read(self, t: TensorHandle) -> None:
        root = t._root
        if root._kind is Role.PARAM and threading.get_ident() == self.thread:
            self.reads[id(root)] = root

    def write(self, ts: list[Any]) -> None:
        if threading.get_ident() == self.thread:
            for t in ts:
                self.writes[id(t._root)] = t._root

    def check_constants(self, inputs: list[Any]) -> None:
        """A safety net for array work done outside owngrad's recorded calls: a constant operand that is a
        view or a copy of an input would be frozen at its capture value, so such a step is refused."""
        arrays = [a for a in inputs if isinstance(a, np.ndarray) and a.size > 1]
        if not arrays:
            return
        owned_by_graph = {id(t._data) for t in (*self.reads.values(), *self.writes.values())}  # params, buffers
        for fn, args, kwargs, _ in self.steps:
            for spec in (*args, *kwargs.values()):
                items = spec[2] if spec[0] == _SEQ else (spec,)
                for item in items:
                    c = item[1] if item[0] == _CONST else None
                    if not isinstance(c, np.ndarray) or c.size < 2 or id(c) in owned_by_graph:
                        continue
                    for a in arrays:
                        if np.may_share_memory(c, a) or (c.shape == a.shape and np.array_equal(c, a)):
                            name = getattr(fn, "__qualname__", type(fn).__name__)
                            self.refuse(f"an array computed from a step input outside owngrad's recorded calls "
                                        f"(an operand of {name})", self.graph_site,
                                        "prepare the array before the call and pass it as an input, or compute "
                                        "it with tensor ops inside")
                            return

    def refuse(self, what: str, site: Site | None = None, help: str = "") -> None:
        """Something the plan cannot reproduce: an error at the user's line, or (fallback) eager from now on."""
        if threading.get_ident() != self.thread:
            return
        where = format_site(site if site is not None else user_site())
        help = help or "keep it outside the captured function (return the tensor and convert it after the call)"
        msg = (f"g.capture: {what} at {where} cannot be captured: a captured step replays array calls only, "
               f"so its result would be fixed at capture\n  help: {help}, or pass fallback=True to run such "
               "steps eagerly")
        if self.fallback:
            if self.refused is None:
                self.refused = msg
            return
        raise GraphError(msg)


def recorded(graph: Graph, fn: Callable[..., Any], *args: Any, writes: Sequence[TensorHandle] = ()) -> Any:
    """``fn(*args)``, recorded when ``graph`` is capturing a step: array work library code does outside
    the rule table (a dropout mask drawn, a padding mask compared, an optimizer's update). ``writes``: the
    tensors ``fn`` updates in place, which a replay borrows exclusively."""
    tr = graph._tracer
    if tr is None:
        return fn(*args)
    tr.write(list(writes))
    return tr.call(fn, *args)


def note_module(module: Any) -> None:
    """A module called while a step is being captured: its train/eval mode becomes part of the signature."""
    if not _CAPTURING:  # the eager fast path: one global read per module call
        return
    tr: Tracer | None = getattr(_ACTIVE, "tracer", None)
    if tr is not None and id(module) not in tr.modules:
        tr.modules[id(module)] = (module, bool(module.training))


class _StepHolder:
    """The one holder of a replaying step's borrows."""

    __slots__ = ("site",)

    def __init__(self, site: Site) -> None:
        self.site = site

    def holder_text(self) -> str:
        return f"captured step at {format_site(self.site)}"

    def hint(self) -> str:
        return "wait for the captured step to return"


class _Plan:
    """One signature's recorded step, compiled for replay into one straight-line Python function: one
    line per recorded call, slots as local variables, constants bound as default-free globals."""

    def __init__(self, tracer: Tracer, nin: int, ret: Any, site: Site) -> None:
        self.ret = ret
        self.modules = [(m, mode) for m, mode in tracer.modules.values()]
        writes = list(tracer.writes.values())
        self.writes = [(t._storage.ledger, t._region) for t in writes]
        self.reads = [(t._storage.ledger, t._region) for k, t in tracer.reads.items() if k not in tracer.writes]
        self.holder = _StepHolder(site)
        self.site = site
        self.ncalls = len(tracer.steps)
        self.replay = _compile(tracer.steps, nin, _slots_of(ret))

    def _borrow(self, requests: list[Any], kind: str, why: str, site: Site | None) -> list[Any]:
        return acquire_all(requests, kind, self.holder, why, site, "captured step") if requests else []

    def matches(self) -> bool:
        return all(bool(m.training) == mode for m, mode in self.modules)

    def run(self, graph: Graph, inputs: list[Any]) -> Any:
        try:
            borrows = self._borrow(self.writes, EXCLUSIVE, "updated by a captured step", None)
        except BorrowError:  # again, for the message: the refused access is the user's call of the step
            self._borrow(self.writes, EXCLUSIVE, "updated by a captured step", user_site())
            raise
        try:
            try:
                borrows += self._borrow(self.reads, SHARED, "read by a captured step", None)
            except BorrowError:
                self._borrow(self.reads, SHARED, "read by a captured step", user_site())
                raise
            values = self.replay(*inputs)
        finally:
            release_all(borrows)
        return _rebuild(graph, self.ret, values)


def _slots_of(tpl: Any) -> list[int]:
    kind = tpl[0]
    if kind == "slot":
        return [tpl[1]]
    if kind == "seq":
        return [k for t in tpl[2] for k in _slots_of(t)]
    if kind == "dict":
        return [k for t in tpl[1].values() for k in _slots_of(t)]
    return []


def _compile(steps: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Any]], nin: int,
             ret_slots: list[int]) -> Callable[..., dict[int, Any]]:
    """The replay function: ``replay(*inputs) -> {slot: value}`` for the slots the step returns."""
    names: dict[int, str] = {}
    space: dict[str, Any] = {}

    def const(v: Any) -> str:
        key = id(v)
        name = names.get(key)
        if name is None:
            name = f"c{len(names)}"
            names[key] = name
            space[name] = v
        return name

    def expr(spec: tuple[Any, ...]) -> str:
        if spec[0] == _SLOT:
            return f"s{spec[1]}"
        if spec[0] == _SEQ:
            inner = ", ".join(expr(p) for p in spec[2])
            return f"[{inner}]" if spec[1] is list else f"({inner},)"
        return const(spec[1])

    # each slot is dropped after its last use, so the arrays of a step are freed as early as eager frees them
    # and the allocator reuses their memory within the step
    last: dict[int, int] = {}
    keep = set(ret_slots)

    def uses(spec: tuple[Any, ...], at: int) -> None:
        if spec[0] == _SLOT:
            last[spec[1]] = at
        elif spec[0] == _SEQ:
            for p in spec[2]:
                uses(p, at)

    for at, (_, args, kwargs, out) in enumerate(steps):
        for a in (*args, *kwargs.values()):
            uses(a, at)
        if out is not None:  # an output never read is dropped at once
            for k in (out[0], *(kk for kk in (out[1] or ()) if kk is not None)):
                last.setdefault(k, at)
    dead: dict[int, list[int]] = {}
    for k, at in last.items():
        if k not in keep:
            dead.setdefault(at, []).append(k)
    lines = [f"def replay({', '.join(f's{i}' for i in range(nin))}):"]
    for at, (fn, args, kwargs, out) in enumerate(steps):
        parts = [expr(a) for a in args]
        plain = {k: v for k, v in kwargs.items() if k.isidentifier()}
        parts += [f"{k}={expr(v)}" for k, v in plain.items()]
        if len(plain) < len(kwargs):
            parts.append("**{" + ", ".join(f"{k!r}: {expr(v)}" for k, v in kwargs.items() if k not in plain) + "}")
        call = f"{const(fn)}({', '.join(parts)})"
        if out is None:
            lines.append(f"    {call}")
        else:
            k, elems = out
            lines.append(f"    s{k} = {call}")
            for j, kk in enumerate(elems or ()):
                if kk is not None:
                    lines.append(f"    s{kk} = s{k}[{j}]")
        if at in dead:
            lines.append(f"    del {', '.join(f's{k}' for k in sorted(dead[at]))}")
    lines.append("    return {" + ", ".join(f"{k}: s{k}" for k in dict.fromkeys(ret_slots)) + "}")
    source = "\n".join(lines) + "\n"
    code = compile(source, "<owngrad captured step>", "exec")
    exec(code, space)  # noqa: S102 - the source is generated above from the recorded calls, nothing else
    replay: Callable[..., dict[int, Any]] = space["replay"]
    replay.__doc__ = source  # what the step replays, for debugging: print(plan.replay.__doc__)
    return replay


def _template(tracer: Tracer, value: Any) -> Any:
    """What ``fn`` returned, with its tensors as slots (rebuilt as constants at each replay)."""
    if isinstance(value, TensorHandle):
        k = tracer.ids.get(id(value._data))
        if k is None:  # not made by the step (a param, a constant from outside): the tensor itself, live
            return ("tensor", value)
        return ("slot", k)
    if type(value) in (tuple, list):
        return ("seq", type(value), [_template(tracer, v) for v in value])
    if isinstance(value, dict):
        return ("dict", {k: _template(tracer, v) for k, v in value.items()})
    if value is None or isinstance(value, (str, bool)):
        return ("value", value)
    tracer.refuse(f"returning a {type(value).__name__}")
    return ("value", value)


def _rebuild(graph: Graph, tpl: Any, s: dict[int, Any]) -> Any:
    from .tensor import Tensor

    kind = tpl[0]
    if kind == "slot":
        arr = s[tpl[1]]
        return Tensor._root_of(graph, arr, Role.CONSTANT, None, None, "captured")
    if kind == "tensor":
        return tpl[1]
    if kind == "seq":
        return tpl[1](_rebuild(graph, t, s) for t in tpl[2])
    if kind == "dict":
        return {k: _rebuild(graph, t, s) for k, t in tpl[1].items()}
    return tpl[1]


def _signature(args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    sig: list[Any] = []
    for a in args:
        if isinstance(a, TensorHandle):
            sig.append(("t", a.shape, a.dtype.str, a.device))
        elif hasattr(a, "shape") and hasattr(a, "dtype"):
            sig.append(("a", tuple(a.shape), a.dtype.str, device_of(a)))
        else:
            try:
                hash(a)
            except TypeError:
                return None
            sig.append(("v", type(a), a))
    return tuple(sig)


class CapturedStep:
    """``g.capture(fn)``: call it as ``fn``; see the module docstring."""

    def __init__(self, graph: Graph, fn: Callable[..., Any], fallback: bool, max_plans: int, site: Site) -> None:
        if not callable(fn):
            raise TypeError(f"g.capture: expected a function, got {type(fn).__name__}")
        if not isinstance(max_plans, int) or max_plans < 1:
            raise ValueError(f"g.capture: max_plans must be a positive int, got {max_plans!r}")
        self.graph = graph
        self.fn = fn
        self.fallback = fallback
        self.max_plans = max_plans
        self.site = site
        self._plans: OrderedDict[tuple[Any, ...], list[_Plan | None]] = OrderedDict()
        #: calls answered by replaying a plan / by running ``fn`` (captures and eager fallbacks)
        self.replays = 0
        self.eager_calls = 0

    def __repr__(self) -> str:
        return (f"CapturedStep({getattr(self.fn, '__name__', 'fn')}, plans={len(self._plans)}, "
                f"replays={self.replays}, eager_calls={self.eager_calls})")

    @property
    def plans(self) -> int:
        """How many signatures have a plan (or are marked to run eagerly)."""
        return len(self._plans)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"a captured step takes its inputs by position (got keywords {sorted(kwargs)}); "
                            "bind constant options with functools.partial before g.capture")
        sig = _signature(args)
        if sig is None:  # an input that is neither an array, a tensor nor a hashable value: no plan can key it
            self.eager_calls += 1
            return self.fn(*args)
        entry = self._plans.get(sig)
        if entry is not None:
            self._plans.move_to_end(sig)
            for plan in entry:
                if plan is None:  # this signature falls back to eager
                    self.eager_calls += 1
                    return self.fn(*args)
                if plan.matches():
                    out = plan.run(self.graph, [a._data if isinstance(a, TensorHandle) else a for a in args])
                    self.replays += 1
                    return out
        return self._capture(sig, args)

    def _capture(self, sig: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
        g = self.graph
        if g._tracer is not None:
            raise GraphError("g.capture: a captured step cannot call another captured step of the same graph")
        tr = Tracer(g, self.fallback, self.site)
        inputs: list[Any] = []
        for a in args:
            if isinstance(a, TensorHandle) and (a.graph is not g or a._root._kind is Role.PARAM):
                raise GraphError(f"g.capture: the inputs of a captured step are data (arrays, numbers, constant "
                                 f"tensors of this graph); got {a._label()}, "
                                 f"{'a param' if a.graph is g else 'a tensor of another graph'}\n  help: use "
                                 "the param inside the step function instead of passing it in")
            arr = a._data if isinstance(a, TensorHandle) else a
            tr.slot(arr)
            inputs.append(arr)
            if isinstance(a, TensorHandle):
                tr.read(a)
        before = set(g._pending)
        global _CAPTURING
        g._tracer = tr
        prev = getattr(_ACTIVE, "tracer", None)
        _ACTIVE.tracer = tr
        with _COUNT_LOCK:
            _CAPTURING += 1
        try:
            out = self.fn(*args)
            left = [n for n in g._pending if n not in before]
            if left:
                shown = ", ".join(f"#{n.id} {n.op} ({format_site(n.site)})" for n in left[:3])
                tr.refuse(f"leaving {len(left)} result(s) pending ({shown}{', ...' if len(left) > 3 else ''}) "
                          "when the step returns", self.site)
            ret = _template(tr, out)
            tr.check_constants(inputs)
        finally:
            g._tracer = None
            _ACTIVE.tracer = prev
            with _COUNT_LOCK:
                _CAPTURING -= 1
        self.eager_calls += 1
        plan = None if tr.refused is not None else _Plan(tr, len(args), ret, self.site)
        self._plans.setdefault(sig, []).append(plan)
        self._plans.move_to_end(sig)
        while len(self._plans) > self.max_plans:
            self._plans.popitem(last=False)
        return out

