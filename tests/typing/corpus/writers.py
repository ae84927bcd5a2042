"""Every in-place writer the stubs declare, used the right way: after the backward that needed the old
values, under ``no_grad`` for a value with history, or on rows no pending node saved."""

from __future__ import annotations

import numpy as np

import owngrad as og


def case_lerp_after_backward() -> None:
    g = og.Graph()
    w = g.param(np.ones((3, 2)))
    x = g.param(np.ones((4, 3)))
    target = g.constant(np.zeros((3, 2)))
    loss = ((x @ w) ** 2).sum()
    grads = g.backward(loss)
    w.lerp_(target, 0.5)
    x.sub_(0.1 * grads[x])


def case_masked_fill_and_index_add() -> None:
    g = og.Graph()
    w = g.param(np.ones((4, 3)))
    h = g.param(np.ones((2, 4)))
    mask = g.constant(np.array([[True, False, False]] * 4))
    loss = (h @ w).sum()
    g.backward(loss)
    w.masked_fill_(mask, 0.0)
    w.index_add_(0, np.array([0, 2]), g.constant(np.ones((2, 3))))


def case_pow_on_rows_nobody_saved() -> None:
    g = og.Graph()
    w = g.param(np.full((4, 3), 2.0))
    h = g.param(np.ones((2, 2)))
    loss = (h @ w[0:2]).sum()
    w[2:4] **= 2
    w[2:4].pow_(0.5)
    g.backward(loss)


def case_pow_after_free() -> None:
    g = og.Graph()
    w = g.param(np.full((3,), 2.0))
    loss = (w * w).sum()
    print(f"loss {loss.item():.1f}")
    g.free(loss)
    w **= 2


if __name__ == "__main__":
    for case in (case_lerp_after_backward, case_masked_fill_and_index_add, case_pow_on_rows_nobody_saved,
                 case_pow_after_free):
        case()
    print("ok")
