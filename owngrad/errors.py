"""The typed errors owngrad raises. Each names the op, the shapes or the lines involved."""

from __future__ import annotations

__all__ = ["BorrowError", "GraphError", "ShapeError", "DeviceError", "GradError"]


class BorrowError(RuntimeError):
    """A read or write conflicts with a live borrow, or writes through a read-only handle."""


class GraphError(RuntimeError):
    """Mixing graphs, backward through consumed nodes, or a write that would drop history."""


class ShapeError(ValueError):
    """Operand shapes do not fit the op (the message names the op and both shapes)."""


class DeviceError(RuntimeError):
    """Tensors on different devices, or a device that is not available."""


class GradError(LookupError):
    """A gradient was asked for a tensor that is not a param, or that the loss does not use."""

    def __str__(self) -> str:  # LookupError would quote a single argument like KeyError does not
        return str(self.args[0]) if self.args else ""
