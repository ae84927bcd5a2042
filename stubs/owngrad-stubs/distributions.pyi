"""Distributions: parameters are tensors of one graph; samples are constants, ``rsample`` carries history."""

from typing import Any

from .graph import Graph
from .modes import Mut
from .tensor import Tensor

__all__ = ["Distribution", "Categorical", "Bernoulli", "Normal", "MultivariateNormal"]

class Distribution:
    batch_shape: tuple[int, ...]
    event_shape: tuple[int, ...]
    graph: Graph
    def sample(self, sample_shape: int | tuple[int, ...] = ()) -> Tensor[Mut]: ...
    def log_prob(self, value: Any) -> Tensor[Mut]: ...
    def entropy(self) -> Tensor[Mut]: ...
    @property
    def stddev(self) -> Tensor[Mut]: ...
    @property
    def variance(self) -> Tensor[Mut]: ...

class Categorical(Distribution):
    probs: Tensor[Mut]
    logits: Tensor[Mut]
    def __init__(self, probs: Any = None, logits: Any = None) -> None: ...
    @property
    def num_categories(self) -> int: ...
    @property
    def mean(self) -> Tensor[Mut]: ...

class Bernoulli(Distribution):
    probs: Tensor[Mut]
    logits: Tensor[Mut]
    def __init__(self, probs: Any = None, logits: Any = None) -> None: ...
    @property
    def mean(self) -> Tensor[Mut]: ...

class Normal(Distribution):
    loc: Tensor[Mut]
    scale: Tensor[Mut]
    def __init__(self, loc: Any, scale: Any) -> None: ...
    def rsample(self, sample_shape: int | tuple[int, ...] = ()) -> Tensor[Mut]: ...
    @property
    def mean(self) -> Tensor[Mut]: ...

class MultivariateNormal(Distribution):
    loc: Tensor[Mut]
    matrix: Tensor[Mut]
    def __init__(self, loc: Any, covariance_matrix: Any = None, precision_matrix: Any = None,
                 scale_tril: Any = None) -> None: ...
    def rsample(self, sample_shape: int | tuple[int, ...] = ()) -> Tensor[Mut]: ...
    @property
    def mean(self) -> Tensor[Mut]: ...
