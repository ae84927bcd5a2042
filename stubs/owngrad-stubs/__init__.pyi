"""owngrad: reverse-mode autodiff on numpy/cupy whose tensors obey Rust-style borrow rules (typed contract)."""

from . import data as data
from . import distributions as distributions
from . import functional as functional
from . import nn as nn
from . import optim as optim
from .capture import CapturedStep as CapturedStep
from .errors import BorrowError as BorrowError
from .errors import DeviceError as DeviceError
from .errors import GradError as GradError
from .errors import GraphError as GraphError
from .errors import ShapeError as ShapeError
from .graph import Grads as Grads
from .graph import Graph as Graph
from .graph import Node as Node
from .io import load as load
from .io import save as save
from .modes import Frozen as Frozen
from .modes import Mut as Mut
from .modes import Shared as Shared
from .ops import abs as abs
from .ops import clip as clip
from .ops import concatenate as concatenate
from .ops import einsum as einsum
from .ops import exp as exp
from .ops import log as log
from .ops import matmul as matmul
from .ops import maximum as maximum
from .ops import minimum as minimum
from .ops import pad as pad
from .ops import relu as relu
from .ops import sigmoid as sigmoid
from .ops import split as split
from .ops import sqrt as sqrt
from .ops import stack as stack
from .ops import take_along_axis as take_along_axis
from .ops import tanh as tanh
from .ops import where as where
from .tensor import Tensor as Tensor
from .training import fit as fit

__version__: str

__all__ = [
    "Graph", "Grads", "Node", "Tensor", "Mut", "Shared", "Frozen", "CapturedStep",
    "BorrowError", "GraphError", "ShapeError", "DeviceError", "GradError",
    "maximum", "minimum", "where", "clip", "concatenate", "stack", "matmul", "einsum", "split", "pad",
    "take_along_axis",
    "exp", "log", "tanh", "sqrt", "sigmoid", "relu", "abs",
    "nn", "optim", "data", "distributions", "functional", "fit", "save", "load",
]
