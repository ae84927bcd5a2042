"""Derivatives of a function at a point, reverse over reverse: ``hvp``, ``jacobian``, ``hessian``.

As ``torch.autograd.functional``: ``f`` takes one tensor (``hvp``: or one per tensor of a sequence) and
returns a tensor; it is called on a fresh param holding ``x``'s values (in ``x``'s graph), so ``x`` itself
may be a constant, a param or a result, and nothing ``f`` records outlives the call (every node is consumed
by the last backward, or freed). ``jacobian(..., create_graph=True)`` is the exception: see there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backend import copy_of
from .graph import graph_of
from .handle import array_of
from .tensor import Tensor

__all__ = ["hvp", "jacobian", "hessian"]

Fn = Callable[[Tensor], Tensor]


def _point(x: Tensor, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"og.functional.{what}: x must be a Tensor, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"og.functional.{what}: x must have a floating dtype, got {x.dtype}")
    return x.graph.param(copy_of(array_of(x)), name="x")


def _call(f: Callable[..., Tensor], p: Tensor | list[Tensor], what: str) -> Tensor:
    out = f(*p) if isinstance(p, list) else f(p)
    if not isinstance(out, Tensor):
        raise TypeError(f"og.functional.{what}: f must return a Tensor, got {type(out).__name__}")
    return out


def _zeros(p: Tensor, shape: tuple[int, ...]) -> Tensor:
    return p.graph.constant(p.graph.xp.zeros(shape, dtype=p.dtype))


def hvp(f: Callable[..., Tensor], x: Tensor | Sequence[Tensor], v: Any) -> tuple[Tensor, Any]:
    """``(f(x), H v)``: the Hessian of the scalar ``f`` at ``x`` times ``v`` (``x``'s shape), by
    differentiating ``<grad f(x), v>`` -- two backward walks, no Hessian formed. ``x`` may be a sequence
    of tensors (``f`` is then called with one argument per tensor, and ``v`` is a sequence of the same
    shapes, as in ``torch.autograd.functional.hvp``): the result is then a tuple."""
    many = not isinstance(x, Tensor)
    xs = [x] if isinstance(x, Tensor) else list(x)
    vs = list(v) if many else [v]
    if len(vs) != len(xs):
        raise ValueError(f"og.functional.hvp: {len(xs)} inputs but {len(vs)} vectors")
    ps = [_point(t, "hvp") for t in xs]
    out = _call(f, ps, "hvp")
    g = graph_of(ps[0])
    grads = g.grad(out, ps, create_graph=True)
    terms = [(gr * vi).sum() for gr, vi in zip(grads, vs) if gr.requires_grad]
    hvs: list[Tensor | None] = [None] * len(ps)
    if terms:
        dot = terms[0]
        for t in terms[1:]:
            dot = dot + t
        hvs = list(g.grad(dot, ps, allow_unused=True))
    g.free(out)
    res = tuple(_zeros(p, p.shape) if h is None else h for p, h in zip(ps, hvs))
    return out, res if many else res[0]


def jacobian(f: Fn, x: Tensor, create_graph: bool = False) -> Tensor:
    """The Jacobian of ``f`` at ``x``, of shape ``f(x).shape + x.shape`` (one backward per output element).
    ``create_graph=True`` (as torch's): the Jacobian carries history, and ``f`` runs on ``x`` itself when
    ``x`` has history, so the Jacobian can be differentiated with respect to ``x``."""
    p = x if create_graph and isinstance(x, Tensor) and x.requires_grad else _point(x, "jacobian")
    out = _call(f, p, "jacobian")
    return _jacobian_of(out, p, create_graph)


def _jacobian_of(out: Tensor, p: Tensor, create_graph: bool) -> Tensor:
    from .ops import stack

    g = graph_of(p)
    if not out.requires_grad:
        return _zeros(p, out.shape + p.shape)
    rows: list[Tensor] = []
    n = out.size
    for i in range(n):
        e = np.zeros(n, dtype=out.dtype)
        e[i] = 1
        # a create_graph walk consumes nothing at once (its group goes with a later backward through it)
        row = g.grad(out, p, grad_outputs=e.reshape(out.shape), retain=not create_graph and i < n - 1,
                     create_graph=create_graph, allow_unused=True)
        rows.append(_zeros(p, p.shape) if row is None else row)
    if not rows:
        return _zeros(p, out.shape + p.shape)
    jac = stack(rows, axis=0) if create_graph else g.constant(np.stack([r.numpy() for r in rows]))
    return jac.reshape(out.shape + p.shape)


def hessian(f: Fn, x: Tensor) -> Tensor:
    """The Hessian of the scalar ``f`` at ``x``, of shape ``x.shape + x.shape`` (the Jacobian of the gradient)."""
    p = _point(x, "hessian")
    out = _call(f, p, "hessian")
    if out.size != 1:
        graph_of(p).free(out)  # a refused call leaves nothing pending
        raise ValueError(f"og.functional.hessian: f must return one element, got shape {out.shape}")
    gr = graph_of(p).grad(out, p, create_graph=True)
    h = _jacobian_of(gr, p, False)
    graph_of(p).free(out)
    return h
