"""The recurrence of one recurrent layer in one direction, as one rule (as cuDNN runs it).

The input projection of the whole sequence (``gi = x W_ih^T + b_ih``, shape (T, B, G*H)) is an ordinary
matmul done before; this rule runs the steps: one matmul per step for every gate of the hidden state
(``h W_hh^T + b_hh``), the cell's equations, and back-propagation through time in its vjps. Its first-order
vjps read only ``W_hh``; it saves its inputs too (under shared borrows, as torch saves a recurrent layer's),
for the differentiable vjp that replays the steps as tensor operations; the activations the first-order
backward needs are its own (``aux``), never borrowed.

Output: the hidden state after each step, in the order the steps were taken (reversed time for a
reverse direction), shape (T, B, H); an LSTM appends its final cell state as row T.
"""

from __future__ import annotations

import enum
from functools import partial
from typing import Any

from ..backend import Array, xp_of
from ..rules import _sigmoid, defrule

__all__ = ["CellKind", "SLOTS"]


class CellKind(enum.Enum):
    RNN_TANH = "rnn_tanh"
    RNN_RELU = "rnn_relu"
    GRU = "gru"
    LSTM = "lstm"


# what each step keeps for the backward, per kind (aux has shape (T, slots, B, H))
SLOTS = {CellKind.RNN_TANH: ("h_prev", "h"), CellKind.RNN_RELU: ("h_prev", "h"),
         CellKind.GRU: ("h_prev", "r", "z", "n", "gh_n"),
         CellKind.LSTM: ("h_prev", "c_prev", "i", "f", "g", "o", "tanh_c")}


def _step_forward(xp: Any, kind: CellKind, gi: Array, gh: Array, h: Array, c: Array | None,
                  keep: Array) -> tuple[Array, Array | None]:
    """One step: the new (h, c), its activations written into ``keep`` (slots, B, H)."""
    H = h.shape[-1]
    keep[0] = h
    if kind is CellKind.GRU:
        r = _sigmoid(xp, gi[:, :H] + gh[:, :H])
        z = _sigmoid(xp, gi[:, H:2 * H] + gh[:, H:2 * H])
        n = xp.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        keep[1], keep[2], keep[3], keep[4] = r, z, n, gh[:, 2 * H:]
        return (h - n) * z + n, None
    pre = gi + gh
    if kind is CellKind.LSTM:
        assert c is not None
        i, f = _sigmoid(xp, pre[:, :H]), _sigmoid(xp, pre[:, H:2 * H])
        g, o = xp.tanh(pre[:, 2 * H:3 * H]), _sigmoid(xp, pre[:, 3 * H:])
        c2 = f * c + i * g
        tc = xp.tanh(c2)
        keep[1], keep[2], keep[3], keep[4], keep[5], keep[6] = c, i, f, g, o, tc
        return o * tc, c2
    h2 = xp.tanh(pre) if kind is CellKind.RNN_TANH else xp.maximum(pre, 0)
    keep[1] = h2
    return h2, None


def _scan_fwd(xp: Any, gi: Array, h0: Array, w_hh: Array, b_hh: Array, c0: Array | None,
              kind: CellKind = CellKind.GRU, reverse: bool = False) -> tuple[Array, Array]:
    T, B = gi.shape[0], gi.shape[1]
    H = w_hh.shape[1]
    lstm = kind is CellKind.LSTM
    out = xp.empty((T + (1 if lstm else 0), B, H), dtype=gi.dtype)
    aux = xp.empty((T, len(SLOTS[kind]), B, H), dtype=gi.dtype)
    h, c = h0, c0
    w_t = w_hh.T
    for j in range(T):
        t = T - 1 - j if reverse else j
        h, c = _step_forward(xp, kind, gi[t], h @ w_t + b_hh, h, c, aux[j])
        out[j] = h
    if lstm:
        out[T] = c
    return out, aux


def _step_backward(xp: Any, kind: CellKind, keep: Array, dh: Array, dc: Array | None
                   ) -> tuple[Array, Array, Array | None, Array | None]:
    """One step back: (d gi, d gh, d c_prev, the part of d h_prev that does not go through gh) given
    (d h, d c)."""
    if kind is CellKind.GRU:
        h_prev, r, z, n, gh_n = keep[0], keep[1], keep[2], keep[3], keep[4]
        dn_pre = dh * (1.0 - z) * (1.0 - n * n)
        dr_pre = dn_pre * gh_n * r * (1.0 - r)
        dz_pre = dh * (h_prev - n) * z * (1.0 - z)
        dgi = xp.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
        dgh = xp.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
        return dgi, dgh, None, dh * z
    if kind is CellKind.LSTM:
        assert dc is not None
        c_prev, i, f, g, o, tc = keep[1], keep[2], keep[3], keep[4], keep[5], keep[6]
        dct = dc + dh * o * (1.0 - tc * tc)
        d = xp.concatenate([dct * g * i * (1.0 - i), dct * c_prev * f * (1.0 - f), dct * i * (1.0 - g * g),
                            dh * tc * o * (1.0 - o)], axis=1)
        return d, d, dct * f, None
    h2 = keep[1]
    d = dh * (1.0 - h2 * h2) if kind is CellKind.RNN_TANH else dh * (h2 > 0)
    return d, d, None, None


def _scan_vjp(g: Array, ans: Array, gi: Array, h0: Array, w_hh: Array, b_hh: Array, c0: Array | None,
              kind: CellKind = CellKind.GRU, reverse: bool = False, aux: Array = None, which: int = 0) -> Array:
    """Back-propagation through time; returns the gradient of input ``which`` (0 gi, 1 h0, 2 W_hh, 3 b_hh,
    4 c0)."""
    xp = xp_of(g)
    T = aux.shape[0]
    lstm = kind is CellKind.LSTM
    dgi_all = xp.empty((T,) + g.shape[1:2] + (w_hh.shape[0],), dtype=g.dtype) if which == 0 else None
    dw = xp.zeros_like(w_hh) if which == 2 else None
    db = xp.zeros(w_hh.shape[0], dtype=g.dtype) if which == 3 else None
    dh = xp.zeros_like(g[0])
    dc = g[T].copy() if lstm else None
    for j in range(T - 1, -1, -1):
        dh = dh + g[j]
        dgi, dgh, dc, direct = _step_backward(xp, kind, aux[j], dh, dc)
        if dgi_all is not None:
            dgi_all[T - 1 - j if reverse else j] = dgi
        if dw is not None:
            dw += dgh.T @ aux[j, 0]
        if db is not None:
            db += dgh.sum(axis=0)
        dh = dgh @ w_hh if direct is None else dgh @ w_hh + direct
    return {0: dgi_all, 1: dh, 2: dw, 3: db, 4: dc}[which]


# the first-order vjps read only W_hh (and the rule's own aux); every input is saved all the same, as torch saves
# a recurrent layer's inputs, so that a create_graph walk can replay the steps as tensor operations (nn/dvjps.py)
defrule("recurrence", _scan_fwd, *[(partial(_scan_vjp, which=i), "xyzuv") for i in range(5)], aux=True)
