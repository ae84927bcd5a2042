"""The flow check of one function: a worklist fixed point over its CFG, then one reporting pass.

:class:`Analysis` holds the objects of one function body (allocation sites) and runs the solver;
:class:`~owngrad.mypy_plugin.transfer.Transfer` is the transfer function of each operation. A function
analysed for a call site (a *summary*) records its effects on its parameters as :class:`Event` s, in
order; the call site replays them on its own state (``apply_summary``).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mypy.nodes import FuncDef, MypyFile, Statement

from .cfg import CFG, BasicBlock, build_cfg
from .lattice import Kind, Loc, Obj, State, Val, join

#: at most this many summaries of one function (calling contexts; past it, the one for any context), and
#: objects in one analysis (past it the function is not analysed): the cost stays bounded
_MAX_CONTEXTS = 8
MAX_OBJECTS = 20000
#: operations evaluated for one function's diagnostics, its callees' summaries included (an 800-site function
#: takes about 10,000)
MAX_WORK = 300_000

#: at most this many solver rounds (facts of objects grow between rounds; they converge in two or three)
_MAX_ROUNDS = 6


class TooLarge(Exception):
    """An analysis past its bound (see ``MAX_OBJECTS``): the function is not analysed."""


@dataclass(frozen=True)
class Event:
    """An effect of a summarised function on what its caller passed it, at ``line`` of its body.

    ``locs`` are in the callee's objects (a parameter's root maps to the caller's argument)."""

    kind: Effect
    line: int
    locs: frozenset[Loc] = frozenset()
    target: str = ""
    arg: int = -1
    retain: bool = False
    #: for a backward of the caller's own objects (a nested function's closure values): those objects
    objs: frozenset[Obj] = frozenset()


class Effect(enum.Enum):
    """What an event of a summary does."""

    WRITE = "write"  # an in-place write to storage the caller passed in
    STEP = "step"  # an optimizer step over it
    HISTORY = "history"  # a write of a value with gradient history into it
    BACKWARD = "backward"  # a backward of an argument (or of what it was computed from)
    FREE = "free"
    CLEAR = "clear"  # g.clear()
    CONVERT = "convert"  # a traced tensor handed to Python (.item(), float(t)): a captured step refuses it
    SIDE_EFFECT = "side effect"  # a scheduler's step: a captured step runs it at capture only


WRITE, STEP, HISTORY, BACKWARD, FREE, CLEAR = (Effect.WRITE, Effect.STEP, Effect.HISTORY, Effect.BACKWARD,
                                               Effect.FREE, Effect.CLEAR)
CONVERT, SIDE_EFFECT = Effect.CONVERT, Effect.SIDE_EFFECT


@dataclass
class Summary:
    """What calling a function does: its effects (in order), what it returns, which results it leaves."""

    name: str
    events: list[Event]
    ret: Val
    exit: State
    objs: dict[Any, Obj]


@dataclass
class Context:
    """Per mypy run: CFGs, summaries (by function and which parameters require grad), diagnostics."""

    writers: frozenset[str]
    cfgs: dict[object, CFG] = field(default_factory=dict)
    summaries: dict[FuncDef, dict[object, Summary | None]] = field(default_factory=dict)
    frees: dict[FuncDef, frozenset[str]] = field(default_factory=dict)
    diagnostics: dict[object, dict[int, list[str]]] = field(default_factory=dict)
    #: the scopes whose diagnostics were handed to mypy
    reported: set[object] = field(default_factory=set)
    #: operations evaluated for the function being diagnosed, its callees' summaries included
    work: int = 0

    def spend(self) -> None:
        self.work += 1
        if self.work > MAX_WORK:
            raise TooLarge(f"more than {MAX_WORK} operations")

    def cfg(self, scope: FuncDef | MypyFile) -> CFG:
        hit = self.cfgs.get(scope)
        if hit is None:
            hit = self.cfgs[scope] = build_cfg(scope_body(scope))
        return hit

    def summary(self, fd: FuncDef, mask: tuple[bool, ...], free: dict[str, Val] | None = None) -> Summary | None:
        """The summary of ``fd`` for arguments that do (True) or do not require grad, and for a nested function
        the values its enclosing function's variables have at the call (``free``); None while it is being
        computed (recursion: the call is then opaque)."""
        per = self.summaries.setdefault(fd, {})
        key: object = (mask, tuple(sorted(free.items(), key=lambda kv: kv[0]))) if free else mask
        if key not in per and len(per) >= _MAX_CONTEXTS:  # too many calling contexts: the context-free summary
            mask = tuple(True for _ in mask)
            key, free = mask, None
        if key in per:
            return per[key]
        per[key] = None
        analysis = Analysis(self, fd, mask, free=free)
        try:
            analysis.run()
        except TooLarge:
            return None
        per[key] = analysis.summary()
        return per[key]

    def free_names(self, fd: FuncDef) -> frozenset[str]:
        """The enclosing function's variables a nested function reads, also through the nested functions it
        calls (computed once)."""
        hit = self.frees.get(fd)
        if hit is None:
            self.frees[fd] = frozenset()  # recursion
            from .transfer import free_names

            hit = self.frees[fd] = free_names(self, fd)
        return hit

    def diagnose(self, scope: FuncDef | MypyFile) -> dict[int, list[str]]:
        """Every diagnostic of one function (or module top level), by line: computed once."""
        hit = self.diagnostics.get(scope)
        if hit is None:
            mask = top_mask(scope) if isinstance(scope, FuncDef) else ()
            analysis = Analysis(self, scope, mask, reporting=True)
            self.work = 0
            try:
                analysis.run()
            except TooLarge:
                analysis.messages = {}
            hit = self.diagnostics[scope] = analysis.messages
        return hit


def top_mask(fd: FuncDef) -> tuple[bool, ...]:
    """Which parameters require grad when a function is checked on its own: modules, optimizers and objects
    do (they hold params), and so does a writable ``Tensor[Mut]`` (a param handed in to be updated); a read-only
    tensor (``og.Tensor``) is taken for data, a constant, which is what a batch is."""
    from mypy.types import CallableType, get_proper_type

    from .tables import TypeClass, classify, is_mut

    sig = get_proper_type(fd.type)
    types = sig.arg_types if isinstance(sig, CallableType) else [a.variable.type for a in fd.arguments]
    out = []
    for t in types:
        c = classify(t)
        while c.kind is TypeClass.CONTAINER and c.elem is not None:
            t = c.elem
            c = classify(t)
        out.append(c.kind is not TypeClass.TENSOR or is_mut(t))
    return tuple(out)


def scope_body(scope: FuncDef | MypyFile) -> list[Statement]:
    if isinstance(scope, FuncDef):
        return scope.body.body
    return list(scope.defs)


class Analysis:
    """The fixed point of one function body for one calling context."""

    def __init__(self, ctx: Context, scope: FuncDef | MypyFile, mask: tuple[bool, ...],
                 reporting: bool = False, free: dict[str, Val] | None = None) -> None:
        self.ctx = ctx
        self.scope = scope
        self.mask = mask
        self.free = free or {}
        self.reporting = reporting
        self.objs: dict[Any, Obj] = {}
        self.changed = False
        self.messages: dict[int, list[str]] = {}
        self.events: list[tuple[int, int, Event]] = []
        self.ret: Val | None = None
        self.exit_state = State()
        self.final = False

    def obj(self, key: Any, kind: Kind, line: int, **facts: Any) -> Obj:
        """The object of allocation site ``key`` (made on first sight), with ``facts`` added."""
        o = self.objs.get(key)
        if o is None:
            if len(self.objs) > MAX_OBJECTS:
                raise TooLarge(f"more than {MAX_OBJECTS} abstract objects")
            # a new object: nothing read its facts yet, so setting them is no change to the fixed point
            o = self.objs[key] = Obj(key, kind, line)
            for k in ("name", "label", "cls", "arg", "scrambled", "children"):
                if k in facts:
                    setattr(o, k, facts[k])
            if o.kind in (Kind.PARAM, Kind.CONST, Kind.MODULE, Kind.RESULT, Kind.OPAQUE) and "locs" not in facts:
                o.locs = frozenset({Loc(o)})
            o.grow(facts.get("locs", ()), facts.get("saves", ()), facts.get("inputs", ()), facts.get("rg", False))
        elif o.grow(facts.get("locs", ()), facts.get("saves", ()), facts.get("inputs", ()), facts.get("rg", False)):
            self.changed = True
        return o

    def outside(self, o: Obj) -> bool:
        """An object the caller provides: a parameter's, or the caller's own (a closure value, a global)."""
        return o.arg is not None or self.objs.get(o.key) is not o or o.key[:1] in (("global",), ("free",))

    def report(self, line: int, message: str) -> None:
        if self.final and self.reporting:
            lst = self.messages.setdefault(line, [])
            if message not in lst:
                lst.append(message)

    def event(self, line: int, ev: Event) -> None:
        if self.final and not self.reporting:
            self.events.append((line, len(self.events), ev))

    def run(self) -> None:
        from .transfer import (
            Transfer,  # the transfer functions need this module's types
            live_names,
        )

        cfg = self.ctx.cfg(self.scope)
        transfer = Transfer(self)
        entry = transfer.entry_state()
        live = live_names(self.ctx, self.scope) if isinstance(self.scope, FuncDef) else None
        for _ in range(_MAX_ROUNDS):
            self.changed = False
            ins = solve(cfg, entry, transfer.block, live)
            if not self.changed:
                break
        self.final = True
        for b in cfg.blocks:
            if b in ins:
                out = transfer.block(b, ins[b].copy())
                if b is cfg.exit:
                    self.exit_state = out

    def summary(self) -> Summary:
        name = self.scope.name if isinstance(self.scope, FuncDef) else ""
        events = [e for _, _, e in sorted(self.events, key=lambda t: (t[0], t[1]))]
        from .lattice import NONE
        return Summary(name, events, self.ret or NONE, self.exit_state, self.objs)


def _holds_results(v: Val) -> bool:
    """Whether ``v`` (or an element or item of it) may be a tensor result or a view of one."""
    stack = [v]
    while stack:
        x = stack.pop()
        if any(o.kind in (Kind.RESULT, Kind.VIEW) for o in x.objs):
            return True
        stack.extend(x.items or ())
        if x.elem is not None:
            stack.append(x.elem)
    return False


def solve(cfg: CFG, entry: State, transfer: Callable[[BasicBlock, State], State],
          live: dict[BasicBlock, frozenset[str]] | None = None) -> dict[BasicBlock, State]:
    """The worklist algorithm: the in-state of every reachable block at the fixed point. A block's in-state
    is the join of its predecessors' out-states; a block is revisited when its in-state changed. ``live``:
    the names each block's out-state keeps (``self.model`` is kept with ``self``)."""
    preds = cfg.preds()
    ins: dict[BasicBlock, State] = {cfg.entry: entry}
    outs: dict[BasicBlock, State] = {}
    work = deque([cfg.entry])
    queued = {cfg.entry}
    budget = 50 * len(cfg.blocks)  # a guard: joins make the states grow, so this is never reached in practice
    while work and budget > 0:
        budget -= 1
        b = work.popleft()
        queued.discard(b)
        out = transfer(b, ins[b].copy())
        if live is not None and b is not cfg.exit:
            keep = live[b]
            # a name no later code reads still holds its value until it is rebound or deleted: a result it
            # holds keeps its history alive, and with it the borrows of what that history saved
            out.env = {k: v for k, v in out.env.items() if k.partition(".")[0] in keep or _holds_results(v)}
        if outs.get(b) == out:
            continue
        outs[b] = out
        for s in b.succ:
            new = out
            for p in preds[s]:
                if p is not b and p in outs:
                    new = join(new, outs[p])
            if ins.get(s) != new:
                ins[s] = new
                if s not in queued:
                    queued.add(s)
                    work.append(s)
    return ins
