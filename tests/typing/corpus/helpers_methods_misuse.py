"""MISUSE TWIN of helpers_methods.py: the same helpers and methods, each called while a result that needs
the old values still waits for its backward (or after the backward that consumed it); the blend without
``no_grad`` writes values with history into params."""

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


def blend(params: Sequence[og.Tensor[og.Mut]], others: Sequence[og.Tensor], tau: float) -> None:
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


def setup() -> tuple[og.Graph, og.Tensor[og.Mut], og.Tensor[og.Mut], og.Tensor[og.Mut]]:
    g = og.Graph()
    w = g.param(np.ones((3, 2)))
    x = g.param(np.ones((4, 3)))
    return g, w, x, (x @ w).sum()


def case_helper_writes_its_argument() -> None:
    g, w, x, loss = setup()
    shrink(w, 0.9)  # MISUSE: loss saved w
    g.backward(loss)


def case_helper_renormalises_rows() -> None:
    g, w, x, loss = setup()
    renormalise_rows(g, w)  # MISUSE: loss saved w
    g.backward(loss)


def case_helper_steps_an_optimizer() -> None:
    g, w, x, loss = setup()
    other = ((x @ w) * 2.0).sum()
    apply_step(og.optim.SGD([w], lr=0.1), g.backward(other))  # MISUSE: loss saved w
    g.backward(loss)


def case_blend_outside_no_grad() -> None:
    g = og.Graph()
    online, target = model_pair(g)
    blend(target.parameters(), online.parameters(), 0.05)  # MISUSE: tau * q carries history


def case_second_backward_in_a_method() -> None:
    g = og.Graph()
    online, _ = model_pair(g)
    trainer = Trainer(g, online)
    loss = trainer.loss(g.constant(np.ones((5, 4))))
    g.backward(loss)
    trainer.backward_and_step(loss)  # MISUSE: the backward above consumed loss


if __name__ == "__main__":
    for case in (case_helper_writes_its_argument, case_helper_renormalises_rows, case_helper_steps_an_optimizer,
                 case_blend_outside_no_grad, case_second_backward_in_a_method):
        case()
