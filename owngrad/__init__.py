"""owngrad: reverse-mode autodiff on numpy/cupy whose tensors obey Rust-style borrow rules."""

from __future__ import annotations

from .errors import BorrowError, DeviceError, GradError, GraphError, ShapeError
from .graph import Grads, Graph, Node
from .ops import abs, clip, concatenate, exp, log, matmul, maximum, minimum, relu, sigmoid, sqrt, stack, tanh, where
from .tensor import Tensor
from .modes import Frozen, Mut, Shared

__version__ = "0.1.0"

__all__ = [
    "Graph", "Grads", "Node", "Tensor", "Mut", "Shared", "Frozen",
    "BorrowError", "GraphError", "ShapeError", "DeviceError", "GradError",
    "maximum", "minimum", "where", "clip", "concatenate", "stack", "matmul",
    "exp", "log", "tanh", "sqrt", "sigmoid", "relu", "abs",
]

from . import nn, optim, data  # noqa: E402
from .training import fit  # noqa: E402
from .io import save, load  # noqa: E402

__all__ += ["nn", "optim", "data", "fit", "save", "load"]
