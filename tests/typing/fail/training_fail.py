"""Optimizer misuse: step takes only the Grads of a backward; params must be writable."""

from __future__ import annotations

import owngrad as og


def steps(g: og.Graph, w: og.Tensor[og.Mut]) -> None:
    opt = og.optim.SGD([w], lr=0.1)
    grads = g.backward((w * w).sum())
    opt.step({w: grads[w]})  # type: ignore[arg-type]
    opt.step(grads[w])  # type: ignore[arg-type]
    opt.step(grads.items())  # type: ignore[arg-type]
    og.optim.SGD([grads[w]], lr=0.1)  # type: ignore[arg-type]
    og.optim.SGD([g.freeze(w)], lr=0.1)  # type: ignore[arg-type]


class Doubler(og.nn.Module):
    def forward(self, x: og.Tensor) -> og.Tensor[og.Mut]:
        return x * 2


class Identity(og.nn.Module):
    def forward(self, x: og.Tensor) -> og.Tensor:
        return x


def module_calls(g: og.Graph, w: og.Tensor[og.Mut]) -> None:
    """``module(...)`` takes the arguments of the class's forward and returns what it returns."""
    net = Doubler(g)
    net(w)[0] = 1.0  # a new result: writable
    net("x")  # type: ignore[arg-type]
    net(w, w)  # type: ignore[call-arg]
    grads = g.backward(net(w).sum())
    Identity(g)(grads[w]).zero_()  # type: ignore[misc]


def captured_step(g: og.Graph, w: og.Tensor[og.Mut]) -> None:
    """A captured step takes what its function takes; its result is what the function returns."""

    def step(scale: float) -> og.Tensor[og.Mut]:
        loss = (w * scale).sum()
        g.backward(loss)
        return loss

    run = g.capture(step)
    run("big")  # type: ignore[arg-type]
    print(run(1.0).grad)  # type: ignore[attr-defined]


def ported_from_torch(g: og.Graph, w: og.Tensor[og.Mut]) -> None:
    """Initialisations write in place, so a gradient handle is refused; LBFGS steps with a closure."""
    grads = g.backward((w * w).sum())
    og.nn.init.zeros_(grads[w])  # type: ignore[type-var]
    og.nn.init.xavier_uniform_(g.freeze(w))  # type: ignore[type-var]
    og.nn.init.kaiming_uniform_(w, mode="fan")  # type: ignore[arg-type]
    og.optim.LBFGS([w]).step(grads)  # type: ignore[arg-type]
    og.nn.RNN(g, 3, 4, nonlinearity="sigmoid")  # type: ignore[arg-type]
