"""What a tensor is to its graph (:class:`Role`), and why a handle may be read-only (:class:`ReadOnly`)."""

from __future__ import annotations

from enum import Enum

__all__ = ["Role", "ReadOnly"]


class Role(Enum):
    """The graph role of a storage's root tensor."""

    PARAM = "param"  # a leaf that gets a gradient (g.param)
    CONSTANT = "constant"  # a leaf without gradient (g.constant, constructors, results of constants)
    RESULT = "result"  # a non-leaf: an op's result with history, or a constant written with history


_WRITE_THROUGH_GRAPH = ("write through the tensor the graph gave you (g.param/g.constant or an op's result), "
                        "not through a frozen or gradient handle")


class ReadOnly(Enum):
    """Why a handle refuses writes, each with the help its error message gives."""

    FROZEN = ("frozen (made by g.freeze)", _WRITE_THROUGH_GRAPH)
    GRADIENT = ("a gradient handle (from Grads)", _WRITE_THROUGH_GRAPH)
    ON_GRAD_LEAF = ("a leaf handed to on_grad", _WRITE_THROUGH_GRAPH)
    EXPANDED = ("an expanded view (its elements share memory): .copy() it to write",
                "write into a copy instead (t.copy())")

    def __init__(self, reason: str, help_text: str) -> None:
        self.reason = reason
        self.help_text = help_text
