"""Recurrent layers with PyTorch's equations, parameter shapes, initialisation and ``state_dict`` keys.

``GRU`` and ``LSTM`` run their cell over a sequence and write each step's hidden state into an
output buffer preallocated once (``out = g.zeros((T, B, H)); out[t] = h``): a write with history
into a constant is recorded, so the buffer's readers get exact gradients, and each step's matmul
saved only the row it read, so writing the next row is never refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..graph import Graph
from ..tensor import Tensor
from .modules import Module, Rng, _rng, _uniform

__all__ = ["GRUCell", "LSTMCell", "GRU", "LSTM"]


def _check_input(op: str, x: Any, features: int, ndim: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor (make arrays a tensor with g.constant(x)), got {type(x).__name__}")
    if x.ndim != ndim or x.shape[-1] != features:
        want = ("(batch, input_size)" if ndim == 2 else
                "(seq, batch, input_size) or, with batch_first, (batch, seq, ...)")
        raise ShapeError(f"{op}: expected an input of shape {want} with input_size {features}, got {x.shape}")


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
        gi = x @ self.weight_ih.T
        gh = h @ self.weight_hh.T
        if self.bias_ih is not None and self.bias_hh is not None:
            gi = gi + self.bias_ih
            gh = gh + self.bias_hh
        return gi, gh

    def _zeros(self, x: Tensor) -> Tensor:
        return x.graph.zeros((x.shape[0], self.hidden_size), dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}"


class GRUCell(_CellBase):
    """One GRU step: ``r, z = sigmoid(...)``, ``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``,
    ``h' = (1 - z) * n + z * h`` (gate order r, z, n in the weights, as torch)."""

    _gates = 3

    def forward(self, x: Any, h: Tensor | None = None) -> Tensor:
        _check_input("GRUCell", x, self.input_size, 2)
        h = self._zeros(x) if h is None else h
        gi, gh = self._parts(x, h)
        H = self.hidden_size
        r = (gi[:, :H] + gh[:, :H]).sigmoid()
        z = (gi[:, H:2 * H] + gh[:, H:2 * H]).sigmoid()
        n = (gi[:, 2 * H:] + r * gh[:, 2 * H:]).tanh()
        out: Tensor = (1.0 - z) * n + z * h
        return out


class LSTMCell(_CellBase):
    """One LSTM step: gates i, f, g, o (in that order in the weights, as torch),
    ``c' = f * c + i * g``, ``h' = o * tanh(c')``; returns ``(h', c')``."""

    _gates = 4

    def forward(self, x: Any, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        _check_input("LSTMCell", x, self.input_size, 2)
        h, c = (self._zeros(x), self._zeros(x)) if state is None else state
        gi, gh = self._parts(x, h)
        gates = gi + gh
        H = self.hidden_size
        i = gates[:, :H].sigmoid()
        f = gates[:, H:2 * H].sigmoid()
        gg = gates[:, 2 * H:3 * H].tanh()
        o = gates[:, 3 * H:].sigmoid()
        c2 = f * c + i * gg
        return o * c2.tanh(), c2


class _Sequence(Module):
    """One layer of a cell run over a sequence; the parameters carry torch's ``_l0`` suffix."""

    _cell_type: type[_CellBase] = _CellBase

    def __init__(self, g: Graph, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, rng: Rng = None, dtype: Any = np.float32) -> None:
        super().__init__(g)
        if num_layers != 1:
            raise ValueError(f"{type(self).__name__}: only num_layers=1 is supported; stack layers yourself")
        cell = self._cell_type(g, input_size, hidden_size, bias, rng, dtype)
        self.input_size, self.hidden_size, self.batch_first = input_size, hidden_size, batch_first
        # torch's keys: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0
        self.weight_ih_l0 = cell.weight_ih
        self.weight_hh_l0 = cell.weight_hh
        if cell.bias_ih is not None and cell.bias_hh is not None:
            self.bias_ih_l0 = cell.bias_ih
            self.bias_hh_l0 = cell.bias_hh
        object.__setattr__(self, "_cell", cell)  # runs the step; not a sub-module (its params are ours)

    def _sequence(self, x: Any) -> Tensor:
        _check_input(type(self).__name__, x, self.input_size, 3)
        return x.transpose(1, 0, 2) if self.batch_first else x  # type: ignore[no-any-return]

    def _output(self, out: Tensor) -> Tensor:
        return out.transpose(1, 0, 2) if self.batch_first else out

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, batch_first={self.batch_first}"


class GRU(_Sequence):
    """A GRU over a sequence (T, B, I) (``batch_first``: (B, T, I)); returns ``(outputs, h_n)`` with
    outputs (T, B, H) and h_n (1, B, H), as torch's ``nn.GRU`` with one layer."""

    _cell_type = GRUCell

    def forward(self, x: Any, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        seq = self._sequence(x)
        T, B = seq.shape[0], seq.shape[1]
        g = seq.graph
        h = g.zeros((B, self.hidden_size), dtype=seq.dtype) if h0 is None else h0[0]
        out = g.zeros((T, B, self.hidden_size), dtype=seq.dtype)  # filled in place, one row per step
        cell: GRUCell = self.__dict__["_cell"]
        for t in range(T):
            h = cell(seq[t], h)
            out[t] = h
        return self._output(out), h.unsqueeze(0)


class LSTM(_Sequence):
    """An LSTM over a sequence (T, B, I) (``batch_first``: (B, T, I)); returns ``(outputs, (h_n, c_n))``
    with outputs (T, B, H) and h_n, c_n (1, B, H), as torch's ``nn.LSTM`` with one layer."""

    _cell_type = LSTMCell

    def forward(self, x: Any, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:  # type: ignore[override]
        seq = self._sequence(x)
        T, B = seq.shape[0], seq.shape[1]
        g = seq.graph
        if state is None:
            h = g.zeros((B, self.hidden_size), dtype=seq.dtype)
            c = g.zeros((B, self.hidden_size), dtype=seq.dtype)
        else:
            h, c = state[0][0], state[1][0]
        out = g.zeros((T, B, self.hidden_size), dtype=seq.dtype)  # filled in place, one row per step
        cell: LSTMCell = self.__dict__["_cell"]
        for t in range(T):
            h, c = cell(seq[t], (h, c))
            out[t] = h
        return self._output(out), (h.unsqueeze(0), c.unsqueeze(0))
