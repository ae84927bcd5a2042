"""Metrics and targets computed from temporaries the right way: under ``no_grad`` (nothing recorded, nothing
saved), or before a backward that consumes them."""

from __future__ import annotations

import numpy as np

import owngrad as og


def mlp(g: og.Graph, seed: int) -> og.nn.Sequential:
    return og.nn.Sequential(og.nn.Linear(g, 4, 8, rng=seed), og.nn.Tanh(), og.nn.Linear(g, 8, 3, rng=seed + 1))


def case_metrics_under_no_grad() -> None:
    g = og.Graph()
    model = mlp(g, 0)
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    x = g.constant(np.random.default_rng(0).normal(size=(6, 4)))
    with g.no_grad():
        print(f"before {model(x).sum().item():.3f}")
        labels = model(x).argmax(axis=1).numpy()
    opt.step(g.backward(og.nn.functional.cross_entropy(model(x), labels)))
    with g.no_grad():
        acc = float((model(x).argmax(axis=1).numpy() == labels).mean())
    opt.step(g.backward(model(x).mean()))
    print(f"accuracy {acc:.2f}")


def case_target_values_before_the_update() -> None:
    g = og.Graph()
    online, target = mlp(g, 0), mlp(g, 2)
    opt = og.optim.SGD(online.parameters(), lr=0.1)
    x = g.constant(np.ones((5, 4)))
    with g.no_grad():
        best = target(x).max(axis=1).detach()
    loss = ((online(x).max(axis=1) - best) ** 2).mean()
    opt.step(g.backward(loss))
    with g.no_grad():
        for t, p in zip(target.parameters(), online.parameters()):
            t.mul_(0.99).add_(0.01 * p)



def case_dropped_temporaries() -> None:
    """Temporaries outside no_grad that nothing keeps: no backward can ever walk them, so the step goes through."""
    g = og.Graph()
    model = mlp(g, 0)
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    x = g.constant(np.random.default_rng(0).normal(size=(6, 4)))
    print(f"before {model(x).sum().item():.3f}")
    labels = model(x).argmax(axis=1).numpy()
    opt.step(g.backward(og.nn.functional.cross_entropy(model(x), labels)))


if __name__ == "__main__":
    case_metrics_under_no_grad()
    case_target_values_before_the_update()
    case_dropped_temporaries()
    print("ok")
