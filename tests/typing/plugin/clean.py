"""Plugin cases with no owngrad-borrow error: ordinary training code must not be flagged."""

from __future__ import annotations

import numpy as np

import owngrad as og


def train(g: og.Graph, x: np.ndarray, y: np.ndarray, epochs: int) -> list[float]:
    model = og.nn.Sequential(og.nn.Linear(g, 4, 8), og.nn.ReLU(), og.nn.Linear(g, 8, 2))
    opt = og.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history: list[float] = []
    for _ in range(epochs):
        for xb, yb in og.data.batches(x, y, batch_size=16):
            logits = model(g.constant(xb))
            loss = og.nn.functional.cross_entropy(logits, yb)
            grads = g.backward(loss)
            grads.clip_norm_(1.0)
            opt.step(grads)
            history.append(loss.item())
        with g.no_grad():
            val = model(g.constant(x)).mean()
        history.append(val.item())
    return history


def manual_sgd(g: og.Graph, steps: int) -> None:
    w = g.param(np.zeros((3, 2)))
    b = g.param(np.zeros(2))
    x = g.constant(np.ones((4, 3)))
    for _ in range(steps):
        loss = ((x @ w + b) ** 2).mean()
        grads = g.backward(loss)
        with g.no_grad():
            w -= 0.1 * grads[w]
            b.sub_(0.1 * grads[b])
        w[0].clamp_(-1.0, 1.0)


def gan_step_in_order(g: og.Graph, z: og.Tensor, real: og.Tensor) -> None:
    gen = og.nn.Linear(g, 4, 4)
    disc = og.nn.Linear(g, 4, 1)
    opt_g = og.optim.Adam(gen.parameters())
    opt_d = og.optim.Adam(disc.parameters())
    d_loss = (disc(gen(z).detach()) - disc(real)).mean()
    opt_d.step(g.backward(d_loss))
    g_loss = -disc(gen(z)).mean()
    opt_g.step(g.backward(g_loss))


def accumulate(g: og.Graph, xs: list[og.Tensor]) -> None:
    w = g.param(np.zeros(3))
    opt = og.optim.SGD([w], lr=0.01)
    grads = g.backward((xs[0] * w).sum())
    for x in xs[1:]:
        g.backward((x * w).sum(), into=grads)
    opt.step(grads)


def disjoint_rows(g: og.Graph) -> None:
    w = g.param(np.zeros((4, 3)))
    head = w[0:2]
    pending = (head * head).sum()
    with g.no_grad():
        tail = w[2:4]
        tail[tail < 0] = 0.0
        w[3] = 1.0
    g.backward(pending)
