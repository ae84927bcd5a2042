"""MISUSE TWIN of protocols_branches.py: a pending probe through a ``Protocol``-typed model, a write before
the backward that a branch's loss needs, and a slice that overlaps the saved rows."""

from __future__ import annotations

from typing import Protocol

import numpy as np

import owngrad as og


class Model(Protocol):
    def __call__(self, x: og.Tensor) -> og.Tensor[og.Mut]: ...
    def parameters(self) -> list[og.Tensor[og.Mut]]: ...


def mlp(g: og.Graph) -> og.nn.Sequential:
    return og.nn.Sequential(og.nn.Linear(g, 4, 8, rng=0), og.nn.Tanh(), og.nn.Linear(g, 8, 1, rng=1))


def fit(g: og.Graph, model: Model, x: og.Tensor) -> None:
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    loss = (model(x) ** 2).mean()
    probe = model(x).sum()
    opt.step(g.backward(loss))  # MISUSE: probe still needs the model's weights
    g.free(probe)


def case_protocol_model() -> None:
    g = og.Graph()
    fit(g, mlp(g), g.constant(np.ones((5, 4))))


def case_branch_join() -> None:
    g = og.Graph()
    w = g.param(np.ones((3, 2)))
    x = g.param(np.ones((4, 3)))
    if w.size > 4:  # noqa: SIM108 (the branch join is the point)
        y = (x @ w).sum()
    else:
        y = ((x @ w) ** 2).sum()
    w.add_(1.0)  # MISUSE: y (from either arm) saved w
    g.backward(y)


def case_overlapping_slices() -> None:
    g = og.Graph()
    k = 2
    w = g.param(np.ones((4, 3)))
    h = g.param(np.ones((2, k)))
    loss = (h @ w[:k]).sum()
    w[k - 1:] *= 0.5  # MISUSE: row k - 1 was saved
    g.backward(loss)


if __name__ == "__main__":
    for case in (case_protocol_model, case_branch_join, case_overlapping_slices):
        case()
