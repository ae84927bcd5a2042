"""owngrad.kernels: the array kernels behind conv2d, max_pool2d and matmul, against torch in float64 (and
numpy's own matmul), over strides, padding, dilation, overlapping and uneven windows, ties and NaNs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import owngrad as og
from owngrad import kernels

R = np.random.default_rng(7)

# x shape, weight shape, stride, padding, dilation
CONV_CASES: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, int], tuple[int, int], tuple[int, int]]] = [
    ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (0, 0), (1, 1)),
    ((2, 3, 7, 6), (4, 3, 3, 3), (2, 2), (1, 1), (1, 1)),
    ((1, 2, 9, 8), (3, 2, 3, 2), (2, 1), (2, 0), (1, 1)),
    ((2, 2, 9, 10), (3, 2, 3, 3), (1, 2), (1, 2), (2, 3)),
    ((3, 4, 5, 5), (2, 4, 1, 1), (1, 1), (0, 0), (1, 1)),
    ((1, 1, 5, 5), (1, 1, 5, 5), (1, 1), (0, 0), (1, 1)),   # one output position
    ((2, 1, 8, 7), (2, 1, 2, 2), (3, 3), (0, 1), (1, 1)),   # stride > kernel: rows the windows skip
]


@pytest.mark.parametrize("chunked", [False, True], ids=["whole batch", "one sample at a time"])
@pytest.mark.parametrize("xs,ws,stride,padding,dilation", CONV_CASES, ids=[str(c) for c in range(len(CONV_CASES))])
def test_conv2d_kernels_match_torch(xs: tuple[int, ...], ws: tuple[int, ...], stride: tuple[int, int],
                                    padding: tuple[int, int], dilation: tuple[int, int], chunked: bool,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    if chunked:  # an im2col budget below one sample: every kernel loops over the batch
        monkeypatch.setattr(kernels, "_COLS_BYTES", 1)
    x, w = R.standard_normal(xs), R.standard_normal(ws)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tout = torch.nn.functional.conv2d(tx, tw, stride=stride, padding=padding, dilation=dilation)
    g = R.standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(g))
    out = kernels.conv2d_forward(x, w, stride, padding, dilation)
    assert out.flags.c_contiguous
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(kernels.conv2d_grad_input(g, w, x.shape, stride, padding, dilation),
                               tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(kernels.conv2d_grad_weight(g, x, w.shape, stride, padding, dilation),
                               tw.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_conv2d_grad_input_takes_a_non_contiguous_gradient() -> None:
    x, w = R.standard_normal((2, 3, 6, 6)), R.standard_normal((4, 3, 3, 3))
    g = R.standard_normal((4, 2, 4, 4)).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(kernels.conv2d_grad_input(g, w, x.shape),
                               kernels.conv2d_grad_input(np.ascontiguousarray(g), w, x.shape), rtol=0, atol=0)
    np.testing.assert_allclose(kernels.conv2d_grad_weight(g, x, w.shape),
                               kernels.conv2d_grad_weight(np.ascontiguousarray(g), x, w.shape), rtol=0, atol=0)


def _relu_input(shape: tuple[int, ...]) -> np.ndarray:
    return np.maximum(R.standard_normal(shape), 0)  # many tied zeros, as after a relu


# x shape, kernel, stride
POOL_CASES: list[tuple[tuple[int, ...], tuple[int, int], tuple[int, int]]] = [
    ((2, 3, 8, 6), (2, 2), (2, 2)),    # windows tile the input
    ((2, 3, 9, 7), (2, 2), (2, 2)),    # a row and a column left over
    ((1, 2, 7, 5), (3, 2), (1, 2)),    # overlapping rows
    ((2, 1, 6, 6), (3, 3), (1, 1)),    # overlapping both ways
    ((2, 2, 9, 8), (2, 3), (3, 4)),    # stride > kernel
    ((1, 1, 4, 4), (4, 4), (4, 4)),    # one window
]


def _torch_pool(x: np.ndarray, g: np.ndarray | None, kernel: Any, stride: Any) -> tuple[np.ndarray, np.ndarray]:
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, requires_grad=True)
    tout = torch.nn.functional.max_pool2d(tx, kernel, stride)
    tout.backward(torch.tensor(g if g is not None else np.ones(tuple(tout.shape))))
    return tout.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("xs,kernel,stride", POOL_CASES, ids=[str(c) for c in range(len(POOL_CASES))])
def test_max_pool2d_kernels_match_torch(xs: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int]) -> None:
    for x in (R.standard_normal(xs), _relu_input(xs)):  # distinct values; ties (the first maximum wins)
        out, arg = kernels.max_pool2d_forward(x, kernel, stride)
        g = R.standard_normal(out.shape)
        tout, tgrad = _torch_pool(x, g, kernel, stride)
        np.testing.assert_array_equal(out, tout)
        np.testing.assert_allclose(kernels.max_pool2d_grad(g, arg, x.shape, kernel, stride), tgrad, rtol=1e-12,
                                   atol=0)


@pytest.mark.parametrize("kernel,stride", [((2, 2), (2, 2)), ((3, 3), (1, 1)), ((2, 2), (3, 3))],
                         ids=["tiled", "overlapping", "apart"])
def test_max_pool2d_nan_is_the_maximum_and_a_non_finite_gradient_stays_put(kernel: tuple[int, int],
                                                                           stride: tuple[int, int]) -> None:
    x = _relu_input((1, 2, 6, 6) if kernel == stride else (1, 2, 7, 7))  # tiled: every element in a window
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = np.nan   # two NaNs in one window: as torch, the last one is picked
    x[0, 1, 2, 2] = np.nan
    out, arg = kernels.max_pool2d_forward(x, kernel, stride)
    g = np.ones(out.shape)
    g[0, 1, 1, 1] = np.inf
    g[0, 0, 1, 0] = np.nan
    tout, tgrad = _torch_pool(x, g, kernel, stride)
    np.testing.assert_array_equal(out, tout)
    ours = kernels.max_pool2d_grad(g, arg, x.shape, kernel, stride)
    np.testing.assert_array_equal(ours, tgrad)   # NaN where torch has NaN, inf where torch has inf, else equal


@pytest.mark.parametrize("xs,ys", [((4, 5, 3), (3, 2)), ((2, 3, 4, 5), (5, 6)), ((0, 3, 4), (4, 2)),
                                   ((3, 0, 4), (4, 2)), ((5, 3), (3, 4)), ((2, 5, 3), (2, 3, 4)), ((3,), (3, 2))])
def test_matmul_kernels_match_numpy(xs: tuple[int, ...], ys: tuple[int, ...]) -> None:
    x, y = R.standard_normal(xs), R.standard_normal(ys)
    out = kernels.matmul(x, y)
    np.testing.assert_allclose(out, x @ y, rtol=1e-12, atol=1e-12)
    if x.ndim > 2 and y.ndim == 2:
        g = R.standard_normal(out.shape)
        want = (x.swapaxes(-1, -2) @ g).sum(axis=tuple(range(x.ndim - 2)))
        np.testing.assert_allclose(kernels.matmul_grad_y(x, g), want, rtol=1e-12, atol=1e-12)


def test_batched_linear_gradients_match_torch() -> None:
    """A (T, B, K) input through a 2-d weight: one GEMM forward and for each gradient."""
    torch = pytest.importorskip("torch")
    x, w, b = R.standard_normal((5, 3, 4)), R.standard_normal((6, 4)), R.standard_normal(6)
    g = og.Graph()
    tx, tw, tb = g.param(x), g.param(w), g.param(b)
    out = og.nn.functional.linear(tx, tw, tb)
    grads = g.backward((out * out).sum())
    px, pw, pb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    pout = torch.nn.functional.linear(px, pw, pb)
    (pout * pout).sum().backward()
    np.testing.assert_allclose(out.numpy(), pout.detach().numpy(), rtol=1e-10, atol=1e-12)
    for ours, theirs in ((tx, px), (tw, pw), (tb, pb)):
        np.testing.assert_allclose(grads[ours].numpy(), theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_gradient_through_a_chain_of_rearranging_views() -> None:
    """transpose, reshape, unsqueeze and squeeze hand the gradient back rearranged, not scattered into zeros."""
    torch = pytest.importorskip("torch")
    x, c = R.standard_normal((2, 3, 4)), R.standard_normal((1, 4, 6))
    g = og.Graph()
    t = g.param(x)
    v = t.transpose(2, 0, 1).reshape(4, 6).unsqueeze(0)
    y = (v * c).squeeze(0).transpose(1, 0)
    grads = g.backward((y * y).sum())
    p = torch.tensor(x, requires_grad=True)
    ty = (p.permute(2, 0, 1).reshape(4, 6).unsqueeze(0) * torch.tensor(c)).squeeze(0).T
    (ty * ty).sum().backward()
    np.testing.assert_allclose(grads[t].numpy(), p.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_exact_and_its_grad_flushes_subnormal_entries(dtype: Any) -> None:
    """The probabilities are the softmax, subnormal ones included (log stays finite, as torch); the vjp's
    entries below the smallest normal number become 0 (they would slow every GEMM downstream fourfold);
    NaN rows stay NaN."""
    tiny = np.finfo(dtype).tiny
    x = np.array([[0.0, -88.0, -95.0, -20.0], [1.0, 2.0, 3.0, 4.0], [0.0, -750.0, -740.0, -1.0],
                  [np.nan, 0.0, 1.0, 2.0]], dtype=dtype)
    p = kernels.softmax(x, axis=-1)
    e = np.exp(x.astype(np.float64) - x.astype(np.float64).max(axis=-1, keepdims=True))
    exact = e / e.sum(axis=-1, keepdims=True)
    assert np.isnan(p[3]).all()
    assert ((p[:3] != 0) & (p[:3] < tiny)).any()  # subnormal probabilities are kept
    np.testing.assert_allclose(p[:3], exact[:3], rtol=4 * np.finfo(dtype).eps, atol=4 * tiny * np.finfo(dtype).eps)
    g = np.array([[1.0, 2.0, -1.0, 0.5]] * 4, dtype=dtype)
    d = kernels.softmax_grad(g, p, -1)
    want = p.astype(np.float64) * (g - (g * p).astype(np.float64).sum(axis=-1, keepdims=True))
    assert not ((d != 0) & (np.abs(d) < tiny)).any()
    assert ((np.abs(want[:3]) < tiny) & (want[:3] != 0)).any()  # the case is exercised
    np.testing.assert_allclose(d[:3], want[:3], rtol=8 * np.finfo(dtype).eps, atol=8 * np.finfo(dtype).eps)
    assert np.isnan(d[3]).all()


def test_softmax_grad_matches_the_formula() -> None:
    p, g = kernels.softmax(R.standard_normal((3, 5)), axis=1), R.standard_normal((3, 5))
    np.testing.assert_allclose(kernels.softmax_grad(g, p, 1), p * (g - (g * p).sum(axis=1, keepdims=True)),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dropout_mask_is_the_scaled_keep_mask(dtype: Any) -> None:
    from owngrad.nn.functional import _dropout_mask

    for p in (0.1, 0.2, 0.3, 0.5, 0.7):
        ours = _dropout_mask(np.random.default_rng(5), (40, 30), p, np.dtype(dtype), "cpu")
        keep = np.random.default_rng(5).random((40, 30)) >= p
        want = (keep / (1.0 - p)).astype(dtype)
        assert ours.dtype == dtype and ours.tobytes() == want.tobytes()


@pytest.mark.parametrize("xs,kernel,stride,padding", [((2, 3, 8, 6), (2, 2), (2, 2), (0, 0)),
                                                      ((1, 2, 7, 5), (3, 2), (1, 2), (1, 1)),
                                                      ((2, 1, 9, 8), (3, 3), (2, 3), (1, 0))])
def test_avg_pool2d_forward_matches_torch(xs: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
                                          padding: tuple[int, int]) -> None:
    torch = pytest.importorskip("torch")
    x = R.standard_normal(xs)
    want = torch.nn.functional.avg_pool2d(torch.tensor(x), kernel, stride, padding).numpy()
    np.testing.assert_allclose(kernels.avg_pool2d_forward(x, kernel, stride, padding), want, rtol=1e-12, atol=1e-14)


def test_empty_batches() -> None:
    """A batch of no samples: outputs of the right shapes, zero weight gradients (as torch)."""
    x, w = np.zeros((0, 2, 6, 5)), R.standard_normal((3, 2, 3, 2))
    out = kernels.conv2d_forward(x, w, (2, 1), (1, 0), (1, 2))
    assert out.shape == (0, 3, 3, 3)
    assert kernels.conv2d_grad_input(out, w, x.shape, (2, 1), (1, 0), (1, 2)).shape == x.shape
    gw = kernels.conv2d_grad_weight(out, x, w.shape, (2, 1), (1, 0), (1, 2))
    assert gw.shape == w.shape and not gw.any()
    best, arg = kernels.max_pool2d_forward(x, (2, 2), (2, 2))
    assert best.shape == arg.shape == (0, 2, 3, 2)
    assert kernels.max_pool2d_grad(best, arg, x.shape, (2, 2), (2, 2)).shape == x.shape
    assert kernels.avg_pool2d_forward(x, (2, 2), (2, 2), (0, 0)).shape == (0, 2, 3, 2)
