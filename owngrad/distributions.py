"""Probability distributions for policy-gradient and VAE code, with ``torch.distributions``' names and
formulas: :class:`Categorical`, :class:`Bernoulli`, :class:`Normal` (with the reparameterised
``rsample``) and :class:`MultivariateNormal`.

Parameters are tensors of one graph (numbers and arrays broadcast against them); ``log_prob`` and
``entropy`` are differentiable in them. ``sample`` draws from the graph's seeded stream ``g.rng`` and
returns a constant (no gradient, as torch's); ``Normal.rsample`` and ``MultivariateNormal.rsample``
return ``loc + scale * eps`` with ``eps`` drawn from ``g.rng``, differentiable in ``loc`` and ``scale``.
Draws are recorded when a step is captured, so each replay draws afresh.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import Array, device_of, to_device, xp_of
from .errors import ShapeError
from .graph import Graph, graph_of
from .handle import array_of
from .nn import functional as F
from .ops import take_along_axis
from .tensor import Tensor
from .tracer import recorded

__all__ = ["Distribution", "Categorical", "Bernoulli", "Normal", "MultivariateNormal"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _graph_of(name: str, *params: Any) -> Graph:
    for p in params:
        if isinstance(p, Tensor):
            return graph_of(p)
    raise TypeError(f"{name}: give the parameters as tensors of a graph (g.param(...) or g.constant(...)), "
                    f"got {', '.join(type(p).__name__ for p in params if p is not None)}")


def _tensor(g: Graph, x: Any, dtype: Any) -> Tensor:
    return x if isinstance(x, Tensor) else g.constant(np.asarray(x, dtype=dtype))


def _shape(sample_shape: Any) -> tuple[int, ...]:
    return (int(sample_shape),) if isinstance(sample_shape, int) else tuple(int(s) for s in sample_shape)


def _one_of(name: str, a: Any, b: Any, what: str) -> None:
    if (a is None) == (b is None):
        raise ValueError(f"{name}: give exactly one of {what}")


class Distribution:
    """The common surface: ``batch_shape``, ``event_shape``, ``sample(sample_shape=())``, ``log_prob(value)``,
    ``entropy()``, ``mean``, ``variance``, ``stddev``."""

    batch_shape: tuple[int, ...] = ()
    event_shape: tuple[int, ...] = ()
    graph: Graph

    def sample(self, sample_shape: Any = ()) -> Tensor:
        raise NotImplementedError

    def log_prob(self, value: Any) -> Tensor:
        raise NotImplementedError

    def entropy(self) -> Tensor:
        raise NotImplementedError

    @property
    def stddev(self) -> Tensor:
        return self.variance.sqrt()

    @property
    def variance(self) -> Tensor:
        raise NotImplementedError

    def _value(self, value: Any, dtype: Any) -> Tensor:
        if isinstance(value, Tensor):
            if value.graph is not self.graph:
                from .errors import GraphError

                raise GraphError(f"{type(self).__name__}.log_prob: the value belongs to another graph")
            return value
        return self.graph.constant(np.asarray(value, dtype=dtype))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_shape={self.batch_shape}, event_shape={self.event_shape})"


def _index_column(idx: Array, shape: tuple[int, ...]) -> Array:
    """Integer values broadcast to ``shape``, with a trailing axis to gather along."""
    return xp_of(idx).broadcast_to(idx, shape)[..., None]


def _categorical_draw(rng: np.random.Generator, given: Array, from_logits: bool, shape: tuple[int, ...]) -> Array:
    """Inverse-CDF draws of categories (on the host), from probabilities or normalised logits."""
    p = np.asarray(to_device(given, "cpu"), dtype=np.float64)
    if from_logits:
        p = np.exp(p)
    cdf = np.cumsum(p, axis=-1)
    u = rng.random(shape + (1,)) * cdf[..., -1:]
    return to_device(np.minimum((u >= cdf).sum(axis=-1), p.shape[-1] - 1).astype(np.int64), device_of(given))


def _bernoulli_draw(rng: np.random.Generator, given: Array, from_logits: bool, shape: tuple[int, ...]) -> Array:
    p = np.asarray(to_device(given, "cpu"), dtype=np.float64)
    if from_logits:
        p = 1.0 / (1.0 + np.exp(-p))
    return to_device((rng.random(shape) < p).astype(given.dtype), device_of(given))


class _Discrete(Distribution):
    """Parameterised by ``probs`` or ``logits`` (exactly one); the other is computed when first asked for
    (as torch's lazy properties), so no unused node is recorded. Subclasses say how to turn one into the
    other (``_to_probs``, ``_to_logits``) and how to draw on the host (``_draw``)."""

    _draw: Callable[[np.random.Generator, Array, bool, tuple[int, ...]], Array]

    def __init__(self, probs: Any, logits: Any) -> None:
        name = type(self).__name__
        _one_of(name, probs, logits, "probs or logits")
        self.graph = g = _graph_of(name, probs, logits)
        self._probs = None if probs is None else _tensor(g, probs, np.float32)
        self._logits = None if logits is None else _tensor(g, logits, np.float32)

    def _to_probs(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def _to_logits(self, clamped_probs: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def probs(self) -> Tensor:
        if self._probs is None:
            assert self._logits is not None
            self._probs = self._to_probs(self._logits)
        return self._probs

    @property
    def logits(self) -> Tensor:
        if self._logits is None:
            p = self.probs
            eps = float(np.finfo(p.dtype).eps)
            self._logits = self._to_logits(p.clip(eps, 1 - eps))  # torch's probs_to_logits clamps the same way
        return self._logits

    def sample(self, sample_shape: Any = ()) -> Tensor:
        shape = _shape(sample_shape) + self.batch_shape
        from_logits = self._probs is None
        given = self._logits if from_logits else self._probs
        assert given is not None
        return self.graph.constant(recorded(self.graph, type(self)._draw, self.graph.rng, array_of(given),
                                            from_logits, shape))


class Categorical(_Discrete):
    """Categories ``0..K-1`` with ``probs`` (normalised along the last axis) or ``logits`` (unnormalised log
    probabilities), as ``torch.distributions.Categorical``; samples are int64."""

    _draw = staticmethod(_categorical_draw)

    def __init__(self, probs: Any = None, logits: Any = None) -> None:
        super().__init__(probs, logits)
        given = self._probs if self._probs is not None else self._logits
        assert given is not None
        if given.ndim < 1:
            raise ShapeError("Categorical: probs/logits need at least one axis (the categories)")
        if self._probs is not None:
            self._probs = given / given.sum(axis=-1, keepdims=True)
        else:
            self._logits = given - given.logsumexp(axis=-1, keepdims=True)
        self.batch_shape = given.shape[:-1]
        self._k = given.shape[-1]

    def _to_probs(self, logits: Tensor) -> Tensor:
        return logits.softmax(axis=-1)

    def _to_logits(self, clamped_probs: Tensor) -> Tensor:
        return clamped_probs.log()

    @property
    def num_categories(self) -> int:
        return self._k

    def log_prob(self, value: Any) -> Tensor:
        v = self._value(value, np.int64)
        if v.dtype.kind not in "iu":
            raise TypeError(f"Categorical.log_prob: values must be integer categories, got {v.dtype}")
        shape = tuple(np.broadcast_shapes(v.shape, self.batch_shape))
        logits = self.logits.expand(*shape, self.num_categories) if shape != self.batch_shape else self.logits
        idx = recorded(self.graph, _index_column, array_of(v), shape)  # the values may be a captured input
        out: Tensor = take_along_axis(logits, idx, axis=-1)
        return out.squeeze(-1)

    def entropy(self) -> Tensor:
        # as torch: logits clamped to the dtype's lowest finite value, so 0 * log 0 counts as 0
        plogp = self.probs * self.logits.clip(float(np.finfo(self.logits.dtype).min), None)
        out: Tensor = -plogp.sum(axis=-1)
        return out

    @property
    def mean(self) -> Tensor:
        raise NotImplementedError("Categorical has no mean (as torch: its categories are labels)")


class Bernoulli(_Discrete):
    """0/1 outcomes with ``probs`` or ``logits``, as ``torch.distributions.Bernoulli``; samples are floats."""

    _draw = staticmethod(_bernoulli_draw)

    def __init__(self, probs: Any = None, logits: Any = None) -> None:
        super().__init__(probs, logits)
        given = self._probs if self._probs is not None else self._logits
        assert given is not None
        self.batch_shape = given.shape

    def _to_probs(self, logits: Tensor) -> Tensor:
        return logits.sigmoid()

    def _to_logits(self, clamped_probs: Tensor) -> Tensor:
        out: Tensor = clamped_probs.log() - (1.0 - clamped_probs).log()
        return out

    def log_prob(self, value: Any) -> Tensor:
        v = self._value(value, self.logits.dtype)
        return -F.binary_cross_entropy_with_logits(self.logits, v, reduction="none")

    def entropy(self) -> Tensor:
        return F.binary_cross_entropy_with_logits(self.logits, self.probs, reduction="none")

    @property
    def mean(self) -> Tensor:
        return self.probs

    @property
    def variance(self) -> Tensor:
        out: Tensor = self.probs * (1.0 - self.probs)
        return out


class Normal(Distribution):
    """``N(loc, scale^2)`` elementwise, as ``torch.distributions.Normal``; ``rsample`` is differentiable."""

    def __init__(self, loc: Any, scale: Any) -> None:
        self.graph = g = _graph_of("Normal", loc, scale)
        dtype = (loc if isinstance(loc, Tensor) else scale).dtype
        self.loc, self.scale = _tensor(g, loc, dtype), _tensor(g, scale, dtype)
        self.batch_shape = tuple(np.broadcast_shapes(self.loc.shape, self.scale.shape))

    def rsample(self, sample_shape: Any = ()) -> Tensor:
        eps = self.graph.randn(_shape(sample_shape) + self.batch_shape, dtype=self.loc.dtype)
        out: Tensor = self.loc + eps * self.scale
        return out

    def sample(self, sample_shape: Any = ()) -> Tensor:
        with self.graph.no_grad():
            return self.rsample(sample_shape).detach()

    def log_prob(self, value: Any) -> Tensor:
        v = self._value(value, self.loc.dtype)
        out: Tensor = -((v - self.loc) ** 2) / (2.0 * self.scale ** 2) - self.scale.log() - _HALF_LOG_2PI
        return out

    def entropy(self) -> Tensor:
        out: Tensor = (self.scale.log() + (0.5 + _HALF_LOG_2PI)).expand(*self.batch_shape)
        return out

    @property
    def mean(self) -> Tensor:
        return self.loc.expand(*self.batch_shape)

    @property
    def variance(self) -> Tensor:
        out: Tensor = (self.scale ** 2).expand(*self.batch_shape)
        return out

    @property
    def stddev(self) -> Tensor:
        return self.scale.expand(*self.batch_shape)


class MultivariateNormal(Distribution):
    """``N(loc, Sigma)`` over the last axis of ``loc`` (k), as ``torch.distributions.MultivariateNormal``,
    with one of ``covariance_matrix``, ``precision_matrix`` or ``scale_tril`` (k, k) shared by the batch.
    A constant matrix may be any positive-definite one (gradients flow to ``loc`` and the value). A matrix
    with a gradient must be diagonal when it is given (the matrix itself may be a full param): ``log_prob``,
    ``entropy`` and ``rsample`` then give torch's gradient for every entry, off-diagonal ones included."""

    def __init__(self, loc: Any, covariance_matrix: Any = None, precision_matrix: Any = None,
                 scale_tril: Any = None) -> None:
        name = "MultivariateNormal"
        given = [m for m in (covariance_matrix, precision_matrix, scale_tril) if m is not None]
        if len(given) != 1:
            raise ValueError(f"{name}: give exactly one of covariance_matrix, precision_matrix or scale_tril")
        self.graph = g = _graph_of(name, loc, *given)
        self.loc = _tensor(g, loc, given[0].dtype if isinstance(given[0], Tensor) else np.float32)
        self.matrix = _tensor(g, given[0], self.loc.dtype)
        k = self.loc.shape[-1] if self.loc.ndim else 0
        if self.loc.ndim < 1 or self.matrix.shape != (k, k):
            raise ShapeError(f"{name}: expected loc (..., k) and a (k, k) matrix, got {self.loc.shape} and "
                             f"{self.matrix.shape}")
        self.batch_shape, self.event_shape, self._k = self.loc.shape[:-1], (k,), k
        self._kind = "cov" if covariance_matrix is not None else "prec" if precision_matrix is not None else "tril"
        m = np.asarray(self.matrix.numpy(), dtype=np.float64)
        self._tril: np.ndarray | None = None
        self._scale: Tensor | None = None
        if not self.matrix.requires_grad:
            self._tril = m if self._kind == "tril" else np.linalg.cholesky(m if self._kind == "cov"
                                                                            else np.linalg.inv(m))
            return
        if np.count_nonzero(m - np.diag(np.diag(m))):
            raise ValueError(f"{name}: a matrix with a gradient must be diagonal (a full matrix is supported as a "
                             "constant only)")
        diag = (self.matrix * g.eye(k, dtype=self.matrix.dtype)).sum(axis=-1)
        self._scale = diag if self._kind == "tril" else diag.sqrt() if self._kind == "cov" else 1.0 / diag.sqrt()

    def _tangent(self) -> Tensor:
        """``M - M`` with M's gradient: zero, but carrying the off-diagonal derivatives (which a computation on
        the diagonal alone would drop) when multiplied by their coefficients."""
        return self.matrix - self.matrix.detach()

    def _half_log_det(self) -> Tensor | float:
        if self._scale is not None:
            return self._scale.log().sum()
        assert self._tril is not None
        return float(np.log(np.diag(self._tril)).sum())

    def rsample(self, sample_shape: Any = ()) -> Tensor:
        eps = self.graph.randn(_shape(sample_shape) + self.batch_shape + (self._k,), dtype=self.loc.dtype)
        if self._scale is None:
            assert self._tril is not None
            return self.loc + eps @ self.graph.constant(self._tril.T.astype(self.loc.dtype))
        if self._kind == "tril":
            return self.loc + eps @ self.matrix.T  # torch's: every entry gets a gradient
        out: Tensor = self.loc + eps * self._scale
        # the derivative of the Cholesky factor in the off-diagonal entries, as torch's symmetric gradient
        s = self._scale.detach()
        lower = self.graph.constant(np.tril(np.ones((self._k, self._k), dtype=self.loc.dtype), -1))
        d = self._tangent()
        sym = (d + d.T) * (0.5 * lower)
        if self._kind == "cov":
            return out + (eps / s) @ sym.T
        return out - (eps * s) @ sym.T * (s * s)

    def sample(self, sample_shape: Any = ()) -> Tensor:
        with self.graph.no_grad():
            return self.rsample(sample_shape).detach()

    def log_prob(self, value: Any) -> Tensor:
        diff = self._value(value, self.loc.dtype) - self.loc
        if self._scale is None:
            assert self._tril is not None
            z = diff @ self.graph.constant(np.linalg.inv(self._tril).T.astype(self.loc.dtype))
        else:
            z = diff / self._scale
        out: Tensor = -0.5 * (z * z).sum(axis=-1) - self._k * _HALF_LOG_2PI - self._half_log_det()
        if self._scale is None:
            return out
        # the off-diagonal derivatives at a diagonal matrix (zero in value): cov 0.5 w_i w_j with w = r / s^2,
        # precision -0.5 r_i r_j, scale_tril z_i z_j / L_ii below the diagonal (torch's, entry for entry)
        r, s = diff.detach(), self._scale.detach()
        off = 1.0 - self.graph.eye(self._k, dtype=self.loc.dtype)
        if self._kind == "cov":
            w = r / (s * s)
            coef = w.unsqueeze(-1) * w.unsqueeze(-2) * (0.5 * off)
        elif self._kind == "prec":
            coef = r.unsqueeze(-1) * r.unsqueeze(-2) * (-0.5 * off)
        else:
            zd = r / s
            coef = (zd / s).unsqueeze(-1) * zd.unsqueeze(-2) * off.tril()
        return out + (coef * self._tangent()).sum(axis=(-2, -1))

    def entropy(self) -> Tensor:
        h = self._half_log_det() + 0.5 * self._k * (1.0 + math.log(2 * math.pi))
        if isinstance(h, Tensor):
            return h.expand(*self.batch_shape) if self.batch_shape else h
        return self.graph.full(self.batch_shape, h, dtype=self.loc.dtype)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        if self._scale is not None:
            return (self._scale ** 2).expand(*self.batch_shape, self._k)
        assert self._tril is not None
        v = (self._tril ** 2).sum(axis=-1).astype(self.loc.dtype)
        return self.graph.constant(np.broadcast_to(v, self.batch_shape + (self._k,)).copy())
