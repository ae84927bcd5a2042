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
