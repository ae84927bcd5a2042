"""What the layers below the graph ask of it: :class:`GraphAPI`, a protocol that ``Graph`` satisfies.

A tensor records its ops through its graph, a view asks it for the view's node, ``Grads`` and the
backward walk read its tracer and device. Those modules sit *below* graph.py, which builds tensors,
gradients and walks; so they name the graph only through this protocol, generic in the tensor type
the graph makes (a handle's graph is ``GraphAPI[Self]``: ``t.graph.apply(...)`` is a tensor of
``t``'s own class). Nothing here runs: it is the interface, checked by mypy where graph.py hands
itself to a tensor.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from .backend import Array
from .node import Node
from .tracer import Tracer
from .views import Step

__all__ = ["GraphAPI"]

T_co = TypeVar("T_co", covariant=True)


class GraphAPI(Protocol[T_co]):
    """The graph as the tensors, gradients and the walk below it see it (``T_co``: its tensor type)."""

    device: str
    xp: Any
    rng: Any
    ledger_lock: threading.Lock
    _tracer: Tracer | None

    @property
    def grad_enabled(self) -> bool: ...

    def apply(self, name: str, args: Sequence[Any], attrs: dict[str, Any] = ...,
              vattrs: dict[str, Any] | None = ...) -> T_co: ...

    def constant(self, data: Any, name: str | None = ...) -> T_co: ...

    def param(self, data: Any, name: str | None = ...) -> T_co: ...

    def record_view(self, root_node: Node, root_shape: tuple[int, ...], path: tuple[Step, ...],
                    view: Any) -> Node: ...

    def record_write(self, root: Any, src: Any, path: tuple[Step, ...], key: Any,
                     landed: Array | None) -> None: ...
