"""A mypy plugin for the borrow errors the stubs cannot express, because they depend on the order
of statements: writing a tensor in place (or stepping an optimizer over it) while a result that
depends on it still waits for its ``backward`` (the alternating-update / GAN bug), writing a
value with gradient history into a param outside ``no_grad``, a second ``backward`` through a
consumed result, and an optimizer stepped with gradients that cannot hold its params. Enable it
with ``plugins = owngrad.mypy_plugin`` in the ``[mypy]`` section.

The plugin replays a function body's statements in order and tracks, per name, what each value
was computed from:

- ``g.param`` / ``g.constant`` / a module or optimizer constructor make a new leaf (an optimizer
  over ``[w, b]`` or ``model.parameters()`` writes those leaves when it steps);
- indexing, attribute access, ``reshape``/``T``/... alias their base's storage; ``detach()``
  aliases the storage but cuts the history; results computed under ``with g.no_grad():`` or from
  constants only are not pending;
- containers (lists, dicts, tuples, ``zip``/``enumerate``, ``parameters()``) carry what their
  items depend on; ``lst.append(loss)`` keeps ``loss`` pending under the name ``lst``; a loop
  over ``zip(a, b)`` binds each target to its own sequence;
- a call of a function or method that mypy sees in this run (any module of the user's project)
  uses that function's *summary*: which arguments flow into each returned value (per tuple
  position), whether the result is a new pending result, a ``Grads``, a new module, and which
  arguments it consumes by calling ``g.backward``/``g.free``. Other calls depend on every
  argument (conservative);
- ``g.backward(r)`` (without ``retain=True``) and ``g.free(r)`` consume ``r`` and every pending
  result it was computed from; ``g.clear()`` and leaving ``with og.Graph() as g`` consume all.

Errors (code ``owngrad-borrow``), each reported once at the offending line, naming the real
variable and the pending result's line:

- an in-place write (``+= -= *= /=``, ``t[k] = v``, ``zero_ fill_ copy_ clamp_ add_ sub_ mul_
  div_``, ``borrow_mut``) or an ``opt.step(...)`` whose storage a pending result depends on;
- an in-place write into a param of a value with gradient history outside ``no_grad``;
- ``g.backward(r)`` when ``r`` was already consumed by an earlier backward without ``retain``;
- ``opt.step(grads)`` where ``grads`` come from a loss that depends on none of ``opt``'s params.

The check is by dependency, not by what the run-time rules actually save, so it is
conservative: a result whose backward would not need the old value (``(x * w).sum()`` with a
constant ``x``) is still reported. Loops are replayed twice so an update carried into the next
iteration is seen. Summaries need function bodies, which mypy's cache does not keep, so the
plugin asks mypy to re-check the user's own modules on every run (library modules stay cached).

mypy's plugin API is experimental; this plugin is tested with the oldest mypy the project
declares (1.10) and the current 2.x.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator

from mypy.errorcodes import ErrorCode
from mypy.nodes import (
    ARG_NAMED,
    ARG_OPT,
    ARG_POS,
    AssertStmt,
    AssertTypeExpr,
    AssignmentStmt,
    Block,
    BreakStmt,
    CallExpr,
    CastExpr,
    ComparisonExpr,
    ConditionalExpr,
    ContinueStmt,
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
    RaiseStmt,
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
from mypy.plugin import MethodContext, Plugin, ReportConfigContext
from mypy.types import AnyType, Instance, Type, UnionType, get_proper_type

__all__ = ["OWNGRAD_BORROW", "OwngradPlugin", "plugin"]

OWNGRAD_BORROW = ErrorCode(
    "owngrad-borrow", "In-place write while a result that depends on it waits for backward", "owngrad")

_TENSOR = "owngrad.tensor.Tensor"
_MODULES = ("owngrad.nn.modules.Module", "owngrad.nn.Module")
_OPTIMIZERS = ("owngrad.optim.Optimizer",)
_GRAPH = "owngrad.graph.Graph"
_GRADS = "owngrad.graph.Grads"

#: tensor methods that write in place (their hooks trigger the check); the value written is their first argument
_WRITE_METHODS = frozenset({
    "zero_", "fill_", "copy_", "clamp_", "add_", "sub_", "mul_", "div_", "borrow_mut",
    "__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
})
#: methods whose result shares the receiver's storage
_VIEW_METHODS = frozenset({"reshape", "flatten", "transpose", "permute", "squeeze", "unsqueeze", "expand",
                           "astype", "to", "parameters", "children", "modules", "train", "eval", "values",
                           "pop", "get"})
#: methods whose result is a sequence of (plain key, item sharing the receiver's storage) pairs
_PAIR_METHODS = frozenset({"named_parameters", "named_modules", "named_children", "items"})
#: methods whose result carries no gradient history (or is not a tensor at all)
_PLAIN_METHODS = frozenset({"item", "numpy", "tolist", "any", "all", "argmax", "state_dict", "to_dot", "borrow",
                            "pending", "extra_repr", "clip_norm_", "load_state_dict", "keys", "zero_grad"})
#: container methods that put their argument(s) into the receiver
_STORE_METHODS = frozenset({"append", "extend", "insert", "add", "update", "setdefault", "appendleft"})
_PLAIN_FUNCS = frozenset({"float", "int", "bool", "str", "len", "print", "repr", "isinstance", "range",
                          "round", "format", "id", "type", "hash", "callable", "hasattr", "getattr"})
#: builtins that return (an iterator over) their arguments' items, not something computed from them
_ALIAS_FUNCS = frozenset({"list", "tuple", "dict", "set", "frozenset", "iter", "next", "sorted", "reversed",
                          "cast", "assert_type"})
_PLAIN_ATTRS = frozenset({"shape", "ndim", "size", "dtype", "device", "name", "requires_grad", "is_leaf",
                          "graph", "training"})
_PLAIN_TYPES = frozenset({"builtins.float", "builtins.int", "builtins.bool", "builtins.str", "builtins.bytes",
                          "builtins.complex", "numpy.ndarray", "owngrad.graph.Graph", "builtins.NoneType"})
_CONTAINER_TYPES = frozenset({"builtins.list", "builtins.dict", "builtins.set", "collections.deque",
                              "collections.OrderedDict", "collections.defaultdict"})


class _Rec:
    """One value a name was bound to: where, what it was computed from, which storages it aliases."""

    __slots__ = ("name", "line", "kind", "parents", "stor", "grad", "pending", "rows", "param", "consumed_at",
                 "arg", "loss")

    def __init__(self, name: str, line: int, kind: str, parents: Iterable[_Rec] = (), grad: bool = True,
                 pending: bool = False, stor: Iterable[_Rec] | None = None) -> None:
        self.name = name
        self.line = line
        #: "leaf" | "result" | "alias" | "opt" | "arg" (a parameter, while summarizing) | "grads"
        self.kind = kind
        self.parents = tuple(parents)
        self.grad = grad
        self.pending = pending
        self.stor: frozenset[_Rec] = frozenset(stor) if stor is not None else frozenset({self})
        #: rows [start, stop) of its storage along the first axis, for ``w[0:2]`` with literal bounds
        self.rows: tuple[int, int] | None = None
        #: a leaf known to hold params (``g.param``, a module), not a tensor of unknown origin
        self.param = False
        #: the line of the backward / free that consumed this result
        self.consumed_at: int | None = None
        #: the parameter index, for an "arg" rec
        self.arg: int | None = None
        #: for a "grads" rec: the losses whose gradients it holds
        self.loss: tuple[_Rec, ...] = ()


class _Val:
    """What an expression evaluates to: nothing tracked, an alias of tracked values, a new value, a Grads."""

    __slots__ = ("kind", "recs", "grad", "items", "within")

    def __init__(self, kind: str, recs: Iterable[_Rec] = (), grad: bool = False,
                 items: tuple[_Val, ...] | None = None) -> None:
        self.kind = kind  # "none" | "alias" | "new" | "leaf" | "grads"
        self.recs = tuple(dict.fromkeys(recs))
        self.grad = grad
        #: per-position values of a tuple (``return a, b``) or of the sequences zipped together
        self.items = items
        #: for a tuple item: the positions whose backward also consumes this one (``out, h = gru(x)``)
        self.within: frozenset[int] = frozenset()


_NONE = _Val("none")


class _Leaf(_Val):
    """A constructor's value: a param/constant leaf, a module (over its sub-modules) or an optimizer."""

    __slots__ = ("leaf_kind",)

    def __init__(self, leaf_kind: str, over: Iterable[_Rec]) -> None:
        super().__init__("leaf", over, leaf_kind != "constant")
        self.leaf_kind = leaf_kind

    def make(self, name: str, line: int) -> _Rec:
        if self.leaf_kind == "opt":
            stor = frozenset().union(*(r.stor for r in self.recs)) if self.recs else frozenset()
            return _Rec(name, line, "opt", (), False, stor=stor)
        rec = _Rec(name, line, "leaf", (), self.leaf_kind != "constant")
        rec.param = self.leaf_kind in ("param", "module")
        if self.leaf_kind == "module" and self.recs:  # Sequential(l1, l2) holds l1's and l2's params
            rec.stor = rec.stor.union(*(r.stor for r in self.recs))
        return rec


class _Item:
    """One returned value in a function summary: its kind and the parameter indices it comes from."""

    __slots__ = ("kind", "args", "pending", "leaf_kind", "within")

    def __init__(self, kind: str, args: frozenset[int], pending: bool = False, leaf_kind: str = "",
                 within: frozenset[int] = frozenset()) -> None:
        self.kind = kind  # "none" | "alias" | "new" | "leaf" | "grads"
        self.args = args
        self.pending = pending
        self.leaf_kind = leaf_kind
        self.within = within

    def merge(self, other: _Item) -> _Item:
        if self.kind == other.kind:
            return _Item(self.kind, self.args | other.args, self.pending or other.pending, self.leaf_kind,
                         self.within & other.within)
        if "none" in (self.kind, other.kind):
            return other if self.kind == "none" else self
        return _Item("new", self.args | other.args, self.pending or other.pending)


class _Summary:
    """What calling a function does to its arguments: per returned position, where it comes from; what it consumes."""

    __slots__ = ("ret", "consumes")

    def __init__(self, ret: _Item | tuple[_Item, ...], consumes: frozenset[int]) -> None:
        self.ret = ret
        self.consumes = consumes


def _fullname_of_type(t: Type | None) -> str | None:
    p = get_proper_type(t) if t is not None else None
    return p.type.fullname if isinstance(p, Instance) else None


def _has_base(info: TypeInfo, names: tuple[str, ...]) -> bool:
    return any(info.has_base(n) for n in names)


def _is_grads_type(t: Type | None) -> bool:
    p = get_proper_type(t) if t is not None else None
    return isinstance(p, Instance) and p.type.has_base(_GRADS)


def _is_module_type(t: Type | None) -> bool:
    p = get_proper_type(t) if t is not None else None
    return isinstance(p, Instance) and _has_base(p.type, _MODULES)


def _is_container_type(t: Type | None) -> bool:
    p = get_proper_type(t) if t is not None else None
    return isinstance(p, Instance) and any(p.type.has_base(n) for n in _CONTAINER_TYPES)


def _is_plain_type(t: Type | None) -> bool:
    """A type known not to carry tensors (float, ndarray, Grads, ...): binding it breaks dependency."""
    p = get_proper_type(t) if t is not None else None
    if p is None or isinstance(p, AnyType):
        return False
    if isinstance(p, UnionType):
        return all(_is_plain_type(i) for i in p.items)
    if isinstance(p, Instance):  # float, ndarray, Graph, list[str], ...: anything that holds no tensor
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
    """``w`` for ``w[0:2]``, ``w.T[1]``, ``w[2:4].reshape(8)``, ``w.mul_(2)``: the tensor a write goes through."""
    while True:
        if isinstance(e, IndexExpr):
            e = e.base
        elif isinstance(e, MemberExpr) and e.name == "T":
            e = e.expr
        elif isinstance(e, CallExpr) and isinstance(e.callee, MemberExpr) and \
                (e.callee.name in _VIEW_METHODS or e.callee.name in _WRITE_METHODS):
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


def _stor(recs: Iterable[_Rec]) -> frozenset[_Rec]:
    return frozenset().union(*(r.stor for r in recs))


def _walk(start: Iterable[_Rec], follow: Callable[[_Rec], Iterable[_Rec]]) -> Iterator[_Rec]:
    """Each record reachable from ``start`` once, depth first; ``follow(r)`` (called after ``r`` is
    handled) says where to go from ``r``."""
    stack = list(start)
    seen: set[int] = set()
    while stack:
        r = stack.pop()
        if id(r) in seen:
            continue
        seen.add(id(r))
        yield r
        stack.extend(follow(r))


def _func_of(node: object) -> FuncDef | None:
    if isinstance(node, Decorator):
        node = node.func
    return node if isinstance(node, FuncDef) else None


#: summaries by function (kept with the node, so an id is never reused while the entry lives)
_SUMMARIES: dict[int, tuple[FuncDef, _Summary | None]] = {}
_IN_PROGRESS: set[int] = set()


def _summary(fd: FuncDef) -> _Summary | None:
    """The summary of ``fd``, from its body (None while it is being computed, or without a body)."""
    key = id(fd)
    hit = _SUMMARIES.get(key)
    if hit is not None and hit[0] is fd:
        return hit[1]
    body = fd.body.body
    if key in _IN_PROGRESS or not body or getattr(fd, "is_stub", False) or getattr(fd, "is_trivial_body", False):
        return None
    _IN_PROGRESS.add(key)
    try:
        flow = _Flow(-1, summarizing=True)
        for i, a in enumerate(fd.arguments):
            v = a.variable
            if v.type is not None and _is_plain_type(v.type) and not _is_grads_type(v.type):
                flow.env[v.name] = None
                continue
            rec = _Rec(v.name, fd.line, "arg")
            rec.arg = i
            flow.env[v.name] = rec
        try:
            flow.run(body)
        except RecursionError:  # pragma: no cover - pathological nesting
            return None
        ret: _Item | tuple[_Item, ...] = _Item("none", frozenset())
        for r in flow.returns:
            if isinstance(ret, tuple) and isinstance(r, tuple) and len(ret) == len(r):
                ret = tuple(a.merge(b) for a, b in zip(ret, r))
            elif isinstance(ret, _Item) and isinstance(r, _Item):
                ret = ret.merge(r)
            elif isinstance(ret, _Item) and ret.kind == "none":
                ret = r
            else:  # a tuple here, one value there: everything flows everywhere
                parts = [*(ret if isinstance(ret, tuple) else (ret,)), *(r if isinstance(r, tuple) else (r,))]
                merged = parts[0]
                for p in parts[1:]:
                    merged = merged.merge(p)
                ret = merged
        summary = _Summary(ret, frozenset(flow.consumed_args))
    finally:
        _IN_PROGRESS.discard(key)
    _SUMMARIES[key] = (fd, summary)
    return summary


class _Conflict:
    __slots__ = ("line", "message")

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message


class _Flow:
    """Replays a function body's statements in order; collects the conflicts at the line being checked."""

    def __init__(self, stop_line: int, summarizing: bool = False) -> None:
        self.env: dict[str, _Rec | None] = {}
        self.results: list[_Rec] = []
        self.no_grad = 0
        self.stop_line = stop_line
        self.conflicts: dict[tuple[int, str], _Conflict] = {}
        self.summarizing = summarizing
        self.returns: list[_Item | tuple[_Item, ...]] = []
        self.consumed_args: set[int] = set()

    def report(self, line: int, msg: str) -> None:
        if line == self.stop_line:
            self.conflicts[(line, msg)] = _Conflict(line, msg)

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
            self.write(s.lvalue, s.line, val)
            self.extend_history(s.lvalue, val)
        elif isinstance(s, ExpressionStmt):
            self.eval(s.expr)
        elif isinstance(s, ReturnStmt):
            if s.expr is not None:
                val = self.eval(s.expr)
                if self.summarizing:
                    self.returns.append(self.describe(val))
        elif isinstance(s, AssertStmt):
            self.eval(s.expr)
        elif isinstance(s, Block):
            self.run(s.body)
        elif isinstance(s, IfStmt):
            for e in s.expr:
                self.eval(e)
            bodies = [b.body for b in s.body] + [s.else_body.body if s.else_body is not None else []]
            self.branches([(functools.partial(self.run, body), _leaves(body)) for body in bodies])
        elif isinstance(s, (ForStmt, WhileStmt)):
            for _ in range(2):  # twice: a pending result may be carried into the next iteration
                if isinstance(s, ForStmt):
                    self.assign(s.index, self.element(self.eval(s.expr)), s.expr, s.line)
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
        # FuncDef / ClassDef / Decorator bodies are other scopes: checked (and summarized) on their own

    def branches(self, runs: list[tuple[Callable[[], object], bool]]) -> None:
        """Alternatives (``if``/``else``, ``a if c else b``): each runs from the same state of the pending
        results; afterwards a result is consumed if a branch that falls through consumed it (a branch
        that returns or raises does not fall through)."""
        start = [(r, r.pending, r.consumed_at) for r in self.results]
        ends: list[dict[int, tuple[bool, int | None]]] = []
        for run, leaves in runs:
            for r, pending, at in start:
                r.pending, r.consumed_at = pending, at
            run()
            if not leaves:
                ends.append({id(r): (r.pending, r.consumed_at) for r, _, _ in start})
        for r, pending, at in start:
            gone = [st for st in (e[id(r)] for e in ends) if not st[0]]
            if pending and gone:
                r.pending, r.consumed_at = False, gone[0][1]
            else:
                r.pending, r.consumed_at = pending, at

    @staticmethod
    def element(seq: _Val) -> _Val:
        """What a loop over ``seq`` binds: an alias of the sequence's items, per position for ``zip``."""
        if seq.kind == "none":
            return _NONE
        items = None
        if seq.items is not None:
            items = tuple(_NONE if v.kind == "none" else _Val("alias", v.recs, v.grad) for v in seq.items)
        return _Val("alias", seq.recs, seq.grad, items)

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
            self.consume_all(s.line)

    # --- bindings ---
    def assign(self, lv: Expression, val: _Val, rvalue: Expression, line: int) -> None:
        if isinstance(lv, (TupleExpr, ListExpr)):
            targets = [item.expr if isinstance(item, StarExpr) else item for item in lv.items]
            if val.items is not None and len(val.items) == len(targets) and \
                    not any(isinstance(i, StarExpr) for i in lv.items):
                bound: list[_Rec | None] = []
                for t, v in zip(targets, val.items):
                    self.assign(t, v, rvalue, line)
                    name = _dotted(t)
                    bound.append(self.env.get(name) if name else None)
                for i, v in enumerate(val.items):  # out, h = f(x) where h is part of out's graph
                    for j in v.within:
                        a, b = bound[i], bound[j] if j < len(bound) else None
                        if a is not None and b is not None and a is not b and b.kind == "result":
                            b.parents = (*b.parents, a)
                return
            if val.kind == "new" and targets:  # one call's results, split: one pending result, the rest alias it
                self.assign(targets[0], val, rvalue, line)
                first = self.env.get(_dotted(targets[0]) or "")
                for t in targets[1:]:
                    self.assign(t, _Val("alias", (first,), first.grad) if first is not None else val, rvalue, line)
                return
            for t in targets:
                self.assign(t, val, rvalue, line)
            return
        if isinstance(lv, IndexExpr):
            if self.is_container(lv.base):  # d[k] = v on a list / dict: a store, not a tensor write
                self.store(lv.base, [val], line)
                return
            self.write(lv, line, val)  # t[k] = v
            self.extend_history(lv, val)
            return
        name = _dotted(lv)
        if name is None or name == "_":  # `_` is a throwaway: it holds nothing anyone waits on
            return
        var = lv.node if isinstance(lv, RefExpr) and isinstance(lv.node, Var) else None
        if val.kind == "grads":
            rec = _Rec(name, line, "grads", (), False, stor=())
            rec.loss = val.recs
            self.env[name] = rec
            return
        if var is not None and _is_plain_type(var.type):
            val = _NONE
        if val.kind == "none":
            self.env[name] = None
            if var is not None and _is_tensorish(var.type) and isinstance(rvalue, CallExpr) \
                    and not _is_container_type(var.type):
                rec = _Rec(name, line, "leaf", grad=True)  # a factory's tensor or module: a leaf of unknown origin
                rec.param = _is_module_type(var.type)
                self.env[name] = rec
            return
        if isinstance(val, _Leaf):
            self.env[name] = val.make(name, line)
            return
        if val.kind == "alias":
            rec = _Rec(name, line, "alias", val.recs, val.grad, stor=_stor(val.recs))
            if len(val.recs) == 1 and val.recs[0].rows is not None:
                rec.rows = val.recs[0].rows
            self.env[name] = rec
            return
        pending = val.grad and self.no_grad == 0
        rec = _Rec(name, line, "result", val.recs, pending, pending)
        self.env[name] = rec
        if pending:
            self.results.append(rec)

    def is_container(self, e: Expression) -> bool:
        var = e.node if isinstance(e, RefExpr) and isinstance(e.node, Var) else self.member_var(e)
        return var is not None and _is_container_type(var.type)

    def is_tensor(self, e: Expression) -> bool:
        var = e.node if isinstance(e, RefExpr) and isinstance(e.node, Var) else self.member_var(e)
        return var is not None and _is_tensorish(var.type) and not _is_container_type(var.type)

    def store(self, container: Expression, vals: list[_Val], line: int) -> None:
        """``lst.append(v)``, ``d[k] = v``: the container now also holds ``v`` (kept pending under its name)."""
        name = _dotted(container)
        if name is None:
            return
        old = self.lookup(container)
        parts: list[_Rec] = [old] if old is not None else []
        for v in vals:
            if v.kind == "new":
                pending = v.grad and self.no_grad == 0
                res = _Rec(name, line, "result", v.recs, pending, pending)
                if pending:
                    self.results.append(res)
                parts.append(res)
            elif v.kind in ("alias", "leaf"):
                parts.extend(v.recs)
        if parts and (old is None or parts != [old]):
            rec = _Rec(name, line, "alias", parts, any(p.grad for p in parts), stor=_stor(parts))
            self.env[name] = rec

    def extend_history(self, lv: Expression, val: _Val) -> None:
        """``y += w`` on a result: y's history now depends on w too."""
        name = _dotted(_lvalue_root(lv))
        rec = self.env.get(name) if name else None
        if rec is not None and rec.kind == "result" and val.recs:
            rec.parents = tuple(dict.fromkeys(rec.parents + val.recs))
            rec.grad = rec.grad or val.grad

    def member_var(self, e: Expression) -> Var | None:
        """The declared attribute behind ``obj.attr`` (``self.critic``), from the type of ``obj``."""
        if not isinstance(e, MemberExpr):
            return None
        base = e.expr
        t = base.node.type if isinstance(base, RefExpr) and isinstance(base.node, Var) else None
        if t is None:
            inner = self.member_var(base)
            t = inner.type if inner is not None else None
        p = get_proper_type(t) if t is not None else None
        if not isinstance(p, Instance):
            return None
        sym = p.type.get(e.name)
        return sym.node if sym is not None and isinstance(sym.node, Var) else None

    def lookup(self, e: Expression) -> _Rec | None:
        name = _dotted(e)
        if name is None:
            return None
        if name in self.env:
            return self.env[name]
        node = e.node if isinstance(e, RefExpr) and isinstance(e.node, Var) else self.member_var(e)
        if isinstance(node, Var) and _is_grads_type(node.type):
            rec = _Rec(name, 0, "grads", (), False, stor=())
            self.env[name] = rec
            return rec
        if isinstance(node, Var) and _is_tensorish(node.type):
            rec = _Rec(name, node.line if node.line > 0 else 0, "leaf", grad=True)
            rec.param = _is_module_type(node.type)
            self.env[name] = rec
            return rec
        return None

    # --- expressions ---
    def ref(self, r: _Rec) -> _Val:
        if r.kind == "grads":
            return _Val("grads", r.loss)
        return _Val("alias", (r,), r.grad)

    def eval(self, e: Expression) -> _Val:
        if isinstance(e, NameExpr):
            r = self.lookup(e)
            return self.ref(r) if r is not None else _NONE
        if isinstance(e, MemberExpr):
            if e.name in _PLAIN_ATTRS:
                self.eval(e.expr)
                return _NONE
            r = self.lookup(e) if _dotted(e) in self.env else None
            if r is not None:
                return self.ref(r)
            base = self.eval(e.expr)
            if base.kind == "grads":
                return _NONE
            attr = self.member_var(e)
            if base.kind != "none" and (attr is None or e.name == "T" or len(base.recs) != 1):
                return base  # .T of a tensor, an attribute we know nothing of: the same storage
            if base.kind != "none" and attr is not None:
                # a declared part of a tracked object (self.actor): its own storage, inside the object's
                src = base.recs[0]
                piece = _Rec(_dotted(e) or e.name, e.line, "alias", (src,), src.grad)
                piece.param = src.param or _is_module_type(attr.type)
                name = _dotted(e)
                if name is not None:
                    self.env[name] = piece
                return _Val("alias", (piece,), piece.grad)
            r = self.lookup(e)
            if r is not None:
                return self.ref(r)
            return base if base.kind != "none" else _NONE
        if isinstance(e, IndexExpr):
            self.eval(e.index)
            base = self.eval(e.base)
            if base.kind == "grads":
                return _NONE  # grads[w]: a read-only gradient, no history
            if base.items is not None and isinstance(e.index, IntExpr) and 0 <= e.index.value < len(base.items):
                return base.items[e.index.value]
            rows = _literal_rows(e)
            if rows is not None and len(base.recs) == 1 and base.recs[0].kind in ("leaf", "result", "arg") \
                    and base.kind == "alias":
                src = base.recs[0]
                view = _Rec(src.name, e.line, "alias", (src,), src.grad, stor=src.stor)
                view.rows = rows
                return _Val("alias", (view,), src.grad)
            return _Val(base.kind, base.recs, base.grad) if base.kind != "none" else _NONE
        if isinstance(e, CallExpr):
            return self.call(e)
        if isinstance(e, (OpExpr, UnaryExpr)):
            parts = [self.eval(x) for x in ((e.left, e.right) if isinstance(e, OpExpr) else (e.expr,))]
            if isinstance(e, OpExpr) and e.op in ("and", "or"):
                return self.alias(parts)
            return self.new(parts)
        if isinstance(e, ComparisonExpr):
            for x in e.operands:
                self.eval(x)
            return _NONE  # constant boolean tensors
        if isinstance(e, ConditionalExpr):
            self.eval(e.cond)
            vals: list[_Val] = []
            self.branches([(functools.partial(self.eval_into, vals, x), False) for x in (e.if_expr, e.else_expr)])
            return self.alias(vals)
        if isinstance(e, TupleExpr):
            parts = [self.eval(x.expr if isinstance(x, StarExpr) else x) for x in e.items]
            out = self.alias(parts)
            if not any(isinstance(x, StarExpr) for x in e.items):
                out = _Val(out.kind if out.kind != "none" else "alias", out.recs, out.grad, tuple(parts))
            return out
        if isinstance(e, (ListExpr, SetExpr)):
            return self.alias([self.eval(x.expr if isinstance(x, StarExpr) else x) for x in e.items])
        if isinstance(e, DictExpr):
            for k, _ in e.items:
                if k is not None:
                    self.eval(k)
            return self.alias([self.eval(v) for _, v in e.items])
        if isinstance(e, ListComprehension):
            e = e.generator
        if isinstance(e, GeneratorExpr):  # [p * 2 for p in model.parameters()]: bind the targets, read the element
            for index, seq in zip(e.indices, e.sequences):
                self.assign(index, self.element(self.eval(seq)), seq, e.line)
            return self.alias([self.eval(e.left_expr)])
        if isinstance(e, (StarExpr, CastExpr, AssertTypeExpr)):
            return self.eval(e.expr)
        if isinstance(e, SliceExpr):
            for part in (e.begin_index, e.end_index, e.stride):
                if part is not None:
                    self.eval(part)
        return _NONE  # literals, lambdas (another scope), anything else: nothing tracked

    def eval_into(self, out: list[_Val], e: Expression) -> None:
        out.append(self.eval(e))

    @staticmethod
    def alias(parts: list[_Val]) -> _Val:
        live = [p for p in parts if p.kind != "none"]
        if not live:
            return _NONE
        if len(live) == 1 and live[0].kind == "grads":
            return live[0]
        kind = "new" if any(p.kind == "new" for p in live) else "alias"
        return _Val(kind, [r for p in live if p.kind != "grads" for r in p.recs], any(p.grad for p in live))

    @staticmethod
    def new(parts: list[_Val]) -> _Val:
        live = [p for p in parts if p.kind not in ("none", "grads")]
        if not live:
            return _NONE
        return _Val("new", [r for p in live for r in p.recs], any(p.grad for p in live))

    def call(self, e: CallExpr) -> _Val:
        callee = e.callee
        if isinstance(callee, NameExpr) and callee.name in _PLAIN_FUNCS:
            for a in e.args:
                self.eval(a)
            return _NONE
        if isinstance(callee, NameExpr) and callee.name in ("zip", "enumerate") and \
                (callee.fullname or "builtins.").startswith("builtins."):
            args = [self.eval(a) for a in e.args]
            items = tuple(args) if callee.name == "zip" else (_NONE, *args[:1])
            out = self.alias(args)
            return _Val(out.kind, out.recs, out.grad, items) if out.kind != "none" else _NONE
        if isinstance(callee, NameExpr) and callee.name in _ALIAS_FUNCS:
            return self.alias([self.eval(a) for a in e.args])
        if isinstance(callee, RefExpr) and isinstance(callee.node, TypeInfo):
            info = callee.node
            args = [self.eval(a) for a in e.args]
            if _has_base(info, _OPTIMIZERS):
                return _Leaf("opt", [r for a in args for r in a.recs])
            if _has_base(info, _MODULES):
                return _Leaf("module", [r for a in args for r in a.recs])
            return self.new(args) if not info.has_base(_GRAPH) else _NONE
        if isinstance(callee, MemberExpr):
            return self.method(e, callee)
        fd = _func_of(callee.node) if isinstance(callee, RefExpr) else None
        if fd is not None:
            summary = _summary(fd)
            if summary is not None:
                bound = self.bind(fd, e, None)
                if bound is not None:
                    return self.apply(summary, bound, e.line)
        return self.new([self.eval(callee), *[self.eval(a) for a in e.args]])

    def method(self, e: CallExpr, callee: MemberExpr) -> _Val:
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
            if m == "backward":
                self.check_consumed(e, loss)
            if not retain:
                self.consume(loss.recs, e.line)
            if m == "free":
                return _NONE
            if len(loss.recs) == 1 and loss.recs[0].kind == "result":
                return _Val("grads", loss.recs)
            anon = _Rec("", e.line, "result", loss.recs, False)  # an unnamed loss: "the loss at line N"
            return _Val("grads", (anon,))
        if m == "clear" and not e.args:
            self.eval(callee.expr)
            self.consume_all(e.line)
            return _NONE
        if m == "freeze" and e.args:
            return self.eval(e.args[0])
        if m in ("clone", "deepcopy"):  # model.clone(), copy.deepcopy(model): new params, no history
            target = e.args[0] if m == "deepcopy" and e.args else callee.expr
            var = target.node if isinstance(target, RefExpr) and isinstance(target.node, Var) else \
                self.member_var(target)
            if var is not None and _is_module_type(var.type):
                self.eval(target)
                return _Leaf("module", [])
        fd = self.method_def(callee)
        if fd is not None:
            summary = _summary(fd)
            if summary is not None:
                bound = self.bind(fd, e, self.eval(callee.expr))
                if bound is not None:
                    return self.apply(summary, bound, e.line)
        attr = self.member_var(callee)
        if attr is not None and _is_tensorish(attr.type):  # self.actor(obs): calling a module held by an object
            return self.new([self.eval(callee), *[self.eval(a) for a in e.args]])
        if m in _STORE_METHODS and (self.is_container(callee.expr) or
                                    (m != "add" and not self.is_tensor(callee.expr))):
            self.store(callee.expr, [self.eval(a) for a in e.args], e.line)
            return _NONE
        base = self.eval(callee.expr)
        args = [self.eval(a) for a in e.args]
        if m in _WRITE_METHODS:
            self.write(callee.expr, e.line, args[0] if args and m != "clamp_" else None)
            return base
        if m == "step" and base.recs and any(r.kind == "opt" for r in base.recs):
            self.step(e, callee.expr, base, args[0] if args else _NONE)
            return _NONE
        if m in _PLAIN_METHODS:
            return _NONE
        if m == "detach":
            if base.kind == "none":
                return _NONE
            cut = _Rec(_dotted(_lvalue_root(callee.expr)) or "tensor", e.line, "alias", (), False,
                       stor=_stor(base.recs))
            return _Val("alias", (cut,), False)
        if m in _PAIR_METHODS:
            return _Val(base.kind, base.recs, base.grad, (_NONE, base)) if base.kind != "none" else _NONE
        if m in _VIEW_METHODS:
            return base
        return self.new([base, *args])

    def method_def(self, callee: MemberExpr) -> FuncDef | None:
        """The user-defined method ``obj.m`` calls (from the declared type of ``obj``), if mypy sees its body."""
        base = callee.expr
        var = base.node if isinstance(base, RefExpr) and isinstance(base.node, Var) else self.member_var(base)
        p = get_proper_type(var.type) if var is not None and var.type is not None else None
        if not isinstance(p, Instance) or p.type.fullname.startswith(("owngrad.", "builtins.", "numpy.")):
            return None
        sym = p.type.get_method(callee.name)
        fd = _func_of(sym)
        return fd if fd is not None and not fd.is_static and not fd.is_class else None

    def bind(self, fd: FuncDef, e: CallExpr, receiver: _Val | None) -> dict[int, _Val] | None:
        """Call arguments by parameter index (``None`` for calls the summary cannot map: ``*args``, ``**kw``)."""
        vals = [self.eval(a) for a in e.args]
        names = [a.variable.name for a in fd.arguments]
        out: dict[int, _Val] = {}
        pos = 0
        if receiver is not None:
            out[0] = receiver
            pos = 1
        for v, kind, name in zip(vals, e.arg_kinds, e.arg_names):
            if kind == ARG_POS and pos < len(fd.arguments) and fd.arguments[pos].kind in (ARG_POS, ARG_OPT):
                out[pos] = v
                pos += 1
            elif kind == ARG_NAMED and name in names:
                out[names.index(name)] = v
            else:
                return None
        return out

    def apply(self, summary: _Summary, bound: dict[int, _Val], line: int) -> _Val:
        for i in summary.consumes:
            if i in bound:
                self.consume(bound[i].recs, line)

        def realize(item: _Item) -> _Val:
            vals = [bound[i] for i in sorted(item.args) if i in bound]
            recs = [r for v in vals if v.kind != "grads" for r in v.recs]
            if item.kind == "grads":
                return _Val("grads", [r for v in vals for r in v.recs])
            if item.kind == "leaf":
                return _Leaf(item.leaf_kind or "module", recs)
            if item.kind == "alias":
                return _Val("alias", recs, any(v.grad for v in vals)) if recs else _NONE
            if item.kind == "new":
                grad = item.pending and (not item.args or any(v.grad for v in vals))
                return _Val("new", recs, grad)
            return _NONE

        if isinstance(summary.ret, tuple):
            parts = [realize(i) for i in summary.ret]
            for part, item in zip(parts, summary.ret):
                part.within = item.within
            out = self.alias(parts)
            return _Val(out.kind if out.kind != "none" else "alias", out.recs, out.grad, tuple(parts))
        return realize(summary.ret)

    def describe(self, val: _Val) -> _Item | tuple[_Item, ...]:
        """A returned value, in terms of the parameters (while summarizing)."""
        if val.items is not None and val.kind != "none":
            items = [self.describe_one(v) for v in val.items]
            own = [self.own_results(v.recs) for v in val.items]
            reached = [set(map(id, self.reach(v.recs)[1])) for v in val.items]
            for i, item in enumerate(items):
                if own[i]:
                    item.within = frozenset(j for j in range(len(items))
                                            if j != i and all(id(r) in reached[j] for r in own[i]))
            return tuple(items)
        return self.describe_one(val)

    @staticmethod
    def own_results(recs: Iterable[_Rec]) -> list[_Rec]:
        """The results a value is, through aliases (not through the results' own history)."""
        return [r for r in _walk(recs, lambda r: r.parents if r.kind == "alias" else ()) if r.kind == "result"]

    def describe_one(self, val: _Val) -> _Item:
        if val.kind == "none":
            return _Item("none", frozenset())
        args, results, leaves = self.reach(val.recs)
        if val.kind == "grads":
            return _Item("grads", args)
        if isinstance(val, _Leaf):
            return _Item("leaf", args, leaf_kind=val.leaf_kind)
        if val.kind == "new" or results:
            pending = any(r.pending for r in results) or (val.kind == "new" and val.grad and self.no_grad == 0)
            return _Item("new", args, pending)
        if leaves and not args:
            return _Item("leaf", args, leaf_kind="module")
        return _Item("alias", args)

    @staticmethod
    def reach(recs: Iterable[_Rec]) -> tuple[frozenset[int], list[_Rec], list[_Rec]]:
        """The parameter indices, results and leaves a value was computed from (cut at detach and consumed results)."""
        def follow(r: _Rec) -> Iterable[_Rec]:
            if r.kind == "result":
                return r.parents
            if r.kind == "alias":  # and the storage a detached alias shares: a parameter or leaf, not its history
                return (*r.parents, *(x for x in r.stor if x is not r and x.kind in ("arg", "leaf", "opt")))
            return r.loss if r.kind == "grads" else ()

        args: set[int] = set()
        results: list[_Rec] = []
        leaves: list[_Rec] = []
        for r in _walk(recs, follow):
            if r.kind == "arg" and r.arg is not None:
                args.add(r.arg)
            elif r.kind == "result":
                results.append(r)
            elif r.kind in ("leaf", "opt"):
                leaves.append(r)
        return frozenset(args), results, leaves

    # --- effects ---
    def consume(self, recs: Iterable[_Rec], line: int) -> None:
        """``g.backward``/``g.free`` at ``line``: the pending results these values were computed from are consumed."""
        def follow(r: _Rec) -> Iterable[_Rec]:
            if r.kind == "arg":
                if r.arg is not None:
                    self.consumed_args.add(r.arg)
                return ()
            if r.kind == "result":
                if not r.pending:
                    return ()
                r.pending, r.consumed_at = False, line
                return r.parents
            return r.parents if r.kind == "alias" else ()

        for _ in _walk(recs, follow):
            pass

    def consume_all(self, line: int) -> None:
        for r in self.results:
            if r.pending:
                r.pending = False
                r.consumed_at = line

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
        def follow(p: _Rec) -> Iterable[_Rec]:
            if p.stor & stor:  # found, or a view of other rows of the written storage: not followed
                return ()
            return p.parents if (p.kind == "result" and p.pending) or p.kind == "alias" else ()

        for p in _walk(r.parents, follow):
            hit = p.stor & stor
            if hit and not _disjoint(p.rows, rows):
                return next(iter(hit))
        return None

    @staticmethod
    def has_history(val: _Val) -> bool:
        """Does ``val`` carry gradient history from a param (through results and aliases not cut by detach)?"""
        if not val.grad or val.kind in ("none", "grads"):
            return False
        follow = lambda r: r.parents if r.kind in ("result", "alias") and r.grad else ()  # noqa: E731
        return any(r.kind == "leaf" and r.param and r.grad for r in _walk(val.recs, follow))

    def write(self, target: Expression, line: int, value: _Val | None) -> None:
        root = _lvalue_root(target)
        what = f'"{_dotted(root) or "tensor"}"'
        val = self.eval(root)
        if val.kind == "grads":
            return
        stor = _stor(val.recs) if val.recs else frozenset()
        if not stor or line != self.stop_line:
            return
        if value is not None and self.no_grad == 0 and any(s.param for s in stor) and self.has_history(value):
            self.report(line, f"in-place write into {what} (a param) of a value with gradient history outside "
                              f"`with g.no_grad():`: the write would drop that history (a GraphError at run time); "
                              f"write under `with g.no_grad():`, or detach the value")
        rows = None
        if isinstance(root, NameExpr):
            rec = self.env.get(root.name)
            rows = rec.rows if rec is not None else None
            if isinstance(target, IndexExpr) and target.base is root and rec is not None and rec.kind != "alias":
                rows = _literal_rows(target)
        found = self.culprit(stor, rows)
        if found is not None:
            res, _ = found
            self.report(line, f"in-place write to {what} while \"{res.name}\" (line {res.line}) depends on it and "
                              f"still waits for g.backward(...); call g.backward({res.name}) first, "
                              f"or g.free({res.name})")

    def check_consumed(self, e: CallExpr, loss: _Val) -> None:
        if e.line != self.stop_line:
            return
        for r in loss.recs:
            if r.kind == "result" and not r.pending and r.consumed_at is not None:
                arg = _dotted(e.args[0]) or "..."
                self.report(e.line, f'g.backward({arg}): "{r.name}" (line {r.line}) was already consumed by the '
                                    f"backward or free at line {r.consumed_at}; pass retain=True there to walk it "
                                    f"twice, or recompute the forward")
                return

    def step(self, e: CallExpr, opt_expr: Expression, base: _Val, grads: _Val) -> None:
        stor = _stor(r for r in base.recs if r.kind == "opt")
        if not stor or e.line != self.stop_line:
            return
        opt = _dotted(opt_expr) or "optimizer"
        found = self.culprit(stor)
        if found is not None:
            res, hit = found
            self.report(e.line, f'"{opt}.step(...)" updates "{hit.name}" in place while "{res.name}" (line '
                                f"{res.line}) depends on it and still waits for g.backward(...); call "
                                f"g.backward({res.name}) first, or g.free({res.name})")
        if grads.kind == "grads" and grads.recs:
            _, _, leaves = self.reach(grads.recs)
            known = [r for r in leaves if r.kind == "leaf" and (r.param or not r.grad)]
            if leaves and len(known) == len(leaves) and not (_stor(leaves) & stor):
                loss = grads.recs[0]
                what = f'"{loss.name}" (line {loss.line})' if loss.name else f"the loss at line {loss.line}"
                arg = _dotted(e.args[0]) if e.args else None
                self.report(e.line, f'"{opt}.step({arg or "..."})" gets the gradients of {what}, which depends on '
                                    f'none of the params "{opt}" updates (a GradError at run time); step it with the '
                                    f"Grads of a loss computed from its params")


def _leaves(body: list[Statement]) -> bool:
    """Whether a block ends by leaving (return, raise, break, continue): its state does not fall through."""
    return bool(body) and isinstance(body[-1], (ReturnStmt, RaiseStmt, BreakStmt, ContinueStmt))


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


def _check(ctx: MethodContext) -> Type:
    body = _scope_body(ctx)
    if body is not None:
        flow = _Flow(ctx.context.line)
        try:
            flow.run(body)
        except RecursionError:  # pragma: no cover - pathological nesting
            return ctx.default_return_type
        for c in flow.conflicts.values():
            ctx.api.fail(c.message, ctx.context, code=OWNGRAD_BORROW)
    return ctx.default_return_type


class OwngradPlugin(Plugin):
    """Adds the flow-sensitive ``owngrad-borrow`` checks; see the module docstring."""

    _token = str(time.time_ns())

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        cls, _, method = fullname.rpartition(".")
        if method in _WRITE_METHODS or method in ("step", "backward"):
            info = self._info(cls)
            if info is None:
                return None
            if method == "step" and _has_base(info, _OPTIMIZERS):
                return _check
            if method == "backward" and info.has_base(_GRAPH):
                return _check
            if method in _WRITE_METHODS and info.has_base(_TENSOR):
                return _check
        return None

    def report_config_data(self, ctx: ReportConfigContext) -> object:
        """A user's module is re-checked on every run: summaries need the bodies of the functions it calls."""
        path = ctx.path.replace(os.sep, "/")
        if ctx.id.split(".")[0] in ("owngrad", "numpy") or "site-packages" in path or "typeshed" in path:
            return None
        return self._token

    def _info(self, fullname: str) -> TypeInfo | None:
        sym = self.lookup_fully_qualified(fullname)
        return sym.node if sym is not None and isinstance(sym.node, TypeInfo) else None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point (``plugins = owngrad.mypy_plugin``)."""
    return OwngradPlugin
