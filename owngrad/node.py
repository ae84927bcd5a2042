"""A recorded op: one shape for every kind of node.

Every node -- an op of the rule table, a view, an in-place write (``copy_slices``) -- is a
:class:`Node` with a rule, its parents' nodes, what it saved and the borrows that protect what
it saved. A param's leaf node is the same record with ``is_param`` set and no rule. Only the
graph makes nodes (:meth:`owngrad.graph.Graph.record`).
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Sequence
from enum import Enum
from typing import Any, Protocol

from .backend import Array
from .ledger import Borrow, release_all
from .rules import Rule
from .sites import Site, format_site, user_names_of


class NodeOwner(Protocol):
    """What a node asks of the graph that recorded it (to name the live results that still need it, and
    to tell whether it is abandoned); ``Graph`` satisfies it."""

    def _results_needing(self, node: Node) -> Sequence[object]: ...

    def _reachable(self) -> Collection[Node]: ...

    def _release_abandoned(self) -> None: ...

__all__ = ["Node", "NodeOwner", "NodeState", "PENDING", "SAVED_HINT"]

SAVED_HINT = "call g.backward(...) on the result first, or g.free(...) it, or compute under g.no_grad()"
_EMPTY: dict[str, Any] = {}


class NodeState(Enum):
    """Whether a backward may still walk a node."""

    PENDING = None  # recorded, not yet walked (or walked, but it saved nothing a walk releases)
    CONSUMED = "consumed"  # a backward walked it and released what it saved
    FREED = "freed"  # g.free / g.clear dropped it


PENDING = NodeState.PENDING  # compared with ``is`` on the hot paths (no property call)


class Node:
    """One recorded op: its inputs' nodes, what it saved (and the borrows that protect it)."""

    _capture_stop = True  # a captured step guards it by identity, never walks into it
    __slots__ = ("id", "op", "graph", "rule", "parents", "saved", "attrs", "in_shapes", "borrows", "site",
                 "state", "is_param", "holds_arrays", "_leaf", "out", "shape", "sources", "kept", "__weakref__")

    def __init__(self, node_id: int, graph: NodeOwner, op: str, parents: tuple[Node | None, ...],
                 in_shapes: tuple[tuple[int, ...] | None, ...], site: Site, rule: Rule | None = None,
                 attrs: dict[str, Any] = _EMPTY, shape: tuple[int, ...] = ()) -> None:
        self.id = node_id
        self.op = op
        self.graph = graph
        self.rule = rule
        self.parents = parents
        self.saved: tuple[Any, ...] = ()
        self.attrs = attrs
        self.in_shapes = in_shapes  # the shape of each input that gets a gradient (None for the others)
        self.borrows: list[Borrow] = []
        self.site = site
        self.state = PENDING
        self.is_param = False
        #: whether a walk must release something: a saved array, or an internal one (``aux``)
        self.holds_arrays = False
        self._leaf: weakref.ref[Any] | None = None  # a param's leaf node refers to it weakly: no cycle
        self.out: weakref.ref[Any] | None = None  # the tensor this node produced, while it lives
        self.shape = shape  # of its output (for to_dot and pending())
        #: per saved operand, the (storage, region, layout) it was read from (None for raw operands): a
        #: differentiable vjp (higher.py) reads the saved value through a handle on the same ledger
        self.sources: tuple[Any, ...] = ()
        #: for a node recorded by a create_graph walk: that walk's group (the nodes it walked and recorded),
        #: consumed with it by the first later backward that consumes it (higher.py)
        self.kept: list[Node] | None = None

    @property
    def leaf(self) -> Any:
        """The param of a leaf node (None for other nodes, and once the param is gone)."""
        r = self._leaf
        return None if r is None else r()

    @leaf.setter
    def leaf(self, t: Any) -> None:
        self._leaf = weakref.ref(t)

    @property
    def consumed(self) -> str | None:
        """Why a backward can no longer walk this node ("consumed", "freed"), or None."""
        why: str | None = self.state.value
        return why

    @property
    def walkable(self) -> bool:
        return self.state is NodeState.PENDING

    # --- the Holder protocol of the ledger ---
    def holder_text(self) -> str:
        return f"node #{self.id} {self.op} recorded at {format_site(self.site)}"

    def hint(self) -> str:
        names = user_names_of(list(self.graph._results_needing(self)))
        if not names:
            return SAVED_HINT
        held = ", ".join(f"`{n}`" for n in names[:3])
        return (f"{held} (live) still need{'s' if len(names) == 1 else ''} it: call g.backward(...) on it first, "
                f"or g.free(...) it, or drop it (del), or compute under g.no_grad()")

    def abandoned(self) -> bool:
        """Whether no live tensor reaches this node any more, so no backward can ever walk it."""
        return self.state is PENDING and self not in self.graph._reachable()

    def reclaim(self) -> None:
        """Release this node and every other one no live tensor reaches."""
        self.graph._release_abandoned()

    def __repr__(self) -> str:
        held = ", ".join(f"{b.label} ({b.kind}): {b.why}" for b in self.borrows)
        state = f" [{self.state.value}]" if self.state.value else ""
        return f"<node #{self.id} {self.op} {tuple(self.shape)} at {format_site(self.site)}{state} borrows [{held}]>"

    def vjp_fn(self, i: int) -> Any:
        """The function :meth:`vjp` calls for input ``i``, as ``fn(g, *self.saved, **self.attrs)``."""
        rule = self.rule
        assert rule is not None
        return rule.vjp(i) if rule.variadic else rule.vjps[i]

    def vjp(self, i: int, g: Array) -> Array:
        """The gradient for input ``i`` given the gradient ``g`` of this node's output."""
        rule = self.rule
        assert rule is not None, "a param's leaf node has no inputs"
        fn = rule.vjp(i) if rule.variadic else rule.vjps[i]
        return fn(g, *self.saved, **self.attrs)  # type: ignore[misc]

    def release(self, state: NodeState) -> None:
        """Drop what it saved and its borrows; no backward walks it again."""
        if self.borrows:
            release_all(self.borrows)
            self.borrows = []
        self.saved = ()
        self.sources = ()
        if "aux" in self.attrs:
            self.attrs = {k: v for k, v in self.attrs.items() if k != "aux"}
        self.state = state
