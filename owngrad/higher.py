"""Higher-order gradients: a backward walk whose vjps are recorded operations.

``g.backward(loss, create_graph=True)`` and ``g.grad(outputs, inputs, create_graph=True)`` walk the
graph as the ordinary backward does (backward.py), but each node's vjp is computed by its rule's
*differentiable* vjp (the table in dvjps.py): the same calculus written with owngrad's own tensor
operations, so the walk records nodes, and the gradients it returns carry history and can be
differentiated again.

A differentiable vjp reads the values its node saved through handles on the *same storages and
ledgers* (:func:`saved_operands`), with the history they had when the node was recorded: the nodes
the walk records save what their own backward needs under shared borrows of exactly those regions,
so a write into a param between the first and the second backward is refused at the write, naming
the node that holds it.

What a create_graph walk consumes (docs/semantics.md): nothing at once. The walked nodes stay
pending -- the gradients' history reads their saved values, and the outputs may still be
differentiated (a loss that reads both ``y`` and ``dy/dx``). Each node the walk recorded keeps the
walk's group (``Node.kept``: the walked nodes and the nodes it recorded); the first backward without
``retain`` that walks one of those nodes consumes the whole group with it, so the borrows of the
first backward's graph -- and of gradients that were never used -- end with the second backward.
``retain=True`` on that later backward keeps everything, as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backward import OnGrad, _backprop, seed_gradient, topo_order
from .dvjps import DVJPS, rebuild_aux
from .errors import GradError, GraphError
from .grads import Grads
from .graph import Graph, _BackwardHolder, graph_of
from .ledger import SHARED, borrowing
from .node import Node, NodeState
from .roles import ReadOnly, Role
from .sites import format_site, user_site
from .tensor import Tensor

__all__ = ["grad", "backward_create_graph", "saved_operands", "missing_dvjps"]


# --- the saved values of a node, as tensors with their recorded history ----------------------

def _handle_on(graph: Graph, source: Any, value: Any, history: Node | None) -> Tensor:
    """A read-only handle on ``value`` (a saved array) over the storage, region and layout it was read
    from, whose history is ``history`` (the node that produced it when it was saved)."""
    t: Tensor = object.__new__(Tensor)
    t._graph = graph
    t._storage, t._region, t._layout = source
    t._data = value
    t._rootref = None
    t._path = ()
    t._node = history
    t._vcache = None
    t._kind = Role.CONSTANT if history is None else Role.RESULT
    t._readonly = ReadOnly.GRADIENT
    t._is_view = False
    t._name = None
    t._base = None
    return t


def saved_operands(node: Node) -> list[Any]:
    """``[ans, *args]`` as the node saved them: a handle (sharing the original ledger, carrying the
    history the value had when the node was recorded) for each saved tensor, the raw value for a saved
    raw operand (a copied array, a number), None for what was not saved."""
    out: list[Any] = list(node.saved)
    sources = node.sources
    for j, src in enumerate(sources):
        if src is not None:
            history = node if j == 0 else node.parents[j - 1]
            out[j] = _handle_on(graph_of(node), src, node.saved[j], history)
    return out


def _vjp(node: Node, i: int, g: Tensor) -> Tensor:
    """The differentiable vjp of ``node`` for input ``i``, recorded as operations on ``g``."""
    rule = node.rule
    assert rule is not None
    fns = DVJPS[rule.name]
    ops = saved_operands(node)
    attrs = node.attrs
    if "aux" in attrs:
        attrs = {**attrs, "aux": rebuild_aux(node)}
    fn = fns[0] if rule.variadic else fns[i]
    assert fn is not None, f"{rule.name} has no gradient for input {i}"
    out: Tensor = fn(g, *ops, _i=i, **attrs) if rule.variadic else fn(g, *ops, **attrs)
    return out


def missing_dvjps(nodes: Sequence[Node]) -> list[Node]:
    """The nodes among ``nodes`` whose rule has no differentiable vjp."""
    return [n for n in nodes if not n.is_param and n.rule is not None and n.rule.name not in DVJPS]


def _unbroadcast(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """:func:`owngrad.shapes.unbroadcast` in recorded operations."""
    extra = t.ndim - len(shape)
    if extra < 0:
        return t.reshape(shape)
    if extra:
        t = t.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1)
    if axes:
        t = t.sum(axis=axes, keepdims=True)
    return t if t.shape == shape else t.reshape(shape)


# --- the walk -------------------------------------------------------------------------------------

def _relevant(order: list[Node], wanted: set[Node]) -> set[Node]:
    """The nodes of ``order`` (topological) from which a wanted node is reached: only they need a vjp."""
    rel: set[Node] = set()
    for n in order:
        if n in wanted:
            rel.add(n)
            continue
        for p in n.parents:
            if p in rel:  # (None is never in it)
                rel.add(n)
                break
    return rel


def _walk(order: list[Node], starts: dict[Node, Any], wanted: set[Node],
          backprop: Callable[[Node, Any, dict[Node, Any]], None]) -> dict[Node, Any]:
    """Backward over ``order`` from the output gradients ``starts``, each node's input gradients added
    into ``grads`` by ``backprop(node, g, grads)``; the gradient reaching each wanted node."""
    grads = dict(starts)
    out: dict[Node, Any] = {}
    for node in reversed(order):
        g = grads.pop(node, None)
        if g is None:
            continue
        if node in wanted:
            out[node] = g
        if not node.is_param:
            backprop(node, g, grads)
    return out


def _recorded_backprop(rel: set[Node]) -> Callable[[Node, Tensor, dict[Node, Any]], None]:
    """:func:`owngrad.backward._backprop` with recorded vjps, for the inputs in ``rel`` only."""
    def backprop(node: Node, g: Tensor, grads: dict[Node, Any]) -> None:
        for i, p in enumerate(node.parents):
            if p is None or p not in rel:
                continue
            gi = _vjp(node, i, g)
            shape = node.in_shapes[i]
            assert shape is not None
            if gi.shape != shape:
                gi = _unbroadcast(gi, shape)
            prev = grads.get(p)
            grads[p] = gi if prev is None else prev + gi
    return backprop


def _array_backprop(node: Node, g: Any, grads: dict[Node, Any]) -> None:
    _backprop(node, g, grads, False)


def _new_nodes(results: list[Tensor], first_id: int) -> list[Node]:
    """The nodes recorded since ``first_id`` that the results' history reaches."""
    seen: set[Node] = set()
    stack = [n for t in results if (n := t._grad_node()) is not None]
    while stack:
        n = stack.pop()
        if n in seen or n.id < first_id:
            continue
        seen.add(n)
        stack.extend(p for p in n.parents if p is not None)
    return list(seen)


def _rollback(graph: Graph, first_id: int) -> None:
    """A failed create_graph walk leaves nothing behind: the nodes it recorded are dropped."""
    for n in list(graph._pending):
        if n.id >= first_id:
            graph._pending.pop(n, None)
            n.release(NodeState.FREED)


def _owned_gradient(t: Tensor, dtype: Any, handed: set[int]) -> Tensor:
    """``t`` as a gradient to hand out: the leaf's dtype, its own storage (not a view, not the seed,
    not shared with another gradient), read-only -- keeping its history."""
    if t.dtype != dtype:
        t = t.astype(dtype)
    elif t._is_view or t._readonly is not None or id(t._storage) in handed or not t._data.flags.c_contiguous:
        t = t.copy()
    handed.add(id(t._storage))
    return t._handle(readonly=ReadOnly.GRADIENT)


def _as_tensor_seed(graph: Graph, loss: Tensor, seed: Any) -> Tensor:
    if isinstance(seed, Tensor):
        seed_gradient(loss, seed)  # the checks (graph, device, shape)
        return seed if seed.dtype == loss.dtype else seed.astype(loss.dtype)
    return graph.constant(seed_gradient(loss, seed))


def _run(graph: Graph, outputs: list[Tensor], seeds: list[Any], targets: list[Node] | None, create_graph: bool,
         retain: bool, check: Callable[[list[Node]], None] | None = None) -> tuple[dict[Node, Any], list[Node]]:
    """Walk from every output, under shared borrows of the params reached: the gradient of each target
    node (tensors with history when ``create_graph``, else arrays) and the walked nodes. A plain walk
    consumes them unless ``retain``; a create_graph walk leaves that to :func:`_keep`. ``check(order)`` runs
    before anything is recorded or consumed."""

    roots: list[Node] = []
    for t in outputs:
        r = t._grad_node()
        if r is None:
            raise GradError(f"g.grad: the output {t._label()} does not depend on any param "
                            "(it was computed from constants only, or under g.no_grad())")
        roots.append(r)
    site = user_site()
    with graph._lock:
        order = topo_order(roots[0]) if len(roots) == 1 else \
            sorted(set().union(*(topo_order(r) for r in roots)), key=lambda n: n.id)
        wanted = set(targets) if targets is not None else {n for n in order if n.is_param and n.leaf is not None}
        if check is not None:
            check(order)
        if create_graph:
            _check_differentiable(order, wanted)
        starts: dict[Node, Any] = {}
        for t, r, s in zip(outputs, roots, seeds):
            g0 = _as_tensor_seed(graph, t, s) if create_graph else seed_gradient(t, s)
            prev = starts.get(r)
            starts[r] = g0 if prev is None else prev + g0
        leaves = [leaf for node in order if node.is_param and (leaf := node.leaf) is not None]
        with borrowing([(t._storage.ledger, t._region) for t in leaves], SHARED, _BackwardHolder(site),
                       "read by backward", site, "read"):
            backprop = _recorded_backprop(_relevant(order, wanted)) if create_graph else _array_backprop
            result = _walk(order, starts, wanted, backprop)
        if not retain and not create_graph:
            graph._consume_walked(order)
    return result, order


def _check_differentiable(order: list[Node], wanted: set[Node]) -> None:
    """Before anything is recorded: every node the walk will differentiate has a differentiable vjp."""
    missing = missing_dvjps(sorted(_relevant(order, wanted) - wanted, key=lambda n: n.id))
    if missing:
        n = missing[0]
        name = n.rule.name if n.rule is not None else n.op
        raise GradError(f"create_graph=True: the rule {name!r} (node #{n.id}, recorded at {_site(n)}) has no "
                        "differentiable vjp, so its gradient cannot be differentiated again; compute this "
                        "gradient without create_graph")


def _site(n: Node) -> str:

    return format_site(n.site)


def _recording(graph: Graph, create_graph: bool, fn: Callable[[int], Any]) -> Any:
    """Run ``fn(first_id)`` -- recording even inside ``g.no_grad()`` when ``create_graph`` -- where
    ``first_id`` bounds the ids of the nodes it records; a failure drops what it recorded."""
    if graph._tracer is not None:
        what = "create_graph=True (a gradient with history)" if create_graph else "g.grad(...)"
        graph._tracer.refuse(f"{what}: a captured step does not replay it",
                             help="compute it outside g.capture(...), or use g.backward(loss) in the step")
    first_id = next(graph._ids)
    if not create_graph:
        return fn(first_id)
    mode = graph._mode
    prev = mode.enabled
    mode.enabled = True
    try:
        return fn(first_id)
    except BaseException:
        _rollback(graph, first_id)
        raise
    finally:
        mode.enabled = prev


def _keep(graph: Graph, results: list[Tensor], order: list[Node], first_id: int, retain: bool) -> None:
    """After a create_graph walk: each node it recorded keeps the walk's group -- the walked nodes and every
    node it recorded -- pending, to be consumed together by the first later backward that walks one of
    them (``retain`` keeps everything until a later backward or g.free). When the gradients carry no
    history (a linear function's), the walked nodes are consumed now, as by a plain walk."""
    if retain:
        return
    new = _new_nodes(results, first_id)
    if not new:
        graph._consume_walked(order)
        return
    kept = [n for n in order if not n.is_param] + new  # the walk as one group, gradients unused later included
    for n in new:
        n.kept = kept


# --- the public entry points ------------------------------------------------------------------------

def _as_list(x: Any, what: str) -> tuple[list[Any], bool]:
    if isinstance(x, (list, tuple)):
        return list(x), True
    return [x], False


def grad(graph: Graph, outputs: Any, inputs: Any, grad_outputs: Any = None, create_graph: bool = False,
         retain: bool = False, allow_unused: bool = False) -> Any:
    """``g.grad(outputs, inputs, grad_outputs=None, create_graph=False, retain=False, allow_unused=False)``: the
    gradients of ``outputs`` with respect to ``inputs`` (any recorded tensors: params, or intermediate
    results), as ``torch.autograd.grad``: a tuple of read-only tensors when ``inputs`` is a sequence, else
    one tensor. ``create_graph=True``: they carry history."""
    outs, _ = _as_list(outputs, "outputs")
    ins, many = _as_list(inputs, "inputs")
    seeds, _ = _as_list(grad_outputs, "grad_outputs") if grad_outputs is not None else ([None] * len(outs), False)
    if len(seeds) != len(outs):
        raise ValueError(f"g.grad: {len(outs)} outputs but {len(seeds)} grad_outputs")
    for t in (*outs, *ins):
        graph._check_mine(t, "g.grad")
    targets: list[Node] = []
    for t in ins:
        n = t._grad_node()
        if n is None:
            raise GradError(f"g.grad: the input {t._label()} has no gradient history (a constant, or computed "
                            "under g.no_grad()); make it with g.param(...) or from one")
        targets.append(n)

    def unused(order: list[Node]) -> None:
        walked = set(order)
        for t, n in zip(ins, targets):
            if n not in walked and not allow_unused:
                raise GradError(f"g.grad: the outputs do not depend on the input {t._label()} "
                                "(pass allow_unused=True to get None for it)")

    def work(first_id: int) -> list[Tensor | None]:
        res, order = _run(graph, outs, seeds, targets, create_graph, retain, unused)
        # a user's seed that reaches an input unchanged (g.grad(x, x, grad_outputs=v)) is copied, never aliased
        handed = {id(s._storage) if create_graph else id(s._data) for s in seeds if isinstance(s, Tensor)}
        result = [None if (gr := res.get(n)) is None else
                  _owned_gradient(gr, t.dtype, handed) if create_graph else _plain_gradient(graph, gr, t, handed)
                  for t, n in zip(ins, targets)]
        if create_graph:
            _keep(graph, [r for r in result if r is not None], order, first_id, retain)
        return result

    result = _recording(graph, create_graph, work)
    return tuple(result) if many else result[0]


def _plain_gradient(graph: Graph, gr: Any, t: Tensor, handed: set[int]) -> Tensor:
    """An array gradient as a read-only handle: ``t``'s dtype, its own array (not a seed's, not another's)."""
    arr = gr if not isinstance(gr, np.generic) else np.asarray(gr)
    if arr.dtype != t.dtype:
        arr = arr.astype(t.dtype)
    elif id(arr) in handed or arr.base is not None or not getattr(arr.flags, "writeable", True):
        arr = arr.copy()
    handed.add(id(arr))
    label = f"gradient of {t._name}" if t._name else "gradient"  # (a region's label costs a format)
    return Tensor._root_of(graph, arr, Role.CONSTANT, None, None, label, readonly=ReadOnly.GRADIENT)


def backward_create_graph(graph: Graph, loss: Tensor, seed: Any, retain: bool, into: Grads | None,
                          on_grad: OnGrad | None, check_finite: bool) -> Grads:
    """``g.backward(loss, create_graph=True)``: a :class:`Grads` whose handles carry history."""
    graph._check_mine(loss, "g.backward")
    if into is not None:
        raise GraphError("g.backward(create_graph=True): into= cannot accumulate gradients that carry history; "
                         "add the returned gradients yourself")
    if check_finite:
        raise GraphError("g.backward(create_graph=True): check_finite is not supported with create_graph; "
                         "check the returned gradients instead")
    root = loss._grad_node()
    if root is None:
        raise GradError(f"g.backward: {loss._label()} does not depend on any param "
                        "(it was computed from constants only, or under g.no_grad())")
    out: Grads = _recording(graph, True, lambda first_id: _grads_with_history(graph, loss, seed, retain, on_grad,
                                                                               first_id))
    return out


def _grads_with_history(graph: Graph, loss: Tensor, seed: Any, retain: bool, on_grad: OnGrad | None,
                        first_id: int) -> Grads:
    """The walk of ``g.backward(loss, create_graph=True)`` (run by :func:`_recording`)."""
    res, order = _run(graph, [loss], [seed], None, True, retain)
    out = Grads(graph, {})
    handed: set[int] = set()
    handles: list[Tensor] = []
    for n in order:
        gr = res.get(n) if n.is_param else None
        leaf = n.leaf
        if gr is None or leaf is None:
            continue
        h = _owned_gradient(gr, leaf.dtype, handed)
        out._arrays[n] = h._data
        out._handles[n] = h
        handles.append(h)
    _keep(graph, handles, order, first_id, retain)
    if on_grad is not None:
        for n in out._arrays:
            leaf = n.leaf
            if leaf is not None:
                on_grad(leaf._handle(readonly=ReadOnly.ON_GRAD_LEAF), out[leaf])
    return out


def _grad_method(self: Graph, outputs: Any, inputs: Any, grad_outputs: Any = None, create_graph: bool = False,
                 retain: bool = False, allow_unused: bool = False) -> Any:
    """The gradients of ``outputs`` with respect to ``inputs`` (any recorded tensors: params, or intermediate
    results), as ``torch.autograd.grad``: a tuple of read-only tensors when ``inputs`` is a sequence, else one
    tensor. ``create_graph=True``: they carry history, and can be differentiated again."""
    return grad(self, outputs, inputs, grad_outputs, create_graph, retain, allow_unused)


# the graph's methods: this module sits above graph.py, which does not import it
Graph.grad = _grad_method
Graph._backward_create_graph = backward_create_graph
