"""Calls and their effects: writes, optimizer steps, backward / free, module calls, user functions.

Every check the plugin reports lives here, at the operation the run time refuses: a write (or step)
whose storage a pending result saved, a history-carrying write into a param, a backward of a consumed
result, a step with another loss's gradients. A call of a user function replays that function's
summary (its events, in order) on the caller's state, so the check is the same however the code is
factored.
"""

from __future__ import annotations

from mypy.nodes import (
    ARG_NAMED,
    ARG_OPT,
    ARG_POS,
    CallExpr,
    Expression,
    FuncDef,
    MemberExpr,
    MypyFile,
    NameExpr,
    RefExpr,
    TypeInfo,
    Var,
)
from mypy.types import CallableType, Type, get_proper_type

from .analysis import BACKWARD, CLEAR, CONVERT, FREE, HISTORY, SIDE_EFFECT, STEP, WRITE, Analysis, Effect, Event
from .lattice import NONE, Bound, Kind, Loc, Obj, State, Status, Val, union
from .regions import bound_of, dotted, label, lvalue_root
from .tables import (
    CONST_FACTORIES,
    CONTAINER_FUNCS,
    MODULE,
    NOSAVE_FUNCS,
    NOSAVE_METHODS,
    OPTIMIZER,
    OUTPUT_SAVERS,
    PAIR_METHODS,
    PARAMLESS_MODULES,
    PART_METHODS,
    PLAIN_FUNCS,
    PLAIN_METHODS,
    SAME_METHODS,
    VIEW_METHODS,
    TypeClass,
    classify,
    func_of,
    has_body,
    holds_tensors,
    method_class,
)

#: tensor methods that hand a traced value to Python (a captured step refuses them)
_CONVERSIONS = frozenset({"item", "numpy", "tolist", "any", "all", "borrow"})
_STORE_METHODS = frozenset({"append", "extend", "insert", "add", "update", "setdefault", "appendleft"})
_TENSORISH = frozenset({Kind.PARAM, Kind.CONST, Kind.MODULE, Kind.RESULT, Kind.VIEW, Kind.DETACHED, Kind.OPAQUE})


def _tensors(v: Val) -> list[Obj]:
    return [o for o in v.objs if o.kind in _TENSORISH]


def _locs(v: Val) -> frozenset[Loc]:
    out: set[Loc] = set()
    for o in _tensors(v):
        out |= o.locs
    return frozenset(out)


def _is_module(o: Obj) -> bool:
    return o.cls is not None and o.cls.has_base(MODULE)


def _is_scheduler(e: Expression) -> bool:
    """A learning-rate scheduler (declared as one: a parameter, an attribute, an annotated name)."""
    node = e.node if isinstance(e, RefExpr) else None
    t = node.type if isinstance(node, Var) else None
    c = classify(t) if t is not None else None
    return c is not None and c.info is not None and c.info.has_base("owngrad.optim.lr_scheduler.LRScheduler")


def _is_optimizer(o: Obj) -> bool:
    """An optimizer built here, or one handed in (declared an optimizer)."""
    return o.kind is Kind.OPTIMIZER or (o.kind is Kind.OPAQUE and o.cls is not None and o.cls.has_base(OPTIMIZER))


def _param_holder(o: Obj) -> bool:
    """A param, a module, or a parameter declared as a module: a history-carrying write into it is refused."""
    return o.kind in (Kind.PARAM, Kind.MODULE) or (o.kind is Kind.OPAQUE and _is_module(o))


class Effects:
    """The calls and checks of the transfer functions (:class:`~owngrad.mypy_plugin.transfer.Transfer`)."""

    def __init__(self, an: Analysis) -> None:
        self.an = an
        self.st = State()

    # implemented by Transfer
    def eval(self, e: Expression) -> Val:  # pragma: no cover - overridden
        raise NotImplementedError

    def result(self, key: tuple[object, ...], line: int, operands: Val, saves: frozenset[Loc], text: str,
               saves_self: bool = False) -> Val:  # pragma: no cover - overridden
        raise NotImplementedError

    def view(self, o: Obj, key: Expression | None, e: Expression,
             scrambled: bool = False) -> Val:  # pragma: no cover - overridden
        raise NotImplementedError

    def store(self, container: Expression, vals: list[Val]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def field(self, o: Obj, attr: str, e: Expression) -> Val | None:  # pragma: no cover - overridden
        raise NotImplementedError

    # --- calls ---
    def call(self, e: CallExpr) -> Val:
        callee = e.callee
        if isinstance(callee, MemberExpr) and not (isinstance(callee.expr, RefExpr) and
                                                   isinstance(callee.expr.node, MypyFile)):
            return self.method(e, callee)
        vals = [self.eval(a) for a in e.args]
        node = callee.node if isinstance(callee, RefExpr) else None
        if isinstance(callee, NameExpr) and callee.fullname.startswith("builtins."):
            if callee.name in ("float", "int", "bool") and vals and _tensors(vals[0]):
                self.an.event(e.line, Event(CONVERT, e.line, target=f"{callee.name}(...)"))
            return self.builtin(callee.name, vals)
        if isinstance(callee, NameExpr) and callee.fullname.startswith(("typing.", "typing_extensions.")):
            return self.builtin(callee.name, vals)  # cast, assert_type, reveal_type
        if isinstance(node, TypeInfo):
            return self.construct(e, node, vals)
        fd = func_of(node)
        if fd is not None:
            if has_body(fd):
                return self.call_function(e, fd, None, vals, e)
            return self.library(e, fd, vals)
        if isinstance(node, Var) or not isinstance(callee, RefExpr):  # a module, a callable object
            return self.call_value(e, self.eval(callee), vals)
        return self.opaque(e, vals, None)

    def builtin(self, name: str, vals: list[Val]) -> Val:
        if name in PLAIN_FUNCS or not vals:
            return NONE
        if name in CONTAINER_FUNCS:
            elem = vals[0].element()
            if name == "dict" and elem.items is not None and len(elem.items) == 2:
                elem = elem.items[1]  # dict(pairs): the values
            return Val(elem.objs, elem=elem)
        if name == "next":
            return vals[0].element()
        if name == "zip":
            elem = Val(union(vals).objs, items=tuple(v.element() for v in vals))
            return Val(elem.objs, elem=elem)
        if name == "enumerate":
            first = vals[0].element()
            return Val(first.objs, elem=Val(first.objs, items=(NONE, first)))
        if name == "cast":
            return vals[-1]
        if name in ("assert_type", "reveal_type"):
            return vals[0]
        return NONE

    def construct(self, e: CallExpr, info: TypeInfo, vals: list[Val]) -> Val:
        c = classify_info(info)
        key = ("new", e)
        if c is TypeClass.GRAPH:
            return Val(frozenset({self.an.obj(key, Kind.GRAPH, e.line)}))
        if c is TypeClass.MODULE:
            children = tuple(o for v in vals for o in v.objs if o.kind in _TENSORISH and _is_module(o))
            locs = frozenset().union(*(o.locs for o in children)) if children else frozenset()
            rg = not (info.fullname.startswith("owngrad.") and info.name in PARAMLESS_MODULES)
            o = self.an.obj(key, Kind.MODULE, e.line, cls=info, children=children, locs=locs, rg=rg)
            o.locs = o.locs | {Loc(o)}
            self.remember_init(e, o, info, vals)
            return Val(frozenset({o}))
        if c is TypeClass.OPTIMIZER:
            over = vals[0].element() if vals else NONE
            o = self.an.obj(key, Kind.OPTIMIZER, e.line, cls=info, locs=_locs(over), inputs=_tensors(over))
            return Val(frozenset({o}))
        if c in (TypeClass.PLAIN, TypeClass.TENSOR, TypeClass.GRADS):
            return NONE
        o = self.an.obj(key, Kind.OPAQUE, e.line, cls=info)
        self.remember_init(e, o, info, vals)
        return Val(frozenset({o}))

    def remember_init(self, e: CallExpr, o: Obj, info: TypeInfo, vals: list[Val]) -> None:
        """What a user class's ``__init__`` got, so that its fields can be told apart: ``self.model`` is the
        caller's model, ``self.opt`` updates it."""
        init = func_of(info.get_method("__init__"))
        if init is not None and has_body(init):
            o.init_args = _bind(init, e, Val(frozenset({o})), vals)

    def method(self, e: CallExpr, callee: MemberExpr) -> Val:
        name = callee.name
        recv = self.eval(callee.expr)
        vals = [self.eval(a) for a in e.args]
        if name in ("backward", "free", "clear", "no_grad") or any(o.kind is Kind.GRAPH for o in recv.objs):
            return self.graph_method(e, name, recv, vals)
        tensors = _tensors(recv)
        if name in self.an.ctx.writers and tensors:
            self.write(callee.expr, recv, union(vals), e.line)
            return recv if name != "borrow_mut" else NONE
        if name == "step" and e.args and any(_is_optimizer(o) or (o.kind is Kind.OPAQUE and o.cls is None)
                                             for o in recv.objs):  # an optimizer, or a global not yet typed
            self.step(e, callee.expr, recv, vals[0] if vals else NONE)
            return NONE
        if name == "load_state_dict" and any(_is_module(o) for o in tensors):
            self.write(callee.expr, Val(frozenset(o for o in tensors if _is_module(o))), NONE, e.line)
            return NONE
        if recv.container and name in _STORE_METHODS:
            self.store(callee.expr, [v.element() if name in ("extend", "update") else v for v in vals])
            return NONE
        if name == "step" and (_is_scheduler(callee.expr) or (not e.args and self.method_def(recv, callee) is None)):
            self.an.event(e.line, Event(SIDE_EFFECT, e.line, target=f"{label(callee)}()"))
        if any(o.cls is not None and isinstance(getattr(o.cls.get(name), "node", None), Var) for o in recv.objs):
            return self.call_value(e, self.eval(callee), vals)  # self.actor(x): a module held in an attribute
        return self.method_value(e, callee, recv, vals)

    def method_value(self, e: CallExpr, callee: MemberExpr, recv: Val, vals: list[Val]) -> Val:
        """What a method returns, by what it is: a part listing, a view, a user method, a tensor op."""
        name = callee.name
        if recv.container:
            return recv.element() if name in ("pop", "get", "popleft", "copy", "values") else NONE
        if name in PART_METHODS:
            parts = Val(frozenset(_tensors(recv)))
            return Val(parts.objs, elem=parts) if parts.objs else NONE
        if name in PAIR_METHODS:
            parts = Val(frozenset(_tensors(recv)))
            return Val(parts.objs, elem=Val(parts.objs, items=(NONE, parts))) if parts.objs else NONE
        if name == "detach":
            return union([Val(frozenset({self.an.obj(("detach", e, o.key), Kind.DETACHED, e.line, locs=o.locs)}))
                          for o in _tensors(recv)])
        if name in VIEW_METHODS:
            return union([self.view(o, None, e, scrambled=True) for o in _tensors(recv)])
        if name in SAME_METHODS:
            return recv
        if name in _CONVERSIONS and _tensors(recv):
            self.an.event(e.line, Event(CONVERT, e.line, target=f"{label(callee)}()"))
        if name in PLAIN_METHODS or name == "clip_norm_":
            return NONE
        fd = self.method_def(recv, callee)
        if fd is not None:
            return self.call_function(e, fd, recv, vals, e)
        if name == "forward":
            return self.call_value(e, recv, vals)
        if name == "clone" and any(_is_module(o) for o in recv.objs):
            return Val(frozenset({self.an.obj(("new", e), Kind.MODULE, e.line, cls=next(
                o.cls for o in recv.objs if _is_module(o)), rg=True)}))
        if any(o.kind is not Kind.OPAQUE or o.cls is None or o.cls.fullname.startswith("owngrad.tensor")
               for o in _tensors(recv)):
            return self.tensor_op(e, name, recv, vals)
        return self.opaque(e, [recv, *vals], _method_return(recv, name))

    def method_def(self, recv: Val, callee: MemberExpr) -> FuncDef | None:
        """The user-defined method ``recv.name`` calls, from the object's class or the declared type."""
        infos = [o.cls for o in recv.objs if o.cls is not None]
        if not infos and isinstance(callee.expr, RefExpr) and isinstance(callee.expr.node, Var):
            c = classify(callee.expr.node.type)
            infos = [c.info] if c.info is not None else []
        for info in infos:
            fd = func_of(info.get_method(callee.name)) if isinstance(info, TypeInfo) else None
            if fd is not None and has_body(fd) and not fd.is_static and not fd.is_class:
                return fd
        return None

    def tensor_op(self, e: CallExpr, name: str, recv: Val, vals: list[Val]) -> Val:
        operands = union([recv, *vals])
        if name in NOSAVE_METHODS:
            return self.result(("call", e), e.line, operands, frozenset(), label(e))
        if name in OUTPUT_SAVERS:
            return self.result(("call", e), e.line, operands, frozenset(), label(e), saves_self=True)
        saves = _locs(operands) if operands.rg else frozenset()
        return self.result(("call", e), e.line, operands, saves, label(e))

    def graph_method(self, e: CallExpr, name: str, recv: Val, vals: list[Val]) -> Val:
        if name == "param":
            return Val(frozenset({self.an.obj(("new", e), Kind.PARAM, e.line, rg=True)}))
        if name in CONST_FACTORIES:
            return Val(frozenset({self.an.obj(("new", e), Kind.CONST, e.line)}))
        if name in ("backward", "free") and vals:
            retain = any(n == "retain" and isinstance(a, NameExpr) and a.name == "True"
                         for a, n in zip(e.args, e.arg_names))
            return self.backward(e, vals[0], retain, name == "free")
        if name == "clear" and not vals:
            self.consume_all(e.line)
        if name == "capture" and e.args:
            self.check_capture(e)
        if name == "freeze" and vals:
            return vals[0]
        return NONE

    def library(self, e: CallExpr, fd: FuncDef, vals: list[Val]) -> Val:
        """A function of owngrad or another library (no body to summarise)."""
        ret = _ret_type(fd)
        if fd.fullname in ("copy.deepcopy", "copy.copy") and vals:  # a new module or tensor: no history, no borrows
            return union([Val(frozenset({self.an.obj(("copy", e, o.key), o.kind if o.kind in (Kind.MODULE, Kind.PARAM)
                                                     else Kind.CONST, e.line, cls=o.cls, rg=o.rg)}))
                          for o in _tensors(vals[0])])
        if not fd.fullname.startswith("owngrad."):  # it records nothing itself: what it returns comes from its args
            return NONE if ret is not None and not holds_tensors(ret) else union(vals)
        if fd.name in NOSAVE_FUNCS:
            operands = union([v.element() if v.container else v for v in vals])
            return self.result(("call", e), e.line, operands, frozenset(), label(e))
        return self.opaque(e, vals, ret)

    def opaque(self, e: CallExpr | MemberExpr, vals: list[Val], ret: Type | None) -> Val:
        """A call the check cannot see into: its result saves every tensor it was given (when recorded)."""
        c = classify(ret) if ret is not None else None
        if ret is not None and not holds_tensors(ret):
            return NONE
        operands = union([v.element() if v.container else v for v in vals])
        if c is None and not _tensors(operands):
            return NONE
        if c is not None and c.kind is TypeClass.GRADS:
            return Val(frozenset({self.an.obj(("grads", e), Kind.GRADS, e.line, inputs=_tensors(operands))}))
        if c is not None and c.kind in (TypeClass.MODULE, TypeClass.OPTIMIZER, TypeClass.OBJECT, TypeClass.GRAPH):
            kind = Kind.GRAPH if c.kind is TypeClass.GRAPH else Kind.OPAQUE
            return Val(frozenset({self.an.obj(("new", e), kind, e.line, cls=c.info, rg=True)}))
        out = self.result(("call", e), e.line, operands, _locs(operands) if operands.rg else frozenset(), label(e))
        if c is not None and c.kind is TypeClass.TUPLE:
            return Val(out.objs, items=tuple(out for _ in c.items))
        if c is not None and c.kind is TypeClass.CONTAINER:
            return Val(out.objs, elem=out)
        return out

    # --- module calls ---
    def call_value(self, e: CallExpr, fn: Val, vals: list[Val]) -> Val:
        """``model(x)``: a built-in module by what it saves, a user module through its ``forward``."""
        out: list[Val] = []
        x = vals[0] if vals else NONE
        for o in fn.objs:
            if o.cls is not None and o.cls.fullname.startswith("owngrad.") and _is_module(o):
                out.append(self.builtin_module(e, o, x, 0))
                continue
            fd = None
            if o.cls is not None:
                fd = func_of(o.cls.get_method("forward")) or func_of(o.cls.get_method("__call__"))
            if fd is not None and has_body(fd):
                out.append(self.call_function(e, fd, Val(frozenset({o})), vals, e))
            else:
                ret = _method_return(Val(frozenset({o})), "__call__") if o.cls is not None else None
                out.append(self.opaque(e, [Val(frozenset({o})), *vals], ret))
        if not out:
            return self.opaque(e, vals, None)
        return union(out) if len(out) != 1 else out[0]

    def builtin_module(self, e: CallExpr, o: Obj, x: Val, i: int) -> Val:
        """What a built-in module's forward saves: a weighted layer its input, and its weight when the input
        requires grad (a first layer on constant data saves only the data); a chain, link by link."""
        name = o.cls.name if o.cls is not None else ""
        key = ("module", e, o.key, i)
        if name in ("Sequential",) and o.children:
            for j, child in enumerate(o.children):
                x = self.builtin_module(e, child, x, i * 16 + j + 1) if child.cls is not None and \
                    child.cls.fullname.startswith("owngrad.") else self.call_value(e, Val(frozenset({child})), [x])
            return x
        operands = union([x, Val(frozenset({o}))]) if o.rg else x
        if name in ("Linear", "Conv2d", "LayerNorm", "BatchNorm1d"):
            weight = frozenset(Loc(loc.root, (*loc.path, "weight")) for loc in o.locs) if x.rg else frozenset()
            return self.result(key, e.line, operands, _locs(x) | weight, label(e))
        if name in ("ReLU", "Tanh", "Sigmoid", "Dropout", "Embedding"):
            return self.result(key, e.line, operands, frozenset(), label(e))
        if name == "Flatten":
            return union([self.view(t, None, e, scrambled=True) for t in _tensors(x)])
        saves = _locs(x) | (o.locs if o.rg else frozenset())
        core = self.result(key, e.line, operands, saves, label(e))
        c = classify(_method_return(Val(frozenset({o})), "forward"))
        if c.kind is TypeClass.TUPLE:  # (out, h): out stacks the steps (saves nothing), h is the last one
            out = self.result((*key, "out"), e.line, core, frozenset(), label(e))
            rest = tuple(core if classify(t).kind is not TypeClass.TUPLE else Val(core.objs, items=(core, core))
                         for t in c.items[1:])
            return Val(out.objs | core.objs, items=(out, *rest))
        return core

    # --- user functions: summaries ---
    def call_function(self, e: Expression, fd: FuncDef, receiver: Val | None, vals: list[Val],
                      call: Expression) -> Val:
        bound = _bind(fd, call, receiver, vals)
        if bound is None:
            return self.opaque(e if isinstance(e, (CallExpr, MemberExpr)) else call,  # type: ignore[arg-type]
                               [receiver or NONE, *vals], _ret_type(fd))
        mask = tuple(bound.get(i, NONE).rg for i in range(len(fd.arguments)))
        free = {n: self.st.env[n] for n in self.an.ctx.free_names(fd) if n in self.st.env}
        summary = self.an.ctx.summary(fd, mask, free)
        if summary is None:
            return self.opaque(call, [receiver or NONE, *vals], _ret_type(fd))  # type: ignore[arg-type]
        from .calls import apply_summary

        return apply_summary(self, call, summary, bound, _index_args(fd, call))

    def check_capture(self, e: CallExpr) -> None:
        """``g.capture(fn)``: what ``fn`` does that a captured step refuses (converting a traced tensor to a Python
        value) or bakes in (a scheduler's step runs at capture only)."""
        target = e.args[0]
        fd = func_of(target.node) if isinstance(target, RefExpr) else None
        if fd is None or not has_body(fd):
            return
        from .analysis import top_mask

        free = {n: self.st.env[n] for n in self.an.ctx.free_names(fd) if n in self.st.env}
        summary = self.an.ctx.summary(fd, top_mask(fd), free)
        for ev in summary.events if summary is not None else ():
            if ev.kind == CONVERT:
                self.an.report(e.line, f'g.capture({fd.name}): "{ev.target}" at line {ev.line} converts a traced '
                                       f"tensor to a Python value, which a captured step cannot replay (a GraphError "
                                       f"at capture); return the tensor and convert it after the call")
            elif ev.kind == SIDE_EFFECT:
                self.an.report(e.line, f'g.capture({fd.name}): "{ev.target}" at line {ev.line} runs at capture only, '
                                       f"never at a replay; step the scheduler outside the captured function")

    # --- checks ---
    def conflict(self, locs: frozenset[Loc], value: Val | None = None) -> tuple[Obj, Loc] | None:
        """The pending result to name when writing ``locs`` conflicts: the latest one (a named one first), held
        by a name or by the ``value`` being written, whose pending history holds a node that saved an
        overlapping location; and the location hit."""
        savers: dict[Obj, Loc] = {}
        pending = self.st.pending()
        for r in pending:
            for s in r.saves:
                hit = next((w for w in locs if s.overlaps(w)), None)
                if hit is not None:
                    savers[r] = hit
                    break
        if not savers:
            return None
        held = self.held() | (self.ancestors(set(value.objs)) if value is not None else set())
        best: tuple[Obj, Loc] | None = None
        for r in sorted((r for r in pending if r in held), key=lambda o: o.order, reverse=True):
            reached = self.history(r)
            hit = next((savers[a] for a in reached if a in savers), None)
            if hit is not None and (best is None or (r.name and not best[0].name)):
                best = (r, hit)
                if r.name:
                    break
        return best

    def held(self) -> set[Obj]:
        """What the names in scope (variables, attributes, containers' elements) hold. A pending result nothing
        holds -- a temporary (``model(x).sum().item()``), a rebound or deleted name's old value -- can never be
        walked by a backward: the runtime releases its borrows when a write needs them, so it conflicts with
        nothing."""
        out: set[Obj] = set()
        stack = list(self.st.env.values())
        while stack:
            v = stack.pop()
            out.update(v.objs)
            stack.extend(v.items or ())
            if v.elem is not None:
                stack.append(v.elem)
        return self.ancestors(out)

    @staticmethod
    def ancestors(objs: set[Obj]) -> set[Obj]:
        """``objs`` and what they were computed from: a live tensor keeps its whole history alive."""
        out, stack = set(objs), list(objs)
        while stack:
            for i in stack.pop().inputs:
                if i not in out:
                    out.add(i)
                    stack.append(i)
        return out

    def history(self, r: Obj) -> list[Obj]:
        """``r`` and the pending results (through views) its backward would walk."""
        out, stack, seen = [], [r], {r}
        while stack:
            o = stack.pop()
            if o.kind is Kind.RESULT and o not in self.st.live:
                continue
            out.append(o)
            for i in o.inputs:
                if i not in seen and i.kind in (Kind.RESULT, Kind.VIEW, Kind.CONST):
                    seen.add(i)
                    stack.append(i)
        return out

    def write(self, target: Expression, tval: Val, value: Val, line: int) -> None:
        locs = _locs(tval)
        if not locs:
            return
        what = dotted(lvalue_root(target, self.an.ctx.writers)) or "tensor"
        if value.rg and self.st.no_grad == 0:
            if any(_param_holder(loc.root) for loc in locs):
                self.an.report(line, f'in-place write into "{what}" (a param) of a value with gradient history '
                                     f"outside `with g.no_grad():`: the write would drop that history (a GraphError at "
                                     f"run time); write under `with g.no_grad():`, or detach the value")
            self.arg_event(line, HISTORY, locs, what)
            for loc in locs:
                if loc.root.kind in (Kind.CONST, Kind.RESULT) and loc.root.grow(inputs=value.objs, rg=True):
                    self.an.changed = True  # a buffer filled with history becomes part of the graph
        found = self.conflict(locs, value)
        if found is not None:
            self.an.report(line, f'in-place write to "{what}" while {_held(found[0])}')
        self.arg_event(line, WRITE, locs, what)

    def arg_event(self, line: int, kind: Effect, locs: frozenset[Loc], what: str) -> None:
        """Records an effect on storage the caller passed in (a parameter's), for the call sites."""
        mine = frozenset(loc for loc in locs if self.an.outside(loc.root))
        if mine:
            self.an.event(line, Event(kind, line, mine, what))

    def step(self, e: CallExpr, opt_expr: Expression, recv: Val, grads: Val) -> None:
        locs = frozenset().union(*(o.locs for o in recv.objs if _is_optimizer(o) or o.cls is None))
        opt = dotted(opt_expr) or "optimizer"
        found = self.conflict(locs)
        if found is not None:
            owner = next((i for o in recv.objs for i in o.inputs if i.name and found[1] in i.locs), None)
            what = owner.name if owner is not None else found[1].describe()
            self.an.report(e.line, f'"{opt}.step(...)" updates "{what}" in place while {_held(found[0])}')
        self.arg_event(e.line, STEP, locs, opt)
        self.foreign_grads(e, opt, recv, grads)

    def foreign_grads(self, e: CallExpr, opt: str, recv: Val, grads: Val) -> None:
        """``opt.step(grads)`` with the gradients of a loss built from none of the optimizer's params (reported
        only when every leaf of that loss is known: made in this function, not handed in)."""
        opts = [o for o in recv.objs if o.kind is Kind.OPTIMIZER]
        losses = [i for g in grads.objs if g.kind is Kind.GRADS for i in g.inputs]
        if len(opts) != len(recv.objs) or not losses or any(not _known(i) for o in opts for i in o.inputs):
            return
        leaves = _leaves(losses)
        if not leaves or any(not _known(o) for o in leaves):
            return
        held = frozenset().union(*(o.locs for o in leaves if o.rg))
        if any(a.overlaps(b) for o in opts for a in o.locs for b in held):
            return
        loss = losses[0]
        what = f'"{loss.name}" (line {loss.line})' if loss.name else f"the loss at line {loss.line}"
        arg = dotted(e.args[0]) if e.args else None
        self.an.report(e.line, f'"{opt}.step({arg or "..."})" gets the gradients of {what}, which depends on none '
                               f'of the params "{opt}" updates (a GradError at run time); step it with the Grads of '
                               f"a loss computed from its params")

    def backward(self, e: CallExpr, loss: Val, retain: bool, free: bool) -> Val:
        if not free:
            self.check_consumed(e, loss)
        kind = FREE if free else BACKWARD
        for o in loss.all_objs():
            if o.arg is not None:
                self.an.event(e.line, Event(kind, e.line, arg=o.arg, retain=retain, target=dotted(e.args[0]) or ""))
        theirs = frozenset(o for o in loss.objs if o.arg is None and self.an.outside(o))
        if theirs:
            self.an.event(e.line, Event(kind, e.line, retain=retain, target=dotted(e.args[0]) or "", objs=theirs))
        if not retain:
            self.consume(loss.objs, e.line, only_theirs=free)
        if free:
            return NONE
        g = self.an.obj(("grads", e), Kind.GRADS, e.line, inputs=frozenset(_tensors(loss)))
        return Val(frozenset({g}))

    def check_consumed(self, e: CallExpr, loss: Val) -> None:
        """A backward that would walk a consumed node: the loss itself was consumed, or its history reaches a
        result an earlier backward (or free) consumed (``h`` after ``g.backward(h.sum())``, then ``out``)."""
        arg = dotted(e.args[0]) if e.args else None
        head = f"g.backward({arg or '...'})"
        tops = [o for o in loss.objs if o.kind is Kind.RESULT]
        states = [self.st.status(o) for o in tops]
        if tops and all(s is not None and s[0] is Status.CONSUMED for s in states):
            self.an.report(e.line, f"{head}: {_named(tops[0])} was already consumed by the backward or free at "
                                   f"line {states[0][1] if states[0] else 0}; pass retain=True there to walk it twice, "
                                   f"or recompute the forward")
            return
        stack, seen = [o for o in loss.objs if self.st.status(o) is not None or o.kind is Kind.VIEW], set(loss.objs)
        while stack:
            o = stack.pop()
            st = self.st.status(o)
            if st is not None and st[0] is Status.CONSUMED:
                self.an.report(e.line, f"{head}: its history reaches {_named(o)}, consumed by the backward or free "
                                       f"at line {st[1]}; pass retain=True there to walk it twice, or recompute the "
                                       f"forward")
                return
            if o.kind in (Kind.VIEW, Kind.CONST) or (st is not None and st[0] is Status.PENDING):
                for i in o.inputs - seen:
                    seen.add(i)
                    if i.kind in (Kind.RESULT, Kind.VIEW, Kind.CONST):
                        stack.append(i)

    def consume(self, objs: frozenset[Obj], line: int, only_theirs: bool = False) -> None:
        """A backward or free at ``line``: the pending results these were computed from are consumed. A free
        (``only_theirs``) drops only the nodes no other pending result needs (``out, h = gru(x)`` and a free of
        what ``h`` made keeps the steps, which ``out`` still needs)."""
        spared = self.needed_elsewhere(objs) if only_theirs else set()
        objs = frozenset(objs) - spared
        stack = list(objs)
        seen = set(stack)
        while stack:
            o = stack.pop()
            if o.kind is Kind.RESULT:
                st = self.st.status(o)
                if st is None or st[0] is Status.CONSUMED:
                    continue
                self.st.mark(o, Status.CONSUMED, line)
            elif o.kind not in (Kind.VIEW, Kind.CONST):  # a constant written with history is part of the graph
                continue
            for i in o.inputs - seen - spared:
                seen.add(i)
                stack.append(i)

    def needed_elsewhere(self, objs: frozenset[Obj]) -> set[Obj]:
        """The results in the pending history of ``objs`` that a pending result outside that history needs,
        and their own history."""
        mine = set(objs)
        for o in objs:
            mine.update(self.history(o))
        needed = [i for r in self.st.pending() if r not in mine for i in r.inputs if i in mine]
        out: set[Obj] = set()
        while needed:
            o = needed.pop()
            if o not in out:
                out.add(o)
                needed.extend(i for i in o.inputs if i in mine)
        return out

    def consume_all(self, line: int) -> None:
        self.st.consume_all(line)
        self.an.event(line, Event(CLEAR, line))


def _leaves(losses: list[Obj]) -> set[Obj]:
    """What a loss was computed from, at the bottom: params, constants, modules, parts of modules and objects."""
    leaves: set[Obj] = set()
    stack, seen = list(losses), set(losses)
    while stack:
        o = stack.pop()
        if o.kind is Kind.DETACHED:
            continue
        below = list(o.inputs) if o.kind in (Kind.RESULT, Kind.CONST) else \
            [i for i in o.inputs if i.kind in (Kind.RESULT, Kind.VIEW)] if o.kind is Kind.VIEW else []
        if not below:
            leaves.add(o)
        for i in below:
            if i not in seen:
                seen.add(i)
                stack.append(i)
    return leaves


def _known(o: Obj) -> bool:
    """Made in the function analysed (not a parameter, a global, a call's opaque result)."""
    roots = {loc.root for loc in o.locs} or {o}
    return all(r.kind in (Kind.PARAM, Kind.MODULE, Kind.CONST, Kind.RESULT) or
               (r.kind is Kind.OPAQUE and r.key[:1] == ("new",)) for r in roots)


def _named(r: Obj) -> str:
    return f'"{r.name or r.label}" (line {r.line})'


def _held(r: Obj) -> str:
    """The end of a conflict message: who holds the storage, and what to do."""
    if r.name:
        return (f'"{r.name}" (line {r.line}) depends on it and still waits for g.backward(...); call '
                f"g.backward({r.name}) first, or g.free({r.name})")
    return (f'a temporary "{r.label}" (line {r.line}) depends on it and still waits for g.backward(...) (nothing '
            f"will consume it); compute it under `with g.no_grad():`, or name it and g.free(...) it first")


def classify_info(info: TypeInfo) -> TypeClass:
    from mypy.types import Instance

    return classify(Instance(info, [])).kind


def _ret_type(fd: FuncDef) -> Type | None:
    sig = get_proper_type(fd.type)
    return sig.ret_type if isinstance(sig, CallableType) else None


def _method_return(recv: Val, name: str) -> Type | None:
    for o in recv.objs:
        if o.cls is not None:
            fd = func_of(o.cls.get_method(name))
            if fd is not None:
                return _ret_type(fd)
    return None


def _index_args(fd: FuncDef, call: Expression) -> dict[str, Bound | None]:
    """The call's arguments that can bound an index (``2``, ``k``, ``k + 1``), by the callee's parameter name."""
    if not isinstance(call, CallExpr):
        return {}
    names = [a.variable.name for a in fd.arguments]
    offset = 1 if isinstance(call.callee, MemberExpr) and method_class(fd) is not None and not fd.is_static else 0
    out: dict[str, Bound | None] = {}
    for i, (arg, kind, name) in enumerate(zip(call.args, call.arg_kinds, call.arg_names)):
        key = name if kind == ARG_NAMED else (names[i + offset] if i + offset < len(names) else None)
        if key is not None:
            out[key] = bound_of(arg)
    return out


def _bind(fd: FuncDef, call: Expression, receiver: Val | None, vals: list[Val]) -> dict[int, Val] | None:
    """Call arguments by parameter index (None for calls a summary cannot map: ``*args``, ``**kw``)."""
    names = [a.variable.name for a in fd.arguments]
    out: dict[int, Val] = {}
    pos = 0
    if receiver is not None:
        out[0] = receiver
        pos = 1
    if not isinstance(call, CallExpr):
        return out
    for v, kind, name in zip(vals, call.arg_kinds, call.arg_names):
        if kind == ARG_POS and pos < len(fd.arguments) and fd.arguments[pos].kind in (ARG_POS, ARG_OPT):
            out[pos] = v
            pos += 1
        elif kind == ARG_NAMED and name in names:
            out[names.index(name)] = v
        else:
            return None
    return out

