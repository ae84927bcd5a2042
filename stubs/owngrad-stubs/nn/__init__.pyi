from . import functional as functional
from . import init as init
from .activations import GELU as GELU
from .activations import AvgPool2d as AvgPool2d
from .activations import Identity as Identity
from .activations import LeakyReLU as LeakyReLU
from .activations import SiLU as SiLU
from .attention import MultiheadAttention as MultiheadAttention
from .containers import ModuleDict as ModuleDict
from .containers import ModuleList as ModuleList
from .containers import ParameterList as ParameterList
from .loss_modules import BCELoss as BCELoss
from .loss_modules import BCEWithLogitsLoss as BCEWithLogitsLoss
from .loss_modules import CrossEntropyLoss as CrossEntropyLoss
from .loss_modules import HuberLoss as HuberLoss
from .loss_modules import KLDivLoss as KLDivLoss
from .loss_modules import L1Loss as L1Loss
from .loss_modules import MSELoss as MSELoss
from .loss_modules import NLLLoss as NLLLoss
from .loss_modules import SmoothL1Loss as SmoothL1Loss
from .modules import MLP as MLP
from .modules import BatchNorm1d as BatchNorm1d
from .modules import Conv2d as Conv2d
from .modules import Dropout as Dropout
from .modules import Embedding as Embedding
from .modules import Flatten as Flatten
from .modules import LayerNorm as LayerNorm
from .modules import Linear as Linear
from .modules import MaxPool2d as MaxPool2d
from .modules import Module as Module
from .modules import ReLU as ReLU
from .modules import Sequential as Sequential
from .modules import Sigmoid as Sigmoid
from .modules import Tanh as Tanh
from .modules import Unflatten as Unflatten
from .recurrent import GRU as GRU
from .recurrent import LSTM as LSTM
from .recurrent import RNN as RNN
from .recurrent import GRUCell as GRUCell
from .recurrent import LSTMCell as LSTMCell
from .recurrent import RNNCell as RNNCell
from .transformer import Transformer as Transformer
from .transformer import TransformerDecoder as TransformerDecoder
from .transformer import TransformerDecoderLayer as TransformerDecoderLayer
from .transformer import TransformerEncoder as TransformerEncoder
from .transformer import TransformerEncoderLayer as TransformerEncoderLayer

__all__ = ["functional", "Module", "Linear", "Conv2d", "MaxPool2d", "Flatten", "Embedding", "BatchNorm1d",
           "LayerNorm", "Dropout", "ReLU", "Tanh", "Sigmoid", "Sequential", "MLP", "GELU", "SiLU", "LeakyReLU",
           "Identity", "AvgPool2d", "GRUCell", "LSTMCell", "GRU", "LSTM", "MultiheadAttention",
           "RNN", "RNNCell", "Transformer", "TransformerEncoder", "TransformerEncoderLayer", "TransformerDecoder",
           "TransformerDecoderLayer",
           "init", "Unflatten", "ModuleList", "ModuleDict", "ParameterList", "NLLLoss", "MSELoss",
           "CrossEntropyLoss", "BCELoss",
           "BCEWithLogitsLoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "KLDivLoss"]
