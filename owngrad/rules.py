"""Derivative rules: one table, one line of calculus per input.

Each :class:`Rule` has a forward ``f(xp, *args, **attrs) -> ans`` and, per input, a
vector-Jacobian product called as ``vjp(g, ans, *args, **attrs) -> grad`` -- the one calling
convention, for every rule -- together with the operands that vjp reads (``needs``: 0 is
``ans``, i is ``args[i-1]``). The graph saves exactly the union of ``needs`` over the inputs
that require a gradient -- and so borrows only that. What a vjp needs besides its operands
comes in ``attrs``, filled in by the graph when it records the node: ``shapes`` (the input
shapes, for rules registered with ``shapes=True``) and ``aux`` (the second result of a forward
registered with ``aux=True``). Broadcasting is undone once, by the graph (:func:`unbroadcast`),
never inside a rule.

Views and in-place writes are rules too: ``view`` (its vjp scatters the gradient back through
the view's steps) and ``copy_slices`` (a write into a region of a tensor: the old value keeps
the gradient outside the region, the written value gets the region's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from . import kernels
from .backend import Array, scatter_add, to_device, xp_of
from .shapes import axes_of, expand_reduced, unbroadcast
from .views import apply_path, scatter_path

__all__ = ["Rule", "RULES", "unbroadcast", "expand_reduced"]

VJP = Callable[..., Array]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    forward: Callable[..., Any]
    vjps: tuple[VJP | None, ...]
    needs: tuple[frozenset[int], ...]
    variadic: bool = False  # one vjp for all inputs, told its input's position as ``_i``
    aux: bool = False  # forward returns (ans, aux); vjps get ``aux=``; aux is internal, never borrowed
    shapes: bool = False  # vjps get ``shapes=``, the input shapes (so they need not save the inputs)
    by_mask: tuple[tuple[int, ...], ...] = ()  # what to save, per bitmask of inputs needing a gradient

    def saves(self, mask: int) -> tuple[int, ...]:
        """The operands a node saves (0 = ans, i = args[i-1]) when the inputs in ``mask`` (bit i =
        input i) need a gradient: the union of what their vjps read."""
        return self.by_mask[0] if self.variadic else self.by_mask[mask]

    def vjp(self, i: int) -> VJP:
        """The vjp for input ``i``, called as ``vjp(g, ans, *args, **attrs)``."""
        if self.variadic:
            return partial(self.vjps[0], _i=i)  # type: ignore[arg-type,misc]
        fn = self.vjps[i]
        assert fn is not None, f"{self.name} has no gradient for input {i}"
        return fn


RULES: dict[str, Rule] = {}
ALL_ARGS = -1  # in ``needs`` of a variadic rule: its vjp reads every operand (``"*"``)


def defrule(name: str, forward: Callable[..., Any], *vjps: tuple[VJP | None, str],
            variadic: bool = False, aux: bool = False, shapes: bool = False) -> None:
    """Register ``name``: each vjp comes with the operands it reads, named by letters:
    ``a`` for ans and ``x y z u v`` for the first five args (``"xy"`` reads both); ``"*"`` (variadic rules)
    for every arg."""
    letters = {"a": 0, "x": 1, "y": 2, "z": 3, "u": 4, "v": 5, "*": ALL_ARGS}
    needs = tuple(frozenset(letters[c] for c in reads) for _, reads in vjps)
    if variadic:
        by_mask: tuple[tuple[int, ...], ...] = (tuple(sorted(needs[0])),)
    else:
        by_mask = tuple(tuple(sorted(set().union(*(needs[i] for i in range(len(needs)) if m >> i & 1))))
                        for m in range(1 << len(needs)))
    RULES[name] = Rule(name, forward, tuple(f for f, _ in vjps), needs, variadic, aux, shapes, by_mask)


# --- helpers shared by rules ------------------------------------------------------------

def _count(shape: tuple[int, ...], axis: Any) -> int:
    n = 1
    for a in axes_of(axis, len(shape)):
        n *= shape[a]
    return n


def _mT(a: Array) -> Array:
    return a.swapaxes(-1, -2)


def _matmul_vjp_x(g: Array, ans: Array, x: Array, y: Array, shapes: Any = ()) -> Array:
    if g.ndim == 2 and y.ndim == 2:  # the common case, first
        return g @ y.T
    if y.ndim == 1:
        return g * y if len(shapes[0]) == 1 else g[..., None] * y
    if len(shapes[0]) == 1:
        return (g[..., None, :] @ _mT(y))[..., 0, :]
    return kernels.matmul(g, _mT(y))


def _matmul_vjp_y(g: Array, ans: Array, x: Array, y: Array, shapes: Any = ()) -> Array:
    if x.ndim == 2 and g.ndim == 2:  # the common case, first
        return x.T @ g
    if x.ndim == 1:
        return g * x if len(shapes[1]) == 1 else x[:, None] * g[..., None, :]
    if len(shapes[1]) == 1:
        return (_mT(x) @ g[..., None])[..., 0]
    if len(shapes[1]) == 2 and x.ndim > 2:
        return kernels.matmul_grad_y(x, g)
    return _mT(x) @ g


def _minmax_vjp(g: Array, ans: Array, x: Array, axis: Any = None, keepdims: bool = False) -> Array:
    # ties share the gradient evenly, as torch.amax/amin do
    a = expand_reduced(ans, x.shape, axis, keepdims)
    mask = (x == a).astype(g.dtype)
    count = mask.sum(axis=axes_of(axis, x.ndim), keepdims=True)
    return mask * expand_reduced(g, x.shape, axis, keepdims) / count


def _pick(x: Array, y: Array, xs_wins: bool) -> Array:
    # gradient mask of maximum/minimum for the first operand, as torch: everything unless the other
    # operand wins (so a NaN passes it), ties split evenly
    loses = (x < y) if xs_wins else (x > y)
    return ~loses - 0.5 * (x == y)


def _quiet(xp: Any) -> Any:
    """numpy's warnings off for a rule that computes a branch it then discards (cupy never warns)."""
    import contextlib

    import numpy as np

    return np.errstate(all="ignore") if xp is np else contextlib.nullcontext()


def _pow_vjp_x(g: Array, ans: Array, x: Array, y: Any) -> Array:
    # as torch: zero where the exponent is 0 (x ** -1 * 0 would be nan at x = 0)
    xp = xp_of(g)
    with _quiet(xp):
        return g * xp.where(xp.asarray(y) == 0, 0, y * x ** (y - 1))


def _pow_vjp_y(g: Array, ans: Array, x: Any, y: Array) -> Array:
    # as torch: zero where x == 0 and y >= 0 (0 ** y is flat there, log(0) is not)
    xp = xp_of(g)
    with _quiet(xp):
        return g * xp.where((xp.asarray(x) == 0) & (y >= 0), 0, ans * xp.log(x))


def _clip_masks(x: Array, lo: Any, hi: Any) -> tuple[Array, Array]:
    """Which elements pass through (lo <= x <= hi) and which take lo (x < lo <= hi); the rest take hi."""
    through = (x >= lo) & (x <= hi)
    return through, (x < lo) & (lo <= hi)


def _sigmoid(xp: Any, x: Array) -> Array:
    return 0.5 * (xp.tanh(0.5 * x) + 1)


def _logsumexp(xp: Any, x: Array, axis: Any = None, keepdims: bool = False) -> Array:
    if x.size == 0:  # an empty sum: log(0) = -inf, as torch
        out = xp.full(xp.sum(x, axis=axis, keepdims=keepdims).shape, -xp.inf, dtype=x.dtype)
        return out
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else out.squeeze(axis=axes_of(axis, x.ndim)) if x.ndim else out


def _log_softmax(xp: Any, x: Array, axis: int = -1) -> Array:
    # no guard for all -inf slices here: their log-softmax is nan either way (as in torch)
    if xp is np:  # the reductions np.max and np.sum call, without their Python wrappers
        out = x - np.maximum.reduce(x, axis=axis, keepdims=True)
        lse = np.log(np.add.reduce(np.exp(out), axis=axis, keepdims=True))
    else:
        out = x - xp.max(x, axis=axis, keepdims=True)
        lse = xp.log(xp.sum(xp.exp(out), axis=axis, keepdims=True))
    return _into(out, lse, subtract=True)


def _into(a: Array, b: Array, subtract: bool = False) -> Array:
    """``a * b`` (or ``a - b``), written into ``a`` -- a temporary the caller made -- when that keeps its dtype."""
    if getattr(a, "dtype", None) == getattr(b, "dtype", None) and getattr(a, "ndim", 0) > 0:
        if subtract:
            a -= b
        else:
            a *= b
        return a
    return a - b if subtract else a * b



def _cross_entropy_fwd(xp: Any, logits: Array, labels: Array, reduction: str = "mean") -> tuple[Array, Array]:
    lsm = _log_softmax(xp, logits, axis=-1)
    picked = -lsm[labels] if logits.ndim == 1 else -lsm[xp.arange(lsm.shape[0]), labels]
    if reduction == "mean":  # a 0-d array (numpy's scalar would be converted by the graph)
        if type(picked) is np.ndarray and picked.size:
            return np.asarray(np.add.reduce(picked, axis=None) / picked.size), lsm
        return (picked.sum() / picked.size if picked.size else picked.mean()), lsm
    if reduction == "sum":
        return picked.sum(), lsm
    return picked, lsm


def _cross_entropy_vjp(g: Array, ans: Array, logits: Array, labels: Array, reduction: str = "mean",
                       aux: Array = None) -> Array:
    xp = xp_of(aux)
    p = xp.exp(aux)  # aux is the log-softmax, of the logits' shape (the logits themselves are not saved)
    if aux.ndim == 1:
        p[labels] -= 1
        return _into(p, g)
    n = p.shape[0]
    p[xp.arange(n), labels] -= 1
    if reduction == "mean":
        return _into(p, g / n)
    if reduction == "sum":
        return _into(p, g)
    return _into(p, g[:, None])


def _concat_vjp(g: Array, ans: Array, *args: Array, axis: int = 0, sizes: tuple[int, ...] = (),
                _i: int = 0) -> Array:
    start = sum(sizes[:_i])
    idx = [slice(None)] * g.ndim
    idx[axis] = slice(start, start + sizes[_i])
    return g[tuple(idx)]


def _stack_vjp(g: Array, ans: Array, *args: Array, axis: int = 0, _i: int = 0) -> Array:
    return xp_of(g).take(g, _i, axis=axis)


def _gather_vjp(g: Array, ans: Array, x: Array, key: Any = None, shapes: Any = ()) -> Array:
    z = xp_of(g).zeros(shapes[0], dtype=g.dtype)
    scatter_add(z, key, g)
    return z


def _copy_slices_vjp_old(g: Array, ans: Array, old: Array, src: Array, path: Any = (), key: Any = None,
                         landed: Array | None = None) -> Array:
    """The old value keeps the gradient everywhere but in the written region."""
    g2 = g.copy()
    region = apply_path(g2, path)
    if key is None:
        region[...] = 0
    else:
        region[key] = 0
    return g2


def _copy_slices_vjp_src(g: Array, ans: Array, old: Array, src: Array, path: Any = (), key: Any = None,
                         landed: Array | None = None) -> Array:
    """The written value gets the region's gradient; with repeated indices only the writes that landed."""
    region = apply_path(g, path)
    if key is None:
        return region
    picked = region[key]
    return picked if landed is None else picked * landed


def _var_vjp(g: Array, ans: Array, x: Array, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Array:
    xp = xp_of(x)
    centered = x - xp.mean(x, axis=axis, keepdims=True)
    n = _count(x.shape, axis) - ddof
    factor = 2.0 / n if n > 0 else float("inf")  # numpy's var is inf/nan there: so is its gradient
    with _quiet(xp):
        return expand_reduced(g, x.shape, axis, keepdims) * centered * factor


# --- the table --------------------------------------------------------------------------
# elementwise, unary
defrule("neg", lambda xp, x: -x, (lambda g, ans, x: -g, ""))
defrule("exp", lambda xp, x: xp.exp(x), (lambda g, ans, x: g * ans, "a"))
defrule("log", lambda xp, x: xp.log(x), (lambda g, ans, x: g / x, "x"))
defrule("sqrt", lambda xp, x: xp.sqrt(x), (lambda g, ans, x: g / (2 * ans), "a"))
defrule("tanh", lambda xp, x: xp.tanh(x), (lambda g, ans, x: g * (1 - ans * ans), "a"))
defrule("sigmoid", _sigmoid, (lambda g, ans, x: g * ans * (1 - ans), "a"))
def _relu_vjp(g: Array, ans: Array, x: Array) -> Array:
    """``g * (ans != 0)`` (ans >= 0 or NaN: at NaN inputs relu passes the gradient, as torch), with the mask made
    a float array first: a float product is faster than one with a boolean operand, and its values are the same."""
    m = (ans != 0).astype(g.dtype)
    m *= g
    return m


# at NaN inputs the gradient lands where torch puts it: relu passes it, abs gives 0
defrule("relu", lambda xp, x: xp.maximum(x, 0), (_relu_vjp, "a"))
defrule("abs", lambda xp, x: xp.abs(x), (lambda g, ans, x: g * xp_of(x).where(x != x, 0, xp_of(x).sign(x)), "x"))
defrule("clip", lambda xp, x, lo=None, hi=None: xp.clip(x, lo, hi),
        (lambda g, ans, x, lo=None, hi=None:
         g * ((x >= (-float("inf") if lo is None else lo)) & (x <= (float("inf") if hi is None else hi))), "x"))
defrule("copy", lambda xp, x: x.copy(), (lambda g, ans, x: g, ""))
# clip with tensor bounds (each may need a gradient); where lo > hi the result is hi, as np.clip/torch.clamp
defrule("clip_t", lambda xp, x, lo, hi: xp.minimum(xp.maximum(x, lo), hi),
        (lambda g, ans, x, lo, hi: g * _clip_masks(x, lo, hi)[0], "xyz"),
        (lambda g, ans, x, lo, hi: g * _clip_masks(x, lo, hi)[1], "xyz"),
        (lambda g, ans, x, lo, hi: g * ~(_clip_masks(x, lo, hi)[0] | _clip_masks(x, lo, hi)[1]), "xyz"))
defrule("cast", lambda xp, x, dtype=None: x.astype(dtype), (lambda g, ans, x, dtype=None: g, ""))
defrule("to", lambda xp, x, device="cpu": to_device(x, device),
        (lambda g, ans, x, device="cpu", src="cpu": to_device(g, src), ""))

# elementwise, binary (numpy broadcasting; the graph unbroadcasts)
defrule("add", lambda xp, x, y: x + y, (lambda g, ans, x, y: g, ""), (lambda g, ans, x, y: g, ""))
defrule("sub", lambda xp, x, y: x - y, (lambda g, ans, x, y: g, ""), (lambda g, ans, x, y: -g, ""))
defrule("mul", lambda xp, x, y: x * y, (lambda g, ans, x, y: g * y, "y"), (lambda g, ans, x, y: g * x, "x"))
defrule("div", lambda xp, x, y: x / y, (lambda g, ans, x, y: g / y, "y"),
        (lambda g, ans, x, y: -g * x / (y * y), "xy"))
# a / y with a plain number or array a: as torch (reciprocal, then a product), only 1/y is kept, and it
# is internal, so y itself is not borrowed and may be written after the division
defrule("rdiv", lambda xp, x, y: (x / y, 1 / y), (None, ""), (lambda g, ans, x, y, aux=None: -g * x * aux * aux, "x"),
        aux=True)
defrule("pow", lambda xp, x, y: x ** y, (_pow_vjp_x, "xy"), (_pow_vjp_y, "axy"))
defrule("matmul", lambda xp, x, y: x @ y if x.ndim <= 2 or y.ndim != 2 else kernels.matmul(x, y),
        (_matmul_vjp_x, "y"), (_matmul_vjp_y, "x"), shapes=True)
defrule("maximum", lambda xp, x, y: xp.maximum(x, y),
        (lambda g, ans, x, y: g * _pick(x, y, True), "xy"), (lambda g, ans, x, y: g * _pick(y, x, True), "xy"))
defrule("minimum", lambda xp, x, y: xp.minimum(x, y),
        (lambda g, ans, x, y: g * _pick(x, y, False), "xy"), (lambda g, ans, x, y: g * _pick(y, x, False), "xy"))
defrule("where", lambda xp, c, x, y: xp.where(c, x, y), (None, ""),
        (lambda g, ans, c, x, y: g * c, "x"), (lambda g, ans, c, x, y: g * ~c, "x"))

# reductions
defrule("sum", lambda xp, x, axis=None, keepdims=False: xp.sum(x, axis=axis, keepdims=keepdims),
        (lambda g, ans, x, axis=None, keepdims=False, shapes=():
         expand_reduced(g, shapes[0], axis, keepdims), ""), shapes=True)
defrule("mean", lambda xp, x, axis=None, keepdims=False: xp.mean(x, axis=axis, keepdims=keepdims),
        (lambda g, ans, x, axis=None, keepdims=False, shapes=():
         expand_reduced(g, shapes[0], axis, keepdims) / _count(shapes[0], axis), ""), shapes=True)
defrule("max", lambda xp, x, axis=None, keepdims=False: xp.max(x, axis=axis, keepdims=keepdims), (_minmax_vjp, "ax"))
defrule("min", lambda xp, x, axis=None, keepdims=False: xp.min(x, axis=axis, keepdims=keepdims), (_minmax_vjp, "ax"))
defrule("var", lambda xp, x, axis=None, keepdims=False, ddof=0: xp.var(x, axis=axis, keepdims=keepdims, ddof=ddof),
        (_var_vjp, "x"))
defrule("logsumexp", _logsumexp,
        (lambda g, ans, x, axis=None, keepdims=False:
         expand_reduced(g, x.shape, axis, keepdims) * xp_of(x).exp(x - expand_reduced(ans, x.shape, axis, keepdims)),
         "ax"))
defrule("softmax", lambda xp, x, axis=-1: kernels.softmax(x, axis),
        (lambda g, ans, x, axis=-1: kernels.softmax_grad(g, ans, axis), "a"))
defrule("log_softmax", _log_softmax,
        (lambda g, ans, x, axis=-1: g - _into(xp_of(ans).exp(ans), g.sum(axis=axis, keepdims=True)), "a"))
defrule("cross_entropy", _cross_entropy_fwd, (_cross_entropy_vjp, "y"), (None, ""), aux=True)

# views and writes: the graph records these for basic indexing, transposes, reshapes of contiguous
# data, expand, and every in-place op of a tensor with history (the forwards are run by the tensor
# layer on the storage itself; the table holds their calculus)
defrule("view", lambda xp, x, path=(): apply_path(x, path),
        (lambda g, ans, x, path=(), shapes=(): scatter_path(g, shapes[0], path), ""), shapes=True)
defrule("copy_slices", lambda xp, old, src, path=(), key=None, landed=None: old,
        (_copy_slices_vjp_old, ""), (_copy_slices_vjp_src, ""))

# shape (copies)
defrule("reshape_copy", lambda xp, x, shape=(): x.reshape(shape),
        (lambda g, ans, x, shape=(), src=(): g.reshape(src), ""))
defrule("concatenate", lambda xp, *xs, axis=0: xp.concatenate(xs, axis=axis), (_concat_vjp, ""), variadic=True)
defrule("stack", lambda xp, *xs, axis=0: xp.stack(xs, axis=axis), (_stack_vjp, ""), variadic=True)
defrule("gather", lambda xp, x, key=None: x[key], (_gather_vjp, ""), shapes=True)

# --- more elementwise ---------------------------------------------------------------------------
defrule("sin", lambda xp, x: xp.sin(x), (lambda g, ans, x: g * xp_of(x).cos(x), "x"))
defrule("cos", lambda xp, x: xp.cos(x), (lambda g, ans, x: -g * xp_of(x).sin(x), "x"))
defrule("log1p", lambda xp, x: xp.log1p(x), (lambda g, ans, x: g / (1 + x), "x"))
defrule("expm1", lambda xp, x: xp.expm1(x), (lambda g, ans, x: g * (ans + 1), "a"))
defrule("square", lambda xp, x: x * x, (lambda g, ans, x: g * (2 * x), "x"))
# x.masked_fill(mask, value): the filled elements get no gradient
defrule("masked_fill", lambda xp, x, mask, value=0.0: xp.where(mask, xp.asarray(value, dtype=x.dtype), x),
        (lambda g, ans, x, mask, value=0.0: g * ~mask, "y"), (None, ""))
# x + w * (end - x) (torch.lerp)
defrule("lerp", lambda xp, x, end, w: x + w * (end - x),
        (lambda g, ans, x, end, w: g * (1 - w), "z"), (lambda g, ans, x, end, w: g * w, "z"),
        (lambda g, ans, x, end, w: g * (end - x), "xy"))


# --- scans, flips, triangles, norms ------------------------------------------------------------
def _cumsum_vjp(g: Array, ans: Array, x: Array, axis: Any = None, shapes: Any = ()) -> Array:
    xp = xp_of(g)
    if axis is None:  # numpy flattens: the gradient is the reversed running sum, in x's shape
        return xp.flip(xp.cumsum(xp.flip(g)), 0).reshape(shapes[0])
    return xp.flip(xp.cumsum(xp.flip(g, axis), axis=axis), axis)


def _norm_vjp(g: Array, ans: Array, x: Array, axis: Any = None, keepdims: bool = False) -> Array:
    # as torch: zero where the norm is zero (the subgradient 0)
    xp = xp_of(x)
    n = expand_reduced(ans, x.shape, axis, keepdims)
    with _quiet(xp):
        return xp.where(n == 0, 0, expand_reduced(g, x.shape, axis, keepdims) * x / n)


defrule("cumsum", lambda xp, x, axis=None: xp.cumsum(x, axis=axis), (_cumsum_vjp, ""), shapes=True)
defrule("flip", lambda xp, x, axis=None: xp.flip(x, axis).copy(),
        (lambda g, ans, x, axis=None: xp_of(g).flip(g, axis), ""))
defrule("tril", lambda xp, x, k=0: xp.tril(x, k), (lambda g, ans, x, k=0: xp_of(g).tril(g, k), ""))
defrule("triu", lambda xp, x, k=0: xp.triu(x, k), (lambda g, ans, x, k=0: xp_of(g).triu(g, k), ""))
defrule("norm", lambda xp, x, axis=None, keepdims=False: xp.sqrt(xp.sum(x * x, axis=axis, keepdims=keepdims)),
        (_norm_vjp, "ax"))


# --- gathers, scatters, padding, einsum ----------------------------------------------------------
def along_axis_index(xp: Any, idx: Array, axis: int) -> tuple[Any, ...]:
    """The full index tuple that ``take_along_axis(x, idx, axis)`` reads (aranges on the other axes)."""
    nd = idx.ndim
    out: list[Any] = []
    for d in range(nd):
        if d == axis:
            out.append(idx)
        else:
            shape = [1] * nd
            shape[d] = idx.shape[d]
            out.append(xp.arange(idx.shape[d]).reshape(shape))
    return tuple(out)


def _take_along_vjp(g: Array, ans: Array, x: Array, idx: Array, axis: int = 0, shapes: Any = ()) -> Array:
    z = xp_of(g).zeros(shapes[0], dtype=g.dtype)
    scatter_add(z, along_axis_index(xp_of(g), idx, axis), g)
    return z


def _index_add_fwd(xp: Any, x: Array, src: Array, axis: int = 0, index: Any = None) -> Array:
    out = x.copy()
    scatter_add(out, (slice(None),) * axis + (index,), src)
    return out


def _pad_vjp(g: Array, ans: Array, x: Array, widths: Any = (), value: float = 0.0) -> Array:
    return g[tuple(slice(b, g.shape[i] - a) for i, (b, a) in enumerate(widths))]


def einsum_vjp_plan(spec: Any, i: int) -> tuple[str, str, str, set[str]]:
    """The einsum that gives operand ``i``'s gradient from the output's and the other operands: its formula,
    the operand's letters, the letters that formula keeps, and the letters it can produce (a letter only this
    operand has is summed out by the forward, so its gradient is broadcast back afterwards)."""
    ins, out = spec
    others = [s for j, s in enumerate(ins) if j != i]
    mine = ins[i]
    avail = set(out).union(*others) if others else set(out)
    kept = "".join(c for c in mine if c in avail)
    return ",".join([out, *others]) + "->" + kept, mine, kept, avail


def _einsum_vjp(g: Array, ans: Array, *xs: Array, spec: Any = None, _i: int = 0) -> Array:
    formula, mine, kept, avail = einsum_vjp_plan(spec, _i)
    xp = xp_of(g)
    r = xp.einsum(formula, g, *[x for j, x in enumerate(xs) if j != _i])
    if kept != mine:  # letters summed out of this operand alone: their gradient is broadcast back
        r = xp.expand_dims(r, tuple(i for i, c in enumerate(mine) if c not in avail))
    return xp.broadcast_to(r, xs[_i].shape)


defrule("take_along_axis", lambda xp, x, idx, axis=0: xp.take_along_axis(x, idx, axis=axis),
        (_take_along_vjp, "y"), (None, ""), shapes=True)
defrule("index_add", _index_add_fwd, (lambda g, ans, x, src, axis=0, index=None: g, ""),
        (lambda g, ans, x, src, axis=0, index=None: xp_of(g).take(g, index, axis=axis), ""))
defrule("pad", lambda xp, x, widths=(), value=0.0: xp.pad(x, widths, constant_values=value), (_pad_vjp, ""))
defrule("einsum", lambda xp, *xs, spec=None: xp.einsum(",".join(spec[0]) + "->" + spec[1], *xs),
        (_einsum_vjp, "*"), variadic=True)
