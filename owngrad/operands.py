"""The one operand and dtype policy: what may become a tensor's data, and what may meet a tensor in an op.

- Data (``g.param``, ``g.constant``): arrays keep their dtype; Python floats and lists become
  float32 (bools stay bool); object, string and complex data are refused.
- Operands: tensors of the same graph and device; Python numbers and numpy scalars are *weak*
  (the result keeps the tensor's dtype), and so are lists and tuples of numbers; arrays keep
  their dtype and must live on the tensor's device.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import Array, device_of, is_device_array, to_device
from .errors import DeviceError, GraphError
from .handle import TensorHandle
from .traced import TracedArray, TracedNumber, unwrap

if TYPE_CHECKING:
    from .graph_api import GraphAPI

__all__ = ["as_array", "check_dtype", "check_bound", "scalar", "operand", "same_graph", "same_device"]

_WEAK = {"b": False, "i": 0, "u": 0, "f": 0.0}  # a Python number of each kind: numpy treats those as weak


def as_array(graph: GraphAPI[Any], data: Any, op: str) -> Array:
    """Copy ``data`` onto the graph's device: arrays keep their dtype, Python floats/lists become float32."""
    xp = graph.xp
    if isinstance(data, TensorHandle):
        raise TypeError(f"{op}: data is already a Tensor; use t.detach() or t.numpy() to copy its values")
    if isinstance(data, np.ndarray) or is_device_array(data):
        arr = data
        if device_of(arr) != graph.device:
            arr = to_device(arr, graph.device)
        check_dtype(arr.dtype, op)
        out = xp.array(arr, copy=True, order="C")
        return out
    if isinstance(data, np.generic):
        check_dtype(data.dtype, op)
        return xp.array(data, copy=True)
    if isinstance(data, (str, bytes)) or data is None:
        raise TypeError(f"{op}: cannot make a tensor from {type(data).__name__} data")
    try:
        host = np.asarray(data)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{op}: cannot make a tensor from this data ({e})") from None
    check_dtype(host.dtype, op)
    if host.dtype.kind != "b":
        host = host.astype(np.float32)
    return xp.array(host, copy=True, order="C")


def check_dtype(dtype: Any, op: str) -> None:
    if dtype.kind not in "biuf":
        raise TypeError(f"{op}: unsupported dtype {dtype} (object, string and complex data are not tensors)")


def check_bound(op: str, lo: Any, hi: Any) -> None:
    for name, v in (("lo", lo), ("hi", hi)):
        if v is not None and not isinstance(v, (numbers.Real, np.generic, TensorHandle)) and not hasattr(v, "dtype"):
            raise TypeError(f"{op}: {name} must be a number, an array, a tensor or None, got {type(v).__name__}")


def scalar(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def same_graph(op: str, graph: GraphAPI[Any], t: TensorHandle) -> None:
    """``t`` must belong to ``graph``."""
    if t.graph is not graph:
        raise GraphError(f"{op}: the tensor {t._label()} belongs to another graph")


def same_device(op: str, device: str, t: TensorHandle) -> None:
    """``t`` must live on ``device``."""
    if t.device != device:
        raise DeviceError(f"{op}: operands are on different devices ({device} and {t.device}); "
                          "move one with t.to(...)")


def _dtype_ok(op: str, dtype: Any) -> None:
    if dtype.kind not in "biuf":
        raise TypeError(f"{op}: unsupported operand of dtype {dtype}")


def operand(like: TensorHandle, other: Any, op: str) -> Any:
    """``other`` as an operand of an op on ``like``: a tensor, a weak Python number, or an array on
    ``like``'s device (lists and tuples become arrays of ``like``'s dtype kind, weakly)."""
    if isinstance(other, TensorHandle):
        return other
    if type(other) in (bool, int, float):  # np.float64 subclasses float: it goes below, to .item()
        return other
    if isinstance(other, np.generic):
        _dtype_ok(op, other.dtype)
        return other.item()
    device = like.device
    if isinstance(other, (np.ndarray, TracedArray)) or is_device_array(other):
        dev = device_of(unwrap(other))  # a traced input (a step being captured) is an array operand
        if dev != device:
            raise DeviceError(f"{op}: an array on {dev} cannot meet a tensor on {device}; "
                              "make it a tensor of the graph first (g.constant(a)) or move it")
        _dtype_ok(op, other.dtype)
        return other
    if isinstance(other, (list, tuple)):
        try:
            arr = np.asarray(other)
        except ValueError as e:
            raise TypeError(f"{op}: cannot use this list as an operand ({e})") from None
        _dtype_ok(op, arr.dtype)
        # weak, like the Python numbers it holds: a float64 tensor times [0.1, 0.3] stays exactly
        # float64, a float32 one stays float32, an int tensor times [0.5] becomes float64 (as numpy)
        arr = arr.astype(np.result_type(like.dtype, _WEAK[arr.dtype.kind]))
        return arr if device == "cpu" else to_device(arr, device)
    if isinstance(other, TracedNumber):  # a number computed by a captured step (clip_norm_'s norm)
        other.refuse_use(f"as an operand of {op}")
    raise TypeError(f"{op}: unsupported operand type {type(other).__name__}")
