"""Optimizer misuse: step takes only the Grads of a backward; params must be writable."""

from __future__ import annotations

import owngrad as og


def steps(g: og.Graph, w: og.Tensor[og.Mut]) -> None:
    opt = og.optim.SGD([w], lr=0.1)
    grads = g.backward((w * w).sum())
    opt.step({w: grads[w]})  # type: ignore[arg-type]
    opt.step(grads[w])  # type: ignore[arg-type]
    opt.step(grads.items())  # type: ignore[arg-type]
    og.optim.SGD([grads[w]], lr=0.1)  # type: ignore[list-item]
    og.optim.SGD([g.freeze(w)], lr=0.1)  # type: ignore[list-item]
