"""MISUSE TWIN of module_attrs.py: writes through a module's attributes while a result that saved them
still waits for its backward."""

from __future__ import annotations

import numpy as np

import owngrad as og


def case_head_rows_before_backward() -> None:
    g = og.Graph()
    body, head = og.nn.Linear(g, 4, 8, rng=0), og.nn.Linear(g, 8, 3, rng=1)
    x = g.constant(np.ones((5, 4)))
    loss = head(body(x).relu()).sum()
    head.weight[0:2] *= 0.999  # MISUSE: head saw body's output (with history): it saved its weight
    g.backward(loss)


def case_attribute_method() -> None:
    g = og.Graph()
    m = og.nn.Linear(g, 3, 3, rng=0)
    pre = og.nn.Linear(g, 3, 3, rng=1)
    x = g.constant(np.ones((2, 3)))
    loss = m(pre(x)).sum()
    m.weight.mul_(0.5)  # MISUSE: loss saved m's weight
    g.backward(loss)


def case_alias_of_an_attribute() -> None:
    g = og.Graph()
    m = og.nn.Linear(g, 3, 3, rng=0)
    pre = og.nn.Linear(g, 3, 3, rng=1)
    x = g.constant(np.ones((2, 3)))
    loss = m(pre(x)).sum()
    w = m.weight
    with g.no_grad():
        w[0] *= 0.5  # MISUSE: no_grad does not lift the borrow loss holds
    g.backward(loss)


def case_sequential_submodule() -> None:
    g = og.Graph()
    first, last = og.nn.Linear(g, 4, 8, rng=0), og.nn.Linear(g, 8, 2, rng=1)
    model = og.nn.Sequential(first, og.nn.Tanh(), last)
    x = g.constant(np.ones((3, 4)))
    loss = model(x).sum()
    last.weight.mul_(0.9)  # MISUSE: the last layer's input has history: its weight was saved
    g.backward(loss)


if __name__ == "__main__":
    for case in (case_head_rows_before_backward, case_attribute_method, case_alias_of_an_attribute,
                 case_sequential_submodule):
        case()
