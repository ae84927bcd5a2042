"""owngrad: reverse-mode autodiff on numpy/cupy whose tensors obey Rust-style borrow rules (typed contract)."""

from .errors import BorrowError as BorrowError, DeviceError as DeviceError, GradError as GradError
from .errors import GraphError as GraphError, ShapeError as ShapeError
from .graph import Grads as Grads, Graph as Graph, Node as Node
from .modes import Frozen as Frozen, Mut as Mut, Shared as Shared
from .ops import abs as abs, clip as clip, concatenate as concatenate, exp as exp, log as log
from .ops import matmul as matmul, maximum as maximum, minimum as minimum, relu as relu
from .ops import sigmoid as sigmoid, sqrt as sqrt, stack as stack, tanh as tanh, where as where
from .tensor import Tensor as Tensor
from . import data as data, nn as nn, optim as optim
from .io import load as load, save as save
from .training import fit as fit

__version__: str

__all__ = [
    "Graph", "Grads", "Node", "Tensor", "Mut", "Shared", "Frozen",
    "BorrowError", "GraphError", "ShapeError", "DeviceError", "GradError",
    "maximum", "minimum", "where", "clip", "concatenate", "stack", "matmul",
    "exp", "log", "tanh", "sqrt", "sigmoid", "relu", "abs",
    "nn", "optim", "data", "fit", "save", "load",
]
