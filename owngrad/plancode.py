"""A captured plan as one straight-line Python function: the generated-code speed-up of the interpreter.

:func:`compile_plan` turns a plan's equations into ``replay(*inputs) -> {slot: value}``. Every equation
is one call of its recorded function, except where this module can prove a shorter spelling computes
the same bits:

- a function whose code is ``return <first argument>`` (the vjp of ``add``, say) is no call at all:
  its output is its input, one object under two slot names;
- a rule this module knows (:data:`_KNOWN`: elementwise arithmetic, ``relu``, ``matmul`` and its vjps,
  ``unbroadcast``) is written inline as the numpy expression its function evaluates, for the path its
  operands' static shapes select. Each entry is checked at import against a verbatim copy of the
  rule's code (code objects compared): a rule edited since falls back to its plain call;
- a temporary the plan owns -- made by a known rule, read only by known rules, never returned -- is
  overwritten in place by the elementwise rule that reads it last (``np.add(s0, c4, out=s0)``), when
  its shape and dtype are fixed (by the signature, through known rules) and are those of the result.
  Only correctly rounded ufuncs (``+ - * /``, negation, max/min, comparisons) run in place, so the
  bits cannot depend on the loop numpy picks.

Anything else -- an unknown function, a value whose shape is not fixed, a temporary something else
reads (it may keep it, or hold a view of it) -- runs exactly as recorded.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import backend, kernels, rules, shapes
from .tracer import CONST, SEQ, SLOT, Eqn

__all__ = ["compile_plan", "REPLAY_FILE"]

REPLAY_FILE = "<owngrad captured step>"
Info = tuple[tuple[int, ...], np.dtype] | None  # a value always an ndarray of this shape and dtype, or unknown


# --- which functions are known, checked against verbatim copies of their code ---------------------

def _same_code(a: Any, b: Any) -> bool:
    """Whether two functions (or code objects) are the same code: bytecode, constants, names, defaults."""
    if isinstance(a, types.FunctionType) and isinstance(b, types.FunctionType):
        return a.__defaults__ == b.__defaults__ and a.__closure__ is None and _same_code(a.__code__, b.__code__)
    if not (isinstance(a, types.CodeType) and isinstance(b, types.CodeType)):
        return False
    if (a.co_code, a.co_names, a.co_varnames, a.co_argcount, a.co_kwonlyargcount) != \
            (b.co_code, b.co_names, b.co_varnames, b.co_argcount, b.co_kwonlyargcount):
        return False
    if len(a.co_consts) != len(b.co_consts):
        return False
    return all(_same_code(x, y) if isinstance(x, types.CodeType) else type(x) is type(y) and x == y
               for x, y in zip(a.co_consts, b.co_consts))


_IDENTITY = (lambda g: g).__code__.co_code


def _returns_first(fn: Any) -> bool:
    """``fn``'s code is ``return <its first argument>`` (whatever its other parameters)."""
    code = getattr(fn, "__code__", None)
    return type(fn) is types.FunctionType and code is not None and code.co_argcount >= 1 and \
        code.co_code == _IDENTITY and fn.__closure__ is None


# verbatim copies of the rules' code this module writes inline (compared, never called)
def _matmul_vjp_x(g: Any, ans: Any, x: Any, y: Any, shapes: Any = ()) -> Any:
    if g.ndim == 2 and y.ndim == 2:  # the common case, first
        return g @ y.T
    if y.ndim == 1:
        return g * y if len(shapes[0]) == 1 else g[..., None] * y
    if len(shapes[0]) == 1:
        return (g[..., None, :] @ _mT(y))[..., 0, :]
    return kernels.matmul(g, _mT(y))


def _matmul_vjp_y(g: Any, ans: Any, x: Any, y: Any, shapes: Any = ()) -> Any:
    if x.ndim == 2 and g.ndim == 2:  # the common case, first
        return x.T @ g
    if x.ndim == 1:
        return g * x if len(shapes[1]) == 1 else x[:, None] * g[..., None, :]
    if len(shapes[1]) == 1:
        return (_mT(x) @ g[..., None])[..., 0]
    if len(shapes[1]) == 2 and x.ndim > 2:
        return kernels.matmul_grad_y(x, g)
    return _mT(x) @ g


def _mT(a: Any) -> Any:
    return a.swapaxes(-1, -2)


def _kmatmul(x: Any, y: Any) -> Any:
    """``x @ y``; for ``x`` (..., M, K) with more than two axes and ``y`` (K, N) it is one (M', K) GEMM."""
    if x.ndim > 2 and y.ndim == 2:
        return (rows(x) @ y).reshape(x.shape[:-1] + (y.shape[-1],))
    return x @ y


def _unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` down to ``shape``, undoing numpy broadcasting (the one place it is undone)."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra < 0:  # a value with extra leading unit axes written into a view (numpy drops them)
        g = g.reshape((1,) * -extra + tuple(g.shape))
        extra = 0
    if extra == 1 and g.shape[1:] == shape:  # the common case: a bias added to a batch
        return np.add.reduce(g, axis=0) if type(g) is np.ndarray else g.sum(axis=0)  # (g.sum's own reduction)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _relu_vjp(g: Any, ans: Any, x: Any) -> Any:
    """``g * (ans != 0)`` (ans >= 0 or NaN: at NaN inputs relu passes the gradient, as torch), with the mask made
    a float array first: a float product is faster than one with a boolean operand, and its values are the same."""
    m = (ans != 0).astype(g.dtype)
    m *= g
    return m


def rows(a: Any) -> Any:  # a name the copy of kernels.matmul reads; never called
    raise AssertionError


class _Known(NamedTuple):
    """How to write one known function inline: ``ufunc`` (a correctly rounded numpy ufunc, with the
    operand positions it reads), or ``kind`` naming an emitter below."""

    kind: str
    ufunc: Any = None
    operands: tuple[int, ...] = ()
    forward: bool = False  # a rule's forward: its first operand is the array module


def _known_table() -> dict[Any, _Known]:
    """The rule functions this module writes inline, each kept only when its code is the copy's."""
    table: dict[Any, _Known] = {}

    def add(fn: Any, ref: Any, known: _Known) -> None:
        if _same_code(fn, ref):
            table[fn] = known

    binary = {"add": (lambda xp, x, y: x + y, np.add), "sub": (lambda xp, x, y: x - y, np.subtract),
              "mul": (lambda xp, x, y: x * y, np.multiply), "div": (lambda xp, x, y: x / y, np.true_divide)}
    for name, (ref, uf) in binary.items():
        add(rules.RULES[name].forward, ref, _Known("ufunc", uf, (1, 2), True))
    add(rules.RULES["neg"].forward, lambda xp, x: -x, _Known("ufunc", np.negative, (1,), True))
    add(rules.RULES["neg"].vjps[0], lambda g, ans, x: -g, _Known("ufunc", np.negative, (0,)))
    add(rules.RULES["sub"].vjps[1], lambda g, ans, x, y: -g, _Known("ufunc", np.negative, (0,)))
    add(rules.RULES["mul"].vjps[0], lambda g, ans, x, y: g * y, _Known("ufunc", np.multiply, (0, 3)))
    add(rules.RULES["mul"].vjps[1], lambda g, ans, x, y: g * x, _Known("ufunc", np.multiply, (0, 2)))
    add(rules.RULES["relu"].forward, lambda xp, x: xp.maximum(x, 0), _Known("relu", forward=True))
    add(rules.RULES["relu"].vjps[0], _relu_vjp, _Known("relu_vjp"))
    if _same_code(kernels.matmul, _kmatmul) and _same_code(rules._mT, _mT):
        add(rules.RULES["matmul"].forward, lambda xp, x, y: x @ y if x.ndim <= 2 or y.ndim != 2 else
            kernels.matmul(x, y), _Known("matmul", forward=True))
        add(rules.RULES["matmul"].vjps[0], _matmul_vjp_x, _Known("matmul_vjp_x"))
        add(rules.RULES["matmul"].vjps[1], _matmul_vjp_y, _Known("matmul_vjp_y"))
    add(shapes.unbroadcast, _unbroadcast, _Known("unbroadcast"))
    return table


_KNOWN = _known_table()
#: functions called as recorded whose results' types, shapes and dtypes follow from their operands' (no
#: data-dependent shape): with static operands their results are static too, so the rules after them can
#: be written inline
_SHAPED = frozenset({rules.RULES["cross_entropy"].forward, rules.RULES["cross_entropy"].vjps[0], backend.owned,
                     backend.copy_of, rules.RULES["log_softmax"].forward, rules.RULES["softmax"].forward,
                     rules.RULES["exp"].forward, rules.RULES["log"].forward, rules.RULES["tanh"].forward})


# --- the compiler -------------------------------------------------------------------------------

class _Line(NamedTuple):
    """One equation written inline: its code, whether its result is a new array nobody else holds, and
    how to write the same into an operand it reads last (``into(name)``), if it can."""

    code: Callable[[str], str]  # the statement, given the name its result is bound to
    fresh: bool
    into: Callable[[str, str], str] | None = None  # the statement binding ``r`` by writing into operand ``t``
    targets: tuple[str, ...] = ()  # the operands it may write into, by name
    same: bool = False  # the result is the first operand itself (no statement)


class _Compiler:
    """Names, constants and static shapes while one plan is written out."""

    def __init__(self, eqns: list[Eqn], nin: int, ret_slots: list[int], infos: dict[int, Info]) -> None:
        self.eqns = eqns
        self.nin = nin
        self.ret = set(ret_slots)
        self.infos = infos
        self.space: dict[str, Any] = {"np": np}
        self.consts: dict[int, str] = {}
        self.alias: dict[int, int] = {}  # slot -> the slot whose object it is (an identity call)

    def const(self, v: Any) -> str:
        name = self.consts.get(id(v))
        if name is None:
            name = self.consts[id(v)] = f"c{len(self.consts)}"
            self.space[name] = v
        return name

    def root(self, k: int) -> int:
        while k in self.alias:
            k = self.alias[k]
        return k

    def expr(self, spec: tuple[Any, ...]) -> str:
        if spec[0] == SLOT:
            return f"s{self.root(spec[1])}"
        if spec[0] == SEQ:
            inner = ", ".join(self.expr(p) for p in spec[2])
            return f"[{inner}]" if spec[1] is list else f"({inner},)"
        return self.const(spec[1])

    def info(self, spec: tuple[Any, ...]) -> Info:
        if spec[0] == SLOT:
            return self.infos.get(self.root(spec[1]))
        v = spec[1] if spec[0] == CONST else None
        return (v.shape, v.dtype) if type(v) is np.ndarray else None

    def plain_call(self, e: Eqn) -> str:
        parts = [self.expr(a) for a in e.args]
        plain = {k: v for k, v in e.kwargs.items() if k.isidentifier()}
        parts += [f"{k}={self.expr(v)}" for k, v in plain.items()]
        if len(plain) < len(e.kwargs):
            parts.append("**{" + ", ".join(f"{k!r}: {self.expr(v)}" for k, v in e.kwargs.items()
                                          if k not in plain) + "}")
        return f"{self.const(e.fn)}({', '.join(parts)})"


def _static_operands(c: _Compiler, e: Eqn, positions: tuple[int, ...], kw: bool = False) -> list[Info] | None:
    """The static infos of ``e``'s operands at ``positions`` (plain numbers allowed), or None; None too
    when ``e`` has keyword operands (unless ``kw``) or sequence operands."""
    if (e.kwargs and not kw) or any(a[0] == SEQ for a in e.args):
        return None
    out: list[Info] = []
    for i in positions:
        if i >= len(e.args):
            return None
        spec = e.args[i]
        info = c.info(spec)
        if info is None and not (spec[0] == CONST and type(spec[1]) in (int, float, bool)):
            return None
        out.append(info)
    return out


def _constant(spec: tuple[Any, ...] | None) -> Any:
    """The value of a constant operand (a sequence of constants included); None for anything else."""
    if spec is None or spec[0] == SLOT:
        return None
    if spec[0] == CONST:
        return spec[1]
    parts = [_constant(p) for p in spec[2]]
    return None if any(p is None for p in parts) else spec[1](parts)


def _inline(c: _Compiler, e: Eqn, known: _Known, out: Info) -> _Line | None:
    """``e`` written inline, or None where its operands' shapes are not fixed or the path is another."""
    if known.forward and not (e.args and e.args[0] == (CONST, np)):
        return None
    a = [c.expr(x) for x in e.args]
    if known.kind == "ufunc":
        ops = _static_operands(c, e, known.operands)
        if ops is None or out is None:
            return None
        uf = c.const(known.ufunc)
        names = [a[i] for i in known.operands]
        args = ", ".join(names)
        same = tuple(n for n, i in zip(names, ops) if i == out)
        return _Line(lambda r: f"{r} = {uf}({args})", True, lambda r, t: f"{r} = {uf}({args}, out={t})", same)
    if known.kind == "relu":
        ops = _static_operands(c, e, (1,))
        if ops is None or out is None:
            return None
        x = a[1]
        return _Line(lambda r: f"{r} = np.maximum({x}, 0)", True, lambda r, t: f"{r} = np.maximum({x}, 0, out={t})",
                     (x,) if ops[0] == out else ())
    if known.kind == "relu_vjp":
        ops = _static_operands(c, e, (0, 1))
        if ops is None or out is None or ops[0] is None:
            return None
        g, ans = a[0], a[1]
        mask = f"m = np.not_equal({ans}, 0).astype({g}.dtype); "
        return _Line(lambda r: f"{mask}{r} = np.multiply(m, {g}, out=m)", True,
                     lambda r, t: f"{mask}{r} = np.multiply(m, {g}, out={t})", (g,) if ops[0] == out else ())
    return _inline_linear(c, e, known, out, a)


def _inline_linear(c: _Compiler, e: Eqn, known: _Known, out: Info, a: list[str]) -> _Line | None:
    """matmul, its vjps and unbroadcast, on the path their static shapes select."""
    if known.kind == "unbroadcast":
        ops = _static_operands(c, e, (0,))
        shape = e.args[1][1] if len(e.args) == 2 and e.args[1][0] == CONST else None
        if ops is None or ops[0] is None or type(shape) is not tuple:
            return None
        gshape = ops[0][0]
        if gshape == shape:
            return _Line(lambda r: "", False, same=True)
        if len(gshape) == len(shape) + 1 and gshape[1:] == shape:
            return _Line(lambda r: f"{r} = {a[0]}.sum(axis=0)", True)
        return None
    two_d = e.kwargs.keys() <= {"shapes"} and all(x[0] != SEQ for x in e.args)
    if not two_d or out is None:
        return None
    if known.kind == "matmul":
        ops = _static_operands(c, e, (1, 2))
        if ops is None or ops[0] is None or ops[1] is None or len(ops[0][0]) > 2:
            return None
        return _Line(lambda r: f"{r} = {a[1]} @ {a[2]}", True)
    shp = _constant(e.kwargs.get("shapes"))
    if type(shp) not in (tuple, list) or len(shp) != 2 or any(type(s) is not tuple or len(s) != 2 for s in shp):
        return None
    if known.kind == "matmul_vjp_x":
        ops = _static_operands(c, e, (0, 3), kw=True)
        if ops is None or ops[0] is None or len(ops[0][0]) != 2 or ops[1] is None or len(ops[1][0]) != 2:
            return None
        return _Line(lambda r: f"{r} = {a[0]} @ {a[3]}.swapaxes(-1, -2)", True)
    ops = _static_operands(c, e, (0, 2), kw=True)
    if ops is None or ops[1] is None or len(ops[1][0]) != 2:
        return None
    return _Line(lambda r: f"{r} = {a[2]}.swapaxes(-1, -2) @ {a[0]}", True)


def _lines(c: _Compiler, keep: list[Any], shaped: frozenset[Any]) -> list[_Line | None]:
    """Each equation written inline (its result's static shape recorded), or None (a plain call); identity
    calls become aliases."""
    out: list[_Line | None] = []
    for e in c.eqns:
        line = None
        if e.out is not None and not e.out[1]:
            k = e.out[0]
            if _returns_first(e.fn) and e.args and e.args[0][0] == SLOT:
                line = _Line(lambda r: "", False, same=True)
            else:
                known = _KNOWN.get(e.fn) if isinstance(e.fn, types.FunctionType) else None
                v = keep[k] if k < len(keep) else None
                info: Info = (v.shape, v.dtype) if type(v) is np.ndarray else None
                line = _inline(c, e, known, info) if known is not None else None
                if line is not None and not line.same:
                    c.infos[k] = info
            if line is not None and line.same:
                c.alias[k] = c.root(e.args[0][1])
        if line is None and e.out is not None and e.fn in shaped and _all_static(c, e):
            for k in (e.out[0], *(kk for kk in (e.out[1] or ()) if kk is not None)):
                v = keep[k] if k < len(keep) else None
                if type(v) is np.ndarray:
                    c.infos[k] = (v.shape, v.dtype)
        out.append(line)
    return out


def _all_static(c: _Compiler, e: Eqn) -> bool:
    """Every slot operand of ``e`` is a static array (constants are fixed objects)."""
    def ok(spec: tuple[Any, ...]) -> bool:
        if spec[0] == SEQ:
            return all(ok(p) for p in spec[2])
        if spec[0] == SLOT:
            return c.info(spec) is not None
        return True
    return all(ok(a) for a in (*e.args, *e.kwargs.values()))


def _uses(c: _Compiler, e: Eqn) -> list[int]:
    found: list[int] = []

    def walk(spec: tuple[Any, ...]) -> None:
        if spec[0] == SLOT:
            found.append(c.root(spec[1]))
        elif spec[0] == SEQ:
            for p in spec[2]:
                walk(p)

    for a in (*e.args, *e.kwargs.values()):
        walk(a)
    return found


def _ownership(c: _Compiler, lines: list[_Line | None]) -> tuple[dict[int, int], set[int]]:
    """Each value's last use (the equation index), and the values the plan owns: made new by an inline
    equation, read only by inline equations, never returned (so nothing else can hold them)."""
    last: dict[int, int] = {}
    owned = {e.out[0] for e, line in zip(c.eqns, lines) if line is not None and line.fresh}
    for at, (e, line) in enumerate(zip(c.eqns, lines)):
        for r in _uses(c, e):
            last[r] = at
            if line is None:
                owned.discard(r)
        if e.out is not None:
            for k in (e.out[0], *(kk for kk in (e.out[1] or ()) if kk is not None)):
                last.setdefault(c.root(k), at)
    owned -= {c.root(k) for k in c.ret}
    return last, owned


def compile_plan(eqns: list[Eqn], nin: int, ret_slots: list[int], keep: list[Any], input_infos: dict[int, Info],
                 shaped: frozenset[Any] = frozenset(), skip: frozenset[int] = frozenset()
                 ) -> tuple[Callable[..., dict[int, Any]], dict[int, int], str]:
    """The plan as ``replay(*inputs) -> {slot: value}`` (the slots returned), which equation each line
    of it runs, and its source. ``keep``: each slot's value when the step was captured; ``input_infos``:
    the inputs whose type, shape and dtype the plan's signature fixes; ``shaped``: functions of the
    layers above whose results' shapes follow from their operands' (as :data:`_SHAPED`); ``skip``: checks
    (equations with no result) the caller runs before the replay, left out of it."""
    c = _Compiler(eqns, nin, ret_slots, dict(input_infos))
    lines = _lines(c, keep, _SHAPED | shaped)
    last, owned = _ownership(c, lines)
    dead: dict[int, list[int]] = {}
    for r, at in last.items():
        if r not in {c.root(k) for k in c.ret}:
            dead.setdefault(at, []).append(r)
    line_of: dict[int, int] = {}
    src = [f"def replay({', '.join(f's{i}' for i in range(nin))}):"]
    for at, (e, line) in enumerate(zip(eqns, lines)):
        line_of[len(src) + 1] = at
        if at in skip:
            pass
        elif line is None:
            call = c.plain_call(e)
            if e.out is None:
                src.append(f"    {call}")
            else:
                k, elems = e.out
                src.append(f"    s{k} = {call}")
                src += [f"    s{kk} = s{k}[{j}]" for j, kk in enumerate(elems or ()) if kk is not None]
        elif not line.same:
            k = e.out[0]
            spare = [t for t in line.targets if int(t[1:]) in owned and last.get(int(t[1:])) == at]
            into = line.into if spare else None
            src.append("    " + (into(f"s{k}", spare[0]) if into is not None else line.code(f"s{k}")))
        if at in dead:
            src.append(f"    del {', '.join(f's{k}' for k in sorted(dead[at]))}")
    src.append("    return {" + ", ".join(f"{k}: s{c.root(k)}" for k in dict.fromkeys(ret_slots)) + "}")
    source = "\n".join(src) + "\n"
    exec(compile(source, REPLAY_FILE, "exec"), c.space)  # noqa: S102 - generated from the plan above
    replay: Callable[..., dict[int, Any]] = c.space["replay"]
    return replay, line_of, source
