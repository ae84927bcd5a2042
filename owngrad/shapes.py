"""Shape helpers shared by the rules and the views: undoing broadcasting (the one place it is
undone) and broadcasting a reduction's gradient back over the reduced axes."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import Array, xp_of

__all__ = ["unbroadcast", "expand_reduced", "axes_of"]


def unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``g`` down to ``shape``, undoing numpy broadcasting (the one place it is undone)."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra < 0:  # a value with extra leading unit axes written into a view (numpy drops them)
        g = g.reshape((1,) * -extra + tuple(g.shape))
        extra = 0
    if extra == 1 and g.shape[1:] == shape:  # the common case: a bias added to a batch
        return np.add.reduce(g, axis=0) if type(g) is np.ndarray else g.sum(axis=0)  # (g.sum's own reduction)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def axes_of(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim for a in axis)


def expand_reduced(g: Array, shape: tuple[int, ...], axis: Any, keepdims: bool) -> Array:
    """Broadcast a reduction's gradient back over the reduced axes."""
    xp = xp_of(g)
    if not keepdims and len(shape):
        g = xp.expand_dims(g, axes_of(axis, len(shape)))
    return xp.broadcast_to(g, shape)
