"""Gradients of one backward: :class:`Grads`, keyed by param, with read-only handles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from .backend import Array
from .errors import GradError
from .handle import exclusive
from .ledger import SHARED
from .node import Node
from .roles import ReadOnly, Role
from .sites import Site, user_site
from .tensor import Tensor

if TYPE_CHECKING:
    from .graph_api import GraphAPI

# raw_gradient(s) are for optimizers only: they check that no gradient is still in flight
__all__ = ["Grads"]


class Grads:
    """Gradients of one backward, keyed by param. Handles are read-only; ``clip_norm_`` works in place.

    The arrays are kept as they come out of backward; the read-only handle on each is made on
    first request (most training steps hand the arrays straight to an optimizer)."""

    _capture_stop = True  # a captured step guards it by identity, never walks into it
    __slots__ = ("_graph", "_arrays", "_handles", "_pending")

    def __init__(self, graph: GraphAPI[Tensor], arrays: dict[Node, Array]) -> None:
        self._graph = graph
        self._arrays = arrays
        self._handles: dict[Node, Tensor] = {}
        self._pending: list[Callable[[], None]] = []  # completions still to run (gradients in flight)

    @property
    def graph(self) -> GraphAPI[Tensor]:
        """The graph whose backward made these gradients."""
        return self._graph

    def _handle(self, node: Node) -> Tensor:
        t = self._handles.get(node)
        if t is None:
            leaf = node.leaf
            label = f"gradient of {leaf._label()}" if leaf is not None else "gradient"
            t = self._handles[node] = Tensor._root_of(self._graph, self._arrays[node], Role.CONSTANT, None, None,
                                                      label, readonly=ReadOnly.GRADIENT)
        return t

    def _leaf_node(self, p: object, what: str = "grads[...]") -> Node:
        if not isinstance(p, Tensor):
            raise GradError(f"{what}: expected a param tensor, got {type(p).__name__}")
        node = p._root._node
        if p._root._kind is not Role.PARAM or node is None or node.leaf is None:
            raise GradError(f"{what}: {p._label()} is not a param: only params made by g.param(...) get gradients")
        if p._root is not p and p._path:
            raise GradError(f"{what}: {p._label()} is a view; ask for the param it was cut from")
        return node

    def __getitem__(self, p: Tensor) -> Tensor:
        node = self._leaf_node(p)
        if node not in self._arrays:
            if self._pending:  # another rank's gradient for it may still arrive
                raise GradError(f"grads[...]: no gradient for {p._label()} yet: a reduction over ranks is still in "
                                "flight; call grads.wait() first (opt.step(grads) waits by itself)")
            raise GradError(f"grads[...]: the loss does not depend on {p._label()}, so it has no gradient")
        t = self._handle(node)
        if self._pending:  # a gradient still in flight (an all-reduce) may not be read yet
            t._storage.ledger.check(t._region, SHARED, user_site(), "read")  # noqa: SLF001 - the graph layer
        return t

    def on_wait(self, completion: Callable[[], None]) -> None:
        """Register work that must finish before these gradients may be read (an all-reduce in flight);
        :meth:`wait` runs it. Meanwhile the gradients are exclusively borrowed by that work."""
        self._pending.append(completion)

    def wait(self) -> None:
        """Complete every registered completion (a no-op when nothing is in flight). A completion that
        raises (an interrupted wait, a failed rank) stays registered: the gradients stay refused until a
        later ``wait()`` completes it, or the ``Grads`` are dropped."""
        while self._pending:
            self._pending[0]()
            self._pending.pop(0)

    def _drop_pending(self) -> None:
        """Forget the registered completions (their owner has taken the gradients back: accumulation)."""
        self._pending.clear()

    def _array_of(self, param: Tensor) -> Array | None:
        """The gradient array of ``param`` (no handle, no check), or None: for the reduction that owns it."""
        return self._arrays.get(self._leaf_node(param))

    def _set_array(self, param: Tensor, array: Array) -> None:
        """Give ``param`` a gradient it did not get from this backward (a reduction over ranks did)."""
        node = self._leaf_node(param)
        self._arrays[node] = array
        self._handles.pop(node, None)

    def __contains__(self, p: object) -> bool:
        try:
            return self._leaf_node(p) in self._arrays
        except GradError:
            return False

    def __len__(self) -> int:
        return len(self._arrays)

    def __iter__(self) -> Iterator[Tensor]:
        for node in self._arrays:
            leaf = node.leaf
            if leaf is not None:
                yield leaf

    def keys(self) -> list[Tensor]:
        return list(self)

    def items(self) -> list[tuple[Tensor, Tensor]]:
        return [(p, self[p]) for n in self._arrays if (p := n.leaf) is not None]

    def values(self) -> list[Tensor]:
        return [h for _, h in self.items()]

    def _add_(self, other: Grads, site: Site) -> None:
        """Add ``other``'s gradients into these, all or nothing (``g.backward(into=...)``)."""
        mine = [(n, a) for n, a in other._arrays.items() if n in self._arrays]
        tr = self._graph._tracer
        with exclusive([t for n, _ in mine if (t := self._handles.get(n)) is not None], site,
                            "g.backward(into=...)"):
            for n, a in mine:
                if tr is None:
                    self._arrays[n] += a
                else:  # a captured step accumulates at each replay
                    tr.call(_iadd, self._arrays[n], a)
        for n, a in other._arrays.items():
            if n not in self._arrays:
                self._arrays[n] = a
                if n in other._handles:
                    self._handles[n] = other._handles[n]

    def clip_norm_(self, max_norm: float) -> float:
        """Scale every gradient in place so their joint L2 norm is at most ``max_norm``; return the norm before."""
        if not max_norm > 0:
            raise ValueError(f"clip_norm_: max_norm must be positive, got {max_norm}")
        if self._pending:
            self.items()  # raises BorrowError while a gradient is in flight (a write does not wait)
        arrays = list(self._arrays.values())
        handles = list(self._handles.values())
        tr = self.graph._tracer
        if tr is not None:  # a captured step: the norm, and whether to scale, are decided at each replay
            with exclusive(handles, user_site(), "grads.clip_norm_"):
                traced: float = tr.number(_clip, "the norm returned by grads.clip_norm_", max_norm, *arrays)
                return traced
        norm = _norm(arrays)
        scale = max_norm / (norm + 1e-6)
        if scale < 1:
            with exclusive(handles, user_site(), "grads.clip_norm_"):
                for a in arrays:
                    a *= scale
        return norm

    def __repr__(self) -> str:  # shapes only: no value is read, so gradients in flight may be shown
        made = sorted(self._arrays.items(), key=lambda kv: kv[0].id)  # in the order the params were made
        inner = ", ".join(f"{p._label()}: {tuple(a.shape)}" for n, a in made if (p := n.leaf) is not None)
        return f"Grads({inner}{', in flight' if self._pending else ''})"


def _iadd(a: Array, b: Array) -> None:
    a += b


def _norm(arrays: list[Array]) -> float:
    total = 0.0
    for a in arrays:
        total += float((a.astype(np.float64) ** 2).sum())
    norm: float = total ** 0.5
    return norm


def _clip(max_norm: float, *arrays: Array) -> float:
    """Scale ``arrays`` in place so their joint L2 norm is at most ``max_norm``; the norm before."""
    norm = _norm(list(arrays))
    scale = max_norm / (norm + 1e-6)
    if scale < 1:
        for a in arrays:
            a *= scale
    return norm


def _check_settled(grads: Grads) -> None:
    if grads._pending:  # noqa: SLF001
        raise GradError("the gradients are still in flight (an all-reduce over ranks, or accumulated under "
                        "dp.no_sync()): call grads.wait() first (opt.step(grads) waits by itself)")


def raw_gradient(grads: Grads, param: Tensor) -> Array | None:
    """The gradient array of a param (itself, no handle), or None: for optimizers, which read it under
    the exclusive borrows of their step. Refused while a gradient is in flight (never un-averaged)."""
    _check_settled(grads)
    node = param._node  # noqa: SLF001 - the graph layer owns the tensor's node
    return None if node is None else grads._arrays.get(node)  # noqa: SLF001


def raw_gradients(grads: Grads, params: list[Tensor]) -> list[Array | None]:
    """:func:`raw_gradient` of several params (one call for an optimizer's step)."""
    _check_settled(grads)
    arrays = grads._arrays  # noqa: SLF001
    return [None if (n := p._node) is None else arrays.get(n) for p in params]  # noqa: SLF001
