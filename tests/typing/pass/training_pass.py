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


def ported_from_torch(g: og.Graph) -> None:
    """The torch surface a port reaches for: containers, init, recurrent and transformer layers, loss
    modules, LBFGS with a closure, distributions, conversions."""
    layers = og.nn.ModuleList([og.nn.Linear(g, 4, 4), og.nn.Linear(g, 4, 2)])
    assert_type(og.nn.init.xavier_uniform_(layers[0].parameters()[0]), og.Tensor[og.Mut])
    lstm = og.nn.LSTM(g, 4, 8, num_layers=2, bidirectional=True).double()
    out, (h, c) = lstm(g.randn(5, 3, 4, dtype=np.float64))
    assert_type(out, og.Tensor[og.Mut])
    enc = og.nn.TransformerEncoder(og.nn.TransformerEncoderLayer(g, 8, 2, 16), 2)
    assert_type(enc(g.randn(5, 3, 8)), og.Tensor[og.Mut])
    loss = og.nn.CrossEntropyLoss(label_smoothing=0.1)(out.flatten(0, 1)[:, :4], np.zeros(15, dtype=np.int64))
    w = g.param(np.ones(3))

    def closure() -> og.Tensor[og.Mut]:
        return ((w - 1.0) ** 2).sum()

    assert_type(og.optim.LBFGS([w], line_search_fn="strong_wolfe").step(closure), og.Tensor[og.Mut])
    d = og.distributions.Normal(w, 1.0)
    assert_type(d.rsample((2,)), og.Tensor[og.Mut])
    assert_type(og.distributions.Categorical(logits=w).sample(), og.Tensor[og.Mut])
    assert_type(w.chunk(3), list[og.Tensor[og.Mut]])
    assert_type(g.randn_like(w), og.Tensor[og.Mut])
    assert_type(w.std(unbiased=True), og.Tensor[og.Mut])
    print(loss, h, c)
