"""Training code factored into helpers and a trainer class, each called at the right time: a helper that
writes its argument, one that renormalises rows, one that steps an optimizer, one that blends params given
as ``Sequence[Tensor[Mut]]`` (under ``no_grad``), and a method that runs the backward."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import owngrad as og


def shrink(w: og.Tensor[og.Mut], factor: float) -> None:
    w.mul_(factor)


def renormalise_rows(g: og.Graph, w: og.Tensor[og.Mut]) -> None:
    with g.no_grad():
        w /= w.norm(axis=1, keepdims=True) + 1e-6


def apply_step(opt: og.optim.Optimizer, grads: og.Grads) -> None:
    opt.step(grads)


def blend(g: og.Graph, params: Sequence[og.Tensor[og.Mut]], others: Sequence[og.Tensor], tau: float) -> None:
    with g.no_grad():
        for p, q in zip(params, others):
            p.mul_(1.0 - tau).add_(tau * q)


class Trainer:
    def __init__(self, g: og.Graph, model: og.nn.Sequential) -> None:
        self.g = g
        self.model = model
        self.opt = og.optim.SGD(model.parameters(), lr=0.1)

    def loss(self, x: og.Tensor) -> og.Tensor[og.Mut]:
        return (self.model(x) ** 2).mean()

    def backward_and_step(self, loss: og.Tensor) -> float:
        grads = self.g.backward(loss)
        self.opt.step(grads)
        return float(loss.item())


def model_pair(g: og.Graph) -> tuple[og.nn.Sequential, og.nn.Sequential]:
    def make(seed: int) -> og.nn.Sequential:
        return og.nn.Sequential(og.nn.Linear(g, 4, 8, rng=seed), og.nn.Tanh(), og.nn.Linear(g, 8, 1, rng=seed + 1))
    return make(0), make(2)


def case_helpers_after_backward() -> None:
    g = og.Graph()
    w = g.param(np.ones((3, 2)))
    x = g.param(np.ones((4, 3)))
    loss = (x @ w).sum()
    grads = g.backward(loss)
    shrink(w, 0.9)
    renormalise_rows(g, w)
    apply_step(og.optim.SGD([x], lr=0.1), grads)


def case_blend_and_trainer() -> None:
    g = og.Graph()
    online, target = model_pair(g)
    trainer = Trainer(g, online)
    x = g.constant(np.ones((5, 4)))
    loss = trainer.loss(x)
    print(f"loss {trainer.backward_and_step(loss):.3f}")
    blend(g, target.parameters(), online.parameters(), 0.05)
    again = trainer.loss(x)
    trainer.backward_and_step(again)


if __name__ == "__main__":
    case_helpers_after_backward()
    case_blend_and_trainer()
    print("ok")
