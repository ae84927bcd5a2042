"""Differentiable vjps: the rule table's calculus again, written in owngrad's own tensor operations.

``DVJPS[rule]`` holds, per input of the rule, ``dvjp(g, ans, *args, **attrs) -> Tensor``: the same
convention as the rule's vjp (rules.py), but ``g`` is a tensor, and ``ans``/``args`` are what the
node saved -- tensors carrying the history they had when the node was recorded (higher.py), raw
values for raw operands, None where nothing was saved. Because the result is made of recorded
operations, a gradient computed with it can be differentiated again.

What a vjp reads only to decide *where* a gradient goes (a relu's or a max's mask, a clip's bounds)
is taken as a constant: those functions are piecewise linear, their second derivative is zero
almost everywhere, as in every autodiff. A rule whose vjp is itself linear in ``g`` and reads no
saved tensor (views, scatters, pools) is paired with its adjoint (:func:`deflinear`): a rule whose
forward is the vjp and whose own vjp is the original forward, so any order of derivative exists.

A rule missing from ``DVJPS`` makes a ``create_graph`` walk refuse it with a GradError naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import kernels
from .backend import Array, owned, scatter_add, xp_of
from .graph import graph_of
from .rules import (
    RULES,
    Rule,
    _clip_masks,
    _concat_vjp,
    _count,
    _minmax_vjp,
    _pad_vjp,
    _pick,
    _quiet,
    along_axis_index,
    einsum_vjp_plan,
)
from .shapes import axes_of
from .sites import user_site
from .tensor import Tensor
from .views import apply_path, scatter_path

if TYPE_CHECKING:
    from .node import Node

__all__ = ["DVJPS", "LINEAR", "defvjp2", "deflinear", "rebuild_aux"]

DVJP = Callable[..., Any]
DVJPS: dict[str, tuple[DVJP | None, ...]] = {}
#: the adjoint rules made by :func:`deflinear` (not in the op table: only a create_graph walk records them)
LINEAR: dict[str, Rule] = {}


def defvjp2(name: str, *fns: DVJP | None) -> None:
    """Register the differentiable vjps of rule ``name``, one per input (one for a variadic rule, told
    its input's position as ``_i``)."""
    DVJPS[name] = fns


# --- helpers ---------------------------------------------------------------------------------------

def _raw(v: Any) -> Any:
    """The array (or number) behind a saved operand."""
    return v._data if isinstance(v, Tensor) else v


def _mask(m: Any, g: Tensor) -> Any:
    """A constant multiplier array (a mask, a sign) in ``g``'s dtype."""
    return xp_of(g._data).asarray(m).astype(g.dtype)


def cond(c: Any) -> Any:
    """A boolean array for og.where (numpy makes 0-d comparisons scalars)."""
    return np.asarray(c) if isinstance(c, (np.generic, bool)) else c


def _expand(g: Tensor, shape: tuple[int, ...], axis: Any, keepdims: bool) -> Tensor:
    """A reduction's gradient broadcast back over the reduced axes (:func:`shapes.expand_reduced`)."""
    if not keepdims and len(shape):
        kept = list(shape)
        for a in axes_of(axis, len(shape)):
            kept[a] = 1
        g = g.reshape(tuple(kept))
    return g if g.shape == shape else g.expand(shape)


def _mT(a: Any) -> Any:
    if isinstance(a, Tensor):
        return a.transpose(*range(a.ndim - 2), a.ndim - 1, a.ndim - 2)
    return a.swapaxes(-1, -2)


def _apply_linear(rule: Rule, g: Tensor, attrs: dict[str, Any]) -> Tensor:
    """Record ``rule`` (an adjoint of :func:`deflinear`) applied to ``g``: a node saving nothing."""
    graph = graph_of(g)
    out = owned(rule.forward(xp_of(g._data), g._data, **attrs), graph.xp)
    node = g._grad_node() if graph.grad_enabled else None
    if node is None:
        return graph.constant(out)
    return graph._record(rule, rule.name, (g,), [g._data], [node], [g.shape], 1, out, attrs, None, None, user_site())


def deflinear(a: str, fa: Callable[..., Array], b: str, fb: Callable[..., Array]) -> None:
    """Two linear maps of one input, adjoint to each other, as rules ``a`` and ``b`` (``fa(g, **attrs)``,
    ``fb(h, **attrs)``, the same attrs): each one's vjp is the other's forward, and each one's
    differentiable vjp records the other."""
    _linear_rule(a, fa, fb, b)
    _linear_rule(b, fb, fa, a)


def _linear_rule(name: str, f: Callable[..., Array], adjoint: Callable[..., Array], other: str) -> None:
    def forward(xp: Any, g: Array, **kw: Any) -> Array:
        return f(g, **kw)

    def vjp(h: Array, ans: Any, g: Any, **kw: Any) -> Array:
        return adjoint(h, **kw)

    def dvjp(h: Tensor, ans: Any, g: Any, **kw: Any) -> Tensor:
        return _apply_linear(LINEAR[other], h, kw)

    LINEAR[name] = Rule(name, forward, (vjp,), (frozenset(),), by_mask=((), ()))
    defvjp2(name, dvjp)


def make_rule(name: str, forward: Callable[..., Any], *vjps: tuple[DVJP, str], shapes: bool = False) -> Rule:
    """A rule outside the op table (as :func:`owngrad.rules.defrule` builds them: each vjp with the operands
    it reads, ``a`` for ans and ``x y`` for the args), recorded only by a create_graph walk."""
    letters = {"a": 0, "x": 1, "y": 2, "z": 3}
    needs = tuple(frozenset(letters[c] for c in reads) for _, reads in vjps)
    by_mask = tuple(tuple(sorted(set().union(*(needs[i] for i in range(len(needs)) if m >> i & 1))))
                    for m in range(1 << len(needs)))
    return Rule(name, forward, tuple(f for f, _ in vjps), needs, shapes=shapes, by_mask=by_mask)


def apply_rule(rule: Rule, args: tuple[Any, ...], attrs: dict[str, Any], value: Any = None) -> Tensor:
    """Record ``rule`` on ``args`` (tensors or raw operands) as :meth:`Graph.apply` does -- saving what the
    vjps of the inputs with history read, under shared borrows -- with ``value`` as the result when it is
    already known (else the rule's forward computes it)."""
    t0: Tensor | None = None
    arrays: list[Any] = []
    parents: list[Node | None] = []
    shapes: list[tuple[int, ...] | None] = []
    mask = 0
    for i, a in enumerate(args):
        n = None
        if isinstance(a, Tensor):
            t0 = a if t0 is None else t0
            arrays.append(a._data)
            n = a._grad_node()
            if n is not None:
                mask |= 1 << i
        else:
            arrays.append(a)
        parents.append(n)
        shapes.append(a.shape if n is not None else None)
    assert t0 is not None
    graph = graph_of(t0)
    if not graph.grad_enabled:
        mask = 0
    out = value if value is not None else rule.forward(xp_of(t0._data), *arrays, **attrs)
    out = owned(out, graph.xp)
    if not mask:
        return graph.constant(out)
    return graph._record(rule, rule.name, args, arrays, parents, shapes, mask, out, attrs, None, None, user_site())


def linear(name: str, g: Tensor, **attrs: Any) -> Tensor:
    """Record the adjoint rule ``name`` on ``g``."""
    return _apply_linear(LINEAR[name], g, attrs)


# --- aux values with history ----------------------------------------------------------------------

def rebuild_aux(node: Node) -> Any:
    """A node's internal ``aux`` value for its differentiable vjp: for a value that is a function of an
    input (``1/y`` of rdiv, the log-softmax of cross_entropy) a tensor with that history, recorded as the
    op that computes it, without computing it again; otherwise the raw value."""
    aux = node.attrs["aux"]
    name = node.rule.name if node.rule is not None else ""
    if name == "rdiv":  # 1/y is rdiv(1, y), whose own aux is itself
        return _with_history(node, RULES["rdiv"], 1, aux, (1.0, None), {}, aux)
    if name == "cross_entropy":
        return _with_history(node, RULES["log_softmax"], 0, aux, (None,), {"axis": -1}, None)
    return aux


def _with_history(node: Node, rule: Rule, i: int, value: Array, args: tuple[Any, ...], attrs: dict[str, Any],
                  aux: Any) -> Any:
    """``value`` (an array ``rule`` computed from input ``i`` of ``node``) as that rule's result."""
    parent = node.parents[i]
    graph = graph_of(node)
    if parent is None or not graph.grad_enabled:
        return graph.constant(value)
    parents: list[Node | None] = [None] * len(args)
    shapes: list[tuple[int, ...] | None] = [None] * len(args)
    parents[i], shapes[i] = parent, node.in_shapes[i]
    return graph._record(rule, rule.name, args, list(args), parents, shapes, 1 << i, value, attrs, None, aux,
                         user_site())


# --- the table: elementwise, unary -----------------------------------------------------------------

defvjp2("neg", lambda g, ans, x: -g)
defvjp2("exp", lambda g, ans, x: g * ans)
defvjp2("log", lambda g, ans, x: g / x)
defvjp2("sqrt", lambda g, ans, x: g / (ans * 2.0))
# tanh's and sigmoid's vjps are rules of their own (one recorded node instead of three, as torch's
# tanh_backward): ``g * (1 - ans^2)`` and ``g * ans * (1 - ans)``, each differentiable in g and ans
defvjp2("tanh", lambda g, ans, x: apply_rule(TANH_GRAD, (g, ans), {}))
defvjp2("sigmoid", lambda g, ans, x: apply_rule(SIGMOID_GRAD, (g, ans), {}))
defvjp2("relu", lambda g, ans, x: g * _mask(~(_raw(ans) <= 0), g))
defvjp2("abs", lambda g, ans, x: g * _mask(xp_of(_raw(x)).where(_raw(x) != _raw(x), 0, xp_of(_raw(x)).sign(_raw(x))),
                                           g))
defvjp2("clip", lambda g, ans, x, lo=None, hi=None: g * _mask(
    (_raw(x) >= (-np.inf if lo is None else lo)) & (_raw(x) <= (np.inf if hi is None else hi)), g))
defvjp2("copy", lambda g, ans, x: g)
defvjp2("clip_t", lambda g, ans, x, lo, hi: g * _mask(_clip_masks(_raw(x), _raw(lo), _raw(hi))[0], g),
        lambda g, ans, x, lo, hi: g * _mask(_clip_masks(_raw(x), _raw(lo), _raw(hi))[1], g),
        lambda g, ans, x, lo, hi: g * _mask(~(_clip_masks(_raw(x), _raw(lo), _raw(hi))[0]
                                              | _clip_masks(_raw(x), _raw(lo), _raw(hi))[1]), g))
defvjp2("cast", lambda g, ans, x, dtype=None: g)
defvjp2("to", lambda g, ans, x, device="cpu", src="cpu": g.to(src))
defvjp2("sin", lambda g, ans, x: g * x.cos())
defvjp2("cos", lambda g, ans, x: -g * x.sin())
defvjp2("log1p", lambda g, ans, x: g / (x + 1.0))
defvjp2("expm1", lambda g, ans, x: g * (ans + 1.0))
defvjp2("square", lambda g, ans, x: g * (x * 2.0))
defvjp2("masked_fill", lambda g, ans, x, mask, value=0.0: g * _mask(~_raw(mask), g), None)


# --- elementwise, binary -----------------------------------------------------------------------------

def _pow_x(g: Tensor, ans: Any, x: Any, y: Any) -> Any:
    with _quiet(np):
        zero = xp_of(g._data).asarray(_raw(y)) == 0
        d = y * x ** (y - 1)
        if bool(zero.any()):
            from .ops import where

            d = where(cond(zero), 0.0, d)
    return g * d


def _pow_y(g: Tensor, ans: Any, x: Any, y: Any) -> Any:
    xp = xp_of(g._data)
    with _quiet(np):
        flat = (xp.asarray(_raw(x)) == 0) & (xp.asarray(_raw(y)) >= 0)
        lx = x.log() if isinstance(x, Tensor) else xp.log(x)
        d = ans * lx
        if bool(flat.any()):
            from .ops import where

            d = where(cond(flat), 0.0, d)
    return g * d


defvjp2("add", lambda g, ans, x, y: g, lambda g, ans, x, y: g)
defvjp2("sub", lambda g, ans, x, y: g, lambda g, ans, x, y: -g)
defvjp2("mul", lambda g, ans, x, y: g * y, lambda g, ans, x, y: g * x)
defvjp2("div", lambda g, ans, x, y: g / y, lambda g, ans, x, y: -g * x / (y * y))
defvjp2("rdiv", None, lambda g, ans, x, y, aux=None: -g * x * aux * aux)
defvjp2("pow", _pow_x, _pow_y)
defvjp2("maximum", lambda g, ans, x, y: g * _mask(_pick(_raw(x), _raw(y), True), g),
        lambda g, ans, x, y: g * _mask(_pick(_raw(y), _raw(x), True), g))
defvjp2("minimum", lambda g, ans, x, y: g * _mask(_pick(_raw(x), _raw(y), False), g),
        lambda g, ans, x, y: g * _mask(_pick(_raw(y), _raw(x), False), g))
defvjp2("where", None, lambda g, ans, c, x, y: g * _mask(_raw(c), g), lambda g, ans, c, x, y: g * _mask(~_raw(c), g))
defvjp2("lerp", lambda g, ans, x, end, w: g * (1.0 - w), lambda g, ans, x, end, w: g * w,
        lambda g, ans, x, end, w: g * (end - x))


def _matmul_x(g: Tensor, ans: Any, x: Any, y: Any, shapes: Any = ()) -> Any:
    if y.ndim == 1:
        return g * y if len(shapes[0]) == 1 else g.unsqueeze(-1) * y
    if len(shapes[0]) == 1:
        return (g.unsqueeze(-2) @ _mT(y))[..., 0, :]
    return apply_rule(MATMUL_NT, (g, y), {})


def _matmul_y(g: Tensor, ans: Any, x: Any, y: Any, shapes: Any = ()) -> Any:
    if x.ndim == 1:
        if len(shapes[1]) == 1:
            return g * x
        return g.unsqueeze(-2) * (x.unsqueeze(1) if isinstance(x, Tensor) else x[:, None])
    if len(shapes[1]) == 1:
        return (_mT(x) @ g.unsqueeze(-1))[..., 0]
    return apply_rule(MATMUL_TN, (x, g), {})


def _mm(a: Any, b: Any) -> Tensor:
    t = a if isinstance(a, Tensor) else b
    out: Tensor = t.graph.apply("matmul", (a, b))
    return out


defvjp2("matmul", _matmul_x, _matmul_y)

# ``a @ b^T`` and ``a^T @ b`` (both operands at least 2-d), the products a matmul's vjps make: with the
# plain product they close under differentiation, and no transposed view is recorded
MATMUL_NT: Rule = make_rule("matmul_nt", lambda xp, a, b: kernels.matmul(a, b.swapaxes(-1, -2)),
                      (lambda h, ans, a, b: h @ b, "y"), (lambda h, ans, a, b: h.swapaxes(-1, -2) @ a, "x"))
MATMUL_TN: Rule = make_rule("matmul_tn", lambda xp, a, b: a.swapaxes(-1, -2) @ b,
                      (lambda h, ans, a, b: b @ h.swapaxes(-1, -2), "y"), (lambda h, ans, a, b: a @ h, "x"))
defvjp2("matmul_nt", lambda h, ans, a, b: _mm(h, b), lambda h, ans, a, b: apply_rule(MATMUL_TN, (h, a), {}))
defvjp2("matmul_tn", lambda h, ans, a, b: apply_rule(MATMUL_NT, (b, h), {}), lambda h, ans, a, b: _mm(a, h))
TANH_GRAD: Rule = make_rule("tanh_grad", lambda xp, g, ans: g * (1 - ans * ans),
                      (lambda h, out, g, ans: h * (1 - ans * ans), "y"),
                      (lambda h, out, g, ans: -2 * h * g * ans, "xy"))
SIGMOID_GRAD: Rule = make_rule("sigmoid_grad", lambda xp, g, ans: g * ans * (1 - ans),
                         (lambda h, out, g, ans: h * ans * (1 - ans), "y"),
                         (lambda h, out, g, ans: h * g * (1 - 2 * ans), "xy"))
defvjp2("tanh_grad", lambda h, out, g, ans: apply_rule(TANH_GRAD, (h, ans), {}),
        lambda h, out, g, ans: h * g * ans * -2.0)
defvjp2("sigmoid_grad", lambda h, out, g, ans: apply_rule(SIGMOID_GRAD, (h, ans), {}),
        lambda h, out, g, ans: h * g * (1.0 - ans * 2.0))


# --- reductions --------------------------------------------------------------------------------------

def _max_vjp(g: Tensor, ans: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    # the selection (ties share evenly) is a constant: max is linear where it is differentiable
    sel = _minmax_vjp(xp_of(g._data).ones(g.shape, dtype=g.dtype), _raw(ans), _raw(x), axis, keepdims)
    return _expand(g, x.shape, axis, keepdims) * sel


def _var_vjp(g: Tensor, ans: Any, x: Tensor, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    n = _count(x.shape, axis) - ddof
    factor = 2.0 / n if n > 0 else float("inf")
    return _expand(g, x.shape, axis, keepdims) * (x - x.mean(axis=axis, keepdims=True)) * factor


def _logsumexp_vjp(g: Tensor, ans: Tensor, x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    return _expand(g, x.shape, axis, keepdims) * (x - _expand(ans, x.shape, axis, keepdims)).exp()


def _norm_vjp(g: Tensor, ans: Tensor, x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    n = _expand(ans, x.shape, axis, keepdims)
    out = _expand(g, x.shape, axis, keepdims) * x
    zero = xp_of(g._data).asarray(_raw(ans) == 0)
    if bool(zero.any()):  # as torch: zero where the norm is zero (kept out of the division: no 0/0)
        from .ops import where

        xp = xp_of(zero)
        zx = xp.broadcast_to(zero if keepdims else xp.expand_dims(zero, axes_of(axis, x.ndim)), x.shape)
        n = where(cond(zx), 1.0, n)
        out = out * _mask(~zx, g)
    return out / n


defvjp2("sum", lambda g, ans, x, axis=None, keepdims=False, shapes=(): _expand(g, shapes[0], axis, keepdims))
defvjp2("mean", lambda g, ans, x, axis=None, keepdims=False, shapes=():
        _expand(g, shapes[0], axis, keepdims) / float(_count(shapes[0], axis)))
defvjp2("max", _max_vjp)
defvjp2("min", _max_vjp)
defvjp2("var", _var_vjp)
defvjp2("logsumexp", _logsumexp_vjp)
defvjp2("norm", _norm_vjp)
defvjp2("softmax", lambda g, ans, x, axis=-1: ans * (g - (g * ans).sum(axis=axis, keepdims=True)))
defvjp2("log_softmax", lambda g, ans, x, axis=-1: g - ans.exp() * g.sum(axis=axis, keepdims=True))


def _onehot(xp: Any, shape: tuple[int, ...], dtype: Any, labels: Any) -> Array:
    oh = xp.zeros(shape, dtype=dtype)
    if len(shape) == 1:
        oh[labels] = 1
    else:
        oh[xp.arange(shape[0]), labels] = 1
    return oh


def _ce_scale(g: Any, shape: tuple[int, ...], reduction: str) -> Any:
    """The per-sample factor of cross_entropy's gradient (an array or a tensor), for logits of ``shape``."""
    if len(shape) == 1 or reduction == "sum":
        return g
    if reduction == "mean":
        return g / float(shape[0])
    return g.unsqueeze(-1) if isinstance(g, Tensor) else g[:, None]


def _ce_sum(d: Any, shape: tuple[int, ...], reduction: str) -> Any:
    """The adjoint of :func:`_ce_scale`: sum a logits-shaped ``d`` back to ``g``'s shape."""
    if len(shape) == 1 or reduction == "sum":
        return d.sum()
    if reduction == "mean":
        return d.sum() / float(shape[0])
    return d.sum(axis=-1)


# cross_entropy's vjp as one rule of (g, log-softmax): (softmax - onehot) * g, scaled by the reduction
CE_GRAD: Rule = make_rule(
    "cross_entropy_grad",
    lambda xp, g, lsm, labels=None, reduction="mean":
    (xp.exp(lsm) - _onehot(xp, lsm.shape, lsm.dtype, labels)) * _ce_scale(g, lsm.shape, reduction),
    (lambda h, ans, g, lsm, labels=None, reduction="mean": _ce_sum(
        h * (xp_of(lsm).exp(lsm) - _onehot(xp_of(lsm), lsm.shape, lsm.dtype, labels)), lsm.shape, reduction), "y"),
    (lambda h, ans, g, lsm, labels=None, reduction="mean":
     h * _ce_scale(g, lsm.shape, reduction) * xp_of(lsm).exp(lsm), "xy"))


def _ce_grad_g(h: Tensor, ans: Any, g: Any, lsm: Any, labels: Any = None, reduction: str = "mean") -> Any:
    oh = _onehot(xp_of(h._data), lsm.shape, lsm.dtype, labels)
    return _ce_sum(h * (lsm.exp() - oh), lsm.shape, reduction)


defvjp2("cross_entropy_grad", _ce_grad_g,
        lambda h, ans, g, lsm, labels=None, reduction="mean": h * _ce_scale(g, lsm.shape, reduction) * lsm.exp())
defvjp2("cross_entropy", lambda g, ans, logits, labels, reduction="mean", aux=None:  # aux: the log-softmax
        apply_rule(CE_GRAD, (g, aux), {"labels": _raw(labels), "reduction": reduction}), None)


# --- shapes, views, indexing, writes -----------------------------------------------------------------

def _stack_vjp(g: Tensor, ans: Any, *args: Any, axis: int = 0, _i: int = 0) -> Tensor:
    key: tuple[Any, ...] = (slice(None),) * (axis % g.ndim) + (_i,)
    return g[key]


def _cumsum_vjp(g: Tensor, ans: Any, x: Any, axis: Any = None, shapes: Any = ()) -> Tensor:
    if axis is None:
        return g.flip(0).cumsum(0).flip(0).reshape(shapes[0])
    return g.flip(axis).cumsum(axis).flip(axis)


def _einsum_vjp(g: Tensor, ans: Any, *xs: Any, spec: Any = None, _i: int = 0) -> Tensor:
    from .ops import einsum

    formula, mine, kept, avail = einsum_vjp_plan(spec, _i)
    r = einsum(formula, g, *[x for j, x in enumerate(xs) if j != _i])
    if kept != mine:
        shape = [r.shape[kept.index(c)] if c in avail else 1 for c in mine]
        r = r.reshape(tuple(shape))
    return r if r.shape == xs[_i].shape else r.expand(xs[_i].shape)


def _landed(g: Tensor, landed: Any) -> Any:
    return None if landed is None else _mask(landed, g)


defvjp2("reshape_copy", lambda g, ans, x, shape=(), src=(): g.reshape(src))
defvjp2("concatenate", _concat_vjp)  # rules.py's: basic indexing, the same on a tensor
defvjp2("stack", _stack_vjp)
defvjp2("cumsum", _cumsum_vjp)
defvjp2("flip", lambda g, ans, x, axis=None: g.flip(axis))
defvjp2("tril", lambda g, ans, x, k=0: g.tril(k))
defvjp2("triu", lambda g, ans, x, k=0: g.triu(k))
defvjp2("pad", _pad_vjp)  # rules.py's: basic indexing, the same on a tensor
defvjp2("einsum", _einsum_vjp)
defvjp2("view", lambda g, ans, x, path=(), shapes=(): linear("view_scatter", g, shape=shapes[0], path=path))
defvjp2("gather", lambda g, ans, x, key=None, shapes=(): linear("gather_scatter", g, shape=shapes[0], key=key))
defvjp2("take_along_axis", lambda g, ans, x, idx, axis=0, shapes=():
        linear("along_scatter", g, shape=shapes[0], index=along_axis_index(xp_of(g._data), _raw(idx), axis)), None)
defvjp2("index_add", lambda g, ans, x, src, axis=0, index=None: g,
        lambda g, ans, x, src, axis=0, index=None: g[(slice(None),) * (axis % g.ndim) + (index,)])
defvjp2("copy_slices",
        lambda g, ans, old, src, path=(), key=None, landed=None: linear("zero_region", g, path=path, key=key),
        lambda g, ans, old, src, path=(), key=None, landed=None:
        linear("region_pick", g, shape=g.shape, path=path, key=key, landed=landed))


def _view_scatter(g: Array, shape: tuple[int, ...] = (), path: Any = ()) -> Array:
    return scatter_path(g, shape, path)


def _view_gather(h: Array, shape: tuple[int, ...] = (), path: Any = ()) -> Array:
    return apply_path(h, path)


def _scatter_key(g: Array, shape: tuple[int, ...] = (), key: Any = None) -> Array:
    z = xp_of(g).zeros(shape, dtype=g.dtype)
    scatter_add(z, key, g)
    return z


def _pick_key(h: Array, shape: tuple[int, ...] = (), key: Any = None) -> Array:
    return h[key]


def _zero_region(g: Array, path: Any = (), key: Any = None) -> Array:
    g2 = g.copy()
    region = apply_path(g2, path)
    if key is None:
        region[...] = 0
    else:
        region[key] = 0
    return g2


def _region_pick(g: Array, shape: tuple[int, ...] = (), path: Any = (), key: Any = None, landed: Any = None) -> Array:
    region = apply_path(g, path)
    if key is None:
        return region
    picked = region[key]
    return picked if landed is None else picked * landed


def _region_place(h: Array, shape: tuple[int, ...] = (), path: Any = (), key: Any = None,
                  landed: Any = None) -> Array:
    z = xp_of(h).zeros(shape, dtype=h.dtype)
    region = apply_path(z, path)
    if key is None:
        region[...] = h
    else:  # with repeated indices only the landed write is nonzero, and numpy's last write is the one that landed
        region[key] = h if landed is None else h * landed
    return z


deflinear("view_scatter", _view_scatter, "view_gather", _view_gather)
deflinear("gather_scatter", _scatter_key, "gather_pick", _pick_key)
deflinear("along_scatter", lambda g, shape=(), index=(): _scatter_key(g, shape, index), "along_pick",
          lambda h, shape=(), index=(): h[index])
deflinear("region_pick", _region_pick, "region_place", _region_place)
LINEAR["zero_region"] = Rule("zero_region", lambda xp, g, **kw: _zero_region(g, **kw),
                             (lambda h, ans, g, **kw: _zero_region(h, **kw),), (frozenset(),), by_mask=((), ()))
defvjp2("zero_region", lambda h, ans, g, **kw: linear("zero_region", h, **kw))  # its own adjoint
