"""Writes follow numpy: set-item keys, broadcasting of the value, repeated indices, ``**=``,
weak list operands, and the identity of ``.base`` -- each against numpy's forward, finite
differences of the program, or PyTorch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import owngrad as og


def _fd(fn: Callable[[np.ndarray], float], a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    out = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        hi, lo = a.copy(), a.copy()
        hi[idx] += eps
        lo[idx] -= eps
        out[idx] = (fn(hi) - fn(lo)) / (2 * eps)
    return out


# --- **= and pow_ write in place ------------------------------------------------------------

def test_ipow_writes_in_place_so_aliases_and_views_see_it() -> None:
    g = og.Graph()
    x = g.param(np.array([3.0, 4.0]))
    y = x.copy()
    alias, v = y, y[...]
    y **= 2
    assert y is alias
    np.testing.assert_array_equal(alias.numpy(), [9.0, 16.0])
    np.testing.assert_array_equal(v.numpy(), [9.0, 16.0])
    np.testing.assert_array_equal(g.backward(y.sum())[x].numpy(), [6.0, 8.0])


def test_pow_inplace_on_a_view_keeps_gradients_exact() -> None:
    g = og.Graph()
    x = g.param(np.array([1.0, 2.0, 3.0]))
    y = x * 1.0
    y[1:].pow_(3)
    np.testing.assert_array_equal(y.numpy(), [1.0, 8.0, 27.0])
    np.testing.assert_allclose(g.backward(y.sum())[x].numpy(), [1.0, 12.0, 27.0])


def test_ipow_on_a_param_is_an_untracked_update_not_a_rebinding() -> None:
    g = og.Graph()
    w = g.param(np.array([2.0, 3.0]), name="w")
    ref = w
    with g.no_grad():
        w **= 2
    assert w is ref and w.is_leaf
    np.testing.assert_array_equal(ref.numpy(), [4.0, 9.0])


def test_ipow_refuses_a_saved_alias_like_imul() -> None:
    g = og.Graph()
    y = g.param(np.array([1.5, 2.0])) * 1.0
    with pytest.raises(og.BorrowError, match="pow saves it"):
        y **= y


def test_ipow_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    a = np.array([0.5, 1.5, 2.0])
    g = og.Graph()
    x = g.param(a)
    y = x * 2.0
    y **= x
    got = g.backward((y * y).sum())[x].numpy()
    tx = torch.tensor(a, requires_grad=True)
    ty = tx * 2.0
    ty **= tx
    (ty * ty).sum().backward()
    assert tx.grad is not None
    np.testing.assert_allclose(got, tx.grad.numpy(), rtol=1e-12)


# --- repeated advanced indices: the last write wins, and only it gets a gradient ------------------

def test_repeated_indices_only_the_write_that_landed_gets_a_gradient() -> None:
    g = og.Graph()
    x = g.param(np.zeros(3))
    y = g.param(np.array([1.0, 2.0]))
    x1 = x.copy()
    x1[np.array([0, 0])] = y
    np.testing.assert_array_equal(x1.numpy(), [2.0, 0.0, 0.0])
    grads = g.backward((x1 * np.array([5.0, 1, 1])).sum())
    np.testing.assert_array_equal(grads[y].numpy(), [0.0, 5.0])
    np.testing.assert_array_equal(grads[x].numpy(), [0.0, 1.0, 1.0])


def test_a_broadcast_value_counts_once_per_landing_element() -> None:
    g = og.Graph()
    x = g.param(np.zeros(5))
    y = g.param(np.array([1.0]))
    x1 = x.copy()
    x1[np.array([0, 0, 2, 2, 2])] = y  # lands on elements 0 and 2 only
    coef = np.array([5.0, 1, 7, 1, 1])
    np.testing.assert_array_equal(g.backward((x1 * coef).sum())[y].numpy(), [12.0])


@pytest.mark.parametrize("program", [
    "x1[np.array([0, 0, 2])] = y[1:4]",
    "x1[np.array([1, 3, 1, 1])] += y[:4] * y[:4]",
    "x1[np.array([[0, 0], [4, 0]])] = y[:4].reshape(2, 2)",
    "x1[[2, 2, 2]] = y[1:4].exp()",
    "x1[np.array([0, 0])] -= y[0]",
])
def test_repeated_index_writes_match_finite_differences(program: str) -> None:
    """The derivative of the forward that ran (an exact set-item oracle: numpy itself, differentiated
    numerically)."""
    coef = np.array([1.0, -2.0, 3.0, 0.5, 4.0])
    y0 = np.array([0.3, -1.2, 0.7, 2.0, 1.1])

    def run(yv: np.ndarray, graph: bool) -> tuple[float, np.ndarray | None]:
        g = og.Graph()
        x = g.constant(np.linspace(-1, 1, 5))
        y = g.param(yv)
        x1 = x.copy()
        exec(program, {"np": np, "x1": x1, "y": y})
        loss = (x1 * x1 * coef).sum()
        return float(loss), (g.backward(loss)[y].numpy() if graph else None)

    _, got = run(y0, True)
    np.testing.assert_allclose(got, _fd(lambda a: run(a, False)[0], y0), rtol=1e-6, atol=1e-8)


# --- a value with extra leading unit axes ------------------------------------------------------

@pytest.mark.parametrize("xs, ys, key", [((3,), (1, 3), ...), ((3, 3), (1, 1), 2), ((2, 3), (1, 1, 3), 1),
                                         ((4,), (1, 2), slice(1, 3)), ((2, 2), (1, 1, 2, 2), ...)])
def test_values_with_leading_unit_axes_get_gradients_of_their_own_shape(
        xs: tuple[int, ...], ys: tuple[int, ...], key: object) -> None:
    rng = np.random.default_rng(0)
    g = og.Graph()
    x = g.param(rng.standard_normal(xs))
    y = g.param(rng.standard_normal(ys))
    x1 = x.copy()
    x1[key] = y
    expect = x.numpy()
    expect[key] = y.numpy()
    np.testing.assert_array_equal(x1.numpy(), expect)
    coef = rng.standard_normal(xs)
    grads = g.backward((x1 * coef).sum())
    assert grads[y].shape == ys
    np.testing.assert_allclose(grads[y].numpy(), _reduce_to(coef[key], ys), rtol=1e-12)


def _reduce_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The gradient of broadcasting a value of ``shape`` into ``g``'s shape (numpy drops leading units)."""
    core = shape
    while len(core) > g.ndim and core[0] == 1:
        core = core[1:]
    axes = tuple(i for i, n in enumerate(core) if n == 1 and g.shape[g.ndim - len(core) + i] != 1)
    lead = tuple(range(g.ndim - len(core)))
    out = g.sum(axis=lead) if lead else g
    out = out.sum(axis=axes, keepdims=True) if axes else out
    return out.reshape(shape)


def test_copy_from_a_value_with_leading_unit_axes_works_like_setitem() -> None:
    g = og.Graph()
    x = g.param(np.zeros(3))
    y = g.param(np.array([[1.0, 2.0, 3.0]]))
    x1 = x.copy()
    x1.copy_(y)
    np.testing.assert_array_equal(x1.numpy(), [1.0, 2.0, 3.0])
    grads = g.backward((x1 * np.array([1.0, 2.0, 3.0])).sum())
    np.testing.assert_array_equal(grads[y].numpy(), [[1.0, 2.0, 3.0]])


# --- None in a key adds an axis -----------------------------------------------------------------

@pytest.mark.parametrize("key", [None, (None,), (None, ...), (..., None)])
def test_none_in_a_set_item_key_adds_an_axis(key: object) -> None:
    g = og.Graph()
    x = g.param(np.array(3.0))
    y = g.param(np.array([5.0]))
    x1 = x.copy()
    x1[key] = y * 2.0
    assert x1.shape == () and float(x1) == 10.0
    grads = g.backward(x1 * 3.0)
    np.testing.assert_array_equal(grads[y].numpy(), [6.0])
    np.testing.assert_array_equal(grads[x].numpy(), 0.0)


def test_none_key_on_a_vector_writes_every_element() -> None:
    g = og.Graph()
    x1 = g.constant(np.zeros(3))
    x1[None] = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(x1.numpy(), [1.0, 2.0, 3.0])
    x1[None, 1] = 7.0
    np.testing.assert_array_equal(x1.numpy(), [1.0, 7.0, 3.0])


# --- lists and tuples are weak operands ---------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_list_operands_keep_the_tensors_dtype(dtype: type) -> None:
    g = og.Graph()
    x = g.param(np.array([1.0, 1.0], dtype=dtype))
    for out in (x * [0.1, 0.3], [0.1, 0.3] * x, x + (0.1, 0.3), og.maximum(x, [0.1, 0.3])):
        assert out.dtype == dtype
    np.testing.assert_array_equal((x * [0.1, 0.3]).numpy(), np.array([1.0, 1.0], dtype) * np.array([0.1, 0.3], dtype))


def test_list_operands_promote_int_tensors_like_python_numbers() -> None:
    g = og.Graph()
    c = g.constant(np.array([1, 2]))
    assert (c * [0.5, 1.0]).dtype == np.float64  # as numpy: an int array times Python floats
    assert (c + [1, 2]).dtype == c.dtype
    assert (x := g.param(np.ones(2)) * [True, False]).dtype == np.float64 and x.numpy().tolist() == [1.0, 0.0]


def test_list_operand_in_place_keeps_float64_exact() -> None:
    g = og.Graph()
    w = g.param(np.array([1.0, 2.0]))
    with g.no_grad():
        w *= [0.1, 0.3]
    np.testing.assert_array_equal(w.numpy(), np.array([1.0, 2.0]) * np.array([0.1, 0.3]))


# --- .base is the handle the view was cut from ------------------------------------------------

def test_base_of_a_view_of_a_read_only_handle_is_that_handle() -> None:
    g = og.Graph()
    w = g.param(np.ones(4), name="w")
    h = g.backward((w * w).sum())[w]
    assert h[:2].base is h and h[:2][1:].base is h and h[:2].base is h[:2].base
    f = g.freeze(w)
    assert f[1:].base is f
    assert w[1:].base is w and w[1:][0].base is w
    assert h.base is None and f.base is None and w.base is None
