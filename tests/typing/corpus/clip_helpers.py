"""Classification with helpers that run the backward: one clips and returns the Grads, one
accumulates micro-batch losses kept in a list, one evaluates under ``no_grad``."""

from __future__ import annotations

import numpy as np

import owngrad as og


def backward_and_clip(g: og.Graph, loss: og.Tensor, max_norm: float) -> og.Grads:
    grads = g.backward(loss)
    grads.clip_norm_(max_norm)
    return grads


def accumulated(g: og.Graph, model: og.nn.Module, xs: list[np.ndarray], ys: list[np.ndarray]) -> og.Grads:
    losses: list[og.Tensor] = []
    for x, y in zip(xs, ys):
        losses.append(og.nn.functional.cross_entropy(model(g.constant(x)), y))
    total = losses[0]
    for extra in losses[1:]:
        total = total + extra
    return g.backward(total / len(losses))


def evaluate(g: og.Graph, model: og.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with g.no_grad():
        logits = model(g.constant(x))
    return float((logits.numpy().argmax(axis=1) == y).mean())


def train(epochs: int) -> float:
    g = og.Graph()
    rng = np.random.default_rng(4)
    x = rng.normal(size=(96, 5))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = og.nn.Sequential(og.nn.Linear(g, 5, 16), og.nn.ReLU(), og.nn.Linear(g, 16, 2))
    opt = og.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for xb, yb in og.data.batches(x, y, batch_size=32):
            loss = og.nn.functional.cross_entropy(model(g.constant(xb)), yb)
            grads = backward_and_clip(g, loss, 1.0)
            opt.step(grads)
        opt.step(accumulated(g, model, [x[:48], x[48:]], [y[:48], y[48:]]))
    return evaluate(g, model, x, y)


if __name__ == "__main__":
    print(f"accuracy {train(15):.3f}")
