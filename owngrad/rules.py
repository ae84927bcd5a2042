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


def defrule(name: str, forward: Callable[..., Any], *vjps: tuple[VJP | None, str],
            variadic: bool = False, aux: bool = False, shapes: bool = False) -> None:
    """Register ``name``: each vjp comes with the operands it reads, named by letters:
    ``a`` for ans and ``x y z`` for the first three args (``"xy"`` reads both)."""
    letters = {"a": 0, "x": 1, "y": 2, "z": 3}
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
    if y.ndim == 1:
        return g * y if len(shapes[0]) == 1 else g[..., None] * y
    if len(shapes[0]) == 1:
        return (g[..., None, :] @ _mT(y))[..., 0, :]
    return g @ _mT(y)


def _matmul_vjp_y(g: Array, ans: Array, x: Array, y: Array, shapes: Any = ()) -> Array:
    if x.ndim == 1:
        return g * x if len(shapes[1]) == 1 else x[:, None] * g[..., None, :]
    if len(shapes[1]) == 1:
        return (_mT(x) @ g[..., None])[..., 0]
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
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


def _softmax(xp: Any, x: Array, axis: int = -1) -> Array:
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _cross_entropy_fwd(xp: Any, logits: Array, labels: Array, reduction: str = "mean") -> tuple[Array, Array]:
    lsm = _log_softmax(xp, logits, axis=-1)
    if logits.ndim == 1:
        picked = -lsm[labels]
    else:
        picked = -lsm[xp.arange(lsm.shape[0]), labels]
    if reduction == "mean":
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
        return p * g
    n = p.shape[0]
    p[xp.arange(n), labels] -= 1
    if reduction == "mean":
        return p * (g / n)
    if reduction == "sum":
        return p * g
    return p * g[:, None]


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
# at NaN inputs the gradient lands where torch puts it: relu passes it (not ans <= 0), abs gives 0
defrule("relu", lambda xp, x: xp.maximum(x, 0), (lambda g, ans, x: g * ~(ans <= 0), "a"))
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
defrule("matmul", lambda xp, x, y: x @ y, (_matmul_vjp_x, "y"), (_matmul_vjp_y, "x"), shapes=True)
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
defrule("softmax", _softmax,
        (lambda g, ans, x, axis=-1: ans * (g - (g * ans).sum(axis=axis, keepdims=True)), "a"))
defrule("log_softmax", _log_softmax,
        (lambda g, ans, x, axis=-1: g - xp_of(ans).exp(ans) * g.sum(axis=axis, keepdims=True), "a"))
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
