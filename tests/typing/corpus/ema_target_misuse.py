"""MISUSE TWIN of ema_target.py: every line marked MISUSE must be reported.

A regression model with an exponential moving average of its weights and a DQN-style target
network: both are updated from the online weights in loops over ``zip(...)``, under ``no_grad``,
while the next step's forward is already recorded."""

from __future__ import annotations

import numpy as np

import owngrad as og


def mlp(g: og.Graph) -> og.nn.Sequential:
    return og.nn.Sequential(og.nn.Linear(g, 3, 8), og.nn.Tanh(), og.nn.Linear(g, 8, 1))


def ema_update(g: og.Graph, ema: og.nn.Module, model: og.nn.Module, decay: float) -> None:
    with g.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.mul_(decay).add_((1.0 - decay) * p)


def train(steps: int) -> float:
    g = og.Graph()
    rng = np.random.default_rng(2)
    model, ema, target = mlp(g), mlp(g), mlp(g)
    opt = og.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    w_true = rng.normal(size=(3, 1))
    with g.no_grad():
        for t, p in zip(target.parameters(), model.parameters()):
            t.copy_(p)
    loss_value = 0.0
    for step in range(steps):
        x = rng.normal(size=(32, 3))
        y = x @ w_true
        pred = model(g.constant(x))
        with g.no_grad():
            bootstrap = target(g.constant(x))
        loss = og.nn.functional.mse_loss(pred, y + 0.0 * bootstrap.numpy())
        opt.step(g.backward(loss))
        ema_update(g, ema, model, 0.9)
        nxt = model(g.constant(x)).mean()  # the next forward is pending while the target is refreshed
        if step % 5 == 0:
            for t, p in zip(target.parameters(), model.parameters()):
                t.mul_(0.0).add_(p)  # MISUSE: p has history, outside no_grad
        for e, q in zip(ema.parameters(), model.parameters()):
            q.mul_(1.0)  # MISUSE: nxt depends on the online model
            e.mul_(0.9)
        g.free(nxt)
        loss_value = loss.item()
    return loss_value


if __name__ == "__main__":
    print(f"loss {train(40):.4f}")
