"""Differentiable vjps of the rules og.nn.functional registers (see owngrad/dvjps.py for the convention).

``conv2d``'s vjps are bilinear (in the gradient and the other operand), so they are rules of their own,
``conv2d_grad_input`` and ``conv2d_grad_weight``, whose vjps are again convolutions: the three close under
differentiation. The pools are linear in the gradient (given the argmax positions, for max_pool2d): each
is paired with its adjoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import kernels
from ..backend import Array, xp_of
from ..dvjps import _mask, _raw, apply_rule, cond, deflinear, defvjp2, linear, make_rule
from ..graph import graph_of
from ..ops import concatenate, maximum, minimum, stack, where
from ..tensor import Tensor
from .functional import _SQRT_2_PI, _avg_pool_fwd, _avg_pool_vjp
from .recurrence import CellKind

__all__: list[str] = []


# --- activations ------------------------------------------------------------------------------------

def _pdf(x: Tensor) -> Tensor:
    return (x * x * -0.5).exp() * float(1.0 / np.sqrt(2 * np.pi))


# the normal CDF as a rule of its own (its value is gelu's aux): d/dx Phi(x) = pdf(x)
_CDF = make_rule("normal_cdf", lambda xp, x: None, (lambda g, ans, x: g * xp_of(x).exp(-0.5 * x * x)
                                                    / np.sqrt(2 * np.pi), "x"))
defvjp2("normal_cdf", lambda g, ans, x: g * _pdf(x))


def _gelu(g: Tensor, ans: Any, x: Tensor, approximate: str = "none", aux: Any = None) -> Tensor:
    if approximate == "tanh":
        th = ((x + x * x * x * 0.044715) * _SQRT_2_PI).tanh()
        return g * ((th + 1.0) * 0.5 + x * 0.5 * (1.0 - th * th) * _SQRT_2_PI * (x * x * (3 * 0.044715) + 1.0))
    cdf = apply_rule(_CDF, (x,), {}, value=aux)
    return g * (cdf + x * _pdf(x))


def _softplus(g: Tensor, ans: Any, x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    big = _raw(x) * beta > threshold
    return g * where(cond(big), 1.0, ((x * beta * 0.5).tanh() + 1.0) * 0.5)


defvjp2("gelu", _gelu)
defvjp2("softplus", _softplus)
defvjp2("logsigmoid", lambda g, ans, x: g * 0.5 * (1.0 - (x * 0.5).tanh()))
defvjp2("leaky_relu", lambda g, ans, x, slope=0.01: g * _mask(xp_of(_raw(x)).where(_raw(x) > 0, 1.0, slope), g))
defvjp2("elu", lambda g, ans, x, alpha=1.0: g * where(cond(_raw(x) > 0), 1.0, minimum(x, 0.0).exp() * alpha))


# --- binary cross-entropy ---------------------------------------------------------------------------

def _log_clamped(p: Any, one_minus: bool) -> Any:
    if isinstance(p, Tensor):
        return maximum((-p).log1p() if one_minus else p.log(), -100.0)
    xp = xp_of(p)
    with np.errstate(divide="ignore") if xp is np else _null():
        return xp.maximum(xp.log1p(-p) if one_minus else xp.log(p), -100)


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()


def _bce_p(g: Tensor, ans: Any, p: Any, t: Any) -> Any:
    den = maximum((1.0 - p) * p, 1e-12) if isinstance(p, Tensor) else xp_of(p).maximum((1 - p) * p, 1e-12)
    return g * (p - t) / den


defvjp2("binary_cross_entropy", _bce_p, lambda g, ans, p, t: g * (_log_clamped(p, True) - _log_clamped(p, False)))


# --- conv2d: three rules that close under differentiation -------------------------------------------

_C = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1)}  # conv2d's attrs and their defaults


def _gx_fwd(xp: Any, g: Array, w: Array, stride: Any = (1, 1), padding: Any = (0, 0), dilation: Any = (1, 1),
            x_shape: Any = ()) -> Array:
    return kernels.conv2d_grad_input(g, w, x_shape, stride, padding, dilation)


def _gw_fwd(xp: Any, g: Array, x: Array, stride: Any = (1, 1), padding: Any = (0, 0), dilation: Any = (1, 1),
            w_shape: Any = ()) -> Array:
    return kernels.conv2d_grad_weight(g, x, w_shape, stride, padding, dilation)


# conv2d_grad_input(g, w): its vjp for g is conv2d(h, w), for w conv2d_grad_weight(g, h)
_GX = make_rule(
    "conv2d_grad_input", _gx_fwd,
    (lambda h, ans, g, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), x_shape=(), shapes=():
     kernels.conv2d_forward(h, w, stride, padding, dilation), "y"),
    (lambda h, ans, g, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), x_shape=(), shapes=():
     kernels.conv2d_grad_weight(g, h, shapes[1], stride, padding, dilation), "x"), shapes=True)
# conv2d_grad_weight(g, x): its vjp for g is conv2d(x, H), for x conv2d_grad_input(g, H)
_GW = make_rule(
    "conv2d_grad_weight", _gw_fwd,
    (lambda h, ans, g, x, stride=(1, 1), padding=(0, 0), dilation=(1, 1), w_shape=(), shapes=():
     kernels.conv2d_forward(x, h, stride, padding, dilation), "y"),
    (lambda h, ans, g, x, stride=(1, 1), padding=(0, 0), dilation=(1, 1), w_shape=(), shapes=():
     kernels.conv2d_grad_input(g, h, shapes[1], stride, padding, dilation), "x"), shapes=True)


def _conv(x: Any, w: Any, attrs: dict[str, Any]) -> Tensor:
    t = x if isinstance(x, Tensor) else w
    return t.graph.apply("conv2d", (x, w), attrs)


def _attrs(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: kw.get(k, d) for k, d in _C.items()}


defvjp2("conv2d",
        lambda g, ans, x, w, b=None, shapes=(), **kw: apply_rule(_GX, (g, w), {**_attrs(kw), "x_shape": shapes[0]}),
        lambda g, ans, x, w, b=None, shapes=(), **kw: apply_rule(_GW, (g, x), {**_attrs(kw), "w_shape": shapes[1]}),
        lambda g, ans, x, w, b=None, shapes=(), **kw: g.sum(axis=(0, 2, 3)))
defvjp2("conv2d_grad_input",
        lambda h, ans, g, w, x_shape=(), shapes=(), **kw: _conv(h, w, _attrs(kw)),
        lambda h, ans, g, w, x_shape=(), shapes=(), **kw: apply_rule(_GW, (g, h), {**_attrs(kw),
                                                                                     "w_shape": shapes[1]}))
defvjp2("conv2d_grad_weight",
        lambda h, ans, g, x, w_shape=(), shapes=(), **kw: _conv(x, h, _attrs(kw)),
        lambda h, ans, g, x, w_shape=(), shapes=(), **kw: apply_rule(_GX, (g, h), {**_attrs(kw),
                                                                                     "x_shape": shapes[1]}))


# --- linear, layer norm, dropout: their vjps in tensor operations ------------------------------------

def _rows(t: Any) -> Any:
    return t.reshape(-1, t.shape[-1])


defvjp2("linear",
        lambda g, ans, x, w, b=None: g @ w,
        lambda g, ans, x, w, b=None: _rows(g).T @ _rows(x),
        lambda g, ans, x, w, b=None: _rows(g).sum(axis=0))


def _layer_norm_parts(x: Tensor, k: int, eps: float) -> tuple[tuple[int, ...], Tensor, Tensor]:
    """The normalised axes, ``xhat`` and ``1 / sqrt(var + eps)``, recomputed from ``x`` as tensor ops."""
    axes = tuple(range(x.ndim - k, x.ndim))
    centred = x - x.mean(axis=axes, keepdims=True)
    rstd = ((centred * centred).mean(axis=axes, keepdims=True) + eps) ** -0.5
    return axes, centred * rstd, rstd


def _layer_norm_x(g: Tensor, ans: Any, x: Tensor, w: Any, b: Any, k: int = 1, eps: float = 1e-5,
                  aux: Any = None) -> Tensor:
    axes, xhat, rstd = _layer_norm_parts(x, k, eps)
    d = g if w is None else g * w
    return rstd * (d - d.mean(axis=axes, keepdims=True) - xhat * (d * xhat).mean(axis=axes, keepdims=True))


def _layer_norm_w(g: Tensor, ans: Any, x: Tensor, w: Any, b: Any, k: int = 1, eps: float = 1e-5,
                  aux: Any = None) -> Tensor:
    _, xhat, _ = _layer_norm_parts(x, k, eps)
    return (g * xhat).sum(axis=tuple(range(g.ndim - k)))


defvjp2("layer_norm", _layer_norm_x, _layer_norm_w,
        lambda g, ans, x, w, b, k=1, eps=1e-5, aux=None: g.sum(axis=tuple(range(g.ndim - k))))
defvjp2("dropout", lambda g, ans, x, mask, aux=None: g * _mask(_raw(aux), g), None)


# --- pools: linear in the gradient ------------------------------------------------------------------

def _pool_scatter(g: Array, arg: Any = None, x_shape: Any = (), kernel: Any = (2, 2), stride: Any = (2, 2)) -> Array:
    return kernels.max_pool2d_grad(g, arg, x_shape, kernel, stride)


def _pool_pick(h: Array, arg: Any = None, x_shape: Any = (), kernel: Any = (2, 2), stride: Any = (2, 2)) -> Array:
    """Each window's value at its recorded maximum: the adjoint of :func:`_pool_scatter`."""
    xp = xp_of(h)
    win = kernels._offset_major(xp, xp.ascontiguousarray(h), kernel, stride, tuple(arg.shape[2:]))
    out = xp.zeros(arg.shape, dtype=h.dtype)
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            out += xp.where(arg == a * kernel[1] + b, win[a, b], 0)
    return out


def _avg_T(g: Array, x_shape: Any = (), kernel: Any = (2, 2), stride: Any = (2, 2), padding: Any = (0, 0)) -> Array:
    return _avg_pool_vjp(g, None, None, kernel, stride, padding, (x_shape,))


def _avg(h: Array, x_shape: Any = (), kernel: Any = (2, 2), stride: Any = (2, 2), padding: Any = (0, 0)) -> Array:
    return _avg_pool_fwd(xp_of(h), h, kernel, stride, padding)


deflinear("max_pool2d_scatter", _pool_scatter, "max_pool2d_pick", _pool_pick)
deflinear("avg_pool2d_scatter", _avg_T, "avg_pool2d_window_mean", _avg)
defvjp2("max_pool2d", lambda g, ans, x, kernel=(2, 2), stride=(2, 2), shapes=(), aux=None:
        linear("max_pool2d_scatter", g, arg=aux, x_shape=shapes[0], kernel=kernel, stride=stride))
defvjp2("avg_pool2d", lambda g, ans, x, kernel=(2, 2), stride=(2, 2), padding=(0, 0), shapes=():
        linear("avg_pool2d_scatter", g, x_shape=shapes[0], kernel=kernel, stride=stride, padding=padding))


# --- the recurrence: back-propagation through time as tensor operations ------------------------------

def _replay(gi: Tensor, h: Any, w_hh: Any, b_hh: Any, c: Any, kind: CellKind,
            reverse: bool) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """The recurrence's steps again, as recorded operations on its saved inputs: per step, what the backward
    reads (the slots of recurrence.SLOTS, in step order); and the final state, which the backward does not."""
    steps, width = gi.shape[0], w_hh.shape[1]
    keep: list[tuple[Any, ...]] = []
    for j in range(steps):
        x = gi[steps - 1 - j if reverse else j]
        gh = h @ w_hh.T + b_hh
        if kind is CellKind.GRU:
            r = (x[:, :width] + gh[:, :width]).sigmoid()
            z = (x[:, width:2 * width] + gh[:, width:2 * width]).sigmoid()
            n = (x[:, 2 * width:] + r * gh[:, 2 * width:]).tanh()
            keep.append((h, r, z, n, gh[:, 2 * width:]))
            h = (h - n) * z + n
        elif kind is CellKind.LSTM:
            pre = x + gh
            i, f = pre[:, :width].sigmoid(), pre[:, width:2 * width].sigmoid()
            g, o = pre[:, 2 * width:3 * width].tanh(), pre[:, 3 * width:].sigmoid()
            c2 = f * c + i * g
            tc = c2.tanh()
            keep.append((h, c, i, f, g, o, tc))
            h, c = o * tc, c2
        else:
            h2 = (x + gh).tanh() if kind is CellKind.RNN_TANH else (x + gh).relu()
            keep.append((h, h2))
            h = h2
    return keep, [h]


def _step_back(kind: CellKind, k: tuple[Any, ...], dh: Tensor, dc: Any) -> tuple[Tensor, Tensor, Any, Any]:
    """recurrence._step_backward in tensor operations: (d gi, d gh, d c_prev, d h_prev not through gh)."""
    if kind is CellKind.GRU:
        h_prev, r, z, n, gh_n = k
        dn = dh * (1.0 - z) * (1.0 - n * n)
        dr = dn * gh_n * r * (1.0 - r)
        dz = dh * (h_prev - n) * z * (1.0 - z)
        return concatenate([dr, dz, dn], axis=1), concatenate([dr, dz, dn * r], axis=1), None, dh * z
    if kind is CellKind.LSTM:
        _, c_prev, i, f, g, o, tc = k
        dct = dc + dh * o * (1.0 - tc * tc)
        d = concatenate([dct * g * i * (1.0 - i), dct * c_prev * f * (1.0 - f), dct * i * (1.0 - g * g),
                         dh * tc * o * (1.0 - o)], axis=1)
        return d, d, dct * f, None
    h2 = k[1]
    d = dh * (1.0 - h2 * h2) if kind is CellKind.RNN_TANH else dh * _mask(_raw(h2) > 0, dh)
    return d, d, None, None


def _bptt_all(g: Tensor, gi: Tensor, h0: Any, w_hh: Any, b_hh: Any, c0: Any, kind: CellKind,
              reverse: bool) -> list[Any]:
    """The gradients of the five inputs (gi, h0, W_hh, b_hh, c0), as recurrence._scan_vjp computes them."""
    keep, _ = _replay(gi, h0, w_hh, b_hh, c0, kind, reverse)
    steps = len(keep)
    dgi: list[Tensor] = [g[0]] * steps
    dw: Any = None
    db: Any = None
    dh: Tensor = g[0] * 0.0
    dc: Any = g[steps] if kind is CellKind.LSTM else None
    for j in range(steps - 1, -1, -1):
        dh = dh + g[j]
        d_in, dgh, dc, direct = _step_back(kind, keep[j], dh, dc)
        dgi[steps - 1 - j if reverse else j] = d_in
        dw = dgh.T @ keep[j][0] if dw is None else dw + dgh.T @ keep[j][0]
        db = dgh.sum(axis=0) if db is None else db + dgh.sum(axis=0)
        dh = dgh @ w_hh if direct is None else dgh @ w_hh + direct
    return [stack(dgi, axis=0), dh, dw, db, dc]


def _bptt(g: Tensor, gi: Tensor, h0: Any, w_hh: Any, b_hh: Any, c0: Any, kind: CellKind, reverse: bool,
          which: int) -> Tensor:
    """The gradient of input ``which`` (0 gi, 1 h0, 2 W_hh, 3 b_hh, 4 c0). What else the pass recorded (the
    replayed steps no gradient reads, the other inputs' gradients) is unreachable once it returns: it is
    released at once, so a later backward leaves nothing of it pending."""
    out: Tensor = _bptt_all(g, gi, h0, w_hh, b_hh, c0, kind, reverse)[which]
    graph_of(g)._release_abandoned()
    return out


def _recurrence(which: int) -> Any:
    def dvjp(g: Tensor, ans: Any, gi: Tensor, h0: Any, w_hh: Any, b_hh: Any, c0: Any, kind: CellKind = CellKind.GRU,
             reverse: bool = False, aux: Any = None) -> Tensor:
        return _bptt(g, gi, h0, w_hh, b_hh, c0, kind, reverse, which)
    return dvjp


defvjp2("recurrence", *[_recurrence(i) for i in range(5)])
