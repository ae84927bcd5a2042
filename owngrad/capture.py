"""Captured steps: a step recorded once as a plan of array calls, replayed while its guards hold.

``step = g.capture(fn)`` returns a :class:`CapturedStep`. Its first call for a signature (the
inputs' shapes, dtypes and devices, which inputs alias, the values of scalar inputs -- numpy
scalars included -- and the grad mode) runs ``fn`` eagerly -- every borrow check, every error, at
the user's lines -- while a :class:`Tracer` on the graph records each array call the step makes as
one :class:`Eqn` (the function, its operands as slots or constants, its output slots, the user's
line). The list of equations is the :class:`Plan`; :func:`interpret` runs it, and a straight-line
Python function generated from it runs it faster.

The contract: a replay equals the eager call bitwise, or the call refuses with a
:class:`~owngrad.errors.GraphError` naming the user's line. Raw array inputs are traced while a
step is captured (traced.py), so work on them outside owngrad's operations refuses; everything
else the step read is guarded (guards.py) and a change captures a new plan (at most ``max_plans``
per signature, then a warning and eager calls); Python side effects of the step refuse; value
checks run as recorded calls at every replay. A refused capture is rolled back: params, buffers,
optimizer state, generators and the Python state it changed are restored and its pending nodes
released. With ``verify=True`` a new plan's first replay runs on a snapshot and is compared
with the eager step; a difference warns, naming the first differing equation, and the signature
runs eagerly from then on. docs/capture.md has the details.
"""

from __future__ import annotations

import random
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backend import copy_of, device_of, to_device
from .errors import BorrowError, GraphError
from .graph import Graph
from .guards import Guard, Place, collect, compile_checks
from .handle import TensorHandle
from .ledger import EXCLUSIVE, SHARED, Borrow, acquire_all, release_all
from .node import Node, NodeState
from .operands import as_array
from .plancode import REPLAY_FILE, compile_plan
from .roles import Role
from .sites import Site, format_site, user_site
from .tensor import Tensor
from .traced import ACTIVE, CaptureRefused, TracedArray, TracedGenerator, TracedNumber, refusal
from .tracer import (
    CONST,
    PURE,
    SEQ,
    SLOT,
    Eqn,
    Tracer,
    ValueCheck,
    activate,
    deactivate,
    interpret,
    name_of,
    note_module,
    recorded,
    recorded_number,
    value_of,
)

__all__ = ["CapturedStep"]
# the recorder's entry points, for library code written against this module
_REEXPORTED = (note_module, recorded, recorded_number)


_SLOT, _CONST, _SEQ = SLOT, CONST, SEQ
_EAGER = None  # a signature's entry that runs eagerly from now on
_SHAPED = frozenset({as_array})  # g.constant's copy: its result has its operand's shape (see plancode)


class _StepHolder:
    """The one holder of a replaying step's borrows."""

    __slots__ = ("site",)

    def __init__(self, site: Site) -> None:
        self.site = site

    def holder_text(self) -> str:
        return f"captured step at {format_site(self.site)}"

    def hint(self) -> str:
        return "wait for the captured step to return"

    def abandoned(self) -> bool:
        return False  # ends when the step returns

    def reclaim(self) -> None:
        raise AssertionError("a replaying step is never abandoned")


class Plan:
    """One signature's recorded step: its equations (run by :func:`interpret`, or by the straight-line
    function compiled from them), what it borrows, and the guards under which it is valid."""

    def __init__(self, tracer: Tracer, nin: int, ret: Any, site: Site, guards: list[Guard],
                 infos: dict[int, Any]) -> None:
        self.ret = ret
        self.nin = nin
        self.eqns = list(tracer.eqns)
        self.guards = guards
        self._check = compile_checks(guards)
        self.modules = [(m, mode) for m, mode in tracer.modules.values()]
        writes = list(tracer.writes.values())
        self.written = writes
        self.objects = [obj for obj, _ in tracer.objects.values()]
        self.generators = [gen for gen, _ in tracer.generators.values()]
        self.writes = [(t._storage.ledger, t._region) for t in writes]
        self.input_writes = sorted(tracer.input_writes)
        self.reads = [(t._storage.ledger, t._region) for k, t in tracer.reads.items() if k not in tracer.writes]
        self.holder = _StepHolder(site)
        self.site = site
        self.verified = False
        self.failable = tracer.failable
        self.prechecks = _prechecks(self.eqns, nin)
        self._mine = self._own_borrows()
        hoisted = frozenset(at for at, _, _ in self.prechecks)
        self.replay, self._eqn_at_line, source = compile_plan(self.eqns, nin, _slots_of(ret), tracer.keep, infos,
                                                                  _SHAPED, hoisted)
        self.replay.__doc__ = source

    def mismatch(self, args: tuple[Any, ...]) -> str | None:
        """Whether this call's inputs decide a path check (:func:`_prechecks`) otherwise than the capture-time
        values did -- what decides, at which line -- or None: such inputs are not this plan's."""
        if not self.prechecks:
            return None
        inputs = [a._data if isinstance(a, TensorHandle) else a for a in args]
        for _, chain, check in self.prechecks:
            env = interpret(chain, inputs)
            fn = check.fn
            assert type(fn) is ValueCheck
            what = fn.fn(*[value_of(a, env) for a in check.args])
            if what:
                return f"{what} at {format_site(check.site)}"
        return None

    def failed_at(self, exc: BaseException) -> int | None:
        """The equation a compiled replay raised ``exc`` in (from its traceback), or None."""
        tb = exc.__traceback__
        at = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == _REPLAY_FILE:
                at = self._eqn_at_line.get(tb.tb_lineno)
            tb = tb.tb_next
        return at

    def __str__(self) -> str:
        """The plan, one equation a line: ``s7 = matmul.forward(s3, c1)    # train.py:24``."""
        ins = f"inputs s0..s{self.nin - 1}" if self.nin else "no inputs"
        lines = [f"plan of the step captured at {format_site(self.site)} ({ins}):"]
        for e in self.eqns:
            operands = [_spec_text(a) for a in e.args] + [f"{k}={_spec_text(v)}" for k, v in e.kwargs.items()]
            call = f"{e.rule}({', '.join(operands)})"
            out = "" if e.out is None else f"s{e.out[0]} = "
            lines.append(f"  {out}{call}    # {format_site(e.site)}")
        return "\n".join(lines)

    def changed(self) -> str | None:
        """Why this plan may not run now (a module's mode or a guarded value changed), or None."""
        for m, mode in self.modules:
            if bool(m.training) != mode:
                return f"the train/eval mode of {type(m).__name__}"
        try:
            i = self._check()
        except Exception:  # noqa: BLE001 - a guarded place that cannot be read now has changed, as far as we know
            return "a guarded value that could not be read"
        return None if i < 0 else self.guards[i].label

    def _borrows(self, args: Sequence[Any] = ()) -> list[Any] | None:
        """The step's borrows, all or none: exclusive on what it writes (the input tensors it writes among
        them: this call's ``args``), shared on the params it reads."""
        if self._mine is not None and not self.input_writes:
            taken = self._take_own()
            if taken is not None:
                return taken
        writes = self.writes
        if self.input_writes:
            ts = [args[i] for i in self.input_writes]
            if any(t._readonly for t in ts):  # a read-only input: eagerly, the write is refused
                return None
            writes = writes + [(t._storage.ledger, t._region) for t in ts]
        try:
            borrows = acquire_all(writes, EXCLUSIVE, self.holder, "updated by a captured step", None,
                                  "captured step") if writes else []
        except BorrowError:
            return None
        try:
            if self.reads:
                borrows += acquire_all(self.reads, SHARED, self.holder, "read by a captured step", None,
                                       "captured step")
        except BorrowError:
            release_all(borrows)
            return None
        return borrows

    def _own_borrows(self) -> list[Borrow] | None:
        """The step's borrows as objects made once, when its writes are exclusive to it (so no two calls
        can hold them at once: a second call's exclusive borrow conflicts with the first's) and every
        ledger shares one lock; else None."""
        ledgers = [led for led, _ in self.writes] + [led for led, _ in self.reads]
        if not self.writes or not all(led._lock is ledgers[0]._lock for led in ledgers):
            return None
        own = [Borrow(region, EXCLUSIVE, self.holder, "updated by a captured step", led) for led, region in self.writes]
        own += [Borrow(region, SHARED, self.holder, "read by a captured step", led) for led, region in self.reads]
        return own

    def _take_own(self) -> list[Borrow] | None:
        """The borrows made once, taken when no live borrow is in their way (a write to a storage nobody
        borrows, a read of one nobody writes); None (nothing taken) otherwise, for the general path."""
        mine = self._mine
        assert mine is not None
        with mine[0].ledger._lock:
            for b in mine:
                led = b.ledger
                if led._live if b.kind is EXCLUSIVE else led._n_excl:
                    return None
            for b in mine:
                led = b.ledger
                led._live[b] = None
                if b.kind is EXCLUSIVE:
                    led._n_excl += 1
        return mine

    def run(self, inputs: list[Any], replay: Callable[..., dict[int, Any]] | None = None,
            args: Sequence[Any] = ()) -> dict[int, Any] | None:
        """Replay under the step's borrows; None, having touched nothing, when a live borrow conflicts with
        them (the caller runs the step eagerly then, so it fails at the line and with the state it would)."""
        borrows = self._borrows(args)
        if borrows is None:
            return None
        try:
            return (replay or self.replay)(*inputs)
        finally:
            if borrows is self._mine:
                self._give_own()
            else:
                release_all(borrows)

    def _give_own(self) -> None:
        """Release the borrows :meth:`_take_own` took."""
        mine = self._mine
        assert mine is not None
        with mine[0].ledger._lock:
            for b in mine:
                led = b.ledger
                if led._live.pop(b, 0) is None and b.kind is EXCLUSIVE:
                    led._n_excl -= 1


def _spec_text(spec: tuple[Any, ...]) -> str:
    if spec[0] == _SLOT:
        return f"s{spec[1]}"
    if spec[0] == _SEQ:
        return "[" + ", ".join(_spec_text(p) for p in spec[2]) + "]"
    v = spec[1]
    if isinstance(v, TensorHandle):
        return v._label()
    if isinstance(v, types.ModuleType):
        return v.__name__
    if hasattr(v, "shape") and hasattr(v, "dtype") and not callable(v):
        return f"<{v.dtype} {tuple(v.shape)}>"
    text = repr(v) if isinstance(v, (int, float, str, bool, type(None), tuple)) else f"<{type(v).__name__}>"
    return text if len(text) < 40 else text[:37] + "..."


def _slots_of(tpl: Any) -> list[int]:
    kind = tpl[0]
    if kind in ("slot", "number"):
        return [tpl[1]]
    if kind == "seq":
        return [k for t in tpl[2] for k in _slots_of(t)]
    if kind == "dict":
        return [k for t in tpl[1].values() for k in _slots_of(t)]
    return []


_REPLAY_FILE = REPLAY_FILE


PURE.update((as_array, copy_of, to_device))


def _prechecks(eqns: list[Eqn], nin: int) -> list[tuple[int, list[Eqn], Eqn]]:
    """The plan's path checks that a replay can run first: each with the pure calls (conversions, copies)
    that compute its operands from the inputs (and its index). A check whose operands need anything else
    stays in place only."""
    producer = {e.out[0]: e for e in eqns if e.out is not None}
    order = {id(e): i for i, e in enumerate(eqns)}
    out = []
    for at, e in enumerate(eqns):
        if type(e.fn) is ValueCheck and e.fn.refuses and not e.kwargs:
            chain: dict[int, Eqn] = {}
            if all(_pure_operand(a, producer, nin, chain) for a in e.args):
                out.append((at, [chain[k] for k in sorted(chain, key=order.__getitem__)], e))
    return out


def _pure_operand(spec: tuple[Any, ...], producer: dict[int, Eqn], nin: int, chain: dict[int, Eqn]) -> bool:
    """Whether ``spec`` is an input, a constant, or made from them by pure calls (added to ``chain``)."""
    if spec[0] == CONST:
        return True
    if spec[0] == SEQ:
        return all(_pure_operand(x, producer, nin, chain) for x in spec[2])
    k = spec[1]
    if k < nin:
        return True
    e = producer.get(k)
    if e is None or e.fn not in PURE or e.out[1] or \
            not all(_pure_operand(a, producer, nin, chain) for a in (*e.args, *e.kwargs.values())):
        return False
    chain[id(e)] = e
    return True


def _template(tracer: Tracer, value: Any) -> Any:
    """What ``fn`` returned, with the step's values as slots (rebuilt at each replay)."""
    if isinstance(value, TensorHandle):
        root_k = tracer.ids.get(id(value._root._data))
        k = tracer.ids.get(id(value._data))
        if k is None or root_k is None:  # a tensor that outlives the step (a param, or a view of one): itself
            return ("tensor", value)
        return ("slot", k)
    if isinstance(value, TracedNumber):
        return ("number", tracer.ids[id(value)])
    if type(value) in (tuple, list):
        return ("seq", type(value), [_template(tracer, v) for v in value])
    if isinstance(value, dict):
        return ("dict", {k: _template(tracer, v) for k, v in value.items()})
    if value is None or isinstance(value, (str, bool)):
        return ("value", value)
    kind = type(value).__name__
    tracer.refuse(f"returning {'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}", None,
                  "return tensors (and numbers made from them after the call)")
    return ("value", value)


def _untraced(value: Any) -> Any:
    """What the capture call returns: the step's result with its traced numbers as their values."""
    if isinstance(value, TracedNumber):
        return value.value
    if type(value) in (tuple, list):
        return type(value)(_untraced(v) for v in value)
    if isinstance(value, dict):
        return {k: _untraced(v) for k, v in value.items()}
    return value


def _rebuild(graph: Graph, tpl: Any, s: dict[int, Any]) -> Any:
    kind = tpl[0]
    if kind == "slot":
        return Tensor._root_of(graph, s[tpl[1]], Role.CONSTANT, None, None, "captured")
    if kind == "number":
        return s[tpl[1]]
    if kind == "tensor":
        return tpl[1]
    if kind == "seq":
        return tpl[1](_rebuild(graph, t, s) for t in tpl[2])
    if kind == "dict":
        return {k: _rebuild(graph, t, s) for k, t in tpl[1].items()}
    return tpl[1]


def _signature(args: tuple[Any, ...], grad_on: bool, keys: tuple[str, ...] = ()) -> tuple[Any, ...] | None:
    """The inputs' shapes, dtypes, devices and array types, scalar values (numpy scalars by value), which array
    inputs alias, and the grad mode; None for an input no plan can be keyed by."""
    sig: list[Any] = [grad_on, keys]
    arrays: list[tuple[int, Any]] = []
    for i, a in enumerate(args):
        if isinstance(a, TensorHandle):
            sig.append(("t", a.shape, a.dtype.str, a.device, type(a._data)))
            arrays.append((i, a._data))
        elif isinstance(a, np.generic):
            sig.append(("v", type(a), a))
        elif hasattr(a, "shape") and hasattr(a, "dtype"):
            sig.append(("a", tuple(a.shape), a.dtype.str, device_of(a), type(a)))
            arrays.append((i, a))
        else:
            try:
                hash(a)
            except TypeError:
                return None
            sig.append(("v", type(a), a))
    for n, (i, a) in enumerate(arrays):
        for j, b in arrays[n + 1:]:
            if a is b or (type(a) is np.ndarray and type(b) is np.ndarray and np.may_share_memory(a, b)):
                sig.append(("alias", i, j))
    return tuple(sig)


def _input_infos(sig: tuple[Any, ...], nin: int) -> dict[int, Any]:
    """The inputs that the signature fixes as numpy arrays: slot -> (shape, dtype)."""
    out = {}
    for i, entry in enumerate(sig[2:2 + nin]):
        if entry[0] in ("t", "a") and entry[4] is np.ndarray:
            out[i] = (tuple(entry[1]), np.dtype(entry[2]))
    return out


def _identity_only(obj: Any) -> bool:
    """Objects guarded by identity, never walked into: tensors, graphs, gradients, nodes, captured steps
    (their classes say so with ``_capture_stop``)."""
    return bool(getattr(type(obj), "_capture_stop", False))


def _fn_site(fn: Any, default: Site) -> Site:
    """The step function's own line, for refusals that no single line of it causes (a side effect)."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return default if code is None else ((code.co_filename, code.co_firstlineno, code.co_name),)


def _bits_equal(a: Any, b: Any) -> bool:
    """Bitwise equality of two values of a step (arrays, numbers, dicts and sequences of them)."""
    if hasattr(a, "shape") and hasattr(a, "dtype") and not isinstance(a, (type, np.generic)):
        if not (hasattr(b, "shape") and hasattr(b, "dtype")) or isinstance(b, (type, np.generic)):
            return False
        ha, hb = _host(a), _host(b)
        return bool(ha.shape == hb.shape and ha.dtype == hb.dtype and ha.tobytes() == hb.tobytes())
    if type(a) in (tuple, list) and type(b) is type(a):
        return len(a) == len(b) and all(_bits_equal(x, y) for x, y in zip(a, b))
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(_bits_equal(a[k], b[k]) for k in a)
    if isinstance(a, (int, float, np.generic)) and isinstance(b, (int, float, np.generic)):
        return bool(a == b or (a != a and b != b))
    return a is b or bool(type(a) is type(b) and isinstance(a, (str, type(None))) and a == b)


def _host(a: Any) -> np.ndarray:
    return a if type(a) is np.ndarray else np.asarray(to_device(a, "cpu"))


class _Snapshot:
    """The state a plan touches (arrays it writes, objects of its recorded methods, generators it draws
    from), copied so that a replay can be undone and compared with the eager step."""

    def __init__(self, plan: Plan) -> None:
        self.arrays = [(t._data, t._data.copy()) for t in plan.written]
        self.objects = [(o, dict(vars(o))) for o in plan.objects]
        self.gens = [(gen, gen.bit_generator.state) for gen in plan.generators]

    def restore(self) -> None:
        for arr, old in self.arrays:
            arr[...] = old
        for obj, attrs in self.objects:
            vars(obj).clear()
            vars(obj).update(attrs)
        for gen, state in self.gens:
            gen.bit_generator.state = state

    def now(self) -> list[Any]:
        return [[a.copy() for a, _ in self.arrays], [dict(vars(o)) for o, _ in self.objects],
                [gen.bit_generator.state for gen, _ in self.gens]]


def _first_difference(plan: Plan, env: dict[int, Any], tr: Tracer) -> str | None:
    """The first equation whose output differs between a replay (``env``) and an eager run (``tr``)."""
    for k, (a, b) in enumerate(zip(plan.eqns, tr.eqns)):
        where = f"equation {k}, {a.rule} at {format_site(a.site)}"
        if a.rule != b.rule:
            return f"{where} (the eager step called {b.rule} there)"
        if a.out is not None and b.out is not None and not _bits_equal(env.get(a.out[0]), tr.keep[b.out[0]]):
            return where
    if len(plan.eqns) != len(tr.eqns):
        return f"equation {min(len(plan.eqns), len(tr.eqns))} (the eager step made {len(tr.eqns)} array calls, " \
               f"the plan {len(plan.eqns)})"
    return None


class CapturedStep:
    """``g.capture(fn)``: call it as ``fn``; see the module docstring."""

    def __init__(self, graph: Graph, fn: Callable[..., Any], fallback: bool, max_plans: int, site: Site,
                 verify: bool = False) -> None:
        if not callable(fn):
            raise TypeError(f"g.capture: expected a function, got {type(fn).__name__}")
        if not isinstance(max_plans, int) or max_plans < 1:
            raise ValueError(f"g.capture: max_plans must be a positive int, got {max_plans!r}")
        self.graph = graph
        self.fn = fn
        self.fallback = fallback
        self.verify = verify
        self.max_plans = max_plans
        self.site = site
        self._plans: OrderedDict[tuple[Any, ...], list[Plan | None]] = OrderedDict()
        #: calls answered by replaying a plan / by running ``fn`` (captures, verifications, eager fallbacks)
        self.replays = 0
        self.eager_calls = 0

    def __repr__(self) -> str:
        return (f"CapturedStep({getattr(self.fn, '__name__', 'fn')}, plans={len(self._plans)}, "
                f"replays={self.replays}, eager_calls={self.eager_calls})")

    @property
    def plans(self) -> int:
        """How many signatures have a plan (or are marked to run eagerly)."""
        return len(self._plans)

    def plans_of(self) -> list[Plan]:
        """Every plan kept, most recently used signature last (print one to read it)."""
        return [p for entry in self._plans.values() for p in entry if p is not None]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        outer = getattr(ACTIVE, "tracer", None)
        if outer is not None:  # inside another step's capture: its plan would not hold this step's work
            outer.refuse(f"calling the captured step {name_of(self.fn)} inside a captured step", None,
                         "call the inner function directly")
        keys: tuple[str, ...] = ()
        if kwargs:  # keyword inputs: inputs like the others, after the positional ones (their names key the plan)
            keys = tuple(sorted(kwargs))
            args = (*args, *(kwargs[k] for k in keys))
        sig = _signature(args, self.graph._mode.enabled, keys)
        if sig is None:  # an input that is neither an array, a tensor nor a hashable value: no plan can key it
            return self._eager(args, keys)
        found = self._lookup(sig, args)
        return self._capture(sig, args) if found is _MISS else found

    def _lookup(self, sig: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
        entry = self._plans.get(sig)
        if entry is None:
            return _MISS
        self._plans.move_to_end(sig)
        if entry and entry[0] is _EAGER:
            return self._eager(args, sig[1])
        for plan in entry:
            if plan is not None and plan.changed() is None and plan.mismatch(args) is None:
                return self._replay(plan, sig, args)
        return _MISS

    def _eager(self, args: tuple[Any, ...], keys: tuple[str, ...]) -> Any:
        self.eager_calls += 1
        return self._run(args, keys)

    def _run(self, args: tuple[Any, ...], keys: tuple[str, ...]) -> Any:
        """``fn`` on the inputs: the last ``len(keys)`` by keyword."""
        if not keys:
            return self.fn(*args)
        n = len(args) - len(keys)
        return self.fn(*args[:n], **dict(zip(keys, args[n:])))

    def _replay(self, plan: Plan, sig: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
        inputs = [a._data if isinstance(a, TensorHandle) else a for a in args]
        if self.verify and not plan.verified:
            return self._verify(plan, sig, args, inputs)
        try:
            values = plan.run(inputs, None, args)
        except Exception as e:
            self._leave_pending(plan, plan.failed_at(e))
            raise
        if values is None:  # a live borrow conflicts with the step's: eagerly, it fails where it would
            return self._eager(args, sig[1])
        self.replays += 1
        return _rebuild(self.graph, plan.ret, values)

    def _leave_pending(self, plan: Plan, at: int | None) -> None:
        """A replay raised in equation ``at`` (a value check): what the eager step leaves pending there --
        its recorded nodes, with their shared borrows on the params they saved -- stands as one node, so
        later writes and steps meet the same BorrowError as eagerly, until ``g.clear()``."""
        held = plan.failable.get(at) if at is not None else None
        if not held:
            return
        g = self.graph
        e = plan.eqns[at]  # type: ignore[index]
        node = Node(next(g._ids), g, f"{e.rule} (a captured step that raised)", (), (), e.site)
        try:
            node.borrows = acquire_all(held, SHARED, node, "saved for backward by the step that raised", e.site,
                                       "save")
        except BorrowError:
            return
        g._pending[node] = None

    def _mark_eager(self, sig: tuple[Any, ...]) -> None:
        self._plans[sig] = [_EAGER]
        self._bound()

    def _bound(self) -> None:
        while len(self._plans) > self.max_plans:
            self._plans.popitem(last=False)

    _capture_stop = True

    # --- capturing ---
    def _capture(self, sig: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
        g = self.graph
        tr0 = g._tracer
        if tr0 is not None and tr0.mine():
            raise GraphError(f"g.capture: a captured step cannot call another captured step of the same graph (at "
                             f"{format_site(user_site())})\n  help: call the inner function directly")
        with g._capture_lock:  # one capture at a time per graph: a second thread's first call waits, then replays
            found = self._lookup(sig, args)
            if found is not _MISS:
                return found
            entry = self._plans.get(sig) or []
            if len(entry) >= self.max_plans:
                why = next((p.changed() or p.mismatch(args) for p in entry if p is not None), None) or \
                    "a guarded value"
                warnings.warn(f"g.capture: {name_of(self.fn)} was captured {len(entry)} times for one input signature "
                              f"because {why} keeps changing between calls; it runs eagerly from now on (pass "
                              "the changing value as an input to key plans by it)", RuntimeWarning, stacklevel=3)
                self._mark_eager(sig)
                return self._eager(args, sig[1])
            try:
                tr, out, ret, guards = self._trace(args, sig[1])
            except CaptureRefused as e:
                if not self.fallback:
                    raise
                warnings.warn(f"{e}\n  (fallback=True: this signature runs eagerly from now on)", RuntimeWarning,
                              stacklevel=3)
                self._mark_eager(sig)
                return self._eager(args, sig[1])
            self.eager_calls += 1
            self._plans.setdefault(sig, []).append(Plan(tr, len(args), ret, self.site, guards,
                                                           _input_infos(sig, len(args))))
            self._plans.move_to_end(sig)
            self._bound()
            return out

    def _inputs(self, tr: Tracer, args: tuple[Any, ...]) -> list[Any]:
        """The values ``fn`` is called with while captured: raw arrays traced, each input a slot."""
        g = self.graph
        traced: list[Any] = []
        for i, a in enumerate(args):
            if isinstance(a, TensorHandle):
                if a.graph is not g or a._root._kind is Role.PARAM:
                    kind = "a param" if a.graph is g else "a tensor of another graph"
                    raise refusal(f"input #{i} ({a._label()}, {kind}): the inputs of a captured step are data "
                                  "(arrays, numbers, constant tensors of this graph), and", format_site(user_site()),
                                  "use the param inside the step function instead of passing it in")
                if a._grad_node() is not None:
                    raise refusal(f"input #{i} ({a._label()}), which carries gradient history,",
                                  format_site(user_site()), "a replay cannot extend that history: pass a constant "
                                  "(t.detach()) and backward the history outside the step")
                tr.slot(a._data)
                tr.read(a)
                traced.append(a)
            elif hasattr(a, "shape") and hasattr(a, "dtype") and not isinstance(a, np.generic):
                p = TracedArray(a, f"the step's input #{i}")
                tr.slot(p)
                traced.append(p)
            else:
                tr.slot(a)
                traced.append(a)
        return traced

    def _trace(self, args: tuple[Any, ...], keys: tuple[str, ...]) -> tuple[Tracer, Any, Any, list[Guard]]:
        """Run ``fn`` eagerly under a tracer; the tracer, the result, its template and the plan's guards.
        A refusal rolls the run back (state, Python values, pending nodes) and is raised."""
        g = self.graph
        tr = Tracer(g)
        tr.pending_before = set(g._pending)
        tr.ninputs = len(args)
        traced = self._inputs(tr, args)
        reach = collect(self.fn, _identity_only)
        if reach.iterators:  # refused before the step runs: advancing one could not be undone
            tr.refuse(f"{reach.iterators[0][0]}, an iterator or generator the step can reach (a replay would not "
                      "advance it),", _fn_site(self.fn, self.site),
                      "take the values from it before the call and pass them in")
        guards = reach.guards
        guards.append(Guard(Place.ATTR, g, "rng", g.rng, "g.rng", False))
        # g.rng is traced while the step runs (a direct draw refuses at its line); other generators are watched
        watched = [(label, gen, gen.bit_generator.state) for label, gen in reach.generators if gen is not g.rng]
        world = _World(g, guards, watched, reach.seen | {id(g.rng)})
        self._enter(tr)
        try:
            try:
                out = self._run(tuple(traced), keys)
            finally:
                self._exit(tr)
            self._check_after(tr, world)
            ret = _template(tr, out)
            out = _untraced(out)
        except CaptureRefused:
            tr.rollback()
            world.rollback()
            raise
        return tr, out, ret, [gd for gd in guards if not gd.live and (id(gd.container), gd.key) not in tr.exempt]

    def _check_after(self, tr: Tracer, world: _World) -> None:
        """Refuse what the run did that a replay would not redo: results left pending, Python state
        changed, random numbers drawn outside recorded calls."""
        g = self.graph
        site = _fn_site(self.fn, self.site)
        left = [n for n in g._pending if n not in world.pending]
        if left:  # those no live tensor reaches (`out, _ = mha(...)`) are abandoned: eagerly they bind nothing
            live = g._reachable()
            left = [n for n in left if n in live]
        if left:
            shown = ", ".join(f"#{n.id} {n.op} ({format_site(n.site)})" for n in left[:3])
            tr.refuse(f"leaving {len(left)} result(s) pending ({shown}{', ...' if len(left) > 3 else ''}) "
                      "when the step returns", self.site, "call g.backward on them or g.free them inside the step")
        for gd in world.guards:
            if (id(gd.container), gd.key) not in tr.exempt and not gd.holds():
                tr.refuse(f"changing {gd.label} (Python state, which a replay would not change)", site,
                          "make the change outside the captured function (before or after the call), or pass the "
                          "value in as an input")
        for label, gen, state in world.watched:
            if id(gen) not in tr.generators and gen.bit_generator.state != state:
                tr.refuse(f"drawing random numbers from {label} outside owngrad's ops", site,
                          "draw them before the call and pass them in, or use g.randn / g.rand / F.dropout")
        for obj, _ in tr.objects.values():
            if id(obj) not in world.reached:
                tr.refuse(f"a {type(obj).__name__} made inside the step (a replay would run its recorded method "
                          "on the capture-time object, whose state carries over)", site,
                          f"make the {type(obj).__name__} outside the captured function")
        for gen, _ in tr.generators.values():
            if id(gen) not in world.reached:
                tr.refuse("a numpy generator made inside the step and drawn from by owngrad (a replay would keep "
                          "drawing from the capture-time generator)", site,
                          "pass a seed (rng=seed makes a fresh generator at every call), or make it outside")
        if tr.rebound_rng is not None:
            tr.refuse("rebinding g.rng", site, "replace g.rng before or after the call")
        if world.py_state != random.getstate():
            tr.refuse("drawing random numbers from Python's random module", site,
                      "draw them before the call and pass them in, or use g.randn / g.rand / F.dropout")
        if not _same_np_state(world.np_state, np.random.get_state()):
            tr.refuse("drawing random numbers from numpy's global generator (np.random.*)", site,
                      "draw them before the call and pass them in, or use g.randn / g.rand / F.dropout")

    def _enter(self, tr: Tracer) -> None:
        g = self.graph
        g._tracer = tr
        tr.rng = g.rng
        traced: Any = TracedGenerator(g.rng, "g.rng")  # recorded draws unwrap it; a direct draw refuses
        g.rng = traced
        tr.prev = activate(tr)

    def _exit(self, tr: Tracer) -> None:
        g = self.graph
        g._tracer = None
        now: Any = g.rng
        if type(now) is not TracedGenerator:  # the step rebound g.rng: refused below; the original goes back
            tr.rebound_rng = now
        g.rng = tr.rng
        deactivate(tr.prev)

    # --- verification ---
    def _verify(self, plan: Plan, sig: tuple[Any, ...], args: tuple[Any, ...], inputs: list[Any]) -> Any:
        """A new plan's first replay, run on a snapshot and compared bitwise with the eager step (which is
        what this call returns). A difference warns, naming the first differing equation, and the
        signature runs eagerly from then on."""
        snap = _Snapshot(plan)
        try:
            env = plan.run(inputs, lambda *ins: interpret(plan.eqns, ins), args)
            if env is None:  # a live borrow conflicts with the step's: eagerly, it fails where it would
                return self._eager(args, sig[1])
        except Exception:  # the eager step decides: it raises as it would, or the plan is not the step
            snap.restore()
            out = self._eager(args, sig[1])
            warnings.warn(f"g.capture: the replay of {name_of(self.fn)} raised where the eager step did not; this "
                          "signature runs eagerly from now on", RuntimeWarning, stacklevel=4)
            self._mark_eager(sig)
            return out
        after = snap.now()
        snap.restore()
        with self.graph._capture_lock:
            try:
                tr, out, _, _ = self._trace(args, sig[1])
            except CaptureRefused:
                self._mark_eager(sig)
                return self._eager(args, sig[1])
        self.eager_calls += 1
        diff = _first_difference(plan, env, tr)
        if diff is None and not _bits_equal(after, snap.now()):
            diff = "the state after the step (params, buffers, optimizer state or generators)"
        if diff is None:
            plan.verified = True
            return out
        warnings.warn(f"g.capture: the replay of {name_of(self.fn)} differs from the eager step at {diff}; this "
                      "signature runs eagerly from now on", RuntimeWarning, stacklevel=4)
        self._mark_eager(sig)
        return out


class _World:
    """What a capture may change outside the arrays it writes: the graph's pending nodes, the guarded
    Python values, the generators it can reach and numpy's global generator -- kept to check and undo."""

    def __init__(self, graph: Graph, guards: list[Guard], watched: list[tuple[str, Any, Any]],
                 reached: set[int]) -> None:
        self.graph = graph
        self.reached = reached  # ids of the objects the step could reach when the capture began
        self.pending = set(graph._pending)
        self.guards = guards
        self.watched = watched
        self.np_state = np.random.get_state()
        self.py_state = random.getstate()

    def rollback(self) -> None:
        g = self.graph
        for n in [n for n in g._pending if n not in self.pending]:
            g._pending.pop(n, None)
            n.release(NodeState.FREED)
        for gd in self.guards:
            if not gd.holds():
                gd.restore()
        for _, gen, state in self.watched:
            gen.bit_generator.state = state
        np.random.set_state(self.np_state)
        random.setstate(self.py_state)


def _same_np_state(a: Any, b: Any) -> bool:
    return bool(a[0] == b[0] and a[2:] == b[2:] and np.array_equal(a[1], b[1]))


_MISS: Any = object()


def capture(self: Graph, fn: Callable[..., Any], fallback: bool = False, max_plans: int = 8,
            verify: bool = False) -> CapturedStep:
    """``step = g.capture(fn)``: ``step(*inputs)`` runs ``fn(*inputs)`` (a whole training step) eagerly
    the first time for each signature, recording its array calls, and replays them afterwards with no
    Node or Tensor per op (bitwise the eager results) while everything the step read outside its
    inputs is unchanged (a change captures a new plan). What cannot be replayed raises GraphError
    naming the line (nothing changed), or with ``fallback=True`` warns and runs that signature
    eagerly. At most ``max_plans`` signatures are kept (least recently used dropped), and as many
    plans per signature. ``verify=True``: each new plan's first replay is compared bitwise with the
    eager step on a snapshot; a difference warns and runs that signature eagerly."""
    return CapturedStep(self, fn, fallback, max_plans, user_site(), verify)


Graph.capture = capture  # the graph's method: this module sits above graph.py, which does not import it
