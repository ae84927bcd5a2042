"""Array modules: numpy on the CPU, cupy on the GPU, and the few calls that differ between them.

Every op asks the array it works on for its module (:func:`xp_of`), never imports numpy's
functions directly for device data: that is the dispatch seam the GPU backend rides on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DeviceError

__all__ = ["Array", "xp_of", "device_of", "module_for", "scatter_add", "to_device", "is_array"]

Array = Any  # an ndarray of numpy, cupy or a registered test backend

#: extra backends registered at run time: array type -> (module, device name)
_BACKENDS: dict[type, tuple[Any, str]] = {}


def register_backend(array_type: type, module: Any, device: str) -> None:
    """Register a further array type (cupy's, or a CPU test double) with its module and device name."""
    _BACKENDS[array_type] = (module, device)


def xp_of(a: Array) -> Any:
    """The array module that owns ``a``."""
    t = type(a)
    if t is np.ndarray:
        return np
    hit = _BACKENDS.get(t)
    if hit is not None:
        return hit[0]
    _try_cupy()
    hit = _BACKENDS.get(t)
    return hit[0] if hit is not None else np


def device_of(a: Array) -> str:
    t = type(a)
    if t is np.ndarray:
        return "cpu"
    hit = _BACKENDS.get(t)
    if hit is None:
        _try_cupy()
        hit = _BACKENDS.get(t)
    return hit[1] if hit is not None else "cpu"


def is_array(a: object) -> bool:
    return type(a) is np.ndarray or is_device_array(a)


def is_device_array(a: object) -> bool:
    """An array of a registered non-numpy backend (cupy's, or a test double)."""
    t = type(a)
    if t is np.ndarray or t in (bool, int, float):
        return False
    if t not in _BACKENDS and t.__module__.startswith("cupy"):
        _try_cupy()
    return t in _BACKENDS


_cupy_tried = False


def _try_cupy() -> None:
    global _cupy_tried
    if _cupy_tried:
        return
    _cupy_tried = True
    try:
        import cupy  # type: ignore[import-not-found, unused-ignore]
    except Exception:
        return
    register_backend(cupy.ndarray, cupy, "cuda")


def module_for(device: str) -> Any:
    """The array module for a device name, or a DeviceError saying what is missing."""
    if device == "cpu":
        return np
    if device == "cuda":
        try:
            import cupy
        except ImportError:
            raise DeviceError(
                "device 'cuda' needs cupy, which is not installed: pip install -e '.[cuda]'"
            ) from None
        try:
            n = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # no driver, no device
            raise DeviceError(f"device 'cuda': cupy is installed but no GPU is usable ({e})") from None
        if n < 1:
            raise DeviceError("device 'cuda': cupy is installed but no GPU was found")
        _try_cupy()
        return cupy
    for mod, dev in _BACKENDS.values():
        if dev == device:
            return mod
    raise DeviceError(f"unknown device {device!r}: use 'cpu' or 'cuda'")


def scatter_add(z: Array, key: Any, g: Array) -> None:
    """``z[key] += g`` with repeated indices adding up (numpy's ``add.at``, cupy's ``scatter_add``)."""
    xp = xp_of(z)
    if xp is np:
        np.add.at(z, key, g)
    elif hasattr(xp, "add") and hasattr(xp.add, "at"):
        xp.add.at(z, key, g)
    else:  # cupy
        import cupyx  # type: ignore[import-not-found, unused-ignore]

        cupyx.scatter_add(z, key, g)


def to_device(a: Array, device: str) -> Array:
    """Copy ``a`` to ``device`` (the only host/device transfer path besides ``Tensor.numpy``)."""
    if device_of(a) == device:
        return a
    if device == "cpu":
        get = getattr(a, "get", None)
        return get() if get is not None else np.asarray(a)
    xp = module_for(device)
    host = a if type(a) is np.ndarray else to_device(a, "cpu")
    return xp.asarray(host)


def owned(a: Any, xp: Any) -> Array:
    """``a`` as a C-contiguous array of module ``xp`` (a copy only where it is not one already).
    Unlike ``ascontiguousarray`` this keeps 0-d arrays 0-d."""
    if type(a) is not np.ndarray and not is_array(a):
        a = xp.asarray(a)
    if not a.flags.c_contiguous:
        a = a.copy(order="C")
    return a


def copy_of(a: Any) -> Array:
    """A copy of an array of any backend (a plain function, so a captured step can replay it)."""
    return a.copy()


def astype_of(a: Any, dtype: Any) -> Array:
    """``a`` converted to ``dtype`` (a plain function, so a captured step can replay it)."""
    return a.astype(dtype)
