"""Correct uses of the core API: must pass mypy --strict (and pyright); assert_type pins each mode."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from typing_extensions import assert_type

import owngrad as og


def leaves_and_results() -> None:
    g = og.Graph()
    w = g.param(np.zeros((3, 2)), name="w")
    b = g.param([0.0, 0.0])
    x = g.constant(np.ones((4, 3)))
    assert_type(w, og.Tensor[og.Mut])
    assert_type(x, og.Tensor[og.Mut])
    y = (x @ w + b).relu()
    assert_type(y, og.Tensor[og.Mut])
    assert_type(y.sum(axis=0, keepdims=True), og.Tensor[og.Mut])
    assert_type(og.maximum(y, 0.0), og.Tensor[og.Mut])
    assert_type(og.concatenate([w, w], axis=0), og.Tensor[og.Mut])
    assert_type(y.softmax(axis=-1).log(), og.Tensor[og.Mut])
    assert_type(w.shape, tuple[int, ...])
    assert_type(w.numpy(), NDArray[Any])
    assert_type(y.sum().item(), float)
    assert_type(w > 0, og.Tensor[og.Mut])


def writes_on_mut() -> None:
    g = og.Graph()
    w = g.param(np.zeros((4, 4)))
    w += 1
    w -= 1
    w *= 2
    w /= 2
    assert_type(w, og.Tensor[og.Mut])
    w[0:2] += 1
    w[0][1] = 0.0
    w[1, ::2] = np.zeros(2)
    w.T[0].zero_()
    w[2:4].reshape(8).fill_(1.0)
    w.add_(1).sub_(1).mul_(2).div_(2).clamp_(-1, 1)
    w.copy_(np.ones((4, 4)))
    assert_type(w[0:2], og.Tensor[og.Mut])
    assert_type(w[1][0], og.Tensor[og.Mut])
    with w.borrow_mut() as a:
        a[...] = 0
    with w.borrow() as r:
        assert_type(r, NDArray[Any])


def gradients() -> None:
    g = og.Graph()
    w = g.param(np.zeros((3, 2)))
    loss = (w * w).sum()
    grads = g.backward(loss)
    assert_type(grads, og.Grads)
    gw = grads[w]
    assert_type(gw, og.Tensor[og.Shared])
    assert_type(gw[0:2], og.Tensor[og.Shared])
    assert_type(gw.T[0], og.Tensor[og.Shared])
    assert_type(gw * 2, og.Tensor[og.Mut])  # reading a gradient into a new tensor is fine
    norm = gw.abs().max().item()
    assert_type(norm, float)
    with g.no_grad():
        w -= 0.1 * gw  # the update goes into the param, never into the gradient
        w[0:2] -= grads[w][0:2]
    for p, gp in grads.items():
        assert_type(p, og.Tensor[og.Mut])
        assert_type(gp, og.Tensor[og.Shared])
    assert_type(grads.clip_norm_(1.0), float)
    assert w in grads and len(grads) == 1


def frozen_handles() -> None:
    g = og.Graph()
    w = g.param(np.zeros((3, 2)))
    f = g.freeze(w)
    assert_type(f, og.Tensor[og.Frozen])
    assert_type(f[1][0], og.Tensor[og.Frozen])
    assert_type(f.reshape(6), og.Tensor[og.Frozen])
    assert_type(f + 1, og.Tensor[og.Mut])
    print(f.sum().item())


def read_only(t: og.Tensor) -> float:
    """A plain ``og.Tensor`` is ``Tensor[Shared]``: it accepts every mode and may only read."""
    assert_type(t, og.Tensor[og.Shared])
    return t.sum().item()


def callers() -> None:
    g = og.Graph()
    w = g.param(np.zeros(3))
    grads = g.backward((w * w).sum())
    read_only(w)
    read_only(grads[w])
    read_only(g.freeze(w))


def hooks() -> None:
    g = og.Graph()
    w = g.param(np.zeros(3))
    seen: list[float] = []

    def on_grad(leaf: og.Tensor[og.Frozen], grad: og.Tensor[og.Shared]) -> None:
        seen.append(float(leaf.sum().item() + grad.sum().item()))

    def looser(leaf: og.Tensor, grad: og.Tensor) -> None:  # accepting more is fine
        pass

    g.backward((w * w).sum(), on_grad=on_grad)
    g.backward((w * w).sum(), on_grad=looser)
    g.backward((w * w).sum(), on_grad=lambda leaf, grad: None)


def higher_order() -> None:
    g = og.Graph()
    w = g.param(np.ones(3), name="w")
    x = g.param(np.ones((2, 3)), name="x")
    loss = (x @ w).tanh().sum()
    gx = g.grad(loss, x, create_graph=True)
    assert_type(gx, og.Tensor[og.Shared])
    assert_type(g.grad(loss, [x, w], retain=True), tuple[og.Tensor[og.Shared], ...])
    assert_type(g.grad(loss, x, allow_unused=True), og.Tensor[og.Shared] | None)
    grads = g.backward((gx * gx).sum() + loss, create_graph=True)
    assert_type(grads[w], og.Tensor[og.Shared])
    penalty = (grads[w] * grads[w]).sum()  # a gradient with history is an operand like any tensor
    assert_type(penalty, og.Tensor[og.Mut])
    g.backward(penalty)
    hv = og.functional.hvp(lambda t: (t * t * t).sum(), w, np.ones(3))[1]
    assert_type(hv, og.Tensor[og.Shared])
    assert_type(og.functional.hessian(lambda t: (t * t).sum(), w), og.Tensor[og.Shared])
    assert_type(og.functional.jacobian(lambda t: t.exp(), w), og.Tensor[og.Shared])

    def pair_loss(a: og.Tensor[og.Mut], b: og.Tensor[og.Mut]) -> og.Tensor[og.Mut]:
        return (a * b).sum()

    hvs = og.functional.hvp(pair_loss, [w, x[0]], [np.ones(3), np.ones(3)])[1]
    assert_type(hvs, tuple[og.Tensor[og.Shared], ...])
