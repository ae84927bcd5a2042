"""MISUSE TWIN of buffers_slices.py: every line marked MISUSE must be reported.

A replay buffer and running statistics kept in tensors and written through slices: rows a
pending forward did not read are written while it waits; the rest only after its backward."""

from __future__ import annotations

import numpy as np

import owngrad as og


class Replay:
    def __init__(self, g: og.Graph, capacity: int, dim: int) -> None:
        self.obs = g.zeros((capacity, dim))
        self.size = 0
        self.capacity = capacity

    def push(self, g: og.Graph, batch: np.ndarray) -> None:
        n = batch.shape[0]
        start = self.size % self.capacity
        with g.no_grad():
            self.obs[start:start + n] = batch
        self.size += n


def train(steps: int) -> float:
    g = og.Graph()
    rng = np.random.default_rng(3)
    replay = Replay(g, 64, 4)
    w = g.param(rng.normal(size=(6, 4)) * 0.1)
    running = g.zeros(4)
    opt = og.optim.SGD([w], lr=0.1)
    last = 0.0
    for _ in range(steps):
        replay.push(g, rng.normal(size=(8, 4)))
        head = w[0:2]
        loss = (head * head).sum() + (replay.obs[0:8] @ w[2:6].T).mean()
        with g.no_grad():
            running.mul_(0.9).add_(0.1 * replay.obs[0:8].mean(axis=0))
        grads = g.backward(loss)
        opt.step(grads)
        probe = (w[0:2] * w[0:2]).sum()
        w[5] = 0.0  # row 5: the probe read rows 0-1 only
        w[1] = 0.0  # MISUSE: the probe read row 1
        params = dict([("w", w)])
        params["w"][0].fill_(0.0)  # MISUSE: through a dict of params
        head.zero_()  # MISUSE: a view of rows the probe read
        grads[w][0:2] += 1  # MISUSE: a gradient handle is read-only
        g.free(probe)
        last = loss.item()
    return last


if __name__ == "__main__":
    print(f"loss {train(10):.4f}")
