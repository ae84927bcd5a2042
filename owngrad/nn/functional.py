"""Differentiable functions for neural networks: losses, dropout, convolution, pooling, embedding.

``conv2d`` and ``max_pool2d`` are rules of their own (registered here with :func:`defrule`), the
rest are composed of existing ops. Every forward works on the array module it is given (``xp``),
so the same code runs on numpy and cupy. What each rule saves -- and so borrows -- is the least
its gradients need: ``conv2d`` saves the weight for the input's gradient and the input for the
weight's gradient (only the ones that are needed), ``max_pool2d`` saves nothing but the argmax
positions (internal, never borrowed).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..backend import Array, scatter_add, to_device, xp_of
from ..errors import ShapeError
from ..handle import array_of
from ..rules import defrule
from ..tensor import Tensor
from .utils import pair, tensor_of

__all__ = ["cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "dropout", "conv2d", "max_pool2d", "embedding", "linear"]


# --- helpers -----------------------------------------------------------------------------

def _windows(xp: Any, x: Array, kh: int, kw: int, sh: int, sw: int) -> Array:
    """A zero-copy (N, C, Ho, Wo, kh, kw) view of the sliding windows of an NCHW array."""
    n, c, h, w = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    s = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, shape=(n, c, ho, wo, kh, kw), strides=(s[0], s[1], s[2] * sh, s[3] * sw, s[2], s[3]))


def _pad(xp: Any, x: Array, ph: int, pw: int) -> Array:
    if ph == 0 and pw == 0:
        return xp.ascontiguousarray(x)
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _index_array(t: Tensor, labels: Any, op: str, what: str) -> Array:
    """``labels`` (a Tensor, array or list) as an integer array on ``t``'s device."""
    if isinstance(labels, Tensor):
        if labels.graph is not t.graph:
            from ..errors import GraphError

            raise GraphError(f"{op}: {what} belongs to another graph")
        if labels.requires_grad:
            raise TypeError(f"{op}: {what} must be integer class indices, got a tensor that needs a gradient")
        arr = array_of(labels)
    else:
        arr = labels
        if not hasattr(arr, "dtype"):
            arr = np.asarray(arr)
            if arr.dtype.kind == "f" and arr.size == 0:
                arr = arr.astype(np.int64)
        arr = to_device(arr, t.device)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{op}: {what} must have an integer dtype (class indices), got {arr.dtype}")
    return arr


# --- losses --------------------------------------------------------------------------------

def cross_entropy(logits: Tensor, labels: Any, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy of ``logits`` (N, C), as ``torch.nn.functional.cross_entropy``, against
    either integer class indices ``labels`` (N,) in ``[0, C)`` (or one sample: logits (C,) and a
    0-d label) or class probabilities: a float ``labels`` of the same shape as ``logits`` (soft
    targets; rows need not be one-hot). ``reduction`` is ``"mean"`` (over samples), ``"sum"`` or
    ``"none"``; ``label_smoothing`` in [0, 1] mixes the target with the uniform distribution as torch.
    With class indices and no smoothing it is one stable rule that saves only the labels and its own
    log-softmax."""
    op = "cross_entropy"
    logits = tensor_of(logits, op, "logits")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    if logits.dtype.kind != "f":
        raise TypeError(f"{op}: logits must be floating point, got {logits.dtype}")
    if logits.ndim not in (1, 2):
        raise ShapeError(f"{op}: expected logits of shape (N, C) or (C,), got {logits.shape}")
    c = logits.shape[-1]
    if _is_float_target(labels):
        return _soft_cross_entropy(logits, labels, reduction, float(label_smoothing))
    y = _index_array(logits, labels, op, "labels")
    batched = logits.ndim == 2 and y.ndim == 1 and y.shape[0] == logits.shape[0]
    if not batched and not (logits.ndim == 1 and y.ndim == 0):
        raise ShapeError(f"{op}: expected logits of shape (N, C) and labels of shape (N,) (or (C,) and ()), or "
                         f"class probabilities of the logits' shape, got logits {logits.shape} and labels "
                         f"{tuple(y.shape)}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= c):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise ValueError(f"{op}: label {bad} is out of range for {c} classes (labels must be in [0, {c}))")
    nll = logits.graph.apply("cross_entropy", (logits, y), {"reduction": reduction})
    if not label_smoothing:
        return nll
    # torch: (1 - eps) * nll + eps * mean over classes of -log_softmax
    smooth = -logits.log_softmax(axis=-1).mean(axis=-1)
    if reduction == "mean":
        smooth = smooth.mean()
    elif reduction == "sum":
        smooth = smooth.sum()
    out: Tensor = nll * (1.0 - label_smoothing) + smooth * label_smoothing
    return out


def _is_float_target(labels: Any) -> bool:
    if isinstance(labels, Tensor):
        return bool(labels.dtype.kind == "f")
    dt = getattr(labels, "dtype", None)
    if dt is None:
        arr = np.asarray(labels)
        return bool(arr.dtype.kind == "f" and arr.ndim >= 1 and arr.size > 0)
    return bool(dt.kind == "f")


def _soft_cross_entropy(logits: Tensor, target: Any, reduction: str, eps: float) -> Tensor:
    op = "cross_entropy"
    if isinstance(target, Tensor):
        if target.graph is not logits.graph:
            from ..errors import GraphError

            raise GraphError(f"{op}: labels belong to another graph")
        t: Any = target
    else:
        t = logits.graph.constant(to_device(np.asarray(target) if not hasattr(target, "dtype") else target,
                                            logits.device))
    if tuple(t.shape) != logits.shape:
        raise TypeError(f"{op}: labels must have an integer dtype (class indices), got {t.dtype} of shape "
                        f"{tuple(t.shape)}; float labels are read as class probabilities only when they have "
                        f"the logits' shape {logits.shape}")
    if eps:
        t = t * (1.0 - eps) + eps / logits.shape[-1]
    loss: Tensor = -(t * logits.log_softmax(axis=-1)).sum(axis=-1)
    if reduction == "mean":
        return loss.mean() if logits.ndim == 2 else loss
    if reduction == "sum":
        return loss.sum()
    return loss


def mse_loss(pred: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or summed, or elementwise with ``"none"``) squared error; shapes must match exactly."""
    op = "mse_loss"
    pred = tensor_of(pred, op, "pred")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    tshape = tuple(getattr(target if isinstance(target, Tensor) else np.asarray(target), "shape", ()))
    if tshape != pred.shape:
        raise ShapeError(f"{op}: pred has shape {pred.shape} but target has shape {tshape} (they must match)")
    d: Tensor = pred - target
    sq = d * d
    if reduction == "mean":
        return sq.mean()
    if reduction == "sum":
        return sq.sum()
    return sq


def binary_cross_entropy_with_logits(logits: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """``-[t log sigmoid(z) + (1-t) log(1-sigmoid(z))]`` computed stably as
    ``max(z, 0) - z*t + log(1 + exp(-|z|))`` (as torch); ``target`` is a number or broadcasts to ``logits``."""
    op = "binary_cross_entropy_with_logits"
    z = tensor_of(logits, op, "logits")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    from ..ops import maximum

    loss: Tensor = maximum(z, 0.0) - z * target + ((-z.abs()).exp() + 1.0).log()
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def dropout(x: Tensor, p: float = 0.5, training: bool = True, rng: Any = None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)`` (inverted
    dropout, as torch); the identity when ``training`` is False or ``p`` is 0. ``rng`` is a
    ``numpy.random.Generator``, a seed, or None for the graph's own stream (``g.rng``). The mask is
    a constant: the product saves only it."""
    x = tensor_of(x, "dropout")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    gen = rng if isinstance(rng, np.random.Generator) else x.graph.rng if rng is None else np.random.default_rng(rng)
    if p == 1.0:
        return x * 0.0
    keep = gen.random(x.shape) >= p
    mask = to_device((keep / (1.0 - p)).astype(x.dtype), x.device)
    out: Tensor = x * mask
    return out


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with torch's weight layout (out_features, in_features)."""
    out = x @ weight.T
    return out if bias is None else out + bias


# --- conv2d --------------------------------------------------------------------------------

def _conv2d_fwd(xp: Any, x: Array, w: Array, stride: tuple[int, int] = (1, 1),
                padding: tuple[int, int] = (0, 0)) -> Array:
    kh, kw = w.shape[2], w.shape[3]
    cols = _windows(xp, _pad(xp, x, *padding), kh, kw, *stride)       # (N, C, Ho, Wo, kh, kw)
    out = xp.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3]))          # (N, Ho, Wo, O)
    return out.transpose(0, 3, 1, 2)


def _conv2d_vjp_x(g: Array, ans: Array, x: Array, w: Array, stride: tuple[int, int] = (1, 1),
                  padding: tuple[int, int] = (0, 0), shapes: Any = ()) -> Array:
    xp = xp_of(g)
    n, c, h, wd = shapes[0]
    kh, kw = w.shape[2], w.shape[3]
    sh, sw = stride
    ph, pw = padding
    ho, wo = g.shape[2], g.shape[3]
    gcols = xp.tensordot(g, w, axes=([1], [0]))                        # (N, Ho, Wo, C, kh, kw)
    gx = xp.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=g.dtype)
    for a in range(kh):
        for b in range(kw):
            gx[:, :, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw] += gcols[:, :, :, :, a, b].transpose(0, 3, 1, 2)
    return gx[:, :, ph:ph + h, pw:pw + wd]


def _conv2d_vjp_w(g: Array, ans: Array, x: Array, w: Array, stride: tuple[int, int] = (1, 1),
                  padding: tuple[int, int] = (0, 0), shapes: Any = ()) -> Array:
    xp = xp_of(g)
    kh, kw = shapes[1][2], shapes[1][3]
    cols = _windows(xp, _pad(xp, x, *padding), kh, kw, *stride)
    return xp.tensordot(g, cols, axes=([0, 2, 3], [0, 2, 3]))          # (O, C, kh, kw)


defrule("conv2d", _conv2d_fwd, (_conv2d_vjp_x, "y"), (_conv2d_vjp_w, "x"), shapes=True)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0) -> Tensor:
    """2-d cross-correlation, NCHW, as ``torch.nn.functional.conv2d`` (no dilation, no groups):
    ``x`` (N, C, H, W), ``weight`` (O, C, kh, kw), ``bias`` (O,) or None; ``stride`` and
    ``padding`` (zeros) are ints or pairs. Computed by im2col on a strided view of the input."""
    op = "conv2d"
    x = tensor_of(x, op)
    weight = tensor_of(weight, op, "weight")
    st = pair(stride, "stride", op, 1)
    pd = pair(padding, "padding", op, 0)
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ShapeError(f"{op}: expected x (N, C, H, W) and weight (O, C, kh, kw) with the same C, got x "
                         f"{x.shape} and weight {weight.shape}")
    if x.shape[2] + 2 * pd[0] < weight.shape[2] or x.shape[3] + 2 * pd[1] < weight.shape[3]:
        raise ShapeError(f"{op}: the kernel {weight.shape[2:]} is larger than the padded input "
                         f"({x.shape[2] + 2 * pd[0]}, {x.shape[3] + 2 * pd[1]}) (x {x.shape}, padding {pd})")
    if bias is not None:
        bias = tensor_of(bias, op, "bias")
        if bias.shape != (weight.shape[0],):
            raise ShapeError(f"{op}: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    out = x.graph.apply(op, (x, weight), {"stride": st, "padding": pd})
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


# --- max_pool2d ----------------------------------------------------------------------------

def _max_pool_fwd(xp: Any, x: Array, kernel: tuple[int, int] = (2, 2),
                  stride: tuple[int, int] = (2, 2)) -> tuple[Array, Array]:
    win = _windows(xp, xp.ascontiguousarray(x), *kernel, *stride)
    flat = win.reshape(win.shape[:4] + (-1,))
    arg = flat.argmax(axis=-1)                      # first maximum, as torch
    return xp.take_along_axis(flat, arg[..., None], axis=-1)[..., 0], arg


def _max_pool_vjp(g: Array, ans: Array, x: Array, kernel: tuple[int, int] = (2, 2),
                  stride: tuple[int, int] = (2, 2), shapes: Any = (), aux: Array = None) -> Array:
    xp = xp_of(g)
    n, c, ho, wo = g.shape
    a, b = aux // kernel[1], aux % kernel[1]
    rows = xp.arange(ho).reshape(1, 1, ho, 1) * stride[0] + a
    cols = xp.arange(wo).reshape(1, 1, 1, wo) * stride[1] + b
    key = (xp.arange(n).reshape(n, 1, 1, 1), xp.arange(c).reshape(1, c, 1, 1), rows, cols)
    gx = xp.zeros(shapes[0], dtype=g.dtype)
    scatter_add(gx, key, g)
    return gx


defrule("max_pool2d", _max_pool_fwd, (_max_pool_vjp, ""), aux=True, shapes=True)


def max_pool2d(x: Tensor, kernel_size: Any, stride: Any = None) -> Tensor:
    """Max over ``kernel_size`` windows of an NCHW tensor, as ``torch.nn.functional.max_pool2d``
    (``stride`` defaults to the kernel size; no padding; a window's gradient goes to its first
    maximum). Saves only the argmax positions, so it borrows nothing."""
    op = "max_pool2d"
    x = tensor_of(x, op)
    k = pair(kernel_size, "kernel_size", op, 1)
    s = k if stride is None else pair(stride, "stride", op, 1)
    if x.ndim != 4 or x.shape[2] < k[0] or x.shape[3] < k[1]:
        raise ShapeError(f"{op}: expected an (N, C, H, W) input at least as large as the kernel {k}, got {x.shape}")
    return x.graph.apply(op, (x,), {"kernel": k, "stride": s})


# --- embedding -----------------------------------------------------------------------------

def embedding(weight: Tensor, indices: Any) -> Tensor:
    """Rows ``weight[indices]`` for integer ``indices`` of any shape (result: indices.shape + (dim,)).
    It is integer-array indexing: a gather whose gradient scatter-adds (repeated indices add up)."""
    op = "embedding"
    weight = tensor_of(weight, op, "weight")
    if weight.ndim != 2:
        raise ShapeError(f"{op}: weight must be 2-d (num_embeddings, dim), got shape {weight.shape}")
    idx = _index_array(weight, indices, op, "indices")
    n = weight.shape[0]
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
        raise IndexError(f"{op}: index {bad} is out of range for {n} embeddings (indices must be in [0, {n}))")
    return weight[idx]
