"""Neural-network layers (:mod:`owngrad.nn.modules`) and functions (:mod:`owngrad.nn.functional`).

Modules are built in a graph -- ``og.nn.Linear(g, 64, 10, rng=0)`` -- and their params are
ordinary ``g.param`` leaves, borrow-checked like any other tensor.
"""

from __future__ import annotations

from . import dvjps as _dvjps  # noqa: F401 - registers the differentiable vjps of the functional rules
from . import functional, init
from .activations import GELU, AvgPool2d, Identity, LeakyReLU, SiLU
from .attention import MultiheadAttention
from .containers import ModuleDict, ModuleList, ParameterList
from .loss_modules import (
                           BCELoss,
                           BCEWithLogitsLoss,
                           CrossEntropyLoss,
                           HuberLoss,
                           KLDivLoss,
                           L1Loss,
                           MSELoss,
                           NLLLoss,
                           SmoothL1Loss,
)
from .modules import (
                           MLP,
                           BatchNorm1d,
                           Conv2d,
                           Dropout,
                           Embedding,
                           Flatten,
                           LayerNorm,
                           Linear,
                           MaxPool2d,
                           Module,
                           ReLU,
                           Sequential,
                           Sigmoid,
                           Tanh,
                           Unflatten,
)
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .transformer import (
                           Transformer,
                           TransformerDecoder,
                           TransformerDecoderLayer,
                           TransformerEncoder,
                           TransformerEncoderLayer,
)

__all__ = ["functional", "Module", "Linear", "Conv2d", "MaxPool2d", "Flatten", "Embedding", "BatchNorm1d",
           "LayerNorm", "Dropout", "ReLU", "Tanh", "Sigmoid", "Sequential", "MLP", "GELU", "SiLU", "LeakyReLU",
           "Identity", "AvgPool2d", "GRUCell", "LSTMCell", "GRU", "LSTM", "MultiheadAttention",
           "RNN", "RNNCell", "Transformer", "TransformerEncoder", "TransformerEncoderLayer", "TransformerDecoder",
           "TransformerDecoderLayer",
           "init", "Unflatten", "ModuleList", "ModuleDict", "ParameterList", "NLLLoss", "MSELoss",
           "CrossEntropyLoss", "BCELoss",
           "BCEWithLogitsLoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "KLDivLoss"]
