"""Correct uses of nn / optim / data / fit / save / load."""

from __future__ import annotations

import numpy as np
from typing_extensions import assert_type

import owngrad as og


def train(x: np.ndarray, y: np.ndarray) -> None:
    g = og.Graph()
    model = og.nn.MLP(g, [4, 8, 2])
    opt = og.optim.Adam(model.parameters(), lr=1e-3)
    assert_type(model.parameters(), list[og.Tensor[og.Mut]])
    out = model(g.constant(x))
    assert_type(out, og.Tensor[og.Mut])
    loss = og.nn.functional.cross_entropy(out, y)
    opt.step(g.backward(loss))
    lin = og.nn.Linear(g, 4, 2)
    assert_type(lin.weight, og.Tensor[og.Mut])
    with g.no_grad():
        lin.weight.mul_(0.5)
    hist = og.fit(model, og.data.batches(x, y, 16), og.nn.functional.cross_entropy, opt, epochs=1,
                  metrics={"acc": og.training.accuracy}, progress=False)
    assert_type(hist, dict[str, list[float]])
    og.save("model.npz", model)
    og.load("model.npz", into=model)


def captured_step(g: og.Graph, model: og.nn.Sequential, opt: og.optim.SGD) -> None:
    """``g.capture(fn)`` is called as ``fn`` and returns what ``fn`` returns."""

    def step(x: np.ndarray, y: np.ndarray) -> og.Tensor[og.Mut]:
        loss = og.nn.functional.cross_entropy(model(g.constant(x)), y)
        opt.step(g.backward(loss))
        return loss

    run = g.capture(step, fallback=True)
    assert_type(run(np.ones((2, 3)), np.zeros(2, np.int64)), og.Tensor[og.Mut])
    assert_type(run.replays, int)
