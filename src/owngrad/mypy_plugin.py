"""A mypy plugin for the one borrow error the stubs cannot express: writing a tensor in place
while a result that depends on it still waits for its ``backward`` (the alternating-update /
GAN bug). Enable it with ``plugins = owngrad.mypy_plugin`` in the ``[mypy]`` section.

Inside one function body (or a module's top level) the plugin replays the statements in order
and tracks, per assigned name, what each value was computed from:

- ``g.param`` / ``g.constant`` / a module or optimizer constructor make a new leaf (an optimizer
  over ``[w, b]`` or ``model.parameters()`` writes those leaves when it steps);
- indexing, attribute access, ``reshape``/``T``/... and ``detach`` alias their base's storage;
- every other expression over tensors is a new *result*, pending unless it was computed under
  ``with g.no_grad():``, from constants only, or is not a tensor (``.item()``, a float, ...);
- ``g.backward(r)`` (without ``retain=True``) and ``g.free(r)`` consume ``r`` and every pending
  result it was computed from; ``g.clear()`` and leaving ``with og.Graph() as g`` consume all.

An in-place write (``+= -= *= /=``, ``t[k] = v``, ``zero_ fill_ copy_ clamp_ add_ sub_ mul_ div_``,
``borrow_mut``) or an ``opt.step(...)`` whose storage a pending result depends on is an error
with code ``owngrad-borrow`` at the write, naming that result and its line. The check is by
dependency, not by what the run-time rules actually save, so it is conservative: a result
whose backward would not need the old value (``(x * w).sum()`` with a constant ``x``) is still
reported. Loops are replayed twice so an update carried into the next iteration is seen.

mypy's plugin API is experimental; this plugin supports mypy >=1.10,<1.20 (the project's pin).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mypy.errorcodes import ErrorCode
from mypy.nodes import (
    AssertStmt,
    AssertTypeExpr,
    AssignmentStmt,
    Block,
    CallExpr,
    CastExpr,
    ComparisonExpr,
    ConditionalExpr,
    Decorator,
    DictExpr,
    Expression,
    ExpressionStmt,
    ForStmt,
    FuncDef,
    GeneratorExpr,
    IfStmt,
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
    SetExpr,
    SliceExpr,
    StarExpr,
    Statement,
    TryStmt,
    TupleExpr,
    TypeInfo,
    UnaryExpr,
    Var,
    WhileStmt,
    WithStmt,
)
from mypy.plugin import MethodContext, Plugin
from mypy.types import AnyType, Instance, Type, UnionType, get_proper_type

__all__ = ["OWNGRAD_BORROW", "OwngradPlugin", "plugin"]

OWNGRAD_BORROW = ErrorCode(
    "owngrad-borrow", "In-place write while a result that depends on it waits for backward", "owngrad")

_TENSOR = "owngrad.tensor.Tensor"
_MODULES = ("owngrad.nn.modules.Module", "owngrad.nn.Module")
_OPTIMIZERS = ("owngrad.optim.Optimizer",)
_GRAPH = "owngrad.graph.Graph"

#: tensor methods that write in place (their hooks trigger the check)
_WRITE_METHODS = frozenset({
    "zero_", "fill_", "copy_", "clamp_", "add_", "sub_", "mul_", "div_", "borrow_mut",
    "__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
})
#: methods whose result shares the receiver's storage
_VIEW_METHODS = frozenset({"reshape", "flatten", "transpose", "permute", "squeeze", "unsqueeze", "expand",
                           "astype", "to", "parameters", "named_parameters", "children", "modules",
                           "named_modules", "train", "eval", "keys", "values", "items"})
#: methods whose result carries no gradient history (or is not a tensor at all)
_PLAIN_METHODS = frozenset({"item", "numpy", "tolist", "any", "all", "argmax", "state_dict", "to_dot", "borrow",
                            "pending", "extra_repr", "clip_norm_", "load_state_dict"})
_PLAIN_FUNCS = frozenset({"float", "int", "bool", "str", "len", "print", "repr", "isinstance", "range",
                          "round", "format", "id", "type", "hash"})
_PLAIN_ATTRS = frozenset({"shape", "ndim", "size", "dtype", "device", "name", "requires_grad", "is_leaf",
                          "graph", "training"})
_PLAIN_TYPES = frozenset({"builtins.float", "builtins.int", "builtins.bool", "builtins.str", "builtins.bytes",
                          "builtins.complex", "numpy.ndarray", "owngrad.graph.Grads", "owngrad.graph.Graph",
                          "builtins.NoneType"})


class _Rec:
    """One value a name was bound to: where, what it was computed from, which storages it aliases."""

    __slots__ = ("name", "line", "kind", "parents", "stor", "grad", "pending", "rows")

    def __init__(self, name: str, line: int, kind: str, parents: Iterable[_Rec] = (), grad: bool = True,
                 pending: bool = False, stor: Iterable[_Rec] | None = None) -> None:
        self.name = name
        self.line = line
        self.kind = kind  # "leaf" | "result" | "alias" | "opt"
        self.parents = tuple(parents)
        self.grad = grad
        self.pending = pending
        self.stor: frozenset[_Rec] = frozenset(stor) if stor is not None else frozenset({self})
        #: rows [start, stop) of its storage along the first axis, for ``w[0:2]`` with literal bounds
        self.rows: tuple[int, int] | None = None


class _Val:
    """What an expression evaluates to: nothing tracked, an alias of tracked values, or a new value."""

    __slots__ = ("kind", "recs", "grad")

    def __init__(self, kind: str, recs: Iterable[_Rec] = (), grad: bool = False) -> None:
        self.kind = kind  # "none" | "alias" | "new"
        self.recs = tuple(dict.fromkeys(recs))
        self.grad = grad


_NONE = _Val("none")


def _fullname_of_type(t: Type | None) -> str | None:
    p = get_proper_type(t) if t is not None else None
    return p.type.fullname if isinstance(p, Instance) else None


def _has_base(info: TypeInfo, names: tuple[str, ...]) -> bool:
    return any(info.has_base(n) for n in names)


def _is_plain_type(t: Type | None) -> bool:
    """A type known not to carry tensors (float, ndarray, Grads, ...): binding it breaks dependency."""
    p = get_proper_type(t) if t is not None else None
    if p is None or isinstance(p, AnyType):
        return False
    if isinstance(p, UnionType):
        return all(_is_plain_type(i) for i in p.items)
    if isinstance(p, Instance):  # float, ndarray, Grads, list[str], ...: anything that holds no tensor
        return p.type.fullname in _PLAIN_TYPES or not _is_tensorish(p)
    return False


def _is_tensorish(t: Type | None) -> bool:
    p = get_proper_type(t) if t is not None else None
    if isinstance(p, UnionType):
        return any(_is_tensorish(i) for i in p.items)
    if not isinstance(p, Instance):
        return False
    info = p.type
    if info.has_base(_TENSOR) or _has_base(info, _MODULES) or _has_base(info, _OPTIMIZERS):
        return True
    return any(_is_tensorish(a) for a in p.args)


def _dotted(e: Expression) -> str | None:
    if isinstance(e, NameExpr):
        return e.name
    if isinstance(e, MemberExpr):
        base = _dotted(e.expr)
        return None if base is None else f"{base}.{e.name}"
    return None


def _lvalue_root(e: Expression) -> Expression:
    """``w`` for ``w[0:2]``, ``w.T[1]``, ``w[2:4].reshape(8)``: the tensor a write goes through."""
    while True:
        if isinstance(e, IndexExpr):
            e = e.base
        elif isinstance(e, MemberExpr) and e.name == "T":
            e = e.expr
        elif isinstance(e, CallExpr) and isinstance(e.callee, MemberExpr) and e.callee.name in _VIEW_METHODS:
            e = e.callee.expr
        else:
            return e


def _literal_rows(e: Expression) -> tuple[int, int] | None:
    """[start, stop) for a literal first-axis key: ``w[1]``, ``w[0:2]``, ``w[2:4, :]`` (non-negative, step 1)."""
    key = e.index if isinstance(e, IndexExpr) else None
    if isinstance(key, TupleExpr) and key.items:
        key = key.items[0]
    if isinstance(key, IntExpr):
        return key.value, key.value + 1
    if isinstance(key, SliceExpr) and key.stride is None and isinstance(key.begin_index, IntExpr) \
            and isinstance(key.end_index, IntExpr):
        return key.begin_index.value, key.end_index.value
    return None


def _disjoint(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    return a is not None and b is not None and (a[1] <= b[0] or b[1] <= a[0])


class _Conflict:
    __slots__ = ("line", "message")

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message


class _Flow:
    """Replays a function body's statements in order; collects the conflicts at write sites."""

    def __init__(self, stop_line: int) -> None:
        self.env: dict[str, _Rec | None] = {}
        self.results: list[_Rec] = []
        self.no_grad = 0
        self.stop_line = stop_line
        self.conflicts: dict[tuple[int, str], _Conflict] = {}

    # --- statements ---
    def run(self, body: list[Statement]) -> None:
        for s in body:
            self.stmt(s)

    def stmt(self, s: Statement) -> None:
        if isinstance(s, AssignmentStmt):
            lvs, rv = s.lvalues, s.rvalue
            if len(lvs) == 1 and isinstance(lvs[0], (TupleExpr, ListExpr)) and isinstance(rv, (TupleExpr, ListExpr)) \
                    and len(lvs[0].items) == len(rv.items) and not any(isinstance(i, StarExpr) for i in rv.items):
                vals = [self.eval(r) for r in rv.items]  # a, b = x, y: pairwise
                for lv, r, v in zip(lvs[0].items, rv.items, vals):
                    self.assign(lv, v, r, s.line)
                return
            val = self.eval(rv)
            for lv in lvs:
                self.assign(lv, val, rv, s.line)
        elif isinstance(s, OperatorAssignmentStmt):
            val = self.eval(s.rvalue)
            self.write(s.lvalue, s.line, f'"{_dotted(_lvalue_root(s.lvalue)) or "tensor"}"')
            self.extend_history(s.lvalue, val)
        elif isinstance(s, ExpressionStmt):
            self.eval(s.expr)
        elif isinstance(s, (ReturnStmt, AssertStmt)):
            if s.expr is not None:
                self.eval(s.expr)
        elif isinstance(s, Block):
            self.run(s.body)
        elif isinstance(s, IfStmt):
            for e in s.expr:
                self.eval(e)
            for b in s.body:
                self.run(b.body)
            if s.else_body is not None:
                self.run(s.else_body.body)
        elif isinstance(s, (ForStmt, WhileStmt)):
            for _ in range(2):  # twice: a pending result may be carried into the next iteration
                if isinstance(s, ForStmt):
                    it = self.eval(s.expr)
                    self.assign(s.index, _Val("alias", it.recs, it.grad) if it.kind != "none" else _NONE,
                                s.expr, s.line)
                else:
                    self.eval(s.expr)
                self.run(s.body.body)
            if s.else_body is not None:
                self.run(s.else_body.body)
        elif isinstance(s, WithStmt):
            self.with_stmt(s)
        elif isinstance(s, TryStmt):
            self.run(s.body.body)
            for h in s.handlers:
                self.run(h.body)
            if s.else_body is not None:
                self.run(s.else_body.body)
            if s.finally_body is not None:
                self.run(s.finally_body.body)
        # FuncDef / ClassDef / Decorator bodies are other scopes: checked on their own

    def with_stmt(self, s: WithStmt) -> None:
        no_grad = 0
        graphs = 0
        for e, target in zip(s.expr, s.target):
            if isinstance(e, CallExpr) and isinstance(e.callee, MemberExpr) and e.callee.name == "no_grad":
                no_grad += 1
                continue
            if isinstance(e, CallExpr) and isinstance(e.callee, RefExpr) and isinstance(e.callee.node, TypeInfo) \
                    and e.callee.node.has_base(_GRAPH):
                graphs += 1
            val = self.eval(e)
            if target is not None:
                self.assign(target, val, e, s.line)
        self.no_grad += no_grad
        try:
            self.run(s.body.body)
        finally:
            self.no_grad -= no_grad
        if graphs:
            self.consume_all()

    # --- bindings ---
    def assign(self, lv: Expression, val: _Val, rvalue: Expression, line: int) -> None:
        if isinstance(lv, (TupleExpr, ListExpr)):
            for item in lv.items:
                self.assign(item.expr if isinstance(item, StarExpr) else item, val, rvalue, line)
            return
        if isinstance(lv, IndexExpr):  # t[k] = v
            self.write(lv, line, f'"{_dotted(_lvalue_root(lv)) or "tensor"}"')
            self.extend_history(lv, val)
            return
        name = _dotted(lv)
        if name is None or name == "_":  # `_` is a throwaway: it holds nothing anyone waits on
            return
        if isinstance(lv, RefExpr) and isinstance(lv.node, Var) and _is_plain_type(lv.node.type):
            val = _NONE
        if val.kind == "none":
            self.env[name] = None
            var = lv.node if isinstance(lv, RefExpr) else None
            if isinstance(var, Var) and _is_tensorish(var.type) and self.creates_root(rvalue):
                self.env[name] = _Rec(name, line, "leaf", grad=True)
            return
        if isinstance(val, _Leaf):
            self.env[name] = val.make(name, line)
            return
        if val.kind == "alias":
            stor = frozenset().union(*(r.stor for r in val.recs)) if val.recs else frozenset()
            rec = _Rec(name, line, "alias", val.recs, val.grad, stor=stor)
            if isinstance(rvalue, IndexExpr) and isinstance(rvalue.base, NameExpr):
                base = self.env.get(rvalue.base.name)
                if base is not None and base.kind in ("leaf", "result") and len(val.recs) == 1:
                    rec.rows = _literal_rows(rvalue)
            self.env[name] = rec
            return
        pending = val.grad and self.no_grad == 0
        rec = _Rec(name, line, "result", val.recs, val.grad and self.no_grad == 0, pending)
        self.env[name] = rec
        if pending:
            self.results.append(rec)

    @staticmethod
    def creates_root(rvalue: Expression) -> bool:
        """An untracked call returning a tensor or module (a factory function): a leaf of unknown origin."""
        return isinstance(rvalue, CallExpr)

    def extend_history(self, lv: Expression, val: _Val) -> None:
        """``y += w`` on a result: y's history now depends on w too."""
        name = _dotted(_lvalue_root(lv))
        rec = self.env.get(name) if name else None
        if rec is not None and rec.kind == "result" and val.recs:
            rec.parents = tuple(dict.fromkeys(rec.parents + val.recs))
            rec.grad = rec.grad or val.grad

    def lookup(self, e: Expression) -> _Rec | None:
        name = _dotted(e)
        if name is None:
            return None
        if name in self.env:
            return self.env[name]
        node = e.node if isinstance(e, RefExpr) else None
        if isinstance(node, Var) and _is_tensorish(node.type):
            rec = _Rec(name, node.line if node.line > 0 else 0, "leaf", grad=True)
            self.env[name] = rec
            return rec
        return None

    # --- expressions ---
    def eval(self, e: Expression) -> _Val:
        if isinstance(e, NameExpr):
            r = self.lookup(e)
            return _Val("alias", (r,), r.grad) if r is not None else _NONE
        if isinstance(e, MemberExpr):
            if e.name in _PLAIN_ATTRS:
                self.eval(e.expr)
                return _NONE
            r = self.lookup(e) if _dotted(e) in self.env else None
            if r is not None:
                return _Val("alias", (r,), r.grad)
            base = self.eval(e.expr)
            if base.kind != "none":
                return base  # an attribute of a module / .T of a tensor: the same storage
            r = self.lookup(e)
            return _Val("alias", (r,), r.grad) if r is not None else _NONE
        if isinstance(e, IndexExpr):
            self.eval(e.index)
            return self.eval(e.base)
        if isinstance(e, CallExpr):
            return self.call(e)
        if isinstance(e, (OpExpr, UnaryExpr)):
            parts = [self.eval(x) for x in ((e.left, e.right) if isinstance(e, OpExpr) else (e.expr,))]
            if isinstance(e, OpExpr) and e.op in ("and", "or"):
                return _NONE
            return self.new(parts)
        if isinstance(e, ComparisonExpr):
            for x in e.operands:
                self.eval(x)
            return _NONE  # constant boolean tensors
        if isinstance(e, ConditionalExpr):
            self.eval(e.cond)
            return self.alias([self.eval(e.if_expr), self.eval(e.else_expr)])
        if isinstance(e, (ListExpr, TupleExpr, SetExpr)):
            return self.alias([self.eval(x.expr if isinstance(x, StarExpr) else x) for x in e.items])
        if isinstance(e, DictExpr):
            return self.alias([self.eval(v) for _, v in e.items])
        if isinstance(e, ListComprehension):
            e = e.generator
        if isinstance(e, GeneratorExpr):  # [p for p in model.parameters()]: the sequences' storages
            return self.alias([self.eval(x) for x in e.sequences])
        if isinstance(e, (StarExpr, CastExpr, AssertTypeExpr)):
            return self.eval(e.expr)
        if isinstance(e, SliceExpr):
            for part in (e.begin_index, e.end_index, e.stride):
                if part is not None:
                    self.eval(part)
        return _NONE  # literals, lambdas (another scope), anything else: nothing tracked

    @staticmethod
    def alias(parts: list[_Val]) -> _Val:
        live = [p for p in parts if p.kind != "none"]
        if not live:
            return _NONE
        kind = "new" if any(p.kind == "new" for p in live) else "alias"
        return _Val(kind, [r for p in live for r in p.recs], any(p.grad for p in live))

    @staticmethod
    def new(parts: list[_Val]) -> _Val:
        live = [p for p in parts if p.kind != "none"]
        if not live:
            return _NONE
        return _Val("new", [r for p in live for r in p.recs], any(p.grad for p in live))

    def call(self, e: CallExpr) -> _Val:
        callee = e.callee
        if isinstance(callee, RefExpr) and isinstance(callee.node, TypeInfo):
            info = callee.node
            args = [self.eval(a) for a in e.args]
            if _has_base(info, _OPTIMIZERS):
                return _Leaf("opt", [r for a in args for r in a.recs])
            if _has_base(info, _MODULES):
                return _Leaf("module", [r for a in args for r in a.recs])
            return self.new(args) if not info.has_base(_GRAPH) else _NONE
        if isinstance(callee, NameExpr) and callee.name in _PLAIN_FUNCS:
            for a in e.args:
                self.eval(a)
            return _NONE
        if isinstance(callee, MemberExpr):
            m = callee.name
            if m == "param" or m == "constant":
                for a in e.args:
                    self.eval(a)
                return _Leaf("param" if m == "param" else "constant", [])
            if m in ("backward", "free") and e.args:
                retain = any(n == "retain" and isinstance(a, NameExpr) and a.name == "True"
                             for a, n in zip(e.args, e.arg_names))
                loss = self.eval(e.args[0])
                for a in e.args[1:]:
                    self.eval(a)
                if not retain:
                    self.consume(loss.recs)
                return _NONE
            if m == "clear" and not e.args:
                self.eval(callee.expr)
                self.consume_all()
                return _NONE
            if m == "freeze" and e.args:
                return self.eval(e.args[0])
            base = self.eval(callee.expr)
            args = [self.eval(a) for a in e.args]
            if m in _WRITE_METHODS:
                self.write(callee.expr, e.line, f'"{_dotted(_lvalue_root(callee.expr)) or "tensor"}"')
                return base
            if m == "step" and base.recs and any(r.kind == "opt" for r in base.recs):
                self.step(callee.expr, e.line, base)
                return _NONE
            if m in _PLAIN_METHODS:
                return _NONE
            if m == "detach":
                return _Val("alias", base.recs, False) if base.kind != "none" else _NONE
            if m in _VIEW_METHODS:
                return base
            return self.new([base, *args])
        return self.new([self.eval(callee), *[self.eval(a) for a in e.args]])

    # --- effects ---
    def consume(self, recs: Iterable[_Rec]) -> None:
        stack = list(recs)
        seen: set[int] = set()
        while stack:
            r = stack.pop()
            if id(r) in seen:
                continue
            seen.add(id(r))
            if r.kind == "result":
                if not r.pending:
                    continue
                r.pending = False
            elif r.kind != "alias":
                continue
            stack.extend(r.parents)

    def consume_all(self) -> None:
        for r in self.results:
            r.pending = False

    def culprit(self, stor: frozenset[_Rec], rows: tuple[int, int] | None = None) -> tuple[_Rec, _Rec] | None:
        """The latest pending result that depends on one of ``stor`` (and the storage it depends on)."""
        for r in reversed(self.results):
            if not r.pending or r.stor & stor:
                continue
            hit = self.depends(r, stor, rows)
            if hit is not None:
                return r, hit
        return None

    @staticmethod
    def depends(r: _Rec, stor: frozenset[_Rec], rows: tuple[int, int] | None = None) -> _Rec | None:
        stack = list(r.parents)
        seen: set[int] = set()
        while stack:
            p = stack.pop()
            if id(p) in seen:
                continue
            seen.add(id(p))
            hit = p.stor & stor
            if hit:
                if _disjoint(p.rows, rows):
                    continue  # a view of other rows of the written storage: no overlap
                return next(iter(hit))
            if (p.kind == "result" and p.pending) or p.kind == "alias":
                stack.extend(p.parents)
        return None

    def write(self, target: Expression, line: int, what: str) -> None:
        root = _lvalue_root(target)
        val = self.eval(root)
        stor = frozenset().union(*(r.stor for r in val.recs)) if val.recs else frozenset()
        if not stor or line != self.stop_line:
            return
        rows = None
        if isinstance(root, NameExpr):
            rec = self.env.get(root.name)
            rows = rec.rows if rec is not None else None
            if isinstance(target, IndexExpr) and target.base is root and rec is not None and rec.kind != "alias":
                rows = _literal_rows(target)
        found = self.culprit(stor, rows)
        if found is not None:
            res, _ = found
            msg = (f'in-place write to {what} while "{res.name}" (line {res.line}) depends on it and still '
                   f'waits for g.backward(...); call g.backward({res.name}) first, or g.free({res.name})')
            self.conflicts[(line, msg)] = _Conflict(line, msg)

    def step(self, opt_expr: Expression, line: int, base: _Val) -> None:
        stor = frozenset().union(*(r.stor for r in base.recs if r.kind == "opt"))
        if not stor or line != self.stop_line:
            return
        found = self.culprit(stor)
        if found is not None:
            res, hit = found
            opt = _dotted(opt_expr) or "optimizer"
            msg = (f'"{opt}.step(...)" updates "{hit.name}" in place while "{res.name}" (line {res.line}) depends '
                   f'on it and still waits for g.backward(...); call g.backward({res.name}) first, '
                   f'or g.free({res.name})')
            self.conflicts[(line, msg)] = _Conflict(line, msg)


class _Leaf(_Val):
    """A constructor's value: a param/constant leaf, a module (over its sub-modules) or an optimizer."""

    __slots__ = ("leaf_kind", "over")

    def __init__(self, leaf_kind: str, over: list[_Rec]) -> None:
        super().__init__("leaf", over, leaf_kind != "constant")
        self.leaf_kind = leaf_kind
        self.over = over

    def make(self, name: str, line: int) -> _Rec:
        if self.leaf_kind == "opt":
            stor = frozenset().union(*(r.stor for r in self.over)) if self.over else frozenset()
            return _Rec(name, line, "opt", (), False, stor=stor)
        rec = _Rec(name, line, "leaf", (), self.leaf_kind != "constant")
        if self.leaf_kind == "module" and self.over:  # Sequential(l1, l2) holds l1's and l2's params
            rec.stor = rec.stor.union(*(r.stor for r in self.over))
        return rec


def _scope_body(ctx: MethodContext) -> list[Statement] | None:
    scope = getattr(ctx.api, "scope", None)
    stack = getattr(scope, "stack", None)
    if not stack:
        return None
    for item in reversed(stack):
        if isinstance(item, FuncDef):
            return item.body.body
        if isinstance(item, MypyFile):
            return [d for d in item.defs if not isinstance(d, (FuncDef, Decorator))]
        if isinstance(item, TypeInfo):
            return None  # a class body
    return None


def _check_write(ctx: MethodContext) -> Type:
    body = _scope_body(ctx)
    if body is not None:
        line = ctx.context.line
        flow = _Flow(line)
        try:
            flow.run(body)
        except RecursionError:  # pragma: no cover - pathological nesting
            return ctx.default_return_type
        for c in flow.conflicts.values():
            ctx.api.fail(c.message, ctx.context, code=OWNGRAD_BORROW)
    return ctx.default_return_type


class OwngradPlugin(Plugin):
    """Adds the flow-sensitive ``owngrad-borrow`` check; see the module docstring."""

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        cls, _, method = fullname.rpartition(".")
        if method in _WRITE_METHODS or method == "step":
            info = self._info(cls)
            if info is None:
                return None
            if method == "step" and _has_base(info, _OPTIMIZERS):
                return _check_write
            if method in _WRITE_METHODS and info.has_base(_TENSOR):
                return _check_write
        return None

    def _info(self, fullname: str) -> TypeInfo | None:
        sym = self.lookup_fully_qualified(fullname)
        return sym.node if sym is not None and isinstance(sym.node, TypeInfo) else None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point (``plugins = owngrad.mypy_plugin``)."""
    return OwngradPlugin
