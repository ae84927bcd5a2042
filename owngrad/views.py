"""Views: which base elements a basic-indexing key selects, and how to replay a view on another array.

A view is described twice. For the ledger, by its :class:`~owngrad.ledger.Region` (a product of
per-base-axis progressions) plus a *layout*: for each axis of the view, the base axis it walks
(or -1 for an axis inserted by ``None``/``unsqueeze``). For the gradient, by its *path*: the
steps (:class:`StepKind`: index, transpose, squeeze, unsqueeze, reshape, expand) that cut it from its
root array, replayed on a zero array
of the root's shape to scatter a gradient back, or on a gradient to read the view's part.

A reshape keeps the exact element set (same region) but loses the layout: views cut from it
then take the reshape's whole region -- the one conservative case (see ledger.py).
"""

from __future__ import annotations

import numbers
from enum import Enum
from typing import Any

from .backend import Array, xp_of
from .errors import ShapeError
from .ledger import Progression, Region
from .shapes import unbroadcast

__all__ = ["is_basic_key", "normalize_key", "sub_region", "apply_path", "scatter_path", "StepKind", "Step",
           "Layout", "check_broadcast_into"]


class StepKind(Enum):
    """One step of a view's path, with the argument it carries."""

    INDEX = "index"  # a normalized basic key (ints, slices, None, and a trailing ...)
    TRANSPOSE = "transpose"  # a permutation of the axes
    SQUEEZE = "squeeze"  # the squeezed axes
    UNSQUEEZE = "unsqueeze"  # a key of ``:`` and one ``None``
    RESHAPE = "reshape"  # the new shape (of contiguous data)
    EXPAND = "expand"  # the broadcast shape: a read-only view


Step = tuple[StepKind, Any]
Layout = tuple[int, ...] | None


def _is_int(k: object) -> bool:
    return isinstance(k, numbers.Integral) and not isinstance(k, bool)


def is_basic_key(key: Any) -> bool:
    """True when numpy would return a view: only ints, slices, None and Ellipsis."""
    items = key if isinstance(key, tuple) else (key,)
    for k in items:  # noqa: SIM110 - a loop, not all(<generator>): this runs on every indexing
        if not (k is None or k is Ellipsis or isinstance(k, slice) or _is_int(k)):
            return False
    return True


def normalize_key(key: Any, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """Expand ``...``, fill trailing ``:``, make ints non-negative Python ints; IndexError if out of range."""
    items = key if isinstance(key, tuple) else (key,)
    n_ell = sum(1 for k in items if k is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = sum(1 for k in items if k is not None and k is not Ellipsis)
    if consumed > len(shape):
        raise IndexError(f"too many indices for a tensor of shape {shape}: {consumed} were given")
    out: list[Any] = []
    axis = 0
    for k in items:
        if k is Ellipsis:
            fill = len(shape) - consumed
            out.extend([slice(None)] * fill)
            axis += fill
        elif k is None:
            out.append(None)
        elif isinstance(k, slice):
            r = range(*k.indices(shape[axis]))
            # a negative step that runs past index 0 ends at -1, which as a slice stop means "last": use None
            out.append(slice(0, 0, 1) if not r else slice(r.start, None if r.stop < 0 else r.stop, r.step))
            axis += 1
        else:
            n = shape[axis]
            i = int(k)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of range for axis {axis} of size {n} (shape {shape})")
            out.append(i % n)
            axis += 1
    out.extend([slice(0, shape[a], 1) for a in range(axis, len(shape))])
    return tuple(out)


def sub_region(region: Region, layout: Layout, key: tuple[Any, ...],
               shape: tuple[int, ...]) -> tuple[Region, Layout]:
    """Region and layout of ``view[key]`` (``key`` normalized) given the view's own."""
    if layout is None:
        return region, None
    axes: list[Progression] = list(region.axes)
    new_layout: list[int] = []
    src = 0
    empty = False
    for k in key:
        if k is None:
            new_layout.append(-1)
            continue
        b = layout[src]
        if isinstance(k, slice):
            start, stop, step = k.indices(shape[src])
            cnt = len(range(start, stop, step))
            if b >= 0:
                s, d, _ = axes[b]
                axes[b] = (s + start * d, d * step, cnt)
            elif cnt == 0:
                empty = True
            new_layout.append(b)
        elif b >= 0:
            s, d, _ = axes[b]
            axes[b] = (s + k * d, d, 1)
        src += 1
    if empty and axes:
        s, d, _ = axes[0]
        axes[0] = (s, d, 0)
    return Region(tuple(axes)), tuple(new_layout)


def apply_path(a: Array, path: tuple[Step, ...]) -> Array:
    """Replay the view steps on ``a`` (an array of the root's shape); every step returns a view."""
    for kind, arg in path:
        if kind is StepKind.INDEX or kind is StepKind.UNSQUEEZE:
            a = a[arg]
        elif kind is StepKind.TRANSPOSE:
            a = a.transpose(arg)
        elif kind is StepKind.SQUEEZE:
            a = a.squeeze(arg)
        elif kind is StepKind.EXPAND:
            a = xp_of(a).broadcast_to(a, arg)
        else:
            a = a.reshape(arg)
    return a


def scatter_path(g: Array, root_shape: tuple[int, ...], path: tuple[Step, ...]) -> Array:
    """The gradient of ``apply_path(root)`` for a gradient ``g`` of the view: zeros of the root's
    shape with ``g`` in the view's place. A broadcast step sums the gradient back to the shape
    before it (several view elements read one root element)."""
    xp = xp_of(g)
    if all(kind in _EVERY_ELEMENT for kind, _ in path):
        return _unpermute(g, root_shape, path)
    if not any(kind is StepKind.EXPAND for kind, _ in path):
        z = xp.zeros(root_shape, dtype=g.dtype)
        apply_path(z, path)[...] = g
        return z
    # walk back through the steps, one shape at a time (only views of expanded views come here)
    shapes = [root_shape]
    probe = xp.zeros(root_shape, dtype=g.dtype)
    for step in path:
        probe = apply_path(probe, (step,))
        shapes.append(tuple(probe.shape))
    for step, before in zip(reversed(path), reversed(shapes[:-1])):
        if step[0] is StepKind.EXPAND:
            g = unbroadcast(g, before)
        else:
            z = xp.zeros(before, dtype=g.dtype)
            apply_path(z, (step,))[...] = g
            g = z
    return g


# steps whose view holds every element of what it was cut from, once: their gradient is a
# rearrangement of the view's gradient, with no zeros to scatter it into
_EVERY_ELEMENT = frozenset({StepKind.TRANSPOSE, StepKind.SQUEEZE, StepKind.UNSQUEEZE, StepKind.RESHAPE})


def _unpermute(g: Array, root_shape: tuple[int, ...], path: tuple[Step, ...]) -> Array:
    """The gradient of a path of :data:`_EVERY_ELEMENT` steps: ``g`` walked back through them (a view of
    ``g`` where it can be; the graph never writes into a gradient it hands on)."""
    import numpy as np

    probe = np.broadcast_to(np.empty((), dtype=bool), root_shape)  # shapes only: no memory per element
    shapes = [root_shape]
    for step in path[:-1]:
        probe = apply_path(probe, (step,))
        shapes.append(tuple(probe.shape))
    for (kind, arg), before in zip(reversed(path), reversed(shapes)):
        g = g.transpose(tuple(np.argsort(arg))) if kind is StepKind.TRANSPOSE else g.reshape(before)
    return g


def check_broadcast_into(op: str, dest: tuple[int, ...], src: tuple[int, ...]) -> None:
    """An in-place write keeps the destination's shape: ``src`` must broadcast to it."""
    while len(src) > len(dest) and src[0] == 1:  # numpy drops leading unit axes of the value
        src = src[1:]
    if len(src) > len(dest) or any(s != 1 and s != d for s, d in zip(src[::-1], dest[::-1])):
        raise ShapeError(f"{op}: cannot write a value of shape {src} into a destination of shape {dest}")
