"""owngrad: reverse-mode autodiff on numpy/cupy whose tensors obey Rust-style borrow rules."""

from __future__ import annotations

from . import higher as _higher  # noqa: F401 - installs g.grad and g.backward(create_graph=True)
from .capture import CapturedStep
from .errors import BorrowError, DeviceError, GradError, GraphError, ShapeError
from .graph import Grads, Graph, Node
from .modes import Frozen, Mut, Shared
from .ops import (
                  abs,
                  clip,
                  concatenate,
                  einsum,
                  exp,
                  log,
                  matmul,
                  maximum,
                  minimum,
                  pad,
                  relu,
                  sigmoid,
                  split,
                  sqrt,
                  stack,
                  take_along_axis,
                  tanh,
                  where,
)
from .tensor import Tensor

__version__ = "0.1.0"

__all__ = [
    "Graph", "Grads", "Node", "Tensor", "Mut", "Shared", "Frozen", "CapturedStep",
    "BorrowError", "GraphError", "ShapeError", "DeviceError", "GradError",
    "maximum", "minimum", "where", "clip", "concatenate", "stack", "matmul", "einsum", "split", "pad",
    "take_along_axis",
    "exp", "log", "tanh", "sqrt", "sigmoid", "relu", "abs",
]

from . import data, distributions, functional, nn, optim  # noqa: E402
from .io import load, save  # noqa: E402
from .training import fit  # noqa: E402

__all__ += ["nn", "optim", "data", "distributions", "functional", "fit", "save", "load"]
