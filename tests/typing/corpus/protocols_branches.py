"""A model typed by a ``Protocol``, losses chosen in ``if``/``else`` arms, and writes to slices that no
pending node saved (``w[:k]`` read, ``w[k:]`` written): all correct, nothing to report."""

from __future__ import annotations

from typing import Protocol

import numpy as np

import owngrad as og


class Model(Protocol):
    def __call__(self, x: og.Tensor) -> og.Tensor[og.Mut]: ...
    def parameters(self) -> list[og.Tensor[og.Mut]]: ...


def mlp(g: og.Graph) -> og.nn.Sequential:
    return og.nn.Sequential(og.nn.Linear(g, 4, 8, rng=0), og.nn.Tanh(), og.nn.Linear(g, 8, 1, rng=1))


def fit(g: og.Graph, model: Model, x: og.Tensor, steps: int) -> float:
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    loss = (model(x) ** 2).mean()
    value = 0.0
    for _ in range(steps):
        value = float(loss.item())
        opt.step(g.backward(loss))
        loss = (model(x) ** 2).mean()
    g.free(loss)
    return value


def case_protocol_model() -> None:
    g = og.Graph()
    print(f"loss {fit(g, mlp(g), g.constant(np.ones((5, 4))), 3):.4f}")


def case_branch_join(flag: bool) -> None:
    g = og.Graph()
    w = g.param(np.ones((3, 2)))
    x = g.param(np.ones((4, 3)))
    if flag:  # noqa: SIM108 (the branch join is the point)
        y = (x @ w).sum()
    else:
        y = ((x @ w) ** 2).sum()
    g.backward(y)
    w.add_(1.0)


def case_disjoint_slices(k: int) -> None:
    g = og.Graph()
    w = g.param(np.ones((4, 3)))
    h = g.param(np.ones((2, k)))
    loss = (h @ w[:k]).sum()
    w[k:] *= 0.5
    w[k:].zero_()
    g.backward(loss)
    w[:k] *= 0.5


if __name__ == "__main__":
    case_protocol_model()
    case_branch_join(True)
    case_branch_join(False)
    case_disjoint_slices(2)
    print("ok")
