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

from .. import kernels
from ..backend import Array, to_device, xp_of
from ..errors import ShapeError
from ..handle import array_of
from ..rules import defrule
from ..tensor import Tensor
from ..traced import unwrap
from ..tracer import path_check, pure, recorded, value_check
from .losses import binary_cross_entropy, check_reduction, huber_loss, kl_div, l1_loss, nll_loss, reduce, smooth_l1_loss
from .utils import pair, tensor_of

__all__ = ["cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "dropout", "conv2d", "max_pool2d",
           "embedding", "linear", "nll_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
           "kl_div", "gelu", "softplus", "logsigmoid", "silu", "leaky_relu", "elu", "cosine_similarity", "normalize",
           "one_hot", "scaled_dot_product_attention", "avg_pool2d", "layer_norm"]


# --- helpers -----------------------------------------------------------------------------

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

def cross_entropy(logits: Tensor, labels: Any, reduction: str = "mean", label_smoothing: float = 0.0,
                  weight: Any = None, ignore_index: int = -100) -> Tensor:
    """Softmax cross-entropy of ``logits`` (N, C), as ``torch.nn.functional.cross_entropy``, against
    either integer class indices ``labels`` (N,) in ``[0, C)`` (or one sample: logits (C,) and a
    0-d label) or class probabilities: a float ``labels`` of the same shape as ``logits`` (soft
    targets; rows need not be one-hot). ``reduction`` is ``"mean"`` (over samples), ``"sum"`` or
    ``"none"``; ``label_smoothing`` in [0, 1] mixes the target with the uniform distribution as torch.
    With class indices, ``weight`` (C,) weighs each class and samples labelled ``ignore_index`` count for
    nothing, as torch (``"mean"`` divides by the summed weights of the counted samples).
    With class indices, no weight and no smoothing it is one stable rule that saves only the labels and
    its own log-softmax."""
    op = "cross_entropy"
    logits = tensor_of(logits, op, "logits")
    check_reduction(op, reduction)
    if type(label_smoothing) is not float and (isinstance(label_smoothing, bool)  # (a float: no abc check)
                                                or not isinstance(label_smoothing, numbers.Real)) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    if logits.dtype.kind != "f":
        raise TypeError(f"{op}: logits must be floating point, got {logits.dtype}")
    if logits.ndim not in (1, 2):
        raise ShapeError(f"{op}: expected logits of shape (N, C) or (C,), got {logits.shape}")
    c = logits.shape[-1]
    if _is_float_target(labels):
        return _soft_cross_entropy(logits, labels, reduction, float(label_smoothing), weight)
    y = _index_array(logits, labels, op, "labels")
    # which path is a decision on the labels' values: a captured step makes it on the capture-time labels, and
    # a replay whose labels decide otherwise gets (or captures) another plan (_labels_with[out]_ignore_index)
    if weight is not None or _holds(unwrap(y), ignore_index):
        if weight is None and y.size:  # the path was decided by the labels' values
            recorded(logits.graph, _labels_with_ignore_index, y, ignore_index)
        return _weighted_cross_entropy(logits, y, weight, ignore_index, reduction, float(label_smoothing))
    batched = logits.ndim == 2 and y.ndim == 1 and y.shape[0] == logits.shape[0]
    if not batched and not (logits.ndim == 1 and y.ndim == 0):
        raise ShapeError(f"{op}: expected logits of shape (N, C) and labels of shape (N,) (or (C,) and ()), or "
                         f"class probabilities of the logits' shape, got logits {logits.shape} and labels "
                         f"{tuple(y.shape)}")
    if y.size:  # recorded: a captured step checks each replay's labels
        recorded(logits.graph, _labels_without_ignore_index, y, ignore_index)
        recorded(logits.graph, _check_labels, y, c)
    nll = logits.graph.apply("cross_entropy", (logits, y), {"reduction": reduction})
    if not label_smoothing:
        return nll
    # torch: (1 - eps) * nll + eps * mean over classes of -log_softmax
    smooth = reduce(-logits.log_softmax(axis=-1).mean(axis=-1), reduction)
    out: Tensor = nll * (1.0 - label_smoothing) + smooth * label_smoothing
    return out


def _weighted_cross_entropy(logits: Tensor, y: Array, weight: Any, ignore_index: int, reduction: str,
                            eps: float) -> Tensor:
    """Cross-entropy with class weights or ignored samples: torch's ``nll_loss(log_softmax)`` plus, with
    label smoothing, its weighted smoothing term (normalised like the nll part)."""
    single = logits.ndim == 1
    # class indices are read on the host (as nll_loss does); recorded: the labels may be a captured step's input
    y = recorded(logits.graph, _host_labels, y)
    if single:
        logits = logits.reshape(1, -1)
    c = logits.shape[-1]
    logp = logits.log_softmax(axis=-1)
    loss = nll_loss(logp, y, weight, ignore_index, reduction if not single or reduction != "mean" else "sum")
    if eps:
        w = array_of(weight) if isinstance(weight, Tensor) else weight
        w, keep, total = recorded(logits.graph, _smoothing_weights, y, w, ignore_index, c, logits.dtype,
                                  logits.device)
        smooth = -(logp * w).sum(axis=-1) * keep
        if reduction == "mean" and not single:
            smooth = smooth.sum() / total
        else:
            smooth = reduce(smooth, reduction if reduction != "mean" else "sum")
        loss = loss * (1.0 - eps) + smooth * (eps / c)
    return loss.reshape(()) if single and reduction == "none" else loss


@pure
def _host_labels(y: Array) -> Array:
    """Class indices as a flat host array."""
    return np.asarray(to_device(y, "cpu")).reshape(-1)


def _smoothing_weights(y: Array, weight: Array | None, ignore_index: int, c: int, dtype: Any,
                       device: str) -> tuple[Array, Array, Array]:
    """For label smoothing with class weights or ignored samples: the class weights, which samples count
    (as ``dtype``) and the summed weights of the counted samples' classes (the "mean" divisor)."""
    w = np.ones(c, dtype=dtype) if weight is None else np.asarray(to_device(weight, "cpu"), dtype=dtype)
    keep = y != ignore_index
    return (to_device(w, device), to_device(keep.astype(dtype), device),
            to_device(np.asarray(w[y[keep]].sum(), dtype=dtype), device))


_PATH_HELP = "filter those samples before the step, or pass fallback=True to g.capture"


def _holds(y: Array, ignore_index: int) -> bool:
    """Whether the labels hold ``ignore_index`` (a negative one, torch's -100, is ruled out by the minimum)."""
    if ignore_index < 0 and type(y) is np.ndarray and y.size and int(np.minimum.reduce(y, axis=None)) > ignore_index:
        return False
    return bool((y == ignore_index).any())


@path_check(_PATH_HELP)
def _labels_without_ignore_index(y: Array, ignore_index: int) -> str | None:
    """Eagerly, labels holding ``ignore_index`` take the weighted path: not the path of a plan captured
    without such labels."""
    if _holds(y, ignore_index):
        return (f"cross_entropy's labels containing ignore_index={ignore_index} (the plan was captured on labels "
                f"without it, and eagerly such labels take another path)")
    return None


@path_check(_PATH_HELP)
def _labels_with_ignore_index(y: Array, ignore_index: int) -> str | None:
    """Eagerly, labels without ``ignore_index`` (and no class weights) take the fused path: not the path of a
    plan captured on labels holding it."""
    if not _holds(y, ignore_index):
        return (f"cross_entropy's labels without ignore_index={ignore_index} (the plan was captured on labels "
                f"holding it, and eagerly such labels take another path)")
    return None


@value_check
def _check_labels(y: Array, c: int) -> None:
    if type(y) is np.ndarray:  # (y.min() and y.max() without their Python wrappers)
        lo, hi = int(np.minimum.reduce(y, axis=None)), int(np.maximum.reduce(y, axis=None))
    else:
        lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= c:
        bad = lo if lo < 0 else hi
        raise ValueError(f"cross_entropy: label {bad} is out of range for {c} classes (labels must be in [0, {c}))")


@value_check
def _check_indices(idx: Array, n: int) -> None:
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise IndexError(f"embedding: index {bad} is out of range for {n} embeddings (indices must be in [0, {n}))")


def _is_float_target(labels: Any) -> bool:
    if isinstance(labels, Tensor):
        return bool(labels.dtype.kind == "f")
    dt = getattr(labels, "dtype", None)
    if dt is None:
        arr = np.asarray(labels)
        return bool(arr.dtype.kind == "f" and arr.ndim >= 1 and arr.size > 0)
    return bool(dt.kind == "f")


def _soft_cross_entropy(logits: Tensor, target: Any, reduction: str, eps: float, weight: Any = None) -> Tensor:
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
    if weight is not None:  # per class, as torch (and "mean" stays the mean over samples)
        t = t * _float_operand(logits, weight)
    loss: Tensor = -(t * logits.log_softmax(axis=-1)).sum(axis=-1)
    return reduce(loss, reduction if logits.ndim == 2 or reduction != "mean" else "none")


def mse_loss(pred: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or summed, or elementwise with ``"none"``) squared error; shapes must match exactly."""
    op = "mse_loss"
    pred = tensor_of(pred, op, "pred")
    check_reduction(op, reduction)
    tshape = tuple(getattr(target if isinstance(target, Tensor) or hasattr(target, "shape") else np.asarray(target),
                           "shape", ()))
    if tshape != pred.shape:
        raise ShapeError(f"{op}: pred has shape {pred.shape} but target has shape {tshape} (they must match)")
    d: Tensor = pred - target
    return reduce(d * d, reduction)


def binary_cross_entropy_with_logits(logits: Tensor, target: Any, reduction: str = "mean", weight: Any = None,
                                     pos_weight: Any = None) -> Tensor:
    """``-[t log sigmoid(z) + (1-t) log(1-sigmoid(z))]`` computed stably as
    ``max(z, 0) - z*t + log(1 + exp(-|z|))`` (as torch); ``target`` is a number or broadcasts to ``logits``.
    ``weight`` multiplies each element's loss, ``pos_weight`` (per class, the last axis) the positive term:
    ``(1-t) z + (1 + (pos_weight-1) t) (log(1 + exp(-|z|)) + max(-z, 0))``, torch's formula."""
    op = "binary_cross_entropy_with_logits"
    z = tensor_of(logits, op, "logits")
    check_reduction(op, reduction)
    from ..ops import maximum

    soft = ((-z.abs()).exp() + 1.0).log()
    if pos_weight is None:
        loss: Tensor = maximum(z, 0.0) - z * target + soft
    else:
        t, pw = (_float_operand(z, v) for v in (target, pos_weight))
        loss = z * (1.0 - t) + ((pw - 1.0) * t + 1.0) * (soft + maximum(-z, 0.0))
    if weight is not None:
        loss = loss * _float_operand(z, weight)
    return reduce(loss, reduction)


def _float_operand(like: Tensor, v: Any) -> Any:
    """``v`` as an operand of ``like``'s graph: a tensor as it is, a number or array as a constant of
    ``like``'s dtype on its device."""
    if isinstance(v, Tensor):
        return v
    if hasattr(v, "shape") and hasattr(v, "dtype"):  # an array (a captured step's input too): converted recorded
        t = like.graph.constant(v)
        return t if t.dtype == like.dtype else t.astype(like.dtype)
    return like.graph.constant(np.asarray(v, dtype=like.dtype))


def dropout(x: Tensor, p: float = 0.5, training: bool = True, rng: Any = None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)`` (inverted
    dropout, as torch); the identity when ``training`` is False or ``p`` is 0. ``rng`` is a
    ``numpy.random.Generator``, a seed, or None for the graph's own stream (``g.rng``). The node keeps
    only the mask (its own array): it borrows nothing."""
    x = tensor_of(x, "dropout")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    if isinstance(rng, np.random.Generator) or rng is None:  # a captured step draws afresh at each replay
        mask = recorded(x.graph, _dropout_mask, x.graph.rng if rng is None else rng, x.shape, p, x.dtype, x.device)
    else:  # a seed: a fresh generator at each call, eager or replayed
        mask = recorded(x.graph, _seeded_dropout_mask, rng, x.shape, p, x.dtype, x.device)
    return x.graph.apply("dropout", (x, mask))


# x * mask, the mask kept as the node's own (aux) array: it is made here and nobody else holds it, so
# the node neither borrows nor copies anything
defrule("dropout", lambda xp, x, mask: (x * mask, mask), (lambda g, ans, x, mask, aux=None: g * aux, ""), (None, ""),
        aux=True)


def _seeded_dropout_mask(seed: Any, shape: tuple[int, ...], p: float, dtype: Any, device: str) -> Array:
    return _dropout_mask(np.random.default_rng(seed), shape, p, dtype, device)


def _dropout_mask(gen: np.random.Generator, shape: tuple[int, ...], p: float, dtype: Any, device: str) -> Array:
    mask = (gen.random(shape) >= p).astype(dtype)  # the scale multiplies in the mask's own dtype: no float64 copy
    mask *= mask.dtype.type(1.0 / (1.0 - p))
    return to_device(mask, device)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with torch's weight layout (out_features, in_features). One rule: the
    weight's gradient comes out in the weight's own layout, and an input with leading batch axes is
    one GEMM each way."""
    if not (isinstance(x, Tensor) and isinstance(weight, Tensor) and weight.ndim == 2 and x.ndim >= 1
            and (bias is None or isinstance(bias, Tensor) and bias.shape == (weight.shape[0],))):
        out = x @ weight.T  # the general case, with the operators' own checks and messages
        return out if bias is None else out + bias
    if x.shape[-1] != weight.shape[1]:
        raise ShapeError(f"linear: x has shape {x.shape} but weight has shape {weight.shape} (x's last axis must "
                         f"equal the weight's second)")
    return x.graph.apply("linear", (x, weight) if bias is None else (x, weight, bias))


def _linear_fwd(xp: Any, x: Array, w: Array, b: Array | None = None) -> Array:
    out = kernels.matmul(x, w.T)
    return out if b is None else kernels.add_bias(out, b)


defrule("linear", _linear_fwd, (lambda g, ans, x, w, b=None: kernels.matmul(g, w), "y"),
        (lambda g, ans, x, w, b=None: kernels.matmul_grad_y(g, x), "x"),
        (lambda g, ans, x, w, b=None: kernels.rows(g).sum(axis=0), ""))


# --- conv2d --------------------------------------------------------------------------------

Pair = tuple[int, int]


def _conv2d_fwd(xp: Any, x: Array, w: Array, b: Array | None = None, stride: Pair = (1, 1), padding: Pair = (0, 0),
                dilation: Pair = (1, 1)) -> Array:
    out = kernels.conv2d_forward(x, w, stride, padding, dilation)
    return out if b is None else kernels.add_bias(out, b.reshape(-1, 1, 1))


def _conv2d_vjp_x(g: Array, ans: Array, x: Array, w: Array, b: Array | None = None, stride: Pair = (1, 1),
                  padding: Pair = (0, 0), dilation: Pair = (1, 1), shapes: Any = ()) -> Array:
    return kernels.conv2d_grad_input(g, w, shapes[0], stride, padding, dilation)


def _conv2d_vjp_w(g: Array, ans: Array, x: Array, w: Array, b: Array | None = None, stride: Pair = (1, 1),
                  padding: Pair = (0, 0), dilation: Pair = (1, 1), shapes: Any = ()) -> Array:
    return kernels.conv2d_grad_weight(g, x, shapes[1], stride, padding, dilation)


defrule("conv2d", _conv2d_fwd, (_conv2d_vjp_x, "y"), (_conv2d_vjp_w, "x"),
        (lambda g, ans, x, w, b=None, **kw: g.sum(axis=(0, 2, 3)), ""), shapes=True)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1) -> Tensor:
    """2-d cross-correlation, NCHW, as ``torch.nn.functional.conv2d`` (no groups): ``x`` (N, C, H, W),
    ``weight`` (O, C, kh, kw), ``bias`` (O,) or None; ``stride``, ``padding`` (zeros) and ``dilation``
    (the spacing of the kernel's taps) are ints or pairs. One rule (the bias included): im2col and a
    batched GEMM (``owngrad.kernels``)."""
    op = "conv2d"
    x = tensor_of(x, op)
    weight = tensor_of(weight, op, "weight")
    st = pair(stride, "stride", op, 1)
    pd = pair(padding, "padding", op, 0)
    dl = pair(dilation, "dilation", op, 1)
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ShapeError(f"{op}: expected x (N, C, H, W) and weight (O, C, kh, kw) with the same C, got x "
                         f"{x.shape} and weight {weight.shape}")
    span = tuple(d * (k - 1) + 1 for d, k in zip(dl, weight.shape[2:]))
    if x.shape[2] + 2 * pd[0] < span[0] or x.shape[3] + 2 * pd[1] < span[1]:
        spread = f" spread by dilation {dl} to {span}" if dl != (1, 1) else ""
        raise ShapeError(f"{op}: the kernel {weight.shape[2:]}{spread} is larger than the padded input "
                         f"({x.shape[2] + 2 * pd[0]}, {x.shape[3] + 2 * pd[1]}) (x {x.shape}, padding {pd})")
    if bias is not None:
        bias = tensor_of(bias, op, "bias")
        if bias.shape != (weight.shape[0],):
            raise ShapeError(f"{op}: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    args = (x, weight) if bias is None else (x, weight, bias)
    return x.graph.apply(op, args, {"stride": st, "padding": pd, "dilation": dl})


# --- max_pool2d ----------------------------------------------------------------------------

def _max_pool_fwd(xp: Any, x: Array, kernel: tuple[int, int] = (2, 2),
                  stride: tuple[int, int] = (2, 2)) -> tuple[Array, Array]:
    return kernels.max_pool2d_forward(x, kernel, stride)


def _max_pool_vjp(g: Array, ans: Array, x: Array, kernel: tuple[int, int] = (2, 2),
                  stride: tuple[int, int] = (2, 2), shapes: Any = (), aux: Array = None) -> Array:
    return kernels.max_pool2d_grad(g, aux, shapes[0], kernel, stride)


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

def embedding(weight: Tensor, indices: Any, padding_idx: int | None = None) -> Tensor:
    """Rows ``weight[indices]`` for integer ``indices`` of any shape (result: indices.shape + (dim,)).
    It is integer-array indexing: a gather whose gradient scatter-adds (repeated indices add up).
    Rows looked up at ``padding_idx`` get no gradient (as torch)."""
    op = "embedding"
    weight = tensor_of(weight, op, "weight")
    if weight.ndim != 2:
        raise ShapeError(f"{op}: weight must be 2-d (num_embeddings, dim), got shape {weight.shape}")
    idx = _index_array(weight, indices, op, "indices")
    n = weight.shape[0]
    if idx.size:  # recorded: a captured step checks each replay's indices
        recorded(weight.graph, _check_indices, idx, n)
    rows = weight[idx]
    if padding_idx is None:
        return rows
    from ..ops import where

    keep = recorded(weight.graph, _not_padding, idx, padding_idx % n)  # recorded: idx may be a step's input
    return where(keep, rows, rows.detach())  # the same values; the padding positions pass no gradient


def _not_padding(idx: Array, pad: int) -> Array:
    return xp_of(idx).expand_dims(idx != pad, -1)


# --- activations ----------------------------------------------------------------------------

def _erf(xp: Any, x: Array) -> Array:
    """The error function, elementwise: scipy's (cupyx's on the GPU) when it is installed, else (numpy
    has none) its Maclaurin series where ``|x| <= 2.5`` and ``1 - erfc`` from erfc's continued fraction
    beyond, to ~1e-15."""
    special = _special(xp)
    if special is not None:
        return special.erf(x)
    a = xp.abs(x).astype(np.float64)
    small = xp.minimum(a, 2.5)
    x2 = small * small
    term = small.copy()
    total = small.copy()
    for n in range(1, 60):
        term = term * (-x2) / n
        total = total + term / (2 * n + 1)
    series = total * (2.0 / np.sqrt(np.pi))
    big = xp.maximum(a, 2.5)
    frac = big.copy()
    for k in range(60, 0, -1):
        frac = big + (k / 2.0) / frac
    tail = 1.0 - xp.exp(-big * big) / (np.sqrt(np.pi) * frac)
    return (xp.sign(x) * xp.where(a <= 2.5, series, tail)).astype(x.dtype)


def _special(xp: Any) -> Any:
    """scipy.special (or cupyx.scipy.special) if importable, else None; looked up once per module."""
    if xp not in _SPECIAL:
        try:
            if xp is np:
                import scipy.special as special  # type: ignore[import-untyped, unused-ignore]
            else:
                import cupyx.scipy.special as special  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            special = None
        _SPECIAL[xp] = special
    return _SPECIAL[xp]


_SPECIAL: dict[Any, Any] = {}  # array module -> its special-functions module (or None): a cache, not state
_SQRT_2_PI = float(np.sqrt(2.0 / np.pi))


def _gelu_fwd(xp: Any, x: Array, approximate: str = "none") -> tuple[Array, Array]:
    """``x * Phi(x)``, and (kept for the vjp, so erf runs once) Phi(x) or the tanh of the approximation."""
    if approximate == "tanh":
        th = xp.tanh(_SQRT_2_PI * (x + 0.044715 * x ** 3))
        return 0.5 * x * (1 + th), th
    cdf = 0.5 * (1 + _erf(xp, x / np.sqrt(2.0)))
    return x * cdf, cdf


def _gelu_vjp(g: Array, ans: Array, x: Array, approximate: str = "none", aux: Array = None) -> Array:
    xp = xp_of(x)
    if approximate == "tanh":
        th = aux
        return g * (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * _SQRT_2_PI * (1 + 3 * 0.044715 * x * x))
    pdf = xp.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    return g * (aux + x * pdf)


def _softplus_fwd(xp: Any, x: Array, beta: float = 1.0, threshold: float = 20.0) -> Array:
    bx = x * beta
    return xp.where(bx > threshold, x, xp.logaddexp(0, bx) / beta)


def _softplus_vjp(g: Array, ans: Array, x: Array, beta: float = 1.0, threshold: float = 20.0) -> Array:
    xp = xp_of(x)
    bx = x * beta
    return g * xp.where(bx > threshold, 1.0, 0.5 * (xp.tanh(0.5 * bx) + 1))


defrule("gelu", _gelu_fwd, (_gelu_vjp, "x"), aux=True)
defrule("softplus", _softplus_fwd, (_softplus_vjp, "x"))
defrule("logsigmoid", lambda xp, x: -xp.logaddexp(0, -x),
        (lambda g, ans, x: g * 0.5 * (1 - xp_of(x).tanh(0.5 * x)), "x"))
# as torch: the gradient at 0 is the negative slope (x > 0 picks the identity)
defrule("leaky_relu", lambda xp, x, slope=0.01: xp.where(x > 0, x, x * slope),
        (lambda g, ans, x, slope=0.01: g * xp_of(x).where(x > 0, 1.0, slope), "x"))
defrule("elu", lambda xp, x, alpha=1.0: xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0))),
        (lambda g, ans, x, alpha=1.0: g * xp_of(x).where(x > 0, 1.0, alpha * xp_of(x).exp(xp_of(x).minimum(x, 0))),
         "x"))


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """``x * Phi(x)`` (``approximate="tanh"``: torch's tanh approximation)."""
    x = tensor_of(x, "gelu")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return x.graph.apply("gelu", (x,), {"approximate": approximate})


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta x)) / beta``, linear where ``beta x > threshold`` (as torch)."""
    x = tensor_of(x, "softplus")
    return x.graph.apply("softplus", (x,), {"beta": float(beta), "threshold": float(threshold)})


def logsigmoid(x: Tensor) -> Tensor:
    """``log(sigmoid(x))``, computed stably."""
    x = tensor_of(x, "logsigmoid")
    return x.graph.apply("logsigmoid", (x,))


def silu(x: Tensor) -> Tensor:
    """``x * sigmoid(x)`` (swish)."""
    x = tensor_of(x, "silu")
    return x * x.sigmoid()


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """``x`` where positive, else ``negative_slope * x``."""
    x = tensor_of(x, "leaky_relu")
    return x.graph.apply("leaky_relu", (x,), {"slope": float(negative_slope)})


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """``x`` where positive, else ``alpha * (exp(x) - 1)``."""
    x = tensor_of(x, "elu")
    return x.graph.apply("elu", (x,), {"alpha": float(alpha)})


# --- similarity, normalization, one-hot --------------------------------------------------------

def cosine_similarity(x1: Tensor, x2: Tensor, axis: int = 1, eps: float = 1e-8) -> Tensor:
    """``x1 . x2 / max(|x1| |x2|, eps)`` along ``axis`` (the operands broadcast), as torch."""
    from ..ops import maximum

    x1 = tensor_of(x1, "cosine_similarity", "x1")
    dot = (x1 * x2).sum(axis=axis)
    n1 = (x1 * x1).sum(axis=axis)
    if isinstance(x2, Tensor):
        n2 = (x2 * x2).sum(axis=axis)
    else:  # an array operand: its norm is an op of the step too, in its dtype, then in x1's (as before)
        c2 = x1.graph.constant(x2 if hasattr(x2, "dtype") else np.asarray(x2, dtype=x1.dtype))
        n2 = (c2 * c2).sum(axis=axis)
        if n2.dtype != x1.dtype:
            n2 = n2.astype(x1.dtype)
    out: Tensor = dot / maximum((n1 * n2).sqrt(), eps)
    return out


def normalize(x: Tensor, p: float = 2.0, axis: int = 1, eps: float = 1e-12) -> Tensor:
    """``x / max(|x|_p, eps)`` along ``axis`` (torch's ``normalize``; any p > 0)."""
    from ..ops import maximum

    x = tensor_of(x, "normalize")
    n = x.norm(axis=axis, keepdims=True) if p == 2 else (x.abs() ** p).sum(axis=axis, keepdims=True) ** (1.0 / p)
    out: Tensor = x / maximum(n, eps)
    return out


def one_hot(labels: Any, num_classes: int = -1) -> Tensor:
    """int64 one-hot rows of class indices (a constant), as torch; ``num_classes=-1`` uses max + 1."""
    op = "one_hot"
    if not isinstance(labels, Tensor):
        raise TypeError(f"{op}: labels must be an integer Tensor (g.constant(labels)), got {type(labels).__name__}")
    g = labels.graph
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integer class indices, got {labels.dtype}")
    if num_classes == -1 and g._tracer is not None:
        g._tracer.refuse("one_hot with num_classes=-1 (the result's shape depends on the labels' values)")
    # recorded: a captured step converts (and range-checks) each call's labels
    return g.constant(recorded(g, _one_hot_rows, array_of(labels), num_classes))


def _one_hot_rows(labels: Array, num_classes: int) -> np.ndarray:
    arr = np.asarray(to_device(labels, "cpu"))
    n = int(arr.max()) + 1 if num_classes == -1 else int(num_classes)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n):
        bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
        raise ValueError(f"one_hot: class {bad} is out of range for {n} classes")
    rows: np.ndarray = (arr[..., None] == np.arange(n)).astype(np.int64)
    return rows


# --- attention ------------------------------------------------------------------------------

def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask: Any = None, is_causal: bool = False,
                                 scale: float | None = None) -> Tensor:
    """``softmax(q k^T * scale + mask) v`` over the last two axes, as torch's: a boolean ``mask`` marks the
    positions that take part (True = attend), a float mask is added to the scores; ``is_causal`` lets
    position i attend to j <= i only. ``scale`` defaults to ``1 / sqrt(d)``."""
    from ..ops import where

    op = "scaled_dot_product_attention"
    q, k, v = tensor_of(q, op, "q"), tensor_of(k, op, "k"), tensor_of(v, op, "v")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ShapeError(f"{op}: q {q.shape}, k {k.shape} and v {v.shape} do not fit (q and k share the last "
                         "axis, k and v the second to last)")
    sc = 1.0 / np.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = (q @ k.transpose(*range(k.ndim - 2), k.ndim - 1, k.ndim - 2)) * sc
    L, S = q.shape[-2], k.shape[-2]
    if is_causal:
        scores = where(np.tril(np.ones((L, S), dtype=bool)), scores, -np.inf)
    if mask is not None:
        m = array_of(mask) if isinstance(mask, Tensor) else mask if hasattr(mask, "dtype") else np.asarray(mask)
        scores = where(m, scores, -np.inf) if m.dtype.kind == "b" else scores + mask
    return scores.softmax(axis=-1) @ v


# --- layer norm ----------------------------------------------------------------------------

defrule("layer_norm", lambda xp, x, w, b, k=1, eps=1e-5: kernels.layer_norm(x, w, b, k, eps),
        (lambda g, ans, x, w, b, k=1, eps=1e-5, aux=None: kernels.layer_norm_grad_input(g, x, w, aux, k), "xy"),
        (lambda g, ans, x, w, b, k=1, eps=1e-5, aux=None: kernels.layer_norm_grad_weight(g, x, aux, k), "x"),
        (lambda g, ans, x, w, b, k=1, eps=1e-5, aux=None: g.sum(axis=tuple(range(g.ndim - k))), ""), aux=True)


def layer_norm(x: Tensor, normalized_shape: Any, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` axes (biased variance), then ``* weight + bias``
    (each of ``normalized_shape``, or None), as ``torch.nn.functional.layer_norm``. One rule: it keeps the
    input (and the weight, for the input's gradient) and per-row statistics, as torch does."""
    op = "layer_norm"
    x = tensor_of(x, op)
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or x.ndim < k or x.shape[x.ndim - k:] != shape:
        raise ShapeError(f"{op}: expected an input ending in normalized_shape {shape}, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: the input must be floating point, got {x.dtype}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and (not isinstance(p, Tensor) or p.shape != shape):
            raise ShapeError(f"{op}: {name} must be a Tensor of shape {shape}, got "
                             f"{getattr(p, 'shape', type(p).__name__)}")
    return x.graph.apply(op, (x, weight, bias), {"k": k, "eps": float(eps)})


# --- average pooling ------------------------------------------------------------------------

def _avg_pool_fwd(xp: Any, x: Array, kernel: tuple[int, int] = (2, 2), stride: tuple[int, int] = (2, 2),
                  padding: tuple[int, int] = (0, 0)) -> Array:
    return kernels.avg_pool2d_forward(x, kernel, stride, padding)


def _avg_pool_vjp(g: Array, ans: Array, x: Array, kernel: tuple[int, int] = (2, 2),
                  stride: tuple[int, int] = (2, 2), padding: tuple[int, int] = (0, 0), shapes: Any = ()) -> Array:
    xp = xp_of(g)
    n, c, h, w = shapes[0]
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    z = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=g.dtype)
    part = g / (kh * kw)  # count_include_pad, as torch's default
    oh, ow = g.shape[2], g.shape[3]
    for i in range(kh):
        for j in range(kw):
            z[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += part
    return z[:, :, ph:ph + h, pw:pw + w]


defrule("avg_pool2d", _avg_pool_fwd, (_avg_pool_vjp, ""), shapes=True)


def avg_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Mean over ``kernel_size`` windows of an NCHW tensor, as torch's ``avg_pool2d`` (zero padding counts
    in the mean; ``stride`` defaults to the kernel size)."""
    op = "avg_pool2d"
    x = tensor_of(x, op)
    k = pair(kernel_size, "kernel_size", op, 1)
    s = k if stride is None else pair(stride, "stride", op, 1)
    p = pair(padding, "padding", op, 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half the kernel {k}")
    if x.ndim != 4 or x.shape[2] + 2 * p[0] < k[0] or x.shape[3] + 2 * p[1] < k[1]:
        raise ShapeError(f"{op}: expected an (N, C, H, W) input at least as large as the kernel {k}, got {x.shape}")
    return x.graph.apply(op, (x,), {"kernel": k, "stride": s, "padding": p})

