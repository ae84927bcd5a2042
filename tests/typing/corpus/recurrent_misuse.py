"""MISUSE TWIN of recurrent.py: the same sequence models, each misused once: a write into the encoder's
head while its loss waits, a step while an LSTM probe waits, a GRU's outputs walked after the backward
of its last state consumed the steps, a free that leaves the steps to discarded outputs, a buffer row
overwritten while a pending node saved it, a second backward without ``retain=True``."""

from __future__ import annotations

import numpy as np

import owngrad as og
import owngrad.nn.functional as F


class Encoder(og.nn.Module):
    def __init__(self, g: og.Graph) -> None:
        super().__init__(g)
        self.emb = og.nn.Embedding(g, 10, 8, rng=0)
        self.attn = og.nn.MultiheadAttention(g, 8, 2, rng=1)
        self.norm = og.nn.LayerNorm(g, 8)
        self.out = og.nn.Linear(g, 8, 2, rng=2)

    def forward(self, ids: np.ndarray) -> og.Tensor[og.Mut]:
        h = self.emb(ids)
        a, _ = self.attn(h, h, h)
        return self.out(self.norm(h + a).mean(axis=1))


class LSTMHead(og.nn.Module):
    def __init__(self, g: og.Graph) -> None:
        super().__init__(g)
        self.lstm = og.nn.LSTM(g, 3, 4)
        self.head = og.nn.Linear(g, 4, 1)

    def forward(self, x: og.Tensor) -> og.Tensor[og.Mut]:
        out, _ = self.lstm(x)
        return self.head(out[-1])


def case_encoder() -> None:
    g = og.Graph()
    enc = Encoder(g)
    ids = np.random.default_rng(0).integers(0, 10, size=(4, 5))
    loss = F.cross_entropy(enc(ids), np.array([0, 1, 0, 1]))
    enc.out.weight.mul_(0.5)  # MISUSE: the head's input has history: its weight was saved
    g.backward(loss)


def case_lstm_head() -> None:
    g = og.Graph()
    model = LSTMHead(g)
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    x = g.constant(np.ones((5, 2, 3)))
    probe = model(x).sum()
    print(f"before {probe.item():.3f}")
    opt.step(g.backward((model(x) ** 2).mean()))  # MISUSE: the named probe above still holds the weights


def case_gru_outputs_after_last_state() -> None:
    g = og.Graph()
    gru = og.nn.GRU(g, 3, 4)
    opt = og.optim.SGD(gru.parameters(), lr=0.1)
    out, h = gru(g.constant(np.ones((5, 2, 3))))
    opt.step(g.backward(h.sum()))
    g.backward(out.sum())  # MISUSE: the steps were consumed by the backward of h


def case_gru_outputs_discarded() -> None:
    g = og.Graph()
    gru, head = og.nn.GRU(g, 3, 4), og.nn.Linear(g, 4, 1)
    opt = og.optim.SGD(gru.parameters(), lr=0.1)
    _, h = gru(g.constant(np.ones((5, 2, 3))))
    probe = head(h).sum()
    g.free(probe)  # frees only what no other pending node needs: the discarded outputs still need the steps
    opt.step(g.backward((gru(g.constant(np.ones((5, 2, 3))))[1] ** 2).sum()))  # MISUSE: the steps still wait


def case_state_buffer() -> None:
    g = og.Graph()
    w = g.param(np.eye(3) * 0.5)
    state = g.zeros((4, 3))
    state[0] = g.constant(np.ones(3))
    for t in range(1, 4):
        state[t - 1] = (state[t - 1] @ w).tanh()  # MISUSE: the matmul saved that row
    g.backward(state.sum())


def case_second_backward() -> None:
    g = og.Graph()
    w = g.param(np.ones(3))
    loss = (w * w * w).sum()
    g.backward(loss)
    g.backward(loss)  # MISUSE: consumed by the line above


if __name__ == "__main__":
    for case in (case_encoder, case_lstm_head, case_gru_outputs_after_last_state, case_gru_outputs_discarded,
                 case_state_buffer, case_second_backward):
        case()
