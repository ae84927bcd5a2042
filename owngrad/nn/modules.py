"""Layers: a :class:`Module` registers its params, buffers and sub-modules as attributes are set.

Modules are built in a graph (``Linear(g, 64, 10, rng=0)``): their params are ``g.param``
leaves, so every rule of the borrow ledger applies to them -- an optimizer step, a
``load_state_dict`` or a BatchNorm running-statistics update is an in-place write that needs
an exclusive borrow. Initialisations follow PyTorch's defaults.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from ..backend import to_device
from ..errors import GraphError, ShapeError
from ..graph import Graph, graph_of
from ..handle import array_of, arrays_of, check_writable, exclusive, is_param, relabel
from ..sites import user_site
from ..tensor import Tensor
from ..tracer import note_module, recorded
from . import functional as F
from .utils import pair, tensor_of

__all__ = ["IncompatibleKeys", "Module", "Linear", "Conv2d", "MaxPool2d", "Flatten", "Unflatten", "Embedding",
           "BatchNorm1d",
           "LayerNorm",
           "Dropout", "ReLU", "Tanh", "Sigmoid", "Sequential", "MLP"]

Rng = int | np.random.Generator | None


def _rng(rng: Rng, g: Graph | None = None) -> np.random.Generator:
    """A generator: the one given, one seeded with the int given, or (None) the graph's own stream
    ``g.rng`` -- so layers built without a seed differ from each other and a program stays reproducible."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None and g is not None:
        return g.rng
    return np.random.default_rng(rng)


def _uniform(gen: np.random.Generator, bound: float, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return gen.uniform(-bound, bound, size=shape).astype(dtype)


def _is_param(t: object) -> bool:
    return is_param(t)


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` returns (as torch's): keys it had to skip."""

    missing_keys: list[str]
    unexpected_keys: list[str]


# buffers a checkpoint may lack (older owngrad checkpoints had no num_batches_tracked): torch is lenient too
_OPTIONAL_STATE = ("num_batches_tracked",)


class Module:
    """Base class. Setting an attribute to a param (``g.param``) registers it as a parameter,
    to a Module as a sub-module; :meth:`register_buffer` registers state that is not trained
    (running statistics). ``module(x)`` calls :meth:`forward`."""

    training: bool
    _capture_walk = True  # a captured step guards its attributes: hyper-parameters, mode, params, sub-modules

    def __init__(self, graph: Graph | None = None, name: str | None = None) -> None:
        object.__setattr__(self, "_graph", graph)
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_name", _check_name(name))
        object.__setattr__(self, "_prefix", f"{name}." if name else "")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every module takes ``name=`` (``MLP(g, sizes, name="actor")``): its params are then named
        ``actor.0.weight`` in messages. A subclass whose ``__init__`` has no ``name`` parameter gets it
        here; the name is applied once the outermost ``__init__`` has registered everything."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        sig = inspect.signature(init)
        if "name" in sig.parameters:
            return

        @functools.wraps(init)
        def __init__(self: Module, *args: Any, name: str | None = None, **kw: Any) -> None:
            init(self, *args, **kw)
            if name is not None:
                self._set_name(name)

        params = list(sig.parameters.values())
        kw_at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
        params.insert(kw_at, inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=None,
                                               annotation="str | None"))
        __init__.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]

    def _set_name(self, name: str) -> None:
        object.__setattr__(self, "_name", _check_name(name))
        self._relabel("")

    @property
    def name(self) -> str | None:
        """The name given with ``name=`` (None if none): it prefixes the module's params in messages."""
        return self.__dict__.get("_name")

    def clone(self) -> Module:
        """A deep copy: new params in the same graph with the same values and no history (for an EMA or a
        target network); ``copy.deepcopy(module)`` does the same."""
        return copy.deepcopy(self)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_params" not in self.__dict__:
            raise AttributeError(f"cannot assign {type(self).__name__}.{name} before Module.__init__() has run: "
                                 f"call super().__init__(g) first in {type(self).__name__}.__init__")
        params: dict[str, Tensor] = self.__dict__["_params"]
        modules: dict[str, Module] = self.__dict__["_modules"]
        buffers: dict[str, Tensor] = self.__dict__["_buffers"]
        params.pop(name, None)
        modules.pop(name, None)
        if isinstance(value, Module):
            modules[name] = value
            value._relabel(f"{self.__dict__['_prefix']}{name}.")
        elif _is_param(value):
            params[name] = value
            if self.__dict__["_prefix"]:
                value.name = self.__dict__["_prefix"] + name
                relabel(value, value.name)
        elif name in buffers:
            if not isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}.{name} is a buffer: assign a Tensor, got "
                                f"{type(value).__name__}")
            buffers[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for reg in ("_params", "_buffers", "_modules"):
            self.__dict__.get(reg, {}).pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor: Tensor) -> None:
        """Register ``tensor`` (a constant) as state saved in ``state_dict`` but not trained."""
        if not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: expected a Tensor, got {type(tensor).__name__}")
        self.__dict__["_buffers"][name] = tensor
        object.__setattr__(self, name, tensor)

    def _relabel(self, prefix: str) -> None:
        # errors name params and buffers by their state_dict key ("0.weight"), not all "weight"; a
        # module given a name= keeps it as the prefix of its own params wherever it is attached
        name = self.__dict__.get("_name")
        if name:
            prefix = name + "."
        object.__setattr__(self, "_prefix", prefix)
        for reg in ("_params", "_buffers"):
            for k, t in self.__dict__[reg].items():
                t.name = prefix + k
                relabel(t, prefix + k)
        for k, m in self.__dict__["_modules"].items():
            m._relabel(f"{prefix}{k}.")

    # --- the graph ---
    @property
    def graph(self) -> Graph:
        """The graph this module's params live in (for a param-free module, its first child's)."""
        g = self.__dict__["_graph"]
        if g is not None:
            return g  # type: ignore[no-any-return]
        for p in self.parameters():
            return graph_of(p)
        for _, b in self.named_buffers():
            return graph_of(b)
        raise GraphError(f"{type(self).__name__} has no params, so it belongs to no graph")

    # --- calling ---
    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        note_module(self)
        return self.forward(*args, **kwargs)

    # --- registry ---
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """``(dotted name, module)`` for this module (name ``prefix``) and every sub-module, each once."""
        seen: set[int] = set()

        def walk(m: Module, pre: str) -> Iterator[tuple[str, Module]]:
            if id(m) in seen:
                return
            seen.add(id(m))
            yield pre.rstrip("."), m
            for name, child in m.__dict__["_modules"].items():
                yield from walk(child, f"{pre}{name}.")

        yield from walk(self, prefix + "." if prefix else "")

    def children(self) -> list[Module]:
        return list(self.__dict__["_modules"].values())

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        """``(dotted name, param)`` for every param of this module and its sub-modules, each once."""
        seen: set[int] = set()
        for prefix, m in self.named_modules():
            for name, p in m.__dict__["_params"].items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield _join(prefix, name), p

    def parameters(self) -> list[Tensor]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        for prefix, m in self.named_modules():
            for name, b in m.__dict__["_buffers"].items():
                if id(b) not in seen:
                    seen.add(id(b))
                    yield _join(prefix, name), b

    def _state_tensors(self, prefix: str = "") -> dict[str, Tensor]:
        # torch's state_dict order and keys: per module (in registration order), its params then its
        # buffers, then its children; a shared (tied) param appears under every name it has
        out: dict[str, Tensor] = {}
        for name, p in self.__dict__["_params"].items():
            out[prefix + name] = p
        for name, b in self.__dict__["_buffers"].items():
            out[prefix + name] = b
        for name, m in self.__dict__["_modules"].items():
            out.update(m._state_tensors(f"{prefix}{name}."))
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies (host numpy arrays) of every param and buffer, keyed by dotted name, in torch's
        order and with torch's keys (``"0.weight"``, ``"1.running_mean"``)."""
        return {k: t.numpy() for k, t in self._state_tensors().items()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy ``state`` into the params and buffers, in place. All-or-nothing: with ``strict``
        (the default) missing or unexpected keys raise KeyError; a shape mismatch, or a tensor
        that cannot be written now (a pending node saved it: BorrowError), raises before anything
        is written. With ``strict=False`` only the keys present in both are loaded. Returns
        ``(missing_keys, unexpected_keys)`` as torch does."""
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict: expected a mapping of names to arrays (a state_dict), got "
                            f"{type(state).__name__}")
        own = self._state_tensors()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        # tolerated like torch: a checkpoint without BatchNorm's num_batches_tracked keeps the current count
        missing = [k for k in missing if k.rsplit(".", 1)[-1] not in _OPTIONAL_STATE]
        result = IncompatibleKeys(missing, unexpected)
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise KeyError(f"load_state_dict: the state does not match {type(self).__name__}: " + "; ".join(parts))
        own = {k: t for k, t in own.items() if k in state}
        arrays: dict[str, Any] = {}
        for k, t in own.items():
            v = state[k]
            a = v.numpy() if isinstance(v, Tensor) else np.asarray(v)
            if tuple(a.shape) != t.shape:
                raise ShapeError(f"load_state_dict: {k} has shape {tuple(a.shape)} in the state but {t.shape} "
                                 "in the module")
            if a.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: {k} has unsupported dtype {a.dtype}")
            arrays[k] = to_device(a.astype(t.dtype, copy=False), t.device)  # the one explicit transfer
        site = user_site()
        for t in own.values():
            check_writable(t, site, "load_state_dict")
            tr = t.graph._tracer
            if tr is not None:
                tr.refuse("load_state_dict", site, "load the state before or after the captured step")
        if own:
            # every exclusive borrow held for the whole load: all or nothing, also against other threads
            with exclusive(list(own.values()), site, "load_state_dict"):
                for k, t in own.items():
                    array_of(t)[...] = arrays[k]
        return result

    # --- dtype ---
    def to(self, dtype: Any) -> Module:
        """Convert every floating param and buffer to ``dtype`` (``model.to(np.float64)``, or the names
        ``"float64"``/``"float32"``); returns self. As in torch, the params are replaced: make the optimizer
        after converting. Integer buffers (``num_batches_tracked``) keep their dtype; tied params stay tied."""
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"{type(self).__name__}.to: expected a floating dtype, got {dt}")
        converted: dict[int, Tensor] = {}  # a param tied under several names becomes one new param
        for _, m in self.named_modules():
            for reg in ("_params", "_buffers"):
                for key, t in list(m.__dict__[reg].items()):
                    if t.dtype.kind != "f" or t.dtype == dt:
                        continue
                    if id(t) not in converted:
                        make = t.graph.param if reg == "_params" else t.graph.constant
                        with t.borrow() as a:
                            converted[id(t)] = make(a.astype(dt), name=t.name)
                    if reg == "_params":
                        setattr(m, key, converted[id(t)])
                    else:
                        m.register_buffer(key, converted[id(t)])
        self._relabel(self.__dict__["_prefix"])
        return self

    def double(self) -> Module:
        """``to(np.float64)``."""
        return self.to(np.float64)

    def float(self) -> Module:
        """``to(np.float32)``."""
        return self.to(np.float32)

    # --- modes ---
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active, BatchNorm uses and updates batch statistics); returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"{type(self).__name__}.train: mode must be True or False, got {mode!r}")
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        kids = self.__dict__["_modules"]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not kids:
            return head + ")"
        lines = [head]
        for name, m in kids.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + "\n)"


def _check_name(name: object) -> str | None:
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name= must be a non-empty string or None, got {name!r}")
    return name


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class Linear(Module):
    """``y = x @ weight.T + bias``; weight (out, in) and bias drawn from U(-1/sqrt(in), 1/sqrt(in))."""

    weight: Tensor
    bias: Tensor | None

    def __init__(self, g: Graph, in_features: int, out_features: int, bias: bool = True, rng: Rng = None,
                 dtype: Any = np.float32) -> None:
        super().__init__(g)
        gen = _rng(rng, g)
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.in_features, self.out_features = in_features, out_features
        self.weight = g.param(_uniform(gen, bound, (out_features, in_features), dtype), name="weight")
        self.bias = g.param(_uniform(gen, bound, (out_features,), dtype), name="bias") if bias else None

    def forward(self, x: Any) -> Tensor:
        if not hasattr(x, "shape") or not hasattr(x, "ndim") or x.ndim == 0:
            raise TypeError(f"Linear: expected a Tensor of shape (..., {self.in_features}) (make arrays a tensor "
                            f"with g.constant(x)), got {type(x).__name__}")
        if x.shape[-1] != self.in_features:
            raise ShapeError(f"Linear: expected inputs with {self.in_features} features in the last axis, got "
                             f"shape {x.shape}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-d convolution (NCHW) as ``torch.nn.Conv2d`` without groups; PyTorch's init."""

    weight: Tensor
    bias: Tensor | None

    def __init__(self, g: Graph, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, bias: bool = True, rng: Rng = None, dtype: Any = np.float32,
                 dilation: Any = 1) -> None:
        super().__init__(g)
        gen = _rng(rng, g)
        kh, kw = pair(kernel_size, "kernel_size", "Conv2d", 1)
        bound = 1.0 / math.sqrt(in_channels * kh * kw)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride = pair(stride, "stride", "Conv2d", 1)
        self.padding = pair(padding, "padding", "Conv2d", 0)
        self.dilation = pair(dilation, "dilation", "Conv2d", 1)
        self.weight = g.param(_uniform(gen, bound, (out_channels, in_channels, kh, kw), dtype), name="weight")
        self.bias = g.param(_uniform(gen, bound, (out_channels,), dtype), name="bias") if bias else None

    def forward(self, x: Any) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation)

    def extra_repr(self) -> str:
        o, c, kh, kw = self.weight.shape
        dil = f", dilation={self.dilation}" if self.dilation != (1, 1) else ""
        return f"{c}, {o}, kernel_size=({kh}, {kw}), stride={self.stride}, padding={self.padding}{dil}"


class MaxPool2d(Module):
    """Max pooling (NCHW) as ``torch.nn.MaxPool2d`` without padding; ``stride`` defaults to the kernel size."""

    def __init__(self, kernel_size: Any, stride: Any = None) -> None:
        super().__init__()
        pair(kernel_size, "kernel_size", "MaxPool2d", 1)   # validate now, not at the first forward
        if stride is not None:
            pair(stride, "stride", "MaxPool2d", 1)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride

    def forward(self, x: Any) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Flatten(Module):
    """Merge axes ``start_dim..end_dim`` (torch's defaults: all but the first): (N, ...) -> (N, prod(...))
    (a view when the input is contiguous)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Any) -> Tensor:
        return tensor_of(x, "Flatten").flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split axis ``dim`` into ``unflattened_size``, as ``torch.nn.Unflatten``."""

    def __init__(self, dim: int, unflattened_size: tuple[int, ...]) -> None:
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x: Any) -> Tensor:
        return tensor_of(x, "Unflatten").unflatten(self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Embedding(Module):
    """A lookup table ``weight`` (num_embeddings, dim) drawn from N(0, 1), as torch; ``emb(indices)``."""

    weight: Tensor

    def __init__(self, g: Graph, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 rng: Rng = None, dtype: Any = np.float32) -> None:
        super().__init__(g)
        gen = _rng(rng, g)
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} is out of range for {num_embeddings} rows")
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        w = gen.standard_normal((num_embeddings, embedding_dim)).astype(dtype)
        if padding_idx is not None:
            w[padding_idx] = 0  # as torch: the padding row starts at zero and never gets a gradient
        self.weight = g.param(w, name="weight")

    def forward(self, x: Any) -> Tensor:
        return F.embedding(self.weight, x, padding_idx=self.padding_idx)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}"


class BatchNorm1d(Module):
    """Batch normalisation of (N, C) or (N, C, L) inputs over every axis but C, as
    ``torch.nn.BatchNorm1d``. In training mode it normalises with the batch statistics (biased
    variance) and updates ``running_mean``/``running_var`` (unbiased variance) and
    ``num_batches_tracked`` in place under ``g.no_grad()`` -- exclusive borrows, like any other
    write, all taken before any of them is written; in eval mode it uses the running statistics.
    ``momentum=None`` gives the cumulative average (torch's). The state_dict keys are torch's."""

    weight: Tensor | None
    bias: Tensor | None
    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(self, g: Graph, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, dtype: Any = np.float32) -> None:
        super().__init__(g)
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm1d: momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = g.param(np.ones(num_features, dtype), name="weight") if affine else None
        self.bias = g.param(np.zeros(num_features, dtype), name="bias") if affine else None
        self.register_buffer("running_mean", g.constant(np.zeros(num_features, dtype), name="running_mean"))
        self.register_buffer("running_var", g.constant(np.ones(num_features, dtype), name="running_var"))
        self.register_buffer("num_batches_tracked", g.constant(np.array(0, np.int64), name="num_batches_tracked"))

    def forward(self, x: Any) -> Tensor:
        t = tensor_of(x, "BatchNorm1d")
        c = self.num_features
        if t.ndim not in (2, 3) or t.shape[1] != c:
            raise ShapeError(f"BatchNorm1d: expected (N, {c}) or (N, {c}, L) inputs, got shape {t.shape}")
        axes = (0,) if t.ndim == 2 else (0, 2)
        stat_shape = (1, c) if t.ndim == 2 else (1, c, 1)
        if self.training:
            n = t.size // c
            if n < 2:
                raise ValueError(f"BatchNorm1d: training needs more than one value per channel, got shape {t.shape}")
            mean = t.mean(axis=axes, keepdims=True)
            var = t.var(axis=axes, keepdims=True)
            bufs = [self.running_mean, self.running_var, self.num_batches_tracked]
            site = user_site()
            for b in bufs:
                check_writable(b, site, "BatchNorm1d running statistics")
            # in place under exclusive borrows held for all three at once: all or nothing
            with exclusive(bufs, site, "BatchNorm1d running statistics"):
                # a captured step updates the statistics at each replay
                recorded(t.graph, _running_stats, self.momentum, n, *arrays_of(bufs), array_of(mean),
                         array_of(var), writes=bufs)
            xhat = (t - mean) / (var + self.eps).sqrt()
        else:
            rm, rv = self.running_mean.reshape(stat_shape), self.running_var.reshape(stat_shape)
            xhat = (t - rm) / (rv + self.eps).sqrt()
        if self.weight is not None and self.bias is not None:
            return xhat * self.weight.reshape(stat_shape) + self.bias.reshape(stat_shape)
        return xhat

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.weight is not None}"


def _running_stats(momentum: float | None, n: int, rm: Any, rv: Any, count: Any, mean: Any, var: Any) -> None:
    """BatchNorm's running statistics, updated in place (everything computed first, then committed)."""
    c = rm.shape[0]
    new_count = count + 1
    m = 1.0 / float(new_count) if momentum is None else momentum
    new_mean = rm * (1 - m) + mean.reshape(c) * m
    new_var = rv * (1 - m) + var.reshape(c) * (m * n / (n - 1))
    count[...] = new_count
    rm[...] = new_mean
    rv[...] = new_var


class LayerNorm(Module):
    """Normalise over the last ``len(normalized_shape)`` axes, with an elementwise affine map (as torch)."""

    weight: Tensor | None
    bias: Tensor | None

    def __init__(self, g: Graph, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, dtype: Any = np.float32) -> None:
        super().__init__(g)
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.weight = g.param(np.ones(shape, dtype), name="weight") if elementwise_affine else None
        self.bias = g.param(np.zeros(shape, dtype), name="bias") if elementwise_affine and bias else None

    def forward(self, x: Any) -> Tensor:
        t = tensor_of(x, "LayerNorm")
        k = len(self.normalized_shape)
        if t.shape[t.ndim - k:] != self.normalized_shape:
            raise ShapeError(f"LayerNorm: expected inputs ending in {self.normalized_shape}, got shape {t.shape}")
        return F.layer_norm(t, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"


class Dropout(Module):
    """Inverted dropout in training mode, the identity in eval mode; ``rng`` seeds its own generator."""

    def __init__(self, p: float = 0.5, rng: Rng = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p
        self.rng = None if rng is None else _rng(rng)

    def forward(self, x: Any) -> Tensor:
        return F.dropout(x, self.p, self.training, self.rng)  # None: the input's graph's stream

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ReLU(Module):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Any) -> Tensor:
        return x.relu()  # type: ignore[no-any-return]


class Tanh(Module):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Any) -> Tensor:
        return x.tanh()  # type: ignore[no-any-return]


class Sigmoid(Module):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Any) -> Tensor:
        return x.sigmoid()  # type: ignore[no-any-return]


class Sequential(Module):
    """Modules applied in order; they are registered as ``"0"``, ``"1"``, ... (torch's names)."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def __len__(self) -> int:
        return len(self.__dict__["_modules"])

    def __getitem__(self, i: int) -> Module:
        mods: list[Module] = list(self.__dict__["_modules"].values())
        return mods[i]

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self.__dict__["_modules"].values()))

    def forward(self, x: Any) -> Tensor:
        for m in self:
            x = m(x)
        return x  # type: ignore[no-any-return]


_ACTIVATIONS: dict[str, Callable[[], Module]] = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid}


class MLP(Sequential):
    """``Linear`` layers of the given ``sizes`` (``[64, 128, 10]``: two layers) with ``activation``
    (``"relu"``, ``"tanh"``, ``"sigmoid"`` or a module factory such as ``og.nn.Tanh``) between them,
    none after the last. ``rng`` seeds every layer's init (one generator, drawn in order)."""

    def __init__(self, g: Graph, sizes: list[int] | tuple[int, ...], activation: str | Callable[[], Module] = "relu",
                 rng: Rng = None, dtype: Any = np.float32) -> None:
        if len(sizes) < 2:
            raise ValueError(f"MLP: sizes needs at least an input and an output size, got {list(sizes)}")
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(f"MLP: unknown activation {activation!r}; use one of {sorted(_ACTIVATIONS)} "
                                 "or a module factory")
            act = _ACTIVATIONS[activation]
        else:
            act = activation
        gen = _rng(rng, g)
        layers: list[Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(g, a, b, rng=gen, dtype=dtype))
            if i < len(sizes) - 2:
                layers.append(act())
        super().__init__(*layers)
        object.__setattr__(self, "_graph", g)
