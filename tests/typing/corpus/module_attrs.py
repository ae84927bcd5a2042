"""Writes through a module's attributes done right: after the backward, under ``no_grad``, or to a
layer whose weights the pending result did not save (a first layer fed constant inputs saves only them)."""

from __future__ import annotations

import numpy as np

import owngrad as og


def case_head_rows_after_backward() -> None:
    g = og.Graph()
    body, head = og.nn.Linear(g, 4, 8, rng=0), og.nn.Linear(g, 8, 3, rng=1)
    x = g.constant(np.ones((5, 4)))
    loss = head(body(x).relu()).sum()
    g.backward(loss)
    head.weight[0:2] *= 0.999
    body.weight.mul_(0.5)


def case_alias_of_an_attribute_under_no_grad_after_free() -> None:
    g = og.Graph()
    m = og.nn.Linear(g, 3, 3, rng=0)
    pre = og.nn.Linear(g, 3, 3, rng=1)
    x = g.constant(np.ones((2, 3)))
    loss = m(pre(x)).sum()
    g.free(loss)
    w = m.weight
    with g.no_grad():
        w[0] *= 0.5


def case_sequential_submodule() -> None:
    g = og.Graph()
    first, last = og.nn.Linear(g, 4, 8, rng=0), og.nn.Linear(g, 8, 2, rng=1)
    model = og.nn.Sequential(first, og.nn.Tanh(), last)
    x = g.constant(np.ones((3, 4)))
    loss = model(x).sum()
    first.weight.mul_(0.9)  # the first layer saw constant inputs: its weights were not saved
    g.backward(loss)
    last.weight.mul_(1.0)


if __name__ == "__main__":
    for case in (case_head_rows_after_backward, case_alias_of_an_attribute_under_no_grad_after_free,
                 case_sequential_submodule):
        case()
    print("ok")
