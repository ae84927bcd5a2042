"""A call of a user function: its summary replayed on the caller's state.

The summary's objects are the callee's: a parameter's object stands for whatever the caller passed
(``Mapper`` maps it to the argument's objects, and a location rooted at it to the argument's
locations); an object the callee made becomes a fresh object of the call site (its clone). The events
are replayed in the callee's order: a write or step checked against the caller's pending results, a
history-carrying write into a param, a backward or free of an argument (checked for a second backward
first), a clear.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mypy.nodes import CallExpr, Expression, MypyFile

from .analysis import BACKWARD, CLEAR, FREE, HISTORY, STEP, WRITE, Event, Summary
from .lattice import NONE, Bound, Interval, Kind, Loc, Obj, Region, Status, Val
from .regions import compose, label

if TYPE_CHECKING:
    from .effects import Effects


class Mapper:
    """Maps a callee's objects, locations and values to the call site's."""

    def __init__(self, fx: Effects, call: Expression, bound: dict[int, Val],
                 syms: dict[str, Bound | None] | None = None) -> None:
        self.fx = fx
        self.call = call
        self.bound = bound
        #: the callee's parameters as index bounds at the call site (``rows`` -> ``2``)
        self.syms = syms or {}
        #: the callee's own objects (any other object it refers to is the caller's)
        self.summary_objs: dict[Any, Obj] | None = None
        self.clones: dict[Obj, Obj] = {}

    def region(self, region: Region | None) -> Region | None:
        """A region with the callee's symbolic bounds put in the caller's terms (unknown: the whole axis)."""
        if region is None:
            return None
        out: list[Interval | None] = []
        for iv in region:
            lo = self.bound_of(iv.lo) if iv is not None else None
            hi = self.bound_of(iv.hi) if iv is not None and iv.hi is not None else None
            ok = iv is not None and lo is not None and (iv.hi is None or hi is not None)
            out.append(Interval(lo, hi) if ok and lo is not None else None)
        return tuple(out) if any(i is not None for i in out) else None

    def bound_of(self, b: Bound) -> Bound | None:
        if b.sym is None:
            return b
        at = self.syms.get(b.sym)
        return Bound(at.sym, at.off + b.off) if at is not None else None

    def arg(self, o: Obj) -> frozenset[Obj]:
        v = self.bound.get(o.arg if o.arg is not None else -1, NONE)
        return v.all_objs()

    def obj(self, o: Obj) -> frozenset[Obj]:
        if o.arg is not None and o.key[:1] == ("arg",):
            return self.arg(o)
        if self.summary_objs is not None and self.summary_objs.get(o.key) is not o:
            return frozenset({o})  # the caller's own object, handed to a nested function as a closure value
        if o.key[:1] == ("global",):  # a module-level variable: the caller's own object for it
            module, _, name = str(o.key[1]).rpartition(".")
            scope = self.fx.an.scope
            if isinstance(scope, MypyFile) and scope.fullname == module and name in self.fx.st.env:
                return self.fx.st.env[name].all_objs()  # called from that module's top level: its value there
            return frozenset({self.fx.an.obj(o.key, o.kind, o.line, name=o.name, cls=o.cls, rg=o.rg)})
        if o.key[:1] == ("free",):  # a closure's variable: the caller's value of that name, if it has one
            held = self.fx.st.env.get(str(o.key[1]))
            if held is not None:
                return held.all_objs()
        return frozenset({self.clone(o)})

    def clone(self, o: Obj) -> Obj:
        hit = self.clones.get(o)
        if hit is not None:
            return hit
        self.fx.an.ctx.spend()
        key = ("clone", self.call, o.key)
        existed = key in self.fx.an.objs
        c = self.fx.an.obj(key, o.kind, self.call.line, cls=o.cls, label=o.label if o.label else o.name,
                           scrambled=o.scrambled)
        self.clones[o] = c
        if o.kind is Kind.RESULT and self.fx.st.no_grad > 0:
            return c  # called under no_grad: the callee's ops recorded nothing
        children = tuple(x for ch in o.children for x in self.obj(ch))
        if children and not c.children:
            c.children = children
        inputs = frozenset(x for i in o.inputs for x in self.obj(i))
        locs = self.locs(o.locs) if o.locs else frozenset({Loc(c)})
        if c.grow(locs=locs, saves=self.locs(o.saves), inputs=inputs, rg=o.rg) and existed:
            self.fx.an.changed = True
        return c

    def locs(self, locs: frozenset[Loc]) -> frozenset[Loc]:
        out: set[Loc] = set()
        for loc in locs:
            passed = self.arg(loc.root) if loc.root.arg is not None and loc.root.key[:1] == ("arg",) else \
                self.obj(loc.root) if loc.root.key[:1] in (("free",), ("global",)) else None
            if passed is not None:
                for a in passed:
                    held = self.fx.field(a, loc.path[0], self.call) if loc.path and a.init_args is not None \
                        else None
                    if held is not None:  # trainer.model is the caller's model: its storage
                        out.update(Loc(hl.root, (*hl.path, *loc.path[1:]), self.region(loc.region))
                                   for h in held.objs for hl in h.locs)
                        continue
                    for al in a.locs:
                        region = compose(al.region, self.region(loc.region)) if not loc.path else \
                            self.region(loc.region)
                        out.add(Loc(al.root, (*al.path, *loc.path), region))
            else:
                out.update(Loc(r, loc.path, self.region(loc.region)) for r in self.obj(loc.root))
        return frozenset(out)

    def val(self, v: Val) -> Val:
        objs = frozenset(x for o in v.objs for x in self.obj(o))
        items = tuple(self.val(i) for i in v.items) if v.items is not None else None
        elem = self.val(v.elem) if v.elem is not None else None
        return Val(objs, items, elem)


def apply_summary(fx: Effects, call: Expression, summary: Summary, bound: dict[int, Val],
                  syms: dict[str, Bound | None] | None = None) -> Val:
    m = Mapper(fx, call, bound, syms)
    m.summary_objs = summary.objs
    shown = label(call.callee) if isinstance(call, CallExpr) else summary.name
    for ev in summary.events:
        replay(fx, m, shown, ev)
    ret = m.val(summary.ret)
    for o, (status, _) in summary.exit.results() if fx.st.no_grad == 0 else ():
        if o.arg is None and (status is Status.PENDING or o in m.clones):
            c = m.clone(o)
            fx.st.mark(c, Status.PENDING if status is Status.PENDING else Status.CONSUMED, call.line)
    return ret


def replay(fx: Effects, m: Mapper, fname: str, ev: Event) -> None:
    fx.an.ctx.spend()
    line = m.call.line
    if ev.kind in (STEP, WRITE):
        locs = m.locs(ev.locs)
        found = fx.conflict(locs)
        if found is not None:
            from .effects import _held

            fx.an.report(line, f'"{fname}(...)" writes "{found[1].describe()}" in place (at its line {ev.line}) '
                               f"while {_held(found[0])}")
        fx.arg_event(line, ev.kind, locs, ev.target)
    elif ev.kind == HISTORY:
        locs = m.locs(ev.locs)
        from .effects import _param_holder

        named_first = sorted(locs, key=lambda loc: not loc.root.name)
        hit = next((loc for loc in named_first if _param_holder(loc.root)), None)
        if hit is not None and fx.st.no_grad == 0:
            fx.an.report(line, f'"{fname}(...)" writes into "{hit.describe()}" (a param) a value with gradient '
                               f"history outside `with g.no_grad():` (at its line {ev.line}): the write would drop "
                               f"that history (a GraphError at run time); write under `with g.no_grad():`, or detach "
                               f"the value")
        fx.arg_event(line, HISTORY, locs, ev.target)
    elif ev.kind in (BACKWARD, FREE):
        arg = Val(ev.objs) if ev.objs else m.bound.get(ev.arg, NONE)
        if ev.kind == BACKWARD:
            _check_again(fx, m, fname, ev, arg)
        for o in arg.all_objs():
            if o.arg is not None:
                fx.an.event(line, Event(ev.kind, line, arg=o.arg, retain=ev.retain, target=ev.target))
        theirs = frozenset(o for o in arg.objs if o.arg is None and fx.an.outside(o))
        if theirs:
            fx.an.event(line, Event(ev.kind, line, retain=ev.retain, target=ev.target, objs=theirs))
        if not ev.retain:
            fx.consume(arg.objs, line, only_theirs=ev.kind == FREE)
    elif ev.kind == CLEAR:
        fx.consume_all(line)


def _check_again(fx: Effects, m: Mapper, fname: str, ev: Event, arg: Val) -> None:
    tops = [o for o in arg.objs if o.kind is Kind.RESULT]
    states = [fx.st.status(o) for o in tops]
    if not tops or any(s is None or s[0] is not Status.CONSUMED for s in states):
        return
    r, at = tops[0], states[0][1] if states[0] is not None else 0
    what = f'"{r.name}" (line {r.line})' if r.name else f'"{r.label}" (line {r.line})'
    fx.an.report(m.call.line, f'"{fname}(...)" runs g.backward (at its line {ev.line}) on {what}, which was '
                              f"already consumed by the backward or free at line {at}; pass retain=True there to walk "
                              f"it twice, or recompute the forward")
