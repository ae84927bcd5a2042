"""Dtypes: Python and numpy scalars are weak operands (a float32 tensor stays float32), an in-place
result that cannot be cast back into the destination's dtype is refused before anything changes
(as numpy and torch refuse), plain assignment truncates into integers as numpy does, and gradients
keep each param's dtype."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og


def _grads(fn: Callable[..., og.Tensor], *arrays: np.ndarray) -> list[np.ndarray]:
    g = og.Graph()
    ps = [g.param(a) for a in arrays]
    G = g.backward(fn(*ps))
    return [G[p].numpy() for p in ps]


# --- numpy float64 scalars do not promote float32 tensors -----------------------------------------

@pytest.mark.parametrize("scalar", [np.float64(2.0), np.sqrt(4.0), np.float32(2.0), np.int64(2), 2.0, 2],
                         ids=["np.float64", "np.sqrt", "np.float32", "np.int64", "float", "int"])
def test_scalars_keep_float32(scalar: Any) -> None:
    g = og.Graph()
    w = g.param(np.ones(3, np.float32))
    for y in (w * scalar, w / scalar, scalar * w, w + scalar, w - scalar, w ** scalar, og.maximum(w, scalar)):
        assert y.dtype == np.float32, (type(scalar), y)


# --- in-place results that cannot be cast back are refused ----------------------------------------

@pytest.mark.parametrize("write", [lambda c: c.__iadd__(0.5), lambda c: c.__imul__(1.5), lambda c: c.__itruediv__(2),
                                   lambda c: c.clamp_(0.5, 1.5), lambda c: c.add_(0.5)],
                         ids=["+=0.5", "*=1.5", "/=2", "clamp_", "add_"])
def test_inplace_float_result_into_int_constant_is_a_type_error(write: Callable[[og.Tensor], Any]) -> None:
    g = og.Graph()
    c = g.constant(np.array([1, 2, 3]))
    with pytest.raises(TypeError):
        write(c)
    np.testing.assert_array_equal(c.numpy(), [1, 2, 3])
    with g.no_grad():  # and the ledger is free again
        c[0] = 7
    assert c.numpy()[0] == 7


def test_setitem_and_fill_truncate_into_int_like_numpy() -> None:
    g = og.Graph()
    c = g.constant(np.array([1, 2, 3]))
    c[0] = 2.7
    assert c.numpy().tolist() == [2, 2, 3]
    c.fill_(2.5)
    assert c.numpy().tolist() == [2, 2, 2] and c.dtype == np.int64


def test_float32_nonleaf_plus_float64_history_matches_torch() -> None:
    src_grads = _grads(lambda w, q: ((lambda y: (y.__iadd__(q * q), y)[1])(w * 2) ** 2).sum(),
                       np.ones(3, np.float32), np.arange(3.0))
    assert src_grads[0].dtype == np.float32 and src_grads[1].dtype == np.float64
    np.testing.assert_allclose(src_grads[0], [8.0, 12.0, 24.0])
    np.testing.assert_allclose(src_grads[1], [0.0, 12.0, 48.0])


def test_inplace_float_into_int_result_is_refused_on_the_recorded_path_too() -> None:
    g = og.Graph()
    p = g.param(np.array([1.0, 2.0]))
    r = (p * 1.0).astype(np.int32)  # an int result of a recorded op
    before = [n.id for n in g.pending()]
    with pytest.raises(TypeError, match="truncating"):
        r += 0.5
    np.testing.assert_array_equal(r.numpy(), [1, 2])
    assert [n.id for n in g.pending()] == before


@pytest.mark.parametrize("write", [lambda r: r[0].__iadd__(0.5), lambda r: r.clamp_(0.5, 1.5),
                                   lambda r: r.__itruediv__(2)],
                         ids=["view+=0.5", "clamp_", "/=2"])
def test_a_refused_int_write_records_nothing(write: object) -> None:
    g = og.Graph()
    r = (g.param(np.array([1.0, 2.0])) * 1.0).astype(np.int32)
    before = [n.id for n in g.pending()]
    with pytest.raises(TypeError, match="truncating"):
        write(r)  # type: ignore[operator]
    assert [n.id for n in g.pending()] == before
    np.testing.assert_array_equal(r.numpy(), [1, 2])
