"""Views: reshape, transpose, squeeze/unsqueeze, expand and indexing.

Where numpy returns a view, so does owngrad: the result shares the storage, its ledger region
is the exact set of base elements it selects (see views.py), and its graph node is derived
from the root's current node on use. Integer-array and boolean indexing copy (a ``gather``).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import Array
from .errors import ShapeError
from .handle import TensorHandle
from .ledger import Region
from .roles import ReadOnly
from .views import Layout, Step, StepKind, apply_path, is_basic_key, normalize_key, sub_region

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ViewOps"]


class ViewOps(TensorHandle):
    """Views and indexing (a mixin of :class:`~owngrad.tensor.Tensor`)."""

    __slots__ = ()

    def __iter__(self) -> Iterator[Self]:
        for i in range(len(self)):
            yield self[i]

    def copy(self) -> Self:
        """A differentiable copy with its own storage (numpy's ``copy``, PyTorch's ``clone``)."""
        return self._graph.apply("copy", (self,))

    # --- shape: views where numpy gives a view ---
    def _view(self, data: Array, region: Region, layout: Layout, step: Step) -> Self:
        tr = self._graph._tracer
        if tr is not None:
            tr.note(apply_path, (self._data, (step,)), {}, data)
        return self._derive(data, region, layout, self._path + (step,), self._readonly)

    def reshape(self, *shape: Any) -> Self:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        try:
            new = self._data.reshape(shape)
        except (ValueError, TypeError) as e:
            raise ShapeError(f"reshape: cannot reshape a tensor of shape {self.shape} into {shape}: {e}") from None
        new_shape = tuple(new.shape)
        if new_shape == self.shape:
            return self._view(new, self._region, self._layout, (StepKind.RESHAPE, new_shape))
        if self._data.flags.c_contiguous:
            return self._view(new, self._region, None, (StepKind.RESHAPE, new_shape))
        return self._graph.apply("reshape_copy", (self,), {"shape": new_shape}, {"src": self.shape})

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Self:
        """Merge axes ``start_dim..end_dim`` (all by default) into one, as torch's ``flatten``."""
        if self.ndim == 0:
            return self.reshape(1)
        a, b = (self._axis_index("flatten", d) for d in (start_dim, end_dim))
        if a > b:
            raise ShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {self.shape}")
        return self.reshape(*self.shape[:a], int(np.prod(self.shape[a:b + 1])), *self.shape[b + 1:])

    def unflatten(self, dim: int, sizes: Any) -> Self:
        """Split axis ``dim`` into ``sizes`` (one may be -1), as torch's ``unflatten``."""
        d = self._axis_index("unflatten", dim)
        return self.reshape(*self.shape[:d], *sizes, *self.shape[d + 1:])

    def chunk(self, chunks: int, axis: int = 0) -> list[Self]:
        """torch's ``chunk``: views of ``ceil(n / chunks)`` along ``axis`` (the last may be shorter, and there
        may be fewer than ``chunks``), where ``og.split`` follows numpy (equal sections or cut indices)."""
        if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
            raise ValueError(f"chunk: chunks must be a positive int, got {chunks!r}")
        d = self._axis_index("chunk", axis)
        n = self.shape[d]
        step = -(-n // chunks) if n else 1
        lead = (slice(None),) * d
        return [self[lead + (slice(i, min(i + step, n)),)] for i in range(0, max(n, 1), step)]

    def _axis_index(self, op: str, axis: Any) -> int:
        if isinstance(axis, bool) or not isinstance(axis, int) or not -self.ndim <= axis < self.ndim:
            raise ShapeError(f"{op}: axis {axis!r} is out of range for a tensor of shape {self.shape}")
        return axis % self.ndim

    def transpose(self, *axes: Any) -> Self:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(range(self.ndim))[::-1]
        try:
            perm = tuple(int(a) % self.ndim for a in axes) if self.ndim else ()
            if sorted(perm) != list(range(self.ndim)) or len(axes) != self.ndim:
                raise ValueError
        except (ValueError, TypeError, ZeroDivisionError):
            raise ShapeError(f"transpose: {axes} is not a permutation of the axes of shape {self.shape}") from None
        layout = None if self._layout is None else tuple(self._layout[p] for p in perm)
        return self._view(self._data.transpose(perm), self._region, layout, (StepKind.TRANSPOSE, perm))

    def permute(self, *axes: Any) -> Self:
        return self.transpose(*axes)

    @property
    def T(self) -> Self:
        return self.transpose()

    def squeeze(self, axis: Any = None) -> Self:
        if axis is None:
            axes = tuple(i for i, n in enumerate(self.shape) if n == 1)
        else:
            axes = axis if isinstance(axis, tuple) else (axis,)
            self._check_axis("squeeze", axes)
            axes = tuple(int(a) % max(self.ndim, 1) for a in axes)
            bad = [a for a in axes if a >= self.ndim or self.shape[a] != 1]
            if bad:
                raise ShapeError(f"squeeze: axis {bad[0]} of shape {self.shape} does not have size 1")
        layout = None if self._layout is None else tuple(b for i, b in enumerate(self._layout) if i not in axes)
        return self._view(self._data.squeeze(axes), self._region, layout, (StepKind.SQUEEZE, axes))

    def unsqueeze(self, axis: int) -> Self:
        if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
            raise TypeError(f"unsqueeze: axis must be an int, got {type(axis).__name__}")
        axis = int(axis)
        nd = self.ndim + 1
        if not -nd <= axis < nd:
            raise ShapeError(f"unsqueeze: axis {axis} is out of range for a tensor of shape {self.shape} "
                             f"(a result of {nd} dimensions)")
        a = axis % nd
        key = (slice(None),) * a + (None,)
        layout = None if self._layout is None else self._layout[:a] + (-1,) + self._layout[a:]
        return self._view(self._data[key], self._region, layout, (StepKind.UNSQUEEZE, key))

    def expand(self, *shape: Any) -> Self:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        lead = len(shape) - self.ndim
        full = tuple(self.shape[i - lead] if (n == -1 and i >= lead) else n for i, n in enumerate(shape))
        if lead < 0 or any(s != 1 and s != f for s, f in zip(self.shape, full[lead:])):
            raise ShapeError(f"expand: cannot expand a tensor of shape {self.shape} to {shape}")
        if full == self.shape:
            return self
        # a read-only view (as torch's expand and numpy's broadcast_to): it sees later writes to its
        # source, and writing into it would write one element many times, so it is refused
        data = self._graph.xp.broadcast_to(self._data, full) if type(self._data) is not np.ndarray \
            else np.broadcast_to(self._data, full)
        ro = self._readonly or ReadOnly.EXPANDED
        tr = self._graph._tracer
        if tr is not None:
            tr.note(apply_path, (self._data, ((StepKind.EXPAND, full),)), {}, data)
        return self._derive(data, self._region, None, self._path + ((StepKind.EXPAND, full),), ro)

    # --- indexing ---
    def _index_arrays(self, key: Any) -> Any:
        """Tensors, lists and arrays inside a key become plain int/bool arrays (copies)."""
        items = key if isinstance(key, tuple) else (key,)
        out = []
        xp = self._graph.xp
        for k in items:
            if isinstance(k, TensorHandle):
                k = k._data.copy()
            elif isinstance(k, (list, np.ndarray)) or (hasattr(k, "dtype") and hasattr(k, "shape")):
                k = xp.asarray(k).copy()
                if k.dtype.kind == "f" and k.size == 0:
                    k = k.astype(np.int64)
            if hasattr(k, "dtype") and k.dtype.kind not in "biu":
                raise IndexError(f"tensor index: arrays used as indices must be integer or boolean, got {k.dtype}")
            out.append(k)
        return tuple(out) if isinstance(key, tuple) else out[0]

    def __getitem__(self, key: Any) -> Self:
        if is_basic_key(key):
            nk = normalize_key(key, self.shape)
            region, layout = sub_region(self._region, self._layout, nk, self.shape)
            nk += (Ellipsis,)  # so an all-int key gives a 0-d view, not a scalar copy
            return self._view(self._data[nk], region, layout, (StepKind.INDEX, nk))
        tr = self._graph._tracer
        if tr is None:
            return self._graph.apply("gather", (self,), {"key": self._index_arrays(key)})
        # a captured step converts the key at each replay (it may be, or come from, the step's input)
        raw = tuple(k._data if isinstance(k, TensorHandle) else k for k in key) if isinstance(key, tuple) \
            else key._data if isinstance(key, TensorHandle) else key
        key = tr.call(self._index_arrays, raw)
        if any(getattr(k, "dtype", None) is not None and k.dtype.kind == "b" for k in
               (key if isinstance(key, tuple) else (key,))):
            tr.refuse(f"indexing {self._label()} with a boolean mask (the result's shape depends on the values)",
                      None, "use og.where(mask, t, 0) with a fixed shape, or index outside the captured step")
        return self._graph.apply("gather", (self,), {"key": key})
