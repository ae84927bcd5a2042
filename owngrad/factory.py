"""Constructors a graph offers for constants: numpy's signatures, a float32 default.

``g.zeros((T, B, H))`` makes a constant owned by ``g`` -- typically a buffer that a loop then
fills in place (``hs[t + 1] = cell(x[t], hs[t])``); a write with gradient history makes it a
non-leaf whose later readers get exact gradients. ``g.randn``/``g.rand`` draw from the graph's
seeded stream ``g.rng``, so a program gives the same numbers every run.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import Array, copy_of, to_device
from .operands import check_dtype
from .roles import Role
from .tensor import Tensor
from .traced import unwrap
from .tracer import recorded

if TYPE_CHECKING:
    from .graph_api import GraphAPI

__all__ = ["TensorFactory"]

_DEFAULT = np.float32


def _shape(op: str, shape: Any) -> tuple[int, ...]:
    """``3``, ``(2, 3)``, ``[2, 3]`` or ``()`` as a shape of non-negative ints, or a TypeError/ValueError."""
    items = shape if isinstance(shape, (tuple, list)) else (shape,)
    out = []
    for n in items:
        if not isinstance(n, numbers.Integral) or isinstance(n, bool):
            raise TypeError(f"{op}: a shape holds ints, got {shape!r}")
        if n < 0:
            raise ValueError(f"{op}: negative dimensions are not allowed, got shape {tuple(items)}")
        out.append(int(n))
    return tuple(out)


def _dtype(op: str, dtype: Any) -> np.dtype[Any]:
    try:
        dt = np.dtype(_DEFAULT if dtype is None else dtype)
    except TypeError:
        raise TypeError(f"{op}: {dtype!r} is not a dtype") from None
    check_dtype(dt, op)
    return dt


def _sizes(op: str, shape: tuple[Any, ...]) -> tuple[int, ...]:
    """``randn(2, 3)`` and ``randn((2, 3))`` both mean shape (2, 3)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return _shape(op, shape[0])
    return _shape(op, shape)


class TensorFactory:
    """Mixed into :class:`~owngrad.graph.Graph`: constructors of constants on the graph's device."""

    device: str
    xp: Any
    rng: np.random.Generator

    def _made(self, arr: Array, name: str | None, op: str) -> Tensor:
        g: GraphAPI[Tensor] = self  # type: ignore[assignment]
        tr = g._tracer
        if tr is not None and op not in ("randn", "rand"):  # a new array each step, of the same values
            tr.note(copy_of, (copy_of(arr),), {}, arr)
        return Tensor._root_of(g, arr, Role.CONSTANT, None, name or None, name or op)

    def _draw(self, kind: str, shape: tuple[int, ...], dt: np.dtype[Any]) -> Array:
        """Samples from ``g.rng`` (recorded when a step is being captured: each replay draws afresh)."""
        g: GraphAPI[Tensor] = self  # type: ignore[assignment]
        return recorded(g, _draw, self, kind, shape, dt)

    def zeros(self, shape: Any, dtype: Any = None, name: str | None = None) -> Tensor:
        """A constant of zeros (float32 unless ``dtype`` says otherwise)."""
        return self._made(self.xp.zeros(_shape("g.zeros", shape), dtype=_dtype("g.zeros", dtype)), name, "zeros")

    def ones(self, shape: Any, dtype: Any = None, name: str | None = None) -> Tensor:
        """A constant of ones (float32 unless ``dtype`` says otherwise)."""
        return self._made(self.xp.ones(_shape("g.ones", shape), dtype=_dtype("g.ones", dtype)), name, "ones")

    def full(self, shape: Any, fill_value: Any, dtype: Any = None, name: str | None = None) -> Tensor:
        """A constant filled with ``fill_value`` (float32 unless ``dtype`` says otherwise)."""
        if isinstance(fill_value, Tensor):
            fill_value = fill_value.item()
        if not isinstance(fill_value, (numbers.Real, np.generic)):
            raise TypeError(f"g.full: fill_value must be a real number, got {type(fill_value).__name__}")
        dt = _dtype("g.full", dtype)
        return self._made(self.xp.full(_shape("g.full", shape), fill_value, dtype=dt), name, "full")

    def arange(self, start: Any, stop: Any = None, step: Any = 1, dtype: Any = None,
               name: str | None = None) -> Tensor:
        """numpy's ``arange`` as a constant (float32 unless ``dtype`` says otherwise, e.g. np.int64)."""
        for v in (start, stop, step):
            if v is not None and (not isinstance(v, (numbers.Real, np.generic)) or isinstance(v, bool)):
                raise TypeError(f"g.arange: start, stop and step must be numbers, got {v!r}")
        if step == 0:
            raise ValueError("g.arange: step must not be zero")
        dt = _dtype("g.arange", dtype)
        host = np.arange(start, stop, step) if stop is not None else np.arange(start)
        return self._made(self._on_device(host.astype(dt)), name, "arange")

    def eye(self, N: int, M: int | None = None, k: int = 0, dtype: Any = None, name: str | None = None) -> Tensor:
        """numpy's ``eye`` as a constant (float32 unless ``dtype`` says otherwise)."""
        n, = _shape("g.eye", N)
        m = n if M is None else _shape("g.eye", M)[0]
        if not isinstance(k, numbers.Integral) or isinstance(k, bool):
            raise TypeError(f"g.eye: k must be an int, got {k!r}")
        return self._made(self.xp.eye(n, m, int(k), dtype=_dtype("g.eye", dtype)), name, "eye")

    def _like(self, op: str, t: Any, dtype: Any, shape: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
        if not isinstance(t, Tensor) and not hasattr(t, "shape"):
            raise TypeError(f"{op}: expected a Tensor or an array, got {type(t).__name__}")
        shp = tuple(t.shape) if shape is None else _shape(op, shape)
        return shp, _dtype(op, t.dtype if dtype is None else dtype)

    def zeros_like(self, t: Any, dtype: Any = None, shape: Any = None, name: str | None = None) -> Tensor:
        """Zeros of ``t``'s shape and dtype (a Tensor or an array; ``dtype``/``shape`` override)."""
        shp, dt = self._like("g.zeros_like", t, dtype, shape)
        return self._made(self.xp.zeros(shp, dtype=dt), name, "zeros")

    def ones_like(self, t: Any, dtype: Any = None, shape: Any = None, name: str | None = None) -> Tensor:
        """Ones of ``t``'s shape and dtype (a Tensor or an array; ``dtype``/``shape`` override)."""
        shp, dt = self._like("g.ones_like", t, dtype, shape)
        return self._made(self.xp.ones(shp, dtype=dt), name, "ones")

    def full_like(self, t: Any, fill_value: Any, dtype: Any = None, name: str | None = None) -> Tensor:
        """``fill_value`` in ``t``'s shape and dtype (``dtype`` overrides)."""
        shp, dt = self._like("g.full_like", t, dtype, None)
        return self.full(shp, fill_value, dtype=dt, name=name)

    def empty_like(self, t: Any, dtype: Any = None, name: str | None = None) -> Tensor:
        """A constant of ``t``'s shape and dtype; zeros (owngrad never hands out uninitialised memory)."""
        shp, dt = self._like("g.empty_like", t, dtype, None)
        return self._made(self.xp.zeros(shp, dtype=dt), name, "zeros")

    def randn_like(self, t: Any, dtype: Any = None, name: str | None = None) -> Tensor:
        """Standard normal samples from ``g.rng`` in ``t``'s shape and (floating) dtype."""
        shp, dt = self._like("g.randn_like", t, dtype, None)
        return self.randn(shp, dtype=dt, name=name)

    def rand_like(self, t: Any, dtype: Any = None, name: str | None = None) -> Tensor:
        """Uniform samples in [0, 1) from ``g.rng`` in ``t``'s shape and (floating) dtype."""
        shp, dt = self._like("g.rand_like", t, dtype, None)
        return self.rand(shp, dtype=dt, name=name)

    def randn(self, *shape: Any, dtype: Any = None, name: str | None = None) -> Tensor:
        """Standard normal samples from ``g.rng``: ``g.randn(2, 3)`` or ``g.randn((2, 3))``."""
        dt = _dtype("g.randn", dtype)
        if dt.kind != "f":
            raise TypeError(f"g.randn: samples need a floating dtype, got {dt}")
        return self._made(self._draw("normal", _sizes("g.randn", shape), dt), name, "randn")

    def rand(self, *shape: Any, dtype: Any = None, name: str | None = None) -> Tensor:
        """Uniform samples in [0, 1) from ``g.rng``: ``g.rand(2, 3)`` or ``g.rand((2, 3))``."""
        dt = _dtype("g.rand", dtype)
        if dt.kind != "f":
            raise TypeError(f"g.rand: samples need a floating dtype, got {dt}")
        return self._made(self._draw("uniform", _sizes("g.rand", shape), dt), name, "rand")

    def _on_device(self, host: np.ndarray) -> Array:
        return np.ascontiguousarray(host) if self.device == "cpu" else to_device(host, self.device)


def _draw(factory: TensorFactory, kind: str, shape: tuple[int, ...], dt: np.dtype[Any]) -> Array:
    rng = unwrap(factory.rng)  # while a step is captured g.rng is traced: only recorded draws may use it
    host = (rng.standard_normal(shape, dtype=np.float64) if kind == "normal" else
            rng.random(shape, dtype=np.float64)).astype(dt)
    return factory._on_device(host)
