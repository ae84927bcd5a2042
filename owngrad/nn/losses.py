"""Losses with PyTorch's names, keywords and reductions; ``reduction`` is checked and applied here only.

Every loss computes its elementwise (or per-sample) values, then :func:`reduce` applies
``"mean"``, ``"sum"`` or ``"none"`` (``kl_div`` adds ``"batchmean"``, as torch).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ..backend import Array, to_device, xp_of
from ..errors import ShapeError
from ..handle import array_of
from ..ops import where
from ..rules import defrule
from ..tensor import Tensor
from ..tracer import recorded, value_check
from .utils import tensor_of

__all__ = ["check_reduction", "reduce", "nll_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
           "binary_cross_entropy", "kl_div"]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(op: str, reduction: str, allowed: tuple[str, ...] = REDUCTIONS) -> None:
    """``reduction`` must be one of ``allowed`` (a ValueError naming the op otherwise)."""
    if reduction not in allowed:
        raise ValueError(f"{op}: reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")


def reduce(loss: Tensor, reduction: str) -> Tensor:
    """The mean or sum of ``loss``, or ``loss`` itself for ``"none"``."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _target(op: str, x: Tensor, target: Any, same_shape: bool = True) -> Any:
    """``target`` as an operand of ``x``'s graph (a tensor, or an array on its device) of ``x``'s shape."""
    t = target if isinstance(target, Tensor) else x.graph.constant(np.asarray(target, dtype=x.dtype)
                                                                    if not hasattr(target, "dtype") else target)
    if same_shape and t.shape != x.shape:
        raise ShapeError(f"{op}: input has shape {x.shape} but target has shape {t.shape} (they must match)")
    return t


def l1_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or summed, or elementwise) absolute error; shapes must match."""
    op = "l1_loss"
    x = tensor_of(input, op, "input")
    check_reduction(op, reduction)
    return reduce((x - _target(op, x, target)).abs(), reduction)


def smooth_l1_loss(input: Tensor, target: Any, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (torch's smooth L1)."""
    op = "smooth_l1_loss"
    x = tensor_of(input, op, "input")
    check_reduction(op, reduction)
    if not beta >= 0:
        raise ValueError(f"{op}: beta must be >= 0, got {beta}")
    d = x - _target(op, x, target)
    a = d.abs()
    if beta == 0:
        return reduce(a, reduction)
    return reduce(where(a < beta, d * d * (0.5 / beta), a - 0.5 * beta), reduction)


def huber_loss(input: Tensor, target: Any, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """``0.5 d^2`` where ``|d| <= delta``, else ``delta (|d| - 0.5 delta)`` (torch's Huber)."""
    op = "huber_loss"
    x = tensor_of(input, op, "input")
    check_reduction(op, reduction)
    if not delta > 0:
        raise ValueError(f"{op}: delta must be > 0, got {delta}")
    d = x - _target(op, x, target)
    a = d.abs()
    return reduce(where(a <= delta, d * d * 0.5, (a - 0.5 * delta) * delta), reduction)


def nll_loss(input: Tensor, target: Any, weight: Any = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` (N, C) at class indices ``target`` (N,), as
    torch: ``weight`` per class, samples whose target is ``ignore_index`` count for nothing, and ``"mean"``
    divides by the summed weights of the counted samples."""
    op = "nll_loss"
    x = tensor_of(input, op, "input")
    check_reduction(op, reduction)
    if x.ndim != 2:
        raise ShapeError(f"{op}: expected input of shape (N, C), got {x.shape}")
    n, c = x.shape
    y = array_of(target) if isinstance(target, Tensor) else target
    if not hasattr(y, "dtype"):
        y = np.asarray(y)
    if y.dtype.kind not in "iu" or tuple(y.shape) != (n,):
        raise ShapeError(f"{op}: target must be integer class indices of shape ({n},), got {y.dtype} "
                         f"{tuple(y.shape)}")
    recorded(x.graph, _check_targets, y, ignore_index, c)  # recorded: a captured step checks each replay's
    w = np.ones(c, dtype=x.dtype) if weight is None else array_of(weight) if isinstance(weight, Tensor) else \
        weight if hasattr(weight, "dtype") else np.asarray(weight, dtype=x.dtype)
    if tuple(w.shape) != (c,):
        raise ShapeError(f"{op}: weight must have shape ({c},), got {tuple(w.shape)}")
    # recorded: the targets may be a captured step's input
    safe, ws, total = recorded(x.graph, _nll_weights, y, ignore_index, w, x.dtype, x.device)
    picked: Tensor = -x[np.arange(n), safe] * ws
    if reduction == "mean":
        mean: Tensor = picked.sum() / total
        return mean
    return reduce(picked, reduction)


@value_check
def _check_targets(y: Array, ignore_index: int, c: int) -> None:
    keep = y != ignore_index
    if keep.any() and (y[keep].min() < 0 or y[keep].max() >= c):
        bad = int(y[keep].min()) if y[keep].min() < 0 else int(y[keep].max())
        raise ValueError(f"nll_loss: target {bad} is out of range for {c} classes")


def _nll_weights(y: Array, ignore_index: int, w: Array, dtype: Any, device: str) -> tuple[Array, Array, Array]:
    """The class index to read per sample (0 where ignored, on the host), its weight (0 where ignored) and
    their sum (both on ``device``)."""
    y = np.asarray(to_device(y, "cpu"))
    keep = y != ignore_index
    safe = np.where(keep, y, 0)
    ws = (np.asarray(to_device(w, "cpu"), dtype=dtype)[safe] * keep).astype(dtype)
    return safe, to_device(ws, device), to_device(np.asarray(ws.sum()), device)


def _bce_fwd(xp: Any, p: Array, t: Array) -> Array:
    with np.errstate(divide="ignore") if xp is np else contextlib.nullcontext():
        return -(t * xp.maximum(xp.log(p), -100) + (1 - t) * xp.maximum(xp.log1p(-p), -100))


def _bce_vjp_p(g: Array, ans: Array, p: Array, t: Array) -> Array:
    xp = xp_of(p)
    return g * (p - t) / xp.maximum((1 - p) * p, 1e-12)  # as torch: the denominator clamped


def _bce_vjp_t(g: Array, ans: Array, p: Array, t: Array) -> Array:
    xp = xp_of(p)
    with np.errstate(divide="ignore") if xp is np else contextlib.nullcontext():
        return g * (xp.maximum(xp.log1p(-p), -100) - xp.maximum(xp.log(p), -100))


defrule("binary_cross_entropy", _bce_fwd, (_bce_vjp_p, "xy"), (_bce_vjp_t, "x"))


@value_check
def _check_probabilities(pv: Array) -> None:
    if float(pv.min()) < 0 or float(pv.max()) > 1:
        raise ValueError("binary_cross_entropy: input values must be probabilities in [0, 1]")


def binary_cross_entropy(input: Tensor, target: Any, weight: Any = None, reduction: str = "mean") -> Tensor:
    """``-[t log p + (1 - t) log(1 - p)]`` of probabilities ``input``, each log clamped at -100 as torch."""
    op = "binary_cross_entropy"
    p = tensor_of(input, op, "input")
    check_reduction(op, reduction)
    t = _target(op, p, target)
    if p.size:  # recorded: a captured step checks each replay's values
        recorded(p.graph, _check_probabilities, array_of(p))
    loss = p.graph.apply(op, (p, t))
    if weight is not None:
        loss = loss * weight
    return reduce(loss, reduction)


def kl_div(input: Tensor, target: Any, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """``target * (log target - input)`` with ``input`` log-probabilities (torch's ``kl_div``; 0 where the
    target is 0); ``log_target=True`` takes the target as log-probabilities. ``"batchmean"`` divides the
    sum by the batch size (``input.shape[0]``), as torch recommends; the default is torch's ``"mean"``
    (over every element)."""
    op = "kl_div"
    x = tensor_of(input, op, "input")
    check_reduction(op, reduction, ("batchmean", *REDUCTIONS))
    t = _target(op, x, target)
    if log_target:
        pointwise = t.exp() * (t - x)
    else:
        safe = where(t > 0, t, 1.0)  # xlogy: 0 * log 0 = 0 (the mask is an op: it follows each call's target)
        pointwise = t * (safe.log() - x)
    if reduction == "batchmean":
        out: Tensor = pointwise.sum() / float(x.shape[0] if x.ndim else 1)
        return out
    return reduce(pointwise, reduction)
