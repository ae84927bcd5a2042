"""Sequence models used correctly: an attention encoder over embeddings, an LSTM head, a GRU whose last
state is trained (its stacked outputs are never walked again), a GRU with both outputs in one loss, a
preallocated state buffer filled row by row, and a backward taken twice with ``retain=True``."""

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
    opt = og.optim.AdamW(enc.parameters(), lr=1e-2)
    ids = np.random.default_rng(0).integers(0, 10, size=(4, 5))
    y = np.array([0, 1, 0, 1])
    for _ in range(2):
        loss = F.cross_entropy(enc(ids), y)
        opt.step(g.backward(loss))
    enc.out.weight.mul_(0.5)


def case_lstm_head() -> None:
    g = og.Graph()
    model = LSTMHead(g)
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    x = g.constant(np.ones((5, 2, 3)))
    with g.no_grad():
        print(f"before {model(x).sum().item():.3f}")
    opt.step(g.backward((model(x) ** 2).mean()))


def case_gru_last_state() -> None:
    g = og.Graph()
    gru = og.nn.GRU(g, 3, 4)
    opt = og.optim.SGD(gru.parameters(), lr=0.1)
    out, h = gru(g.constant(np.ones((5, 2, 3))))
    opt.step(g.backward(h.sum()))
    print(out.shape)


def case_gru_outputs_used() -> None:
    g = og.Graph()
    gru, head = og.nn.GRU(g, 3, 4), og.nn.Linear(g, 4, 1)
    opt = og.optim.SGD(gru.parameters(), lr=0.1)
    out, h = gru(g.constant(np.ones((5, 2, 3))))
    loss = head(h).sum() + 0.1 * out.mean()
    opt.step(g.backward(loss))
    opt.step(g.backward((gru(g.constant(np.ones((5, 2, 3))))[0] ** 2).sum()))


def case_state_buffer() -> None:
    g = og.Graph()
    w = g.param(np.eye(3) * 0.5)
    state = g.zeros((4, 3))
    state[0] = g.constant(np.ones(3))
    for t in range(1, 4):
        state[t] = (state[t - 1] @ w).tanh()
    g.backward(state.sum())
    with g.no_grad():
        w *= 0.5


def case_retained_backward() -> None:
    g = og.Graph()
    w = g.param(np.ones(3))
    loss = (w * w * w).sum()
    first = g.backward(loss, retain=True)
    second = g.backward(loss)
    with g.no_grad():
        w -= 0.1 * first[w]
    print(second[w])


if __name__ == "__main__":
    for case in (case_encoder, case_lstm_head, case_gru_last_state, case_gru_outputs_used, case_state_buffer,
                 case_retained_backward):
        case()
    print("ok")
