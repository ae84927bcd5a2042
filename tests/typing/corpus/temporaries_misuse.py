"""MISUSE TWIN of temporaries.py: a metric or a target computed outside ``no_grad`` from a result that stays
named: the named result is still pending, and the next write into a param it saved fails. (A temporary that
nothing holds -- ``model(x).sum().item()`` -- can never be walked by a backward, so it gives its borrows up:
those are the clean programs' last case.)"""

from __future__ import annotations

import numpy as np

import owngrad as og


def mlp(g: og.Graph, seed: int) -> og.nn.Sequential:
    return og.nn.Sequential(og.nn.Linear(g, 4, 8, rng=seed), og.nn.Tanh(), og.nn.Linear(g, 8, 3, rng=seed + 1))


def case_item_of_a_temporary() -> None:
    g = og.Graph()
    model = mlp(g, 0)
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    x = g.constant(np.random.default_rng(0).normal(size=(6, 4)))
    before = model(x).sum()
    print(f"before {before.item():.3f}")
    opt.step(g.backward(model(x).mean()))  # MISUSE: the named sum above still holds the last layer's weight


def case_numpy_of_a_temporary() -> None:
    g = og.Graph()
    model = mlp(g, 0)
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    x = g.constant(np.random.default_rng(0).normal(size=(6, 4)))
    scores = model(x)
    labels = scores.argmax(axis=1).numpy()
    loss = og.nn.functional.cross_entropy(model(x), labels)
    opt.step(g.backward(loss))  # MISUSE: the scores the argmax read still wait


def case_detached_target_of_a_temporary() -> None:
    g = og.Graph()
    online, target = mlp(g, 0), mlp(g, 2)
    opt = og.optim.SGD(online.parameters(), lr=0.1)
    x = g.constant(np.ones((5, 4)))
    qmax = target(x).max(axis=1)
    best = qmax.detach()
    loss = ((online(x).max(axis=1) - best) ** 2).mean()
    opt.step(g.backward(loss))
    with g.no_grad():
        for t, p in zip(target.parameters(), online.parameters()):
            t.mul_(0.99).add_(0.01 * p)  # MISUSE: qmax still waits


if __name__ == "__main__":
    for case in (case_item_of_a_temporary, case_numpy_of_a_temporary, case_detached_target_of_a_temporary):
        case()
