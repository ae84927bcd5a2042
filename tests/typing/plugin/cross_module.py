"""Plugin cases across modules: a trainer class and a helper defined in trainer_parts.py."""

from __future__ import annotations

import numpy as np
from trainer_parts import Trainer, shrink_rows

import owngrad as og


def mlp(g: og.Graph) -> og.nn.Sequential:
    return og.nn.Sequential(og.nn.Linear(g, 4, 8), og.nn.Tanh(), og.nn.Linear(g, 8, 3))


def trainer_from_another_module(g: og.Graph, x: og.Tensor) -> None:
    model = mlp(g)
    trainer = Trainer(g, model)
    pending = model(x).sum()
    trainer.step(x)  # E: "trainer.step(...)" writes "model[2]" in place (at its line 16) while "pending" (line 18) depends on it and still waits for g.backward(...); call g.backward(pending) first, or g.free(pending)
    g.free(pending)
    trainer.step(x)
    loss = (trainer.model(x) ** 2).sum()
    g.backward(loss)
    trainer.finish(loss)  # E: "trainer.finish(...)" runs g.backward (at its line 20) on "loss" (line 22), which was already consumed by the backward or free at line 23; pass retain=True there to walk it twice, or recompute the forward


def helper_from_another_module(g: og.Graph) -> None:
    w = g.param(np.ones((4, 3)))
    h = g.param(np.ones((2, 2)))
    loss = (h @ w[2:4]).sum()
    shrink_rows(w, 2)
    shrink_rows(w, 3)  # E: "shrink_rows(...)" writes "w" in place (at its line 24) while "loss" (line 30) depends on it and still waits for g.backward(...); call g.backward(loss) first, or g.free(loss)
    g.backward(loss)
