"""A control-flow graph per function, built from mypy's syntax tree (after mypyc's ``get_cfg``).

A block holds straight-line operations: simple statements, and a few synthetic ones for what the
structured statements do at their edges (evaluate a condition, bind a loop target, enter or leave a
``with``). ``if``/``while``/``for``/``try``/``match`` become edges; ``return`` goes to the exit block;
``raise`` ends a path; ``break``/``continue`` jump. Nested functions and classes are other scopes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mypy.nodes import (
    Block,
    BreakStmt,
    ClassDef,
    ContinueStmt,
    Decorator,
    Expression,
    ForStmt,
    FuncDef,
    IfStmt,
    MatchStmt,
    OverloadedFuncDef,
    RaiseStmt,
    ReturnStmt,
    Statement,
    TryStmt,
    WhileStmt,
    WithStmt,
)


@dataclass(frozen=True, eq=False)
class Eval:
    """Evaluate an expression for its effects (a condition, a ``raise``'s argument, a loop's iterable)."""

    expr: Expression


@dataclass(frozen=True, eq=False)
class ForBind:
    """Bind a ``for`` loop's target to the next element of its iterable."""

    stmt: ForStmt


@dataclass(frozen=True, eq=False)
class WithEnter:
    stmt: WithStmt


@dataclass(frozen=True, eq=False)
class WithExit:
    stmt: WithStmt


Op = Statement | Eval | ForBind | WithEnter | WithExit


@dataclass(eq=False)
class BasicBlock:
    ops: list[Op] = field(default_factory=list)
    succ: list[BasicBlock] = field(default_factory=list)

    def link(self, other: BasicBlock) -> None:
        if other not in self.succ:
            self.succ.append(other)


@dataclass
class CFG:
    entry: BasicBlock
    exit: BasicBlock
    blocks: list[BasicBlock]

    def preds(self) -> dict[BasicBlock, list[BasicBlock]]:
        out: dict[BasicBlock, list[BasicBlock]] = {b: [] for b in self.blocks}
        for b in self.blocks:
            for s in b.succ:
                out[s].append(b)
        return out


def build_cfg(body: list[Statement]) -> CFG:
    """The CFG of a function body (or of a module's top-level statements)."""
    builder = _Builder()
    entry = builder.new()
    end = builder.seq(body, entry)
    if end is not None:
        end.link(builder.exit)
    builder.blocks.append(builder.exit)
    return CFG(entry, builder.exit, builder.blocks)


class _Builder:
    def __init__(self) -> None:
        self.blocks: list[BasicBlock] = []
        self.exit = BasicBlock()
        #: (continue target, break target) of the enclosing loops
        self.loops: list[tuple[BasicBlock, BasicBlock]] = []

    def new(self) -> BasicBlock:
        b = BasicBlock()
        self.blocks.append(b)
        return b

    def seq(self, stmts: list[Statement], cur: BasicBlock | None) -> BasicBlock | None:
        """Appends ``stmts`` from ``cur``; the block where control falls out (None: it never does)."""
        for s in stmts:
            if cur is None:
                return None  # unreachable code after return / raise / break / continue
            cur = self.stmt(s, cur)
        return cur

    def stmt(self, s: Statement, cur: BasicBlock) -> BasicBlock | None:
        if isinstance(s, Block):
            return self.seq(s.body, cur)
        if isinstance(s, IfStmt):
            return self.if_stmt(s, cur)
        if isinstance(s, (WhileStmt, ForStmt)):
            return self.loop(s, cur)
        if isinstance(s, WithStmt):
            cur.ops.append(WithEnter(s))
            end = self.seq(s.body.body, cur)
            if end is not None:
                end.ops.append(WithExit(s))
            return end
        if isinstance(s, TryStmt):
            return self.try_stmt(s, cur)
        if isinstance(s, MatchStmt):
            cur.ops.append(Eval(s.subject))
            return self.alternatives(cur, [b.body for b in s.bodies] + [[]])
        if isinstance(s, ReturnStmt):
            cur.ops.append(s)
            cur.link(self.exit)
            return None
        if isinstance(s, RaiseStmt):
            if s.expr is not None:
                cur.ops.append(Eval(s.expr))
            return None
        if isinstance(s, (BreakStmt, ContinueStmt)):
            if self.loops:
                head, after = self.loops[-1]
                cur.link(after if isinstance(s, BreakStmt) else head)
            return None
        if isinstance(s, (FuncDef, OverloadedFuncDef, Decorator, ClassDef)):
            return cur  # another scope, analysed on its own
        cur.ops.append(s)
        return cur

    def alternatives(self, cur: BasicBlock, bodies: list[list[Statement]]) -> BasicBlock | None:
        after: BasicBlock | None = None
        for body in bodies:
            start = self.new()
            cur.link(start)
            end = self.seq(body, start)
            if end is not None:
                after = after or self.new()
                end.link(after)
        return after

    def if_stmt(self, s: IfStmt, cur: BasicBlock) -> BasicBlock | None:
        after: BasicBlock | None = None
        for cond, body in zip(s.expr, s.body):
            cur.ops.append(Eval(cond))
            start = self.new()
            cur.link(start)
            end = self.seq(body.body, start)
            if end is not None:
                after = after or self.new()
                end.link(after)
            nxt = self.new()
            cur.link(nxt)
            cur = nxt
        end = self.seq(s.else_body.body, cur) if s.else_body is not None else cur
        if end is not None:
            after = after or self.new()
            end.link(after)
        return after

    def loop(self, s: WhileStmt | ForStmt, cur: BasicBlock) -> BasicBlock:
        cur.ops.append(Eval(s.expr))
        head, body, after = self.new(), self.new(), self.new()
        cur.link(head)
        if isinstance(s, WhileStmt):
            head.ops.append(Eval(s.expr))
        else:
            body.ops.append(ForBind(s))
        head.link(body)
        self.loops.append((head, after))
        end = self.seq(s.body.body, body)
        self.loops.pop()
        if end is not None:
            end.link(head)
        if s.else_body is None:
            head.link(after)
            return after
        orelse = self.new()
        head.link(orelse)
        end = self.seq(s.else_body.body, orelse)
        if end is not None:
            end.link(after)
        return after

    def try_stmt(self, s: TryStmt, cur: BasicBlock) -> BasicBlock | None:
        body = self.new()
        cur.link(body)
        end = self.seq(s.body.body, body)
        ends: list[BasicBlock] = []
        if end is not None and s.else_body is not None:
            end = self.seq(s.else_body.body, end)
        if end is not None:
            ends.append(end)
        for handler in s.handlers:
            start = self.new()
            cur.link(start)  # an exception may come before any statement of the body ran ...
            if end is not None:
                end.link(start)  # ... or after all of them
            h_end = self.seq(handler.body, start)
            if h_end is not None:
                ends.append(h_end)
        if not ends:
            return None
        after = self.new()
        for e in ends:
            e.link(after)
        if s.finally_body is not None:
            return self.seq(s.finally_body.body, after)
        return after
