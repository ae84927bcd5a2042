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
from ..ops import maximum, minimum, where
from ..tensor import Tensor
from .functional import _SQRT_2_PI, _avg_pool_fwd, _avg_pool_vjp

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

def _gx_fwd(xp: Any, g: Array, w: Array, stride: Any = (1, 1), padding: Any = (0, 0), x_shape: Any = ()) -> Array:
    return kernels.conv2d_grad_input(g, w, x_shape, stride, padding)


def _gw_fwd(xp: Any, g: Array, x: Array, stride: Any = (1, 1), padding: Any = (0, 0), w_shape: Any = ()) -> Array:
    return kernels.conv2d_grad_weight(g, x, w_shape, stride, padding)


# conv2d_grad_input(g, w): its vjp for g is conv2d(h, w), for w conv2d_grad_weight(g, h)
_GX = make_rule(
    "conv2d_grad_input", _gx_fwd,
    (lambda h, ans, g, w, stride=(1, 1), padding=(0, 0), x_shape=(), shapes=():
     kernels.conv2d_forward(h, w, stride, padding), "y"),
    (lambda h, ans, g, w, stride=(1, 1), padding=(0, 0), x_shape=(), shapes=():
     kernels.conv2d_grad_weight(g, h, shapes[1], stride, padding), "x"), shapes=True)
# conv2d_grad_weight(g, x): its vjp for g is conv2d(x, H), for x conv2d_grad_input(g, H)
_GW = make_rule(
    "conv2d_grad_weight", _gw_fwd,
    (lambda h, ans, g, x, stride=(1, 1), padding=(0, 0), w_shape=(), shapes=():
     kernels.conv2d_forward(x, h, stride, padding), "y"),
    (lambda h, ans, g, x, stride=(1, 1), padding=(0, 0), w_shape=(), shapes=():
     kernels.conv2d_grad_input(g, h, shapes[1], stride, padding), "x"), shapes=True)


def _conv(x: Any, w: Any, stride: Any, padding: Any) -> Tensor:
    t = x if isinstance(x, Tensor) else w
    return t.graph.apply("conv2d", (x, w), {"stride": stride, "padding": padding})


defvjp2("conv2d",
        lambda g, ans, x, w, stride=(1, 1), padding=(0, 0), shapes=():
        apply_rule(_GX, (g, w), {"stride": stride, "padding": padding, "x_shape": shapes[0]}),
        lambda g, ans, x, w, stride=(1, 1), padding=(0, 0), shapes=():
        apply_rule(_GW, (g, x), {"stride": stride, "padding": padding, "w_shape": shapes[1]}))
defvjp2("conv2d_grad_input",
        lambda h, ans, g, w, stride=(1, 1), padding=(0, 0), x_shape=(), shapes=(): _conv(h, w, stride, padding),
        lambda h, ans, g, w, stride=(1, 1), padding=(0, 0), x_shape=(), shapes=():
        apply_rule(_GW, (g, h), {"stride": stride, "padding": padding, "w_shape": shapes[1]}))
defvjp2("conv2d_grad_weight",
        lambda h, ans, g, x, stride=(1, 1), padding=(0, 0), w_shape=(), shapes=(): _conv(x, h, stride, padding),
        lambda h, ans, g, x, stride=(1, 1), padding=(0, 0), w_shape=(), shapes=():
        apply_rule(_GX, (g, h), {"stride": stride, "padding": padding, "x_shape": shapes[1]}))


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
