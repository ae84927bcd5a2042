"""The transfer functions: one per kind of operation, each mapping the state before it to the state after.

Expressions evaluate to :class:`~owngrad.mypy_plugin.lattice.Val` (the abstract objects they may be);
statements bind names, write storage, consume results. Checks happen where the run time checks: at
the write, the optimizer step, the backward; :mod:`effects` holds them and the calls of user functions.
"""

from __future__ import annotations

from mypy.nodes import (
    GDEF,
    LDEF,
    AssertStmt,
    AssertTypeExpr,
    AssignmentStmt,
    AwaitExpr,
    CallExpr,
    CastExpr,
    ComparisonExpr,
    ConditionalExpr,
    DelStmt,
    DictExpr,
    DictionaryComprehension,
    Expression,
    ExpressionStmt,
    FuncDef,
    GeneratorExpr,
    IndexExpr,
    IntExpr,
    ListComprehension,
    ListExpr,
    MemberExpr,
    MypyFile,
    NameExpr,
    OperatorAssignmentStmt,
    OpExpr,
    RefExpr,
    ReturnStmt,
    SetComprehension,
    SetExpr,
    SliceExpr,
    StarExpr,
    TupleExpr,
    TypeInfo,
    UnaryExpr,
    Var,
    WithStmt,
)
from mypy.types import CallableType, Instance, Type, get_proper_type

from .analysis import Analysis, Context
from .cfg import BasicBlock, Eval, ForBind, Op, WithEnter, WithExit
from .effects import Effects
from .lattice import NONE, Kind, Loc, Obj, State, Status, Val, join, join_vals, union
from .regions import compose, dotted, is_advanced, label, region_of
from .tables import PLAIN_ATTRS, VIEW_METHODS, Classified, TypeClass, classify, func_of, has_body, is_mut, method_class

#: past this many objects a value's attributes are not followed (a miss, never a false alarm)
_MAX_ALTERNATIVES = 16

#: kinds of objects that are tensors (their locs are storage a write may reach)
_TENSORISH = frozenset({Kind.PARAM, Kind.CONST, Kind.MODULE, Kind.RESULT, Kind.VIEW, Kind.DETACHED, Kind.OPAQUE})


def tensor_objs(v: Val) -> list[Obj]:
    return [o for o in v.objs if o.kind in _TENSORISH]


def locs_of(v: Val) -> frozenset[Loc]:
    out: set[Loc] = set()
    for o in tensor_objs(v):
        out |= o.locs
    return frozenset(out)


class Transfer(Effects):
    """Evaluates one function body's operations on a state (see the module docstring)."""

    def __init__(self, an: Analysis) -> None:
        super().__init__(an)
        #: the names the function binds (its parameters, its assignment targets): any other local is a closure's
        self.locals = _bound_names(an.ctx.cfg(an.scope).blocks, an.scope)

    # --- blocks and statements ---
    def entry_state(self) -> State:
        st = State()
        fd = self.an.scope
        if isinstance(fd, FuncDef):
            sig = get_proper_type(fd.type)
            for i, a in enumerate(fd.arguments):
                t = sig.arg_types[i] if isinstance(sig, CallableType) and i < len(sig.arg_types) else a.variable.type
                cls = method_class(fd)
                if i == 0 and cls is not None and not fd.is_static and not fd.is_class and t is None:
                    t = Instance(cls, [])
                rg = self.an.mask[i] if i < len(self.an.mask) else True
                st.env[a.variable.name] = self.declared(classify(t), ("arg", i), i, rg, fd.line, a.variable.name)
        st.env.update(self.an.free)  # a nested function called from its enclosing one: that one's values
        return st

    def declared(self, c: Classified, key: tuple[object, ...], arg: int | None, rg: bool, line: int,
                 name: str) -> Val:
        """The value of a parameter (or a global) of declared type ``c``: an opaque object."""
        if c.kind is TypeClass.PLAIN:
            return NONE
        if c.kind is TypeClass.GRAPH:
            return Val(frozenset({self.an.obj(key, Kind.GRAPH, line, name=name)}))
        if c.kind is TypeClass.GRADS:
            return Val(frozenset({self.an.obj(key, Kind.GRADS, line, name=name, arg=arg)}))
        if c.kind is TypeClass.CONTAINER:
            elem = self.declared(classify(c.elem), (*key, "elem"), arg, rg, line, name)
            return Val(elem.objs, elem=elem)
        if c.kind is TypeClass.TUPLE:
            items = tuple(self.declared(classify(t), (*key, j), arg, rg, line, name) for j, t in enumerate(c.items))
            return Val(union(items).objs, items=items)
        o = self.an.obj(key, Kind.OPAQUE, line, name=name, cls=c.info, arg=arg, rg=rg)
        return Val(frozenset({o}))

    def block(self, b: BasicBlock, st: State) -> State:
        self.st = st
        for op in b.ops:
            self.op(op)
        return self.st

    def op(self, op: Op) -> None:
        self.an.ctx.spend()
        if isinstance(op, AssignmentStmt):
            self.assign(op)
        elif isinstance(op, OperatorAssignmentStmt):
            self.op_assign(op)
        elif isinstance(op, (ExpressionStmt, Eval)):
            self.eval(op.expr)
        elif isinstance(op, ForBind):
            self.bind(op.stmt.index, self.eval(op.stmt.expr).element(), op.stmt.line)
        elif isinstance(op, ReturnStmt):
            val = self.eval(op.expr) if op.expr is not None else NONE
            if self.an.final:
                self.an.ret = val if self.an.ret is None else join_vals(self.an.ret, val)
        elif isinstance(op, AssertStmt):
            self.eval(op.expr)
        elif isinstance(op, WithEnter):
            self.with_enter(op.stmt)
        elif isinstance(op, WithExit):
            self.with_exit(op.stmt)
        elif isinstance(op, DelStmt) and isinstance(op.expr, NameExpr):
            self.st.env.pop(op.expr.name, None)

    def assign(self, s: AssignmentStmt) -> None:
        lvs, rv = s.lvalues, s.rvalue
        if len(lvs) == 1 and isinstance(lvs[0], (TupleExpr, ListExpr)) and isinstance(rv, (TupleExpr, ListExpr)) \
                and len(lvs[0].items) == len(rv.items) and not any(isinstance(i, StarExpr) for i in rv.items):
            vals = [self.eval(r) for r in rv.items]  # a, b = x, y: pairwise
            for lv, v in zip(lvs[0].items, vals):
                self.bind(lv, v, s.line)
            return
        val = self.eval(rv)
        for lv in lvs:
            self.bind(lv, val, s.line)

    def bind(self, lv: Expression, val: Val, line: int) -> None:
        if isinstance(lv, (TupleExpr, ListExpr)):
            self.unpack(lv.items, val, line)
        elif isinstance(lv, StarExpr):
            self.bind(lv.expr, Val(val.objs, elem=val.element()), line)
        elif isinstance(lv, IndexExpr):
            base = self.eval(lv.base)
            if base.container or not tensor_objs(base):
                self.store(lv.base, [val])  # d[k] = v on a list or dict
            else:
                self.write(lv, self.target(lv), val, line)  # t[k] = v
        else:
            name = dotted(lv)
            if name is None or name == "_":
                return
            self.st.env[name] = val
            for o in val.objs:
                if not o.name and o.kind is not Kind.OPAQUE:
                    o.name = name
                for i, child in enumerate(o.children):  # Sequential(a, b): its layers are model[0], model[1]
                    if not child.name:
                        child.name = f"{name}[{i}]"

    def unpack(self, targets: list[Expression], val: Val, line: int) -> None:
        if val.items is not None and len(val.items) == len(targets) and \
                not any(isinstance(t, StarExpr) for t in targets):
            for t, v in zip(targets, val.items):
                self.bind(t, v, line)
            return
        elem = val.element() if val.container else val
        for t in targets:
            self.bind(t, Val(elem.objs, elem=elem) if isinstance(t, StarExpr) else elem, line)

    def target(self, lv: Expression) -> Val:
        """What an assignment target writes: ``t[k]`` a view of ``t`` (all of ``t`` for an array key)."""
        if isinstance(lv, IndexExpr) and self.advanced(lv.index):
            base = self.eval(lv.base)
            if tensor_objs(base) and not base.container:
                return base
        return self.eval(lv)

    def store(self, container: Expression, vals: list[Val]) -> None:
        """``lst.append(v)``, ``d[k] = v``: the container's elements may now also be ``v``."""
        name = dotted(container)
        if name is None:
            return
        old = self.st.env.get(name, NONE)
        elem = old.element() if old.container else NONE
        for v in vals:
            elem = join_vals(elem, v) if elem != NONE else v
        for o in elem.objs:
            if not o.name and o.kind is Kind.RESULT:
                o.name = name
        self.st.env[name] = Val(old.objs | elem.objs, elem=elem)

    def op_assign(self, s: OperatorAssignmentStmt) -> None:
        rv = self.eval(s.rvalue)
        lv = self.target(s.lvalue)
        if tensor_objs(lv) and not lv.container:
            self.write(s.lvalue, lv, rv, s.line)  # in place: += -= *= /= **=
            self.extend_history(lv, rv, s.op)
        elif lv.container:
            self.store(s.lvalue, [rv.element() if rv.container else rv])
        else:
            self.bind(s.lvalue, self.binop(s.op, lv, rv, s.lvalue), s.line)  # a number: rebinding

    def extend_history(self, target: Val, value: Val, op: str) -> None:
        """``y *= w`` on a result: y's node now also depends on (and for ``*``, ``/`` saves) ``w``."""
        for o in tensor_objs(target):
            if o.kind is Kind.RESULT and self.st.no_grad == 0 and value.rg:
                saves = locs_of(value) if op in ("*", "/", "**", "@") and o.rg else frozenset()
                if o.grow(saves=saves, inputs=value.objs, rg=True):
                    self.an.changed = True

    def with_enter(self, s: WithStmt) -> None:
        for e, target in zip(s.expr, s.target):
            if _is_no_grad(e):
                self.st.no_grad += 1
                continue
            val = self.eval(e)
            if target is not None:
                self.bind(target, val if any(o.kind is Kind.GRAPH for o in val.objs) else NONE, s.line)

    def with_exit(self, s: WithStmt) -> None:
        for e in s.expr:
            if _is_no_grad(e):
                self.st.no_grad = max(0, self.st.no_grad - 1)
            elif isinstance(e, CallExpr) and isinstance(e.callee, RefExpr) and isinstance(e.callee.node, TypeInfo) \
                    and classify(Instance(e.callee.node, [])).kind is TypeClass.GRAPH:
                self.consume_all(s.line)  # leaving `with og.Graph() as g` clears it

    # --- expressions ---
    def eval(self, e: Expression) -> Val:
        if isinstance(e, NameExpr):
            return self.name(e)
        if isinstance(e, MemberExpr):
            return self.member(e)
        if isinstance(e, IndexExpr):
            return self.index(e)
        if isinstance(e, CallExpr):
            return self.call(e)
        if isinstance(e, OpExpr):
            left = self.eval(e.left)
            if e.op in ("and", "or"):  # the right side may not run
                return union([left, self.alternatives([e.right], keep_start=True)])
            return self.binop(e.op, left, self.eval(e.right), e)
        if isinstance(e, UnaryExpr):
            v = self.eval(e.expr)
            return self.result(("op", e), e.line, v, frozenset(), label(e)) if e.op == "-" and tensor_objs(v) else \
                (v if e.op == "+" else NONE)
        if isinstance(e, ComparisonExpr):
            for x in e.operands:
                self.eval(x)
            return NONE  # constant boolean tensors
        if isinstance(e, ConditionalExpr):
            self.eval(e.cond)
            return self.alternatives([e.if_expr, e.else_expr])
        return self.eval_other(e)

    def alternatives(self, exprs: list[Expression], keep_start: bool = False) -> Val:
        """Evaluates each expression from the same state (``a if c else b``); the states after are joined
        (and with the state before, when none of them may run)."""
        start = self.st
        ends: list[State] = [start.copy()] if keep_start else []
        out = NONE
        for x in exprs:
            self.st = start.copy()
            out = join_vals(out, self.eval(x)) if out != NONE else self.eval(x)
            ends.append(self.st)
        self.st = ends[0]
        for other in ends[1:]:
            self.st = join(self.st, other)
        return out

    def eval_other(self, e: Expression) -> Val:
        if isinstance(e, TupleExpr):
            items = tuple(self.eval(x.expr if isinstance(x, StarExpr) else x) for x in e.items)
            if any(isinstance(x, StarExpr) for x in e.items):
                return union(items)
            return Val(union(items).objs, items=items)
        if isinstance(e, (ListExpr, SetExpr)):
            elem = union(self.eval(x.expr if isinstance(x, StarExpr) else x) for x in e.items)
            return Val(elem.objs, elem=elem)
        if isinstance(e, DictExpr):
            for k, _ in e.items:
                if k is not None:
                    self.eval(k)
            elem = union(self.eval(v) for _, v in e.items)
            return Val(elem.objs, elem=elem)
        if isinstance(e, (ListComprehension, SetComprehension)):
            e = e.generator
        if isinstance(e, DictionaryComprehension):
            self.comprehension(e.indices, e.sequences)
            elem = self.eval(e.value)
            return Val(elem.objs, elem=elem)
        if isinstance(e, GeneratorExpr):
            self.comprehension(e.indices, e.sequences)
            elem = self.eval(e.left_expr)
            return Val(elem.objs, elem=elem)
        if isinstance(e, (StarExpr, CastExpr, AssertTypeExpr, AwaitExpr)):
            return self.eval(e.expr)
        return NONE  # literals, lambdas (another scope), slices: nothing tracked

    def comprehension(self, indices: list[Expression], sequences: list[Expression]) -> None:
        for index, seq in zip(indices, sequences):
            self.bind(index, self.eval(seq).element(), index.line)

    def name(self, e: NameExpr) -> Val:
        hit = self.st.env.get(e.name)
        if hit is not None:
            return hit
        node = e.node
        if isinstance(node, Var) and e.kind == GDEF:  # a module-level variable, read inside a function
            return self.declared(classify(node.type), ("global", node.fullname), None, True, node.line, e.name)
        if isinstance(node, Var) and e.kind == LDEF and node.type is not None and e.name not in self.locals:
            # a variable of an enclosing function (a closure); a call from there maps it to its own value
            return self.declared(classify(node.type), ("free", e.name), None, True, node.line, e.name)
        return NONE

    def member(self, e: MemberExpr) -> Val:
        name = dotted(e)
        if name is not None and name in self.st.env:
            return self.st.env[name]
        if e.name in PLAIN_ATTRS:
            return NONE
        if isinstance(e.expr, RefExpr) and isinstance(e.expr.node, MypyFile):  # og.something, a module's global
            node = e.node
            if isinstance(node, Var):
                return self.declared(classify(node.type), ("global", node.fullname), None, True, node.line, e.name)
            return NONE
        return self.project(self.eval(e.expr), e.name, e)

    def project(self, base: Val, attr: str, e: MemberExpr) -> Val:
        """``obj.attr``: a view (``.T``), or a part of a module or object (its own path in the storage)."""
        out: list[Val] = []
        if len(base.objs) > _MAX_ALTERNATIVES:  # a value that may be too many things: not followed
            return NONE
        for o in base.objs:
            if o.kind in (Kind.GRAPH, Kind.GRADS, Kind.OPTIMIZER):
                continue
            if attr in VIEW_METHODS:
                out.append(self.view(o, None, e, scrambled=True))
            elif attr == "base":
                out.append(Val(frozenset({o})))
            elif o.cls is not None and o.cls.fullname.startswith("owngrad.tensor"):
                continue
            else:
                out.append(self.part(o, attr, e))
        return union(out) if len(out) != 1 else out[0]

    def part(self, o: Obj, attr: str, e: MemberExpr) -> Val:
        """A declared attribute of a module or object: plain, a graph, a property's value, or a part."""
        t, getter = _attribute(o.cls, attr) if o.cls is not None else (None, None)
        if getter is not None:
            return self.call_function(e, getter, Val(frozenset({o})), [], e)
        c = classify(t) if t is not None else Classified(TypeClass.UNKNOWN)
        if c.kind is TypeClass.PLAIN:
            return NONE
        held = self.field(o, attr, e)
        if held is not None:
            return held
        if c.kind is TypeClass.GRAPH:
            return Val(frozenset({self.an.obj(("attr", o.key, attr), Kind.GRAPH, e.line)}))
        return self.generic_part(o, attr, e, t, c)

    def generic_part(self, o: Obj, attr: str, e: Expression, t: Type | None = None,
                     c: Classified | None = None) -> Val:
        """``o.attr`` as a part of ``o``: its own path in ``o``'s storage."""
        if c is None:
            t = _attribute(o.cls, attr)[0] if o.cls is not None else None
            c = classify(t) if t is not None else Classified(TypeClass.UNKNOWN)
        locs = frozenset(Loc(loc.root, (*loc.path, attr)) for loc in o.locs)
        kind = Kind.OPAQUE if c.kind is TypeClass.OPTIMIZER and o.kind is Kind.OPAQUE else Kind.VIEW
        holds_params = c.kind in (TypeClass.MODULE, TypeClass.OBJECT) or (c.kind is TypeClass.TENSOR and is_mut(t))
        p = self.an.obj(("attr", o.key, attr), kind, e.line, name=f"{o.name}.{attr}" if o.name else attr,
                        cls=c.info, locs=locs, inputs={o}, rg=o.rg or holds_params, arg=o.arg)
        if c.kind is TypeClass.CONTAINER:
            return Val(frozenset({p}), elem=Val(frozenset({p})))
        return Val(frozenset({p}))

    def field(self, o: Obj, attr: str, e: Expression) -> Val | None:
        """What ``__init__`` stored in ``o.attr``, when it matters: an argument it kept (the caller's model, or
        for ``self`` in a method a part of ``self``), or an optimizer (over which storage). None otherwise: a
        module made in ``__init__`` is then the part ``o.attr`` itself."""
        from .calls import Mapper

        init = func_of(o.cls.get_method("__init__")) if o.cls is not None else None
        if init is None or not has_body(init) or not init.arguments:
            return None
        summary = self.an.ctx.summary(init, tuple(True for _ in init.arguments))
        me = init.arguments[0].variable.name
        v = summary.exit.env.get(f"{me}.{attr}") if summary is not None else None
        if summary is None or v is None:
            return None
        kept = [x for x in v.all_objs() if x.arg is not None and x.key[:1] == ("arg",) and x.arg > 0]
        opts = frozenset(x for x in v.objs if x.kind is Kind.OPTIMIZER)
        if not kept and not opts:
            return None
        bound = dict(o.init_args) if o.init_args is not None else {}
        bound[0] = Val(frozenset({o}))
        for name, val in summary.exit.env.items():  # for self in a method: the arguments __init__ kept, as parts
            if name.startswith(f"{me}.") and name.count(".") == 1:
                for x in val.objs:
                    if x.arg is not None and x.key[:1] == ("arg",) and x.arg not in bound:
                        bound[x.arg] = self.generic_part(o, name.split(".")[1], e)
        return Mapper(self, e, bound).val(Val(opts) if opts else v)

    def index(self, e: IndexExpr) -> Val:
        base = self.eval(e.base)
        self.eval(e.index)
        if base.items is not None and isinstance(e.index, IntExpr) and -len(base.items) <= e.index.value < \
                len(base.items):
            return base.items[e.index.value]
        if base.container:
            return base.element()
        out: list[Val] = []
        for o in tensor_objs(base):
            if o.kind is Kind.MODULE and o.children and isinstance(e.index, IntExpr) and \
                    -len(o.children) <= e.index.value < len(o.children):
                out.append(Val(frozenset({o.children[e.index.value]})))  # Sequential(a, b)[1] is b
            elif self.advanced(e.index):
                out.append(self.result(("adv", e, o.key), e.line, Val(frozenset({o})), frozenset(), label(e)))
            else:
                out.append(self.view(o, e.index, e))
        return union(out) if len(out) != 1 else out[0]

    def advanced(self, key: Expression) -> bool:
        """An integer-array or boolean key (indexing with it copies): by its form, or a name that holds a tensor
        or is declared an array or a list."""
        if is_advanced(key):
            return True
        for item in key.items if isinstance(key, TupleExpr) else [key]:
            if not isinstance(item, NameExpr):
                continue
            if tensor_objs(self.st.env.get(item.name, NONE)):
                return True
            t = get_proper_type(item.node.type) if isinstance(item.node, Var) and item.node.type else None
            if isinstance(t, Instance) and t.type.fullname not in ("builtins.int", "builtins.bool"):
                return True
        return False

    def view(self, o: Obj, key: Expression | None, e: Expression, scrambled: bool = False) -> Val:
        """A view of ``o``: its storage (narrowed to the key's rows and columns), its history."""
        region = region_of(key) if key is not None and not o.scrambled else None
        locs = frozenset(Loc(loc.root, loc.path, compose(loc.region, region) if not loc.path else loc.region)
                         for loc in o.locs)
        v = self.an.obj(("view", e, o.key), Kind.VIEW, e.line, name=o.name, cls=o.cls, locs=locs, inputs={o},
                        rg=o.rg, scrambled=scrambled or o.scrambled, arg=o.arg)
        return Val(frozenset({v}))

    def result(self, key: tuple[object, ...], line: int, operands: Val, saves: frozenset[Loc], text: str,
               saves_self: bool = False) -> Val:
        """A recorded op's output: pending until consumed, holding ``saves`` (nothing is recorded when no
        operand requires grad, or under ``no_grad``)."""
        recorded = operands.rg and self.st.no_grad == 0
        if not recorded:
            o = self.an.obj(key, Kind.RESULT, line, label=text)
            return Val(frozenset({o}))
        existed = key in self.an.objs
        o = self.an.obj(key, Kind.RESULT, line, label=text, saves=saves, inputs=operands.all_objs(), rg=True)
        if saves_self and Loc(o) not in o.saves:
            o.saves = o.saves | {Loc(o)}
            self.an.changed = self.an.changed or existed
        self.st.mark(o, Status.PENDING)
        return Val(frozenset({o}))

    def binop(self, op: str, left: Val, right: Val, e: Expression) -> Val:
        if left.container or right.container:  # list + list: a list of both's elements
            elem = union([left.element(), right.element()])
            return Val(elem.objs, elem=elem)
        if not tensor_objs(left) and not tensor_objs(right):
            return NONE
        both = union([left, right])
        if op in ("&", "|", "^", "%", "//"):
            return self.result(("op", e), e.line, NONE, frozenset(), label(e))
        saves: frozenset[Loc] = frozenset()
        if op in ("*", "@", "/"):
            saves = (locs_of(left) if right.rg else frozenset()) | (locs_of(right) if left.rg or
                                                                      (op == "/" and right.rg) else frozenset())
        elif op == "**":
            saves = locs_of(both) if both.rg else frozenset()
        return self.result(("op", e), e.line, both, saves, label(e))


def free_names(ctx: Context, fd: FuncDef) -> frozenset[str]:
    """The variables of enclosing functions ``fd`` reads, and those of the nested functions it calls."""
    blocks = ctx.cfg(fd).blocks
    bound = _bound_names(blocks, fd)
    names: set[str] = set()
    for e in _names_read(blocks):
        if e.kind == LDEF and e.name not in bound:
            if isinstance(e.node, Var):
                names.add(e.name)
            elif isinstance(e.node, FuncDef) and e.node is not fd:
                names |= ctx.free_names(e.node)
    return frozenset(names)


def live_names(ctx: Context, fd: FuncDef) -> dict[BasicBlock, frozenset[str]]:
    """The names live after each block (read later on some path before being bound again; the parameters
    always): a state keeps only these, so that copies and joins cost what is live, not all the function bound."""
    blocks = ctx.cfg(fd).blocks
    always = frozenset(a.variable.name for a in fd.arguments)
    use: dict[BasicBlock, frozenset[str]] = {}
    defs: dict[BasicBlock, frozenset[str]] = {}
    for b in blocks:
        read: set[str] = set()
        bound: set[str] = set()
        for op in b.ops:
            for e in _names_read([op]):
                if e.name not in bound:
                    read.add(e.name)
                if e.kind == LDEF and isinstance(e.node, FuncDef) and e.node is not fd:  # a closure's reads
                    read |= ctx.free_names(e.node) - bound
            bound |= _op_binds(op)
        use[b], defs[b] = frozenset(read), frozenset(bound)
    live_in: dict[BasicBlock, frozenset[str]] = {b: frozenset() for b in blocks}
    changed = True
    while changed:
        changed = False
        for b in reversed(blocks):
            new = use[b] | (always.union(*(live_in[s] for s in b.succ)) - defs[b])
            if new != live_in[b]:
                live_in[b], changed = new, True
    return {b: always.union(*(live_in[s] for s in b.succ)) for b in blocks}


def _op_binds(op: Op) -> set[str]:
    """The plain names an operation binds (a name, or a name in a tuple target)."""
    targets: list[Expression] = []
    if isinstance(op, AssignmentStmt):
        targets.extend(op.lvalues)
    elif isinstance(op, ForBind):
        targets.append(op.stmt.index)
    elif isinstance(op, WithEnter):
        targets.extend(t for t in op.stmt.target if t is not None)
    return _target_names(targets)


def _target_names(targets: list[Expression]) -> set[str]:
    """The plain names in assignment targets (``a``, ``a, (b, *c)``); attributes and subscripts bind none."""
    out: set[str] = set()
    while targets:
        t = targets.pop()
        if isinstance(t, NameExpr):
            out.add(t.name)
        elif isinstance(t, (TupleExpr, ListExpr)):
            targets.extend(t.items)
        elif isinstance(t, StarExpr):
            targets.append(t.expr)
    return out


def _names_read(ops: list[BasicBlock] | list[Op]) -> list[NameExpr]:
    """Every name an operation reads (of blocks, or of single operations), not inside lambdas or nested
    functions; a name assigned to (``x = ...``) is not a read, the base of an indexed or attribute target is."""
    stack: list[object] = []
    flat = [op for b in ops for op in b.ops] if ops and isinstance(ops[0], BasicBlock) else ops
    for op in flat:
        if isinstance(op, AssignmentStmt):
            stack.append(op.rvalue)
            stack.extend(_target_reads(op.lvalues))
        elif isinstance(op, OperatorAssignmentStmt):
            stack.extend([op.lvalue, op.rvalue])
        elif isinstance(op, ReturnStmt):
            stack.extend([op.expr] if op.expr is not None else [])
        elif isinstance(op, (ExpressionStmt, Eval, AssertStmt)):
            stack.append(op.expr)
        elif isinstance(op, ForBind):
            stack.append(op.stmt.expr)
            stack.extend(_target_reads([op.stmt.index]))
        elif isinstance(op, WithEnter):
            stack.extend(op.stmt.expr)
    out: list[NameExpr] = []
    while stack:
        e = stack.pop()
        if isinstance(e, NameExpr):
            out.append(e)
        elif isinstance(e, Expression):
            stack.extend(_children(e))
    return out


def _target_reads(targets: list[Expression]) -> list[Expression]:
    """What assigning to ``targets`` reads: the bases of ``t[k]`` and ``o.attr`` targets, and the keys."""
    out: list[Expression] = []
    todo = list(targets)
    while todo:
        t = todo.pop()
        if isinstance(t, (TupleExpr, ListExpr)):
            todo.extend(t.items)
        elif isinstance(t, StarExpr):
            todo.append(t.expr)
        elif not isinstance(t, NameExpr):
            out.append(t)
    return out


def _children(e: Expression) -> list[object]:
    if isinstance(e, (MemberExpr, StarExpr, CastExpr, AssertTypeExpr, AwaitExpr, UnaryExpr)):
        return [e.expr]
    if isinstance(e, CallExpr):
        return [e.callee, *e.args]
    if isinstance(e, IndexExpr):
        return [e.base, e.index]
    if isinstance(e, OpExpr):
        return [e.left, e.right]
    if isinstance(e, ComparisonExpr):
        return list(e.operands)
    if isinstance(e, ConditionalExpr):
        return [e.cond, e.if_expr, e.else_expr]
    if isinstance(e, (TupleExpr, ListExpr, SetExpr)):
        return list(e.items)
    if isinstance(e, DictExpr):
        return [x for kv in e.items for x in kv if x is not None]
    if isinstance(e, (ListComprehension, SetComprehension)):
        return [e.generator]
    if isinstance(e, GeneratorExpr):
        return [e.left_expr, *e.sequences, *(c for cl in e.condlists for c in cl)]
    if isinstance(e, DictionaryComprehension):
        return [e.key, e.value, *e.sequences, *(c for cl in e.condlists for c in cl)]
    if isinstance(e, SliceExpr):
        return [x for x in (e.begin_index, e.end_index, e.stride) if x is not None]
    return []


def _bound_names(blocks: list[BasicBlock], scope: FuncDef | MypyFile | None) -> frozenset[str]:
    out = {a.variable.name for a in scope.arguments} if isinstance(scope, FuncDef) else set()
    targets: list[Expression] = []
    for b in blocks:
        for op in b.ops:
            if isinstance(op, AssignmentStmt):
                targets.extend(op.lvalues)
            elif isinstance(op, OperatorAssignmentStmt):
                targets.append(op.lvalue)
            elif isinstance(op, ForBind):
                targets.append(op.stmt.index)
            elif isinstance(op, WithEnter):
                targets.extend(t for t in op.stmt.target if t is not None)
    return frozenset(out | _target_names(targets))


def _is_no_grad(e: Expression) -> bool:
    return isinstance(e, CallExpr) and isinstance(e.callee, MemberExpr) and e.callee.name == "no_grad"


def _attribute(info: TypeInfo, attr: str) -> tuple[Type | None, FuncDef | None]:
    """The declared type of ``info.attr``, or the getter of a property with a body."""
    from .tables import func_of, has_body

    sym = info.get(attr)
    node = sym.node if sym is not None else None
    if isinstance(node, Var):
        return node.type, None
    fd = func_of(node)
    if fd is not None and fd.is_property:
        if has_body(fd):
            return None, fd
        sig = get_proper_type(fd.type)
        return (sig.ret_type if isinstance(sig, CallableType) else None), None
    return None, None
