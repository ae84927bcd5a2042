from . import functional as functional
from .modules import MLP as MLP, BatchNorm1d as BatchNorm1d, Conv2d as Conv2d, Dropout as Dropout
from .modules import Embedding as Embedding, Flatten as Flatten, LayerNorm as LayerNorm, Linear as Linear
from .modules import MaxPool2d as MaxPool2d, Module as Module, ReLU as ReLU, Sequential as Sequential
from .modules import Sigmoid as Sigmoid, Tanh as Tanh

__all__ = ["functional", "Module", "Linear", "Conv2d", "MaxPool2d", "Flatten", "Embedding", "BatchNorm1d",
           "LayerNorm", "Dropout", "ReLU", "Tanh", "Sigmoid", "Sequential", "MLP"]
