"""Misuse the stubs reject: each bad line carries the error code it must raise (warn_unused_ignores)."""

from __future__ import annotations

import numpy as np

import owngrad as og


def gradient_handles(g: og.Graph, w: og.Tensor[og.Mut]) -> None:
    grads = g.backward((w * w).sum())
    grads[w] += 1  # type: ignore[misc]
    grads[w][0:2] += 1  # type: ignore[misc]
    grads[w][0][1] = 0.0  # type: ignore[misc]
    grads[w].T[0].zero_()  # type: ignore[misc]
    grads[w].reshape(6)[0:2] *= 2  # type: ignore[misc]
    grads[w].fill_(0.0)  # type: ignore[misc]
    grads[w].add_(1)  # type: ignore[misc]
    grads[w].sub_(1)  # type: ignore[misc]
    grads[w].mul_(1)  # type: ignore[misc]
    grads[w].div_(1)  # type: ignore[misc]
    grads[w].copy_(np.zeros((3, 2)))  # type: ignore[misc]
    grads[w].clamp_(-1, 1)  # type: ignore[misc]
    grads[w] = w  # type: ignore[index]
    with grads[w].borrow_mut() as a:  # type: ignore[misc]
        a[...] = 0


def shared_parameter(gw: og.Tensor[og.Shared]) -> None:
    gw += 1  # type: ignore[misc]
    gw -= 1  # type: ignore[misc]
    gw *= 2  # type: ignore[misc]
    gw /= 2  # type: ignore[misc]
    gw[0] = 1.0  # type: ignore[misc]
    gw[1:3] -= gw[0:2]  # type: ignore[misc]


def plain_tensor_is_read_only(t: og.Tensor) -> None:
    t.zero_()  # type: ignore[misc]
    t += 1  # type: ignore[misc]


def frozen(g: og.Graph, w: og.Tensor[og.Mut], f: og.Tensor[og.Frozen]) -> None:
    fw = g.freeze(w)
    fw[1][0] = 0.0  # type: ignore[misc]
    fw.T[0].fill_(1.0)  # type: ignore[misc]
    f += 1  # type: ignore[misc]
    f[0:2] /= 2  # type: ignore[misc]
    g.freeze(w).zero_()  # type: ignore[misc]
    m: og.Tensor[og.Mut] = fw  # type: ignore[assignment]


def no_grad_attribute(w: og.Tensor[og.Mut]) -> None:
    print(w.grad)  # type: ignore[attr-defined]
    w.grad = None  # type: ignore[attr-defined]


def hooks(g: og.Graph, w: og.Tensor[og.Mut]) -> None:
    def writes_leaf(leaf: og.Tensor[og.Frozen], grad: og.Tensor[og.Shared]) -> None:
        leaf -= grad  # type: ignore[misc]
        grad.zero_()  # type: ignore[misc]

    def wants_mut(leaf: og.Tensor[og.Mut], grad: og.Tensor[og.Shared]) -> None:
        pass

    g.backward((w * w).sum(), on_grad=writes_leaf)
    g.backward((w * w).sum(), on_grad=wants_mut)  # type: ignore[arg-type]


def higher_order_gradients_are_read_only(g: og.Graph, w: og.Tensor[og.Mut]) -> None:
    gw = g.grad((w * w).sum(), w, create_graph=True)
    gw[0:1] *= 2  # type: ignore[misc]
    g.backward((w * w).sum(), create_graph=True)[w].zero_()  # type: ignore[misc]
