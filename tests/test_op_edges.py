"""Ops at their edges, against PyTorch: gradients where the formula is singular (pow at a zero
base, clip at ties with tensor bounds, NaN inputs), reductions over 0-d tensors, empty axes and
n <= ddof, and every shape form matmul accepts. Exact expected values always; torch's where installed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og


def _torch() -> Any:
    return pytest.importorskip("torch")


def _grads(fn: Callable[..., og.Tensor], *arrays: np.ndarray) -> list[np.ndarray]:
    g = og.Graph()
    ps = [g.param(a) for a in arrays]
    G = g.backward(fn(*ps))
    return [G[p].numpy() for p in ps]


# --- pow at a zero base: torch's gradients --------------------------------------------------------

def test_pow_gradients_at_zero_base_are_torchs() -> None:
    a, b = np.array([0.0, 0.0, 2.0]), np.array([2.0, 0.0, 1.0])
    ga, gb = _grads(lambda x, y: (x ** y).sum(), a, b)
    np.testing.assert_allclose(ga, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(gb, [0.0, 0.0, 2 * np.log(2.0)])
    (gz,) = _grads(lambda x: (x ** 0.0).sum(), np.array([0.0, 1.0]))
    np.testing.assert_array_equal(gz, [0.0, 0.0])
    (gr,) = _grads(lambda x: (0.0 ** x).sum(), np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(gr, [0.0, 0.0, 0.0])


def test_pow_gradients_at_zero_base_match_torch() -> None:
    torch = _torch()
    a, b = np.array([0.0, 0.0, 2.0, 3.0]), np.array([2.0, 0.0, 1.0, 0.0])
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (ta ** tb).sum().backward()
    ga, gb = _grads(lambda x, y: (x ** y).sum(), a, b)
    np.testing.assert_allclose(ga, ta.grad.numpy())
    np.testing.assert_allclose(gb, tb.grad.numpy())


# --- clip with tensor bounds at ties: torch.clamp's gradients -------------------------------------

def test_clip_tensor_bounds_pass_gradient_at_ties_like_torch_clamp() -> None:
    x, lo, hi = np.array([0.0, 1.0, 0.5, -1.0, 2.0]), np.zeros(5), np.ones(5)
    gx, glo, ghi = _grads(lambda x, lo, hi: (og.clip(x, lo, hi) * np.arange(1.0, 6.0)).sum(), x, lo, hi)
    np.testing.assert_array_equal(gx, [1.0, 2.0, 3.0, 0.0, 0.0])
    np.testing.assert_array_equal(glo, [0.0, 0.0, 0.0, 4.0, 0.0])
    np.testing.assert_array_equal(ghi, [0.0, 0.0, 0.0, 0.0, 5.0])
    torch = _torch()
    tx, tlo, thi = (torch.tensor(a, requires_grad=True) for a in (x, lo, hi))
    (torch.clamp(tx, tlo, thi) * torch.arange(1.0, 6.0, dtype=torch.float64)).sum().backward()
    for mine, t in zip((gx, glo, ghi), (tx, tlo, thi)):
        np.testing.assert_array_equal(mine, t.grad.numpy())


# --- reductions over 0-d tensors, n <= ddof and empty axes ----------------------------------------

@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "logsumexp"])
@pytest.mark.parametrize("axis", [0, -1])
def test_zero_dim_reduction_with_axis_0_has_gradient_one(op: str, axis: int) -> None:
    (gx,) = _grads(lambda x: getattr(x, op)(axis=axis), np.array(3.0))
    assert gx.shape == () and gx == 1.0


def test_var_with_n_at_most_ddof_gives_inf_nan_not_an_exception() -> None:
    g = og.Graph()
    x = g.param(np.ones((3, 2)))
    with pytest.warns(RuntimeWarning):  # "Degrees of freedom <= 0", then 0/0
        G = g.backward(x.var(axis=0, ddof=3).sum())
    assert G[x].shape == (3, 2) and not np.isfinite(G[x].numpy()).any()
    e = g.param(np.ones((0, 3)))
    with pytest.warns(RuntimeWarning):  # the same for an empty axis
        G = g.backward(e.var(axis=0).sum())
    assert G[e].shape == (0, 3)


def test_logsumexp_over_an_empty_axis_is_minus_inf() -> None:
    g = og.Graph()
    x = g.param(np.ones((0, 3)))
    y = x.logsumexp(axis=0)
    assert y.shape == (3,) and np.all(y.numpy() == -np.inf)
    assert g.backward(y.sum())[x].shape == (0, 3)


# --- where the gradient goes at NaN inputs (torch's rules) ----------------------------------------

NAN_CASES: list[tuple[str, Callable[[og.Tensor], og.Tensor], list[float]]] = [
    ("relu", lambda x: x.relu(), [1.0, 1.0, 0.0]),
    ("abs", lambda x: x.abs(), [1.0, 0.0, -1.0]),
    ("maximum", lambda x: og.maximum(x, np.zeros(3)), [1.0, 1.0, 0.0]),
    ("minimum", lambda x: og.minimum(x, np.zeros(3)), [0.0, 1.0, 1.0]),
]


@pytest.mark.parametrize("name,fn,expected", NAN_CASES, ids=[c[0] for c in NAN_CASES])
def test_gradient_at_nan_input_as_torch(name: str, fn: Callable[[og.Tensor], og.Tensor], expected: list[float]) -> None:
    (gx,) = _grads(lambda x: fn(x).sum(), np.array([1.0, np.nan, -1.0]))
    np.testing.assert_array_equal(gx, expected)
    torch = pytest.importorskip("torch")
    t = torch.tensor([1.0, np.nan, -1.0], dtype=torch.float64, requires_grad=True)
    z = torch.zeros(3, dtype=torch.float64)
    tf = {"relu": torch.relu, "abs": torch.abs, "maximum": lambda v: torch.maximum(v, z),
          "minimum": lambda v: torch.minimum(v, z)}[name]
    tf(t).sum().backward()
    np.testing.assert_array_equal(gx, t.grad.numpy())


# --- matmul shapes (1-D, batched, broadcast batch dims) -------------------------------------------

MATMUL_SHAPES = [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)),
                 ((1, 2, 3), (5, 3, 4)), ((5, 1, 2, 3), (4, 3, 2)), ((3,), (5, 3, 4)), ((5, 2, 3), (3,)),
                 ((2, 1, 2, 3), (1, 4, 3, 2)), ((0, 3), (3, 2))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES])
def test_matmul_shapes_match_torch(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    torch = _torch()
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    out_shape = np.matmul(a, b).shape
    c = rng.standard_normal(out_shape)
    ga, gb = _grads(lambda x, y: ((x @ y) * c).sum(), a, b)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ((ta @ tb) * torch.tensor(c)).sum().backward()
    np.testing.assert_allclose(ga, ta.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(gb, tb.grad.numpy(), atol=1e-12)
