"""MISUSE TWIN of writers.py: each case writes, with one of the less common writers, a tensor that a
pending result saved; every line marked MISUSE must be reported (and fails at run time there)."""

from __future__ import annotations

import numpy as np

import owngrad as og


def case_lerp_before_backward() -> None:
    g = og.Graph()
    w = g.param(np.ones((3, 2)))
    x = g.param(np.ones((4, 3)))
    target = g.constant(np.zeros((3, 2)))
    loss = ((x @ w) ** 2).sum()
    w.lerp_(target, 0.5)  # MISUSE: loss saved w (x needs its gradient)
    g.backward(loss)


def case_masked_fill_before_backward() -> None:
    g = og.Graph()
    w = g.param(np.ones((4, 3)))
    h = g.param(np.ones((2, 4)))
    mask = g.constant(np.array([[True, False, False]] * 4))
    loss = (h @ w).sum()
    w.masked_fill_(mask, 0.0)  # MISUSE: loss saved w
    g.backward(loss)


def case_index_add_before_backward() -> None:
    g = og.Graph()
    w = g.param(np.ones((4, 3)))
    h = g.param(np.ones((2, 4)))
    loss = (h @ w).sum()
    w.index_add_(0, np.array([0, 2]), g.constant(np.ones((2, 3))))  # MISUSE: loss saved w
    g.backward(loss)


def case_pow_on_saved_rows() -> None:
    g = og.Graph()
    w = g.param(np.full((4, 3), 2.0))
    h = g.param(np.ones((2, 2)))
    loss = (h @ w[0:2]).sum()
    w[1:3].pow_(0.5)  # MISUSE: row 1 was saved
    g.backward(loss)


def case_ipow_before_backward() -> None:
    g = og.Graph()
    w = g.param(np.full((3,), 2.0))
    loss = (w * w).sum()
    print(f"loss {loss.item():.1f}")
    w **= 2  # MISUSE: loss saved w
    g.backward(loss)


if __name__ == "__main__":
    for case in (case_lerp_before_backward, case_masked_fill_before_backward, case_index_add_before_backward,
                 case_pow_on_saved_rows, case_ipow_before_backward):
        case()
