"""Recurrent layers with PyTorch's equations, parameter shapes, initialisation and ``state_dict`` keys.

``RNN``, ``GRU`` and ``LSTM`` take torch's arguments (``num_layers``, ``bias``, ``batch_first``,
``dropout`` between layers, ``bidirectional``) and name their params as torch does
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), so a torch checkpoint loads as it is.

Each layer and direction computes the input projection of the whole sequence in one matmul up front
(``x @ W_ih^T + b_ih``, shape (T, B, gates * H)), then runs the recurrence as one rule
(:mod:`owngrad.nn.recurrence`: one matmul per step for all the gates of the hidden state, as cuDNN
does, and back-propagation through time in its vjps). It saves ``W_hh`` as the matmuls it replaces
would, so an optimizer step before the backward is refused the same way. Each direction's states are
written into one buffer preallocated for every layer and direction (``hs = g.zeros((L * D, T, B, H));
hs[k] = states``): a write with history into a constant is recorded, so the buffer's readers get exact
gradients. The outputs and the final states ``h_n`` (``c_n``) are views of that buffer, on the same
recorded path (an unused ``h_n`` leaves nothing pending).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..graph import Graph, graph_of
from ..ops import concatenate
from ..tensor import Tensor
from . import functional as F
from .modules import Module, Rng, _rng, _uniform
from .recurrence import CellKind

__all__ = ["RNNCell", "GRUCell", "LSTMCell", "RNN", "GRU", "LSTM"]


def _check_input(op: str, x: Any, features: int, ndim: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor (make arrays a tensor with g.constant(x)), got {type(x).__name__}")
    if x.ndim != ndim or x.shape[-1] != features:
        want = ("(batch, input_size)" if ndim == 2 else
                "(seq, batch, input_size) or, with batch_first, (batch, seq, ...)")
        raise ShapeError(f"{op}: expected an input of shape {want} with input_size {features}, got {x.shape}")


# --- one step of each cell, given the input part ``gi`` (x W_ih^T + b_ih) and the hidden part ``gh`` ---

def _rnn_step(gi: Tensor, gh: Tensor, relu: bool) -> Tensor:
    pre = gi + gh
    return pre.relu() if relu else pre.tanh()


def _gru_step(gi: Tensor, gh: Tensor, h: Tensor, H: int) -> Tensor:
    """torch's GRU: r, z = sigmoid(...), n = tanh(gi_n + r * gh_n), h' = n + z * (h - n) (gates r, z, n)."""
    rz = (gi[:, :2 * H] + gh[:, :2 * H]).sigmoid()
    r, z = rz[:, :H], rz[:, H:]
    n = (gi[:, 2 * H:] + r * gh[:, 2 * H:]).tanh()
    out: Tensor = (h - n) * z + n
    return out


def _lstm_step(gates: Tensor, c: Tensor, H: int) -> tuple[Tensor, Tensor]:
    """torch's LSTM: gates i, f, g, o; c' = f * c + i * g, h' = o * tanh(c')."""
    s = gates.sigmoid()  # one node for the three sigmoid gates (the g quarter is not used)
    i, f, o = s[:, :H], s[:, H:2 * H], s[:, 3 * H:]
    c2 = f * c + i * gates[:, 2 * H:3 * H].tanh()
    return o * c2.tanh(), c2


class _CellBase(Module):
    """``weight_ih`` (gates * H, I), ``weight_hh`` (gates * H, H), biases (gates * H,), all drawn from
    U(-1/sqrt(H), 1/sqrt(H)) as torch."""

    _gates = 1

    def __init__(self, g: Graph, input_size: int, hidden_size: int, bias: bool = True, rng: Rng = None,
                 dtype: Any = np.float32) -> None:
        super().__init__(g)
        gen = _rng(rng, g)
        k = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
        n = self._gates * hidden_size
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = g.param(_uniform(gen, k, (n, input_size), dtype), name="weight_ih")
        self.weight_hh = g.param(_uniform(gen, k, (n, hidden_size), dtype), name="weight_hh")
        self.bias_ih = g.param(_uniform(gen, k, (n,), dtype), name="bias_ih") if bias else None
        self.bias_hh = g.param(_uniform(gen, k, (n,), dtype), name="bias_hh") if bias else None

    def _parts(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """``x W_ih^T + b_ih`` and ``h W_hh^T + b_hh``."""
        return F.linear(x, self.weight_ih, self.bias_ih), F.linear(h, self.weight_hh, self.bias_hh)

    def _zeros(self, x: Tensor) -> Tensor:
        return graph_of(x).zeros((x.shape[0], self.hidden_size), dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}"


class RNNCell(_CellBase):
    """One Elman step: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (``nonlinearity="relu"``: relu)."""

    def __init__(self, g: Graph, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", rng: Rng = None, dtype: Any = np.float32) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(g, input_size, hidden_size, bias, rng, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, x: Any, h: Tensor | None = None) -> Tensor:
        _check_input("RNNCell", x, self.input_size, 2)
        gi, gh = self._parts(x, self._zeros(x) if h is None else h)
        return _rnn_step(gi, gh, self.nonlinearity == "relu")


class GRUCell(_CellBase):
    """One GRU step: ``r, z = sigmoid(...)``, ``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``,
    ``h' = (1 - z) * n + z * h`` (gate order r, z, n in the weights, as torch)."""

    _gates = 3

    def forward(self, x: Any, h: Tensor | None = None) -> Tensor:
        _check_input("GRUCell", x, self.input_size, 2)
        h = self._zeros(x) if h is None else h
        gi, gh = self._parts(x, h)
        return _gru_step(gi, gh, h, self.hidden_size)


class LSTMCell(_CellBase):
    """One LSTM step: gates i, f, g, o (in that order in the weights, as torch),
    ``c' = f * c + i * g``, ``h' = o * tanh(c')``; returns ``(h', c')``."""

    _gates = 4

    def forward(self, x: Any, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        _check_input("LSTMCell", x, self.input_size, 2)
        h, c = (self._zeros(x), self._zeros(x)) if state is None else state
        gi, gh = self._parts(x, h)
        return _lstm_step(gi + gh, c, self.hidden_size)


class _RNNBase(Module):
    """Stacked, optionally bidirectional layers over a sequence (T, B, I) (``batch_first``: (B, T, I); an
    unbatched (T, I) input is allowed, as torch). Params per layer and direction, in torch's order:
    ``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}[_reverse]``, ``bias_ih_l{k}[_reverse]``,
    ``bias_hh_l{k}[_reverse]``, all drawn from U(-1/sqrt(H), 1/sqrt(H)) in that order."""

    _gates = 1
    _state_pairs = False  # LSTM carries (h, c)

    def __init__(self, g: Graph, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, rng: Rng = None,
                 dtype: Any = np.float32) -> None:
        super().__init__(g)
        name = type(self).__name__
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        if hidden_size < 1:
            raise ValueError(f"{name}: hidden_size must be positive, got {hidden_size}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bool(bidirectional)
        gen = _rng(rng, g)
        k, n = 1.0 / math.sqrt(hidden_size), self._gates * hidden_size
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (n, 0), "weight_hh": (n, hidden_size)}
        if bias:
            shapes.update(bias_ih=(n,), bias_hh=(n,))
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes(layer):
                for kind, shape in shapes.items():
                    full = (n, width) if kind == "weight_ih" else shape
                    setattr(self, kind + suffix, g.param(_uniform(gen, k, full, dtype), name=kind + suffix))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][:self.num_directions]

    def _weights(self, suffix: str) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        d = self.__dict__
        return (d[f"weight_ih{suffix}"], d[f"weight_hh{suffix}"], d.get(f"bias_ih{suffix}"),
                d.get(f"bias_hh{suffix}"))

    def _kind(self) -> CellKind:
        raise NotImplementedError

    def _direction(self, seq: Tensor, k: int, state: tuple[Tensor, ...], buf: Tensor) -> Tensor:
        """Layer ``k // D``, direction ``k % D``: the input projection of the whole sequence in one matmul,
        then the recurrence as one rule (one matmul per step inside); its rows go to ``buf[k]`` (the final
        hidden state at row T - 1, an LSTM's final cell state at row T). Returns the output in time order."""
        layer, reverse = divmod(k, self.num_directions)
        w_ih, w_hh, b_ih, b_hh = self._weights(self._suffixes(layer)[reverse])
        g, T = graph_of(seq), seq.shape[0]
        gi_all = F.linear(seq, w_ih, b_ih)                    # (T, B, gates * H)
        bias = b_hh if b_hh is not None else g.zeros((w_hh.shape[0],), dtype=seq.dtype)
        if b_hh is not None and self._kind() is not CellKind.GRU:
            # b_hh adds straight into every gate: add it to the projection, so the rule has one input less
            # to back-propagate (GRU's b_hn sits inside r * (h W_hn + b_hn) and stays in the rule)
            gi_all, bias = gi_all + b_hh, g.zeros((w_hh.shape[0],), dtype=seq.dtype)
        c0 = state[1] if self._state_pairs else None
        buf[k] = g.apply("recurrence", (gi_all, state[0], w_hh, bias, c0), {"kind": self._kind(),
                                                                            "reverse": bool(reverse)})
        return buf[k, T - 1::-1] if reverse else buf[k, :T]

    def _initial(self, seq: Tensor, hx: Any) -> list[tuple[Tensor, ...]]:
        """The initial state of each layer and direction (zeros when ``hx`` is None)."""
        n, B, H = self.num_layers * self.num_directions, seq.shape[1], self.hidden_size
        parts = (hx if self._state_pairs else (hx,)) if hx is not None else None
        if parts is None:
            zero = graph_of(seq).zeros((B, H), dtype=seq.dtype)
            return [(zero,) * (2 if self._state_pairs else 1)] * n
        # an array is taken as a constant, as arrays are wherever they meet tensors
        parts = tuple(graph_of(seq).constant(p) if not isinstance(p, Tensor) and hasattr(p, "shape") else p
                      for p in parts)
        for p in parts:
            if not isinstance(p, Tensor) or p.shape != (n, B, H):
                raise ShapeError(f"{type(self).__name__}: expected an initial state of shape ({n}, {B}, {H}) "
                                 f"(num_layers * num_directions, batch, hidden_size), got {getattr(p, 'shape', p)}")
        return [tuple(p[k] for p in parts) for k in range(n)]

    def _run(self, x: Any, hx: Any) -> tuple[Tensor, Any]:
        name = type(self).__name__
        unbatched = isinstance(x, Tensor) and x.ndim == 2
        if unbatched:
            x = x.unsqueeze(1)
            hx = None if hx is None else tuple(t.unsqueeze(1) for t in hx) if self._state_pairs else hx.unsqueeze(1)
        _check_input(name, x, self.input_size, 3)
        seq = x.transpose(1, 0, 2) if self.batch_first and not unbatched else x
        if seq.shape[0] == 0:
            raise ShapeError(f"{name}: the sequence is empty (input shape {x.shape}); it needs at least one step")
        states = self._initial(seq, hx)
        T, B, n = seq.shape[0], seq.shape[1], len(states)
        # every layer's and direction's hidden states (and LSTM's final cell states), preallocated once and
        # filled in place: the final states are views of it, recorded on the outputs' path
        buf = seq.graph.zeros((n, T + (1 if self._state_pairs else 0), B, self.hidden_size), dtype=seq.dtype)
        for layer in range(self.num_layers):
            ks = range(layer * self.num_directions, (layer + 1) * self.num_directions)
            outs = [self._direction(seq, k, states[k], buf) for k in ks]
            seq = outs[0] if len(outs) == 1 else concatenate(outs, axis=-1)
            if self.dropout and layer < self.num_layers - 1:
                seq = F.dropout(seq, self.dropout, self.training)  # between layers only, as torch
        out = seq.transpose(1, 0, 2) if self.batch_first and not unbatched else seq
        h_n: tuple[Tensor, ...] = (buf[:, T - 1], buf[:, T]) if self._state_pairs else (buf[:, T - 1],)
        if unbatched:
            out, h_n = out.squeeze(1), tuple(t.squeeze(1) for t in h_n)
        return out, (h_n if self._state_pairs else h_n[0])

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for k, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                           ("bidirectional", False)):
            if getattr(self, k) != default:
                s += f", {k}={getattr(self, k)}"
        return s


class _HiddenOnly(_RNNBase):
    """A layer whose state is the hidden state alone: ``forward(x, hx=None) -> (output, h_n)``."""

    def forward(self, x: Any, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        out, h = self._run(x, hx)
        return out, h


class RNN(_HiddenOnly):
    """An Elman RNN as ``torch.nn.RNN``: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``
    (``nonlinearity="relu"``: relu); returns ``(output, h_n)``, output (T, B, D * H), h_n
    (num_layers * D, B, H) with D = 2 if bidirectional."""

    def __init__(self, g: Graph, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, rng: Rng = None, dtype: Any = np.float32) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(g, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, rng,
                         dtype)
        self.nonlinearity = nonlinearity

    def _kind(self) -> CellKind:
        return CellKind.RNN_RELU if self.nonlinearity == "relu" else CellKind.RNN_TANH


class GRU(_HiddenOnly):
    """A GRU as ``torch.nn.GRU``; returns ``(output, h_n)``, output (T, B, D * H), h_n
    (num_layers * D, B, H) with D = 2 if bidirectional."""

    _gates = 3

    def _kind(self) -> CellKind:
        return CellKind.GRU


class LSTM(_RNNBase):
    """An LSTM as ``torch.nn.LSTM``; returns ``(output, (h_n, c_n))``, output (T, B, D * H), h_n and c_n
    (num_layers * D, B, H) with D = 2 if bidirectional."""

    _gates = 4
    _state_pairs = True

    def _kind(self) -> CellKind:
        return CellKind.LSTM

    def forward(self, x: Any,  # type: ignore[override]
                hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        out, h = self._run(x, hx)
        return out, h
