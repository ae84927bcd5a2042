"""The backward walk: from a seed gradient at the loss's node to every param's gradient.

One walk for every node kind (each node is a rule with its vjps, see node.py): nodes are
visited in reverse topological order, each node's input gradients are added (never assigned)
into its parents', broadcasting is undone once per input (:func:`~owngrad.shapes.unbroadcast`).
Each param's gradient is handed out (to ``on_grad``, and into the result) as soon as every node
reading that param has run -- the last layer's first, as an all-reduce wants -- or, without
``on_grad``, at the end of the walk.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import Array, astype_of, copy_of, xp_of
from .errors import DeviceError, GradError, GraphError, ShapeError
from .handle import TensorHandle
from .node import PENDING, Node
from .roles import ReadOnly
from .shapes import unbroadcast
from .sites import Site, format_site
from .tracer import value_check

if TYPE_CHECKING:
    from .grads import Grads
    from .tensor import Tensor
    from .tracer import Tracer

__all__ = ["seed_gradient", "topo_order", "walk"]

OnGrad = Callable[["Tensor", "Tensor"], None]


def seed_gradient(loss: TensorHandle, seed: Any) -> Array:
    """The gradient backward starts from: ones for a one-element loss, else the ``seed`` given."""
    data = loss._data
    xp = xp_of(data)
    if seed is None:
        if loss.size != 1:
            raise GraphError(f"g.backward: the loss must be a scalar, got shape {loss.shape}; "
                             "pass seed= (an array of the loss's shape) for a non-scalar output")
        shape = data.shape
        return np.asarray(1, dtype=data.dtype) if shape == () and xp is np else xp.ones(shape, dtype=data.dtype)
    if isinstance(seed, TensorHandle):
        if seed.graph is not loss.graph:
            raise GraphError(f"g.backward(seed=...): the tensor {seed._label()} belongs to another graph")
        if seed.device != loss.device:
            raise DeviceError(f"g.backward: seed is on {seed.device}, the loss on {loss.device}")
        g0 = seed._data
    else:
        try:
            kind = np.asarray(seed).dtype.kind if not hasattr(seed, "dtype") else seed.dtype.kind
            if kind not in "biuf":
                raise TypeError
            tr = loss.graph._tracer  # a captured step converts each call's seed (it may be the step's input)
            g0 = xp.asarray(seed, dtype=data.dtype) if tr is None else tr.call(xp.asarray, seed, dtype=data.dtype)
        except (TypeError, ValueError):
            got = f"an array of dtype {seed.dtype}" if hasattr(seed, "dtype") else type(seed).__name__
            raise TypeError(f"g.backward: seed must be a real array or tensor of the loss's shape "
                            f"{loss.shape}, got {got}") from None
    if tuple(g0.shape) != loss.shape:
        raise ShapeError(f"g.backward: seed has shape {tuple(g0.shape)} but the loss has shape {loss.shape}")
    return g0


_node_id = operator.attrgetter("id")


def topo_order(root: Node) -> list[Node]:
    """Nodes reachable from ``root`` in topological order (inputs first); refuses released ones.

    A node's inputs always exist before it does, so creation order (the node id) is a
    topological order: collecting the reachable set and sorting it by id is enough."""
    seen: set[Node] = {root}
    stack = [root]
    while stack:
        node = stack.pop()
        if node.state is not PENDING:
            raise GraphError(
                f"g.backward: node #{node.id} {node.op} (recorded at {format_site(node.site)}) was already "
                f"{node.consumed} by an earlier backward or free; pass retain=True to the earlier "
                "g.backward(...) to walk it twice, or recompute the forward")
        for p in node.parents:
            if p is not None and p not in seen:
                seen.add(p)
                stack.append(p)
    return sorted(seen, key=_node_id)


def _backprop(node: Node, g: Array, grads: dict[Node, Array], check_finite: bool, tr: Tracer | None = None) -> None:
    """Add ``node``'s input gradients (for output gradient ``g``) into ``grads`` (recorded by ``tr`` when
    a step is being captured)."""
    if type(g) is not np.ndarray and isinstance(g, np.generic):  # numpy gives scalars, not 0-d arrays,
        g = np.asarray(g) if tr is None else tr.call(np.asarray, g)  # for 0-d arithmetic
    rule = node.rule
    assert rule is not None, "a param's leaf node has no inputs"
    saved, attrs, in_shapes = node.saved, node.attrs, node.in_shapes
    for i, p in enumerate(node.parents):
        if p is None:
            continue
        if tr is None:
            fn = rule.vjp(i) if rule.variadic else rule.vjps[i]
            gi = fn(g, *saved, **attrs) if attrs else fn(g, *saved)  # type: ignore[misc]
        else:
            gi = tr.call_rule(f"{node.op}.vjp[{i}]", node.vjp_fn(i), g, *saved, **attrs)
        shape = in_shapes[i]
        assert shape is not None  # a parent that gets a gradient has its shape recorded
        if gi.shape != shape:
            gi = unbroadcast(gi, shape) if tr is None else tr.call(unbroadcast, gi, shape)
        if check_finite:  # recorded: a captured step checks each replay's gradients
            if tr is None:
                _check_finite(gi, node.id, node.op, node.site, i)
            else:
                tr.call(_check_finite, gi, node.id, node.op, node.site, i)
        prev = grads.get(p)
        grads[p] = gi if prev is None else prev + gi if tr is None else tr.call(operator.add, prev, gi)


@value_check
def _check_finite(gi: Array, node_id: int, op: str, site: Site, i: int) -> None:
    if not bool(xp_of(gi).isfinite(gi).all()):
        raise GradError(f"g.backward(check_finite=True): the gradient flowing from node #{node_id} {op} "
                        f"(recorded at {format_site(site)}) into its input {i} is not finite")


class _Finisher:
    """Hands a param's final gradient out: owned, in the param's dtype, to the result and ``on_grad``."""

    __slots__ = ("grads", "g0", "out", "on_grad", "handed", "tr")

    def __init__(self, grads: dict[Node, Array], g0: Array, out: Grads, on_grad: OnGrad | None,
                 tr: Tracer | None = None) -> None:
        self.tr = tr
        self.grads = grads
        self.g0 = g0
        self.out = out
        self.on_grad = on_grad
        # ids of arrays already given to a leaf: vjps such as add's pass one array to two inputs, and
        # leaf gradients are updated in place later (into=, clip_norm_)
        self.handed: set[int] = set()

    def __call__(self, leaf_node: Node) -> None:
        g = self.grads.pop(leaf_node, None)
        ref = leaf_node._leaf
        leaf = None if ref is None else ref()
        if g is None or leaf is None:
            return
        tr = self.tr
        if type(g) is not np.ndarray and not hasattr(g, "flags"):
            g = leaf.graph.xp.asarray(g) if tr is None else tr.call(leaf.graph.xp.asarray, g)
        dtype = leaf._data.dtype
        if g.dtype != dtype:
            g = g.astype(dtype) if tr is None else tr.call(astype_of, g, dtype)
        elif g.base is not None or not getattr(g.flags, "writeable", True) or g is self.g0 or id(g) in self.handed:
            g = g.copy() if tr is None else tr.call(copy_of, g)
        self.handed.add(id(g))
        self.out._arrays[leaf_node] = g  # noqa: SLF001 - Grads is filled by the walk that made it
        if self.on_grad is not None:
            self.on_grad(leaf._handle(readonly=ReadOnly.ON_GRAD_LEAF), self.out[leaf])


def walk(order: list[Node], root: Node, g0: Array, on_grad: OnGrad | None, check_finite: bool, out: Grads,
         tr: Tracer | None = None) -> None:
    """Run backward over ``order`` (from :func:`topo_order`) into ``out`` (recorded by ``tr`` when capturing)."""
    grads: dict[Node, Array] = {root: g0}
    finish = _Finisher(grads, g0, out, on_grad, tr)
    # With on_grad, a param's gradient is handed out as soon as every node that reads it has run;
    # without, counting is skipped and all are handed out at the end of the walk.
    waiting: dict[Node, int] | None = None
    if on_grad is not None:
        waiting = {}
        for node in order:
            for p in node.parents:
                if p is not None and p.is_param:
                    waiting[p] = waiting.get(p, 0) + 1
        if root.is_param:
            finish(root)
    at_end: list[Node] = []
    for node in reversed(order):
        if node.is_param:
            if waiting is None:
                at_end.append(node)
            continue
        g = grads.pop(node, None)
        if g is not None:
            _backprop(node, g, grads, check_finite, tr)
        if waiting is not None:
            for p in node.parents:
                if p is not None and p.is_param:
                    left = waiting[p] - 1
                    waiting[p] = left
                    if left == 0:
                        finish(p)
    for node in at_end:
        finish(node)
