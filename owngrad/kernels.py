"""Array kernels behind the heavier rules: pure functions of numpy or cupy arrays, no graph, no borrows.

The rules in :mod:`owngrad.rules` and :mod:`owngrad.nn.functional` keep their calculus one line
long by calling these; what lives here is only *how* an array result is computed fast on a
BLAS-backed array module:

- **matmul** with a 2-d right operand flattens the left operand's leading axes into one GEMM
  (numpy would otherwise loop over them one small GEMM at a time), and the right operand's
  gradient is one GEMM over the flattened rows instead of a stack of per-batch products summed
  afterwards.
- **conv2d** (NCHW, stride, zero padding, dilation) is im2col + batched GEMM: one copy of the
  sliding windows into an ``(N, C*kh*kw, Ho*Wo)`` block, then ``W @ cols[n]`` for every sample,
  which lands directly in NCHW order (no transpose of the output). The weight's gradient is
  ``g[n] @ cols[n].T`` summed over samples; the input's gradient is ``W.T @ g[n]`` scattered back
  by ``kh*kw`` strided adds (col2im) -- no index arrays, no ``add.at``.
- **max_pool2d** copies the windows once, offset-major, so that the maximum and the first maximum's
  offset (a small integer per output, found by arithmetic, not ``argmax``) are reductions over
  contiguous memory; its gradient writes each offset's share straight into that offset's strided
  view of the input's gradient -- no index arrays, no ``add.at``.
- **conv2d** works a chunk of samples at a time where the im2col block would exceed 4 MiB: the block
  of a whole batch is ``kh*kw`` times the input.
- **softmax** forward and vjp with in-place updates of their own temporaries. The vjp flushes
  gradient entries below the dtype's smallest normal number (~1e-38 in float32) to zero: an attention
  row whose logits are more than ~87 apart has subnormal probabilities, which make the logits'
  gradient subnormal there, and every product downstream of it (the gradients of q and k, then of
  every layer below) runs about four times slower in BLAS on subnormal operands. The change is
  below 1e-38 per entry, far under the rounding of any sum it enters. The forward output is left
  exact (as torch's), so ``log`` of a probability stays finite wherever torch's is.
- **layer norm** as one forward that keeps only the per-row mean and reciprocal standard deviation
  (as torch does) and vjps that rebuild the normalised input from them, instead of the eight nodes
  and their saved temporaries of the composite.
"""

from __future__ import annotations

import math
from typing import Any

from .backend import Array, xp_of

__all__ = ["add_bias", "softmax", "softmax_grad", "layer_norm", "layer_norm_grad_input", "layer_norm_grad_weight",
           "matmul", "matmul_grad_y", "rows", "conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight",
           "max_pool2d_forward", "max_pool2d_grad", "avg_pool2d_forward", "conv_out_size"]

Pair = tuple[int, int]


def add_bias(out: Array, b: Array) -> Array:
    """``out + b``, in place when ``out`` (a result the caller owns) keeps its dtype."""
    if b.dtype == out.dtype:
        out += b
        return out
    return out + b


# --- softmax ---------------------------------------------------------------------------------------

def softmax(x: Array, axis: Any = -1) -> Array:
    """``exp(x - max) / sum`` along ``axis``, normalised in place."""
    xp = xp_of(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def softmax_grad(g: Array, ans: Array, axis: Any = -1) -> Array:
    """``ans * (g - sum(g * ans))``, computed as ``g*ans - ans*sum`` with one temporary; entries below the
    smallest normal number are flushed to zero (see the module docstring)."""
    xp = xp_of(g)
    out = g * ans
    s = out.sum(axis=axis, keepdims=True)
    out -= ans * s
    if out.dtype.kind == "f":
        out *= ~(xp.abs(out) < xp.finfo(out.dtype).tiny)  # NaN and inf pass
    return out


# --- layer norm ------------------------------------------------------------------------------------

def _norm_axes(x: Array, k: int) -> tuple[int, ...]:
    return tuple(range(x.ndim - k, x.ndim))


def layer_norm(x: Array, w: Array | None, b: Array | None, k: int, eps: float) -> tuple[Array, Array]:
    """``(x - mean) / sqrt(var + eps) * w + b`` over the last ``k`` axes (biased variance, as torch), and
    the statistics the vjps need, stacked: ``[mean, 1 / sqrt(var + eps)]`` (each keepdims-shaped)."""
    xp = xp_of(x)
    axes = _norm_axes(x, k)
    mean = x.mean(axis=axes, keepdims=True)
    out = x - mean
    rstd = 1.0 / xp.sqrt((out * out).mean(axis=axes, keepdims=True) + eps)
    out *= rstd
    if w is not None:
        if w.dtype == out.dtype:
            out *= w
        else:
            out = out * w
    if b is not None:
        if b.dtype == out.dtype:
            out += b
        else:
            out = out + b
    return out, xp.stack((mean, rstd))


def _normalized(x: Array, stats: Array) -> Array:
    """``(x - mean) * rstd`` from the stacked statistics of :func:`layer_norm`."""
    xhat = x - stats[0]
    xhat *= stats[1]
    return xhat


def layer_norm_grad_input(g: Array, x: Array, w: Array | None, stats: Array, k: int) -> Array:
    """``rstd * (d - mean(d) - xhat * mean(d * xhat))`` with ``d = g * w``, over the last ``k`` axes."""
    axes = _norm_axes(x, k)
    xhat = _normalized(x, stats)
    d = g * w if w is not None else g
    out = d - d.mean(axis=axes, keepdims=True)
    xhat *= (d * xhat).mean(axis=axes, keepdims=True)
    out -= xhat
    out *= stats[1]
    return out


def layer_norm_grad_weight(g: Array, x: Array, stats: Array, k: int) -> Array:
    """``sum(g * xhat)`` over the leading (batch) axes."""
    return (g * _normalized(x, stats)).sum(axis=tuple(range(x.ndim - k)))


# --- matmul --------------------------------------------------------------------------------------

def matmul(x: Array, y: Array) -> Array:
    """``x @ y``; for ``x`` (..., M, K) with more than two axes and ``y`` (K, N) it is one (M', K) GEMM."""
    if x.ndim > 2 and y.ndim == 2:
        return (rows(x) @ y).reshape(x.shape[:-1] + (y.shape[-1],))
    return x @ y


def matmul_grad_y(x: Array, g: Array) -> Array:
    """The gradient of a 2-d ``y`` in ``x @ y`` for ``x`` (..., M, K) and ``g`` (..., M, N): ``x^T g`` over
    every row of every batch at once, (K, N)."""
    return rows(x).T @ rows(g)


def rows(a: Array) -> Array:
    """``a`` (..., K) as a 2-d (rows, K) array (a view when ``a`` is contiguous)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


# --- conv2d --------------------------------------------------------------------------------------

def conv_out_size(size: int, k: int, stride: int, padding: int, dilation: int = 1) -> int:
    """The output length of a convolution or pooling along one axis (torch's formula)."""
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def _padded(xp: Any, x: Array, padding: Pair) -> Array:
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _windows(xp: Any, x: Array, kernel: Pair, stride: Pair, dilation: Pair) -> Array:
    """A zero-copy (N, C, kh, kw, Ho, Wo) view of the sliding windows of an NCHW array: element
    ``[n, c, a, b, i, j]`` is ``x[n, c, i*sh + a*dh, j*sw + b*dw]``."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    ho, wo = conv_out_size(h, kh, sh, 0, dh), conv_out_size(w, kw, sw, 0, dw)
    s = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, shape=(n, c, kh, kw, ho, wo), strides=(s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw))


def im2col(x: Array, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Array:
    """The windows of ``x`` (N, C, H, W) as one contiguous (N, C*kh*kw, Ho*Wo) block."""
    xp = xp_of(x)
    win = _windows(xp, _padded(xp, x, padding), kernel, stride, dilation)
    n, c, kh, kw, ho, wo = win.shape
    return xp.ascontiguousarray(win).reshape(n, c * kh * kw, ho * wo)


# the im2col block of one chunk of samples stays under this: it bounds a convolution's extra memory
# (a whole batch's block is kh*kw times the input) and keeps the block in cache between copy and GEMM
_COLS_BYTES = 1 << 22


def _sample_chunks(n: int, per_sample: int) -> list[tuple[int, int]]:
    """Sample ranges whose im2col block fits the budget; one (empty) range for an empty batch."""
    step = max(1, _COLS_BYTES // max(per_sample, 1))
    return [(i, min(i + step, n)) for i in range(0, n, step)] or [(0, 0)]


def _cols_bytes(x: Array, w_shape: tuple[int, ...], out: tuple[int, int]) -> int:
    return int(w_shape[1] * w_shape[2] * w_shape[3] * out[0] * out[1] * x.dtype.itemsize)


def conv2d_forward(x: Array, w: Array, stride: Pair = (1, 1), padding: Pair = (0, 0),
                   dilation: Pair = (1, 1)) -> Array:
    """Cross-correlation of ``x`` (N, C, H, W) with ``w`` (O, C, kh, kw): (N, O, Ho, Wo), C-contiguous.
    ``W @ cols[n]`` per sample, a chunk of samples at a time."""
    xp = xp_of(x)
    n, h, wd = x.shape[0], x.shape[2], x.shape[3]
    o, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    ho = conv_out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = conv_out_size(wd, kw, stride[1], padding[1], dilation[1])
    wm = w.reshape(o, math.prod(w.shape[1:]))
    out = None
    for a, b in _sample_chunks(n, _cols_bytes(x, w.shape, (ho, wo))):
        part = xp.matmul(wm, im2col(x[a:b], (kh, kw), stride, padding, dilation))   # (chunk, O, Ho*Wo)
        if out is None:
            if b == n:
                return part.reshape(n, o, ho, wo)
            out = xp.empty((n, o, ho * wo), dtype=part.dtype)
        out[a:b] = part
    assert out is not None
    return out.reshape(n, o, ho, wo)


def conv2d_grad_weight(g: Array, x: Array, w_shape: tuple[int, ...], stride: Pair = (1, 1),
                       padding: Pair = (0, 0), dilation: Pair = (1, 1)) -> Array:
    """The weight's gradient ``sum_n g[n] @ cols[n].T``, (O, C, kh, kw), computed transposed
    (``cols[n] @ g[n].T``: the long axis of both operands is then the contiguous one), a chunk of
    samples at a time."""
    xp = xp_of(g)
    n, o = g.shape[0], g.shape[1]
    g3 = g.reshape(n, o, g.shape[2] * g.shape[3])
    total = None
    for a, b in _sample_chunks(n, _cols_bytes(x, w_shape, g.shape[2:])):
        cols = im2col(x[a:b], (w_shape[2], w_shape[3]), stride, padding, dilation)
        part = xp.matmul(cols, g3[a:b].transpose(0, 2, 1)).sum(axis=0)          # (C*kh*kw, O)
        total = part if total is None else total + part
    assert total is not None
    return xp.ascontiguousarray(total.T).reshape(w_shape)


def conv2d_grad_input(g: Array, w: Array, x_shape: tuple[int, ...], stride: Pair = (1, 1),
                      padding: Pair = (0, 0), dilation: Pair = (1, 1)) -> Array:
    """The input's gradient: the window gradients ``W.T @ g[n]`` added back where each window read (col2im),
    a chunk of samples at a time."""
    xp = xp_of(g)
    n, c, h, wd = x_shape
    o, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    ho, wo = g.shape[2], g.shape[3]
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    wt = w.reshape(o, math.prod(w.shape[1:])).T
    g3 = g.reshape(n, o, ho * wo)
    gx = xp.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=g.dtype)
    for s, e in _sample_chunks(n, c * kh * kw * ho * wo * g.dtype.itemsize):
        gcols = xp.matmul(wt, g3[s:e]).reshape(e - s, c, kh, kw, ho, wo)
        part = gx[s:e]
        for a in range(kh):
            rows = slice(a * dh, a * dh + sh * (ho - 1) + 1, sh)
            for b in range(kw):
                part[:, :, rows, b * dw:b * dw + sw * (wo - 1) + 1:sw] += gcols[:, :, a, b]
    return gx if ph == 0 and pw == 0 else gx[:, :, ph:ph + h, pw:pw + wd]


# --- max_pool2d ----------------------------------------------------------------------------------

def _offset_major(xp: Any, x: Array, kernel: Pair, stride: Pair, out: tuple[int, int]) -> Array:
    """A zero-copy (kh, kw, N, C, Ho, Wo) view of the pooling windows of ``x`` (N, C, H, W): element
    ``[a, b, n, c, i, j]`` is ``x[n, c, i*sh + a, j*sw + b]``. Writable when ``x`` is; its elements
    overlap only when windows do (stride < kernel)."""
    s = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, shape=(kernel[0], kernel[1], x.shape[0], x.shape[1]) + out,
        strides=(s[2], s[3], s[0], s[1], s[2] * stride[0], s[3] * stride[1]))


def max_pool2d_forward(x: Array, kernel: Pair, stride: Pair) -> tuple[Array, Array]:
    """The window maxima of ``x`` (N, C, H, W) and, per output, the offset ``a*kw + b`` of the window's
    first maximum (a NaN counts as the maximum, as torch: the window's last NaN). The windows are
    copied once, offset-major, so every reduction below runs over contiguous memory."""
    xp = xp_of(x)
    out = (conv_out_size(x.shape[2], kernel[0], stride[0], 0), conv_out_size(x.shape[3], kernel[1], stride[1], 0))
    k = kernel[0] * kernel[1]
    cols = xp.ascontiguousarray(_offset_major(xp, x, kernel, stride, out)).reshape((k,) + x.shape[:2] + out)
    best = cols.max(axis=0)
    itype = xp.int8 if k <= 127 else xp.int64
    arg = xp.full(best.shape, k - 1, dtype=itype)
    for i in range(k - 2, -1, -1):  # from the last offset back: the first maximum wins
        arg -= (arg - itype(i)) * (cols[i] == best)  # arg = i where hit (arithmetic: faster than where)
    if best.dtype.kind == "f" and bool(xp.isnan(best).any()):
        for i in range(k):
            arg -= (arg - itype(i)) * xp.isnan(cols[i])
    return best, arg


def max_pool2d_grad(g: Array, arg: Array, x_shape: tuple[int, ...], kernel: Pair, stride: Pair) -> Array:
    """The input's gradient: each output's gradient added at its window's maximum (and nowhere else, so
    a non-finite gradient stays where it belongs). Each window offset's share is written straight into
    its strided view of the result."""
    xp = xp_of(g)
    (kh, kw), (sh, sw) = kernel, stride
    finite = bool(xp.isfinite(g).all())
    covered = sh == kh and sw == kw and x_shape[2] == g.shape[2] * kh and x_shape[3] == g.shape[3] * kw
    gx = xp.empty(x_shape, dtype=g.dtype) if covered else xp.zeros(x_shape, dtype=g.dtype)
    win = _offset_major(xp, gx, kernel, stride, (g.shape[2], g.shape[3]))
    apart = sh >= kh and sw >= kw  # windows do not overlap: every input element has one offset at most
    zero = xp.zeros((), dtype=g.dtype)
    for a in range(kh):
        for b in range(kw):
            hit = arg == a * kw + b
            if apart and finite:
                xp.multiply(g, hit, out=win[a, b])
            elif apart:
                win[a, b][...] = xp.where(hit, g, zero)
            else:
                win[a, b] += g * hit if finite else xp.where(hit, g, zero)
    return gx


def avg_pool2d_forward(x: Array, kernel: Pair, stride: Pair, padding: Pair) -> Array:
    """The window means of ``x`` (N, C, H, W), zero padding counted (torch's default): the ``kh*kw``
    strided views of the padded input added up, then divided once -- no reduction over the small,
    strided window axes."""
    xp = xp_of(x)
    xpad = _padded(xp, x, padding)
    out = (conv_out_size(xpad.shape[2], kernel[0], stride[0], 0), conv_out_size(xpad.shape[3], kernel[1], stride[1], 0))
    win = _offset_major(xp, xpad, kernel, stride, out)
    total = win[0, 0].copy()
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            if a or b:
                total += win[a, b]
    k = kernel[0] * kernel[1]
    if total.dtype.kind != "f":
        return total / k
    total /= k
    return total
