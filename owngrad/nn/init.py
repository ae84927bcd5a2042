"""Initialisations with ``torch.nn.init``'s names, formulas and fan conventions.

Each function overwrites a param (or a constant) in place and returns it. The write is an ordinary
in-place update: it needs the tensor's exclusive borrow, so it raises ``og.BorrowError`` at the
calling line while a pending node saved the tensor (and changes nothing). Random draws come from
``rng`` -- a ``numpy.random.Generator``, a seed, or None for the tensor's graph's stream ``g.rng``
(the numbers differ from torch's, the distributions are the same).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ..backend import to_device
from ..tensor import Tensor
from .utils import tensor_of

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_", "eye_", "xavier_uniform_",
           "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "trunc_normal_"]

Rng = int | np.random.Generator | None


def _gen(t: Tensor, rng: Rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return t.graph.rng if rng is None else np.random.default_rng(rng)


def _write(op: str, t: Any, values: Any) -> Tensor:
    """Copy ``values`` (a host array of ``t``'s shape) into ``t``, in place, under its exclusive borrow."""
    out = tensor_of(t, op, "tensor")
    if out.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating tensor, got {out.dtype}")
    host = np.broadcast_to(np.asarray(values), out.shape).astype(out.dtype)
    return out.copy_(to_device(host, out.device))  # drawn on the host, moved explicitly


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (torch's table): 1 for linear/conv/sigmoid, 5/3 for tanh,
    sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for leaky_relu (slope ``param``, default 0.01), 3/4 for selu."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fans(op: str, t: Tensor) -> tuple[int, int]:
    """torch's (fan_in, fan_out): dims 1 and 0 times the receptive field (the product of the rest)."""
    if t.ndim < 2:
        raise ValueError(f"{op}: fan in and fan out need a tensor with at least 2 dimensions, got shape {t.shape}")
    receptive = int(np.prod(t.shape[2:])) if t.ndim > 2 else 1
    return t.shape[1] * receptive, t.shape[0] * receptive


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, rng: Rng = None) -> Tensor:
    """Fill with U(a, b)."""
    t = tensor_of(tensor, "uniform_", "tensor")
    return _write("uniform_", t, _gen(t, rng).uniform(a, b, size=t.shape))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, rng: Rng = None) -> Tensor:
    """Fill with N(mean, std^2)."""
    t = tensor_of(tensor, "normal_", "tensor")
    return _write("normal_", t, _gen(t, rng).normal(mean, std, size=t.shape))


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  rng: Rng = None) -> Tensor:
    """Fill with N(mean, std^2) truncated to [a, b] (redrawn until inside)."""
    t = tensor_of(tensor, "trunc_normal_", "tensor")
    if not a < b:
        raise ValueError(f"trunc_normal_: a must be < b, got {a}, {b}")
    gen = _gen(t, rng)
    out = gen.normal(mean, std, size=t.shape)
    bad = (out < a) | (out > b)
    while bad.any():
        out[bad] = gen.normal(mean, std, size=int(bad.sum()))
        bad = (out < a) | (out > b)
    return _write("trunc_normal_", t, out)


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    return _write("constant_", tensor, val)


def zeros_(tensor: Tensor) -> Tensor:
    return _write("zeros_", tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    return _write("ones_", tensor, 1.0)


def eye_(tensor: Tensor) -> Tensor:
    """The identity matrix (a 2-d tensor)."""
    t = tensor_of(tensor, "eye_", "tensor")
    if t.ndim != 2:
        raise ValueError(f"eye_: expected a 2-d tensor, got shape {t.shape}")
    return _write("eye_", t, np.eye(t.shape[0], t.shape[1]))


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, rng: Rng = None) -> Tensor:
    """U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot)."""
    t = tensor_of(tensor, "xavier_uniform_", "tensor")
    fan_in, fan_out = _fans("xavier_uniform_", t)
    a = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return _write("xavier_uniform_", t, _gen(t, rng).uniform(-a, a, size=t.shape))


def xavier_normal_(tensor: Tensor, gain: float = 1.0, rng: Rng = None) -> Tensor:
    """N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))`` (Glorot)."""
    t = tensor_of(tensor, "xavier_normal_", "tensor")
    fan_in, fan_out = _fans("xavier_normal_", t)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return _write("xavier_normal_", t, _gen(t, rng).normal(0.0, std, size=t.shape))


def _kaiming_std(op: str, t: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{op}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(op, t)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"{op}: cannot initialise a tensor with a zero fan (shape {t.shape})")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     rng: Rng = None) -> Tensor:
    """U(-b, b) with ``b = gain * sqrt(3 / fan)`` (He; torch's defaults: leaky_relu with slope ``a``, fan_in)."""
    t = tensor_of(tensor, "kaiming_uniform_", "tensor")
    bound = math.sqrt(3.0) * _kaiming_std("kaiming_uniform_", t, a, mode, nonlinearity)
    return _write("kaiming_uniform_", t, _gen(t, rng).uniform(-bound, bound, size=t.shape))


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    rng: Rng = None) -> Tensor:
    """N(0, std^2) with ``std = gain / sqrt(fan)`` (He)."""
    t = tensor_of(tensor, "kaiming_normal_", "tensor")
    std = _kaiming_std("kaiming_normal_", t, a, mode, nonlinearity)
    return _write("kaiming_normal_", t, _gen(t, rng).normal(0.0, std, size=t.shape))


def orthogonal_(tensor: Tensor, gain: float = 1.0, rng: Rng = None) -> Tensor:
    """A (semi-)orthogonal matrix (the tensor seen as (shape[0], rest)) times ``gain``, from the QR
    decomposition of a Gaussian matrix with the signs of R's diagonal folded in (as torch)."""
    t = tensor_of(tensor, "orthogonal_", "tensor")
    if t.ndim < 2:
        raise ValueError(f"orthogonal_: expected a tensor with at least 2 dimensions, got shape {t.shape}")
    rows = t.shape[0]
    cols = t.size // rows if rows else 0
    flat = _gen(t, rng).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _write("orthogonal_", t, (q * gain).reshape(t.shape))
