"""The graph: recording nodes, saving (and borrowing) what their rules need, backward, freeing.

A :class:`Graph` owns every node it records. A node that saved an operand holds a shared
borrow on exactly that operand's region until backward consumes it or the graph frees it
(``release_borrows``). Backward is iterative, all-or-nothing and always adds into gradients:
it walks the nodes in reverse topological order, and only when every gradient has been
computed does it hand out :class:`Grads`, consume the walked nodes and release their borrows.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .backend import Array, is_array, module_for, owned, xp_of
from .errors import BorrowError, DeviceError, GradError, GraphError, ShapeError
from .ledger import EXCLUSIVE, SHARED, BlockHolder, Borrow, Region, acquire_all, release_all
from .rules import RULES, Rule, unbroadcast
from .sites import Site, format_site, user_site
from .views import Step, apply_path, scatter_path

from .factory import TensorFactory
from .tensor import Tensor, as_array  # tensor.py imports graph.py only for type checking

__all__ = ["Graph", "Node", "Grads"]

_EMPTY: dict[str, Any] = {}
_SAVED_HINT = "call g.backward(...) on the result first, or g.free(...) it, or compute under g.no_grad()"


class Node:
    """One recorded op: its inputs' nodes, what it saved (and the borrows that protect it)."""

    __slots__ = ("id", "op", "graph", "rule", "parents", "saved", "attrs", "in_shapes", "borrows", "site",
                 "consumed", "path", "key", "_leaf", "aux", "out", "shape", "__weakref__")

    def __init__(self, graph: Graph, op: str, parents: tuple[Node | None, ...],
                 in_shapes: tuple[tuple[int, ...] | None, ...], site: Site,
                 rule: Rule | None = None, attrs: dict[str, Any] = _EMPTY, aux: Any = None,
                 shape: tuple[int, ...] = ()) -> None:
        self.id = next(graph._ids)
        self.op = op
        self.graph = graph
        self.rule = rule
        self.parents = parents
        self.saved: tuple[Any, ...] = ()
        self.attrs = attrs
        self.in_shapes = in_shapes  # the shape of each input that gets a gradient (None for the others)
        self.borrows: list[Borrow] = []
        self.site = site
        self.consumed: str | None = None  # why it can no longer be walked: "consumed" / "freed"
        self.path: tuple[Step, ...] = ()
        self.key: Any = None
        self._leaf: weakref.ref[Tensor] | None = None  # a param's leaf node refers to it weakly: no cycle
        self.aux = aux
        self.out: weakref.ref[Tensor] | None = None  # the tensor this node produced, while it lives
        self.shape = shape  # of its output (for to_dot and pending())

    @property
    def leaf(self) -> Tensor | None:
        """The param of a leaf node (None for other nodes, and once the param is gone)."""
        r = self._leaf
        return None if r is None else r()

    @leaf.setter
    def leaf(self, t: Tensor) -> None:
        self._leaf = weakref.ref(t)

    # --- the Holder protocol of the ledger ---
    def holder_text(self) -> str:
        return f"node #{self.id} {self.op} recorded at {format_site(self.site)}"

    def hint(self) -> str:
        return _SAVED_HINT

    def __repr__(self) -> str:
        held = ", ".join(f"{b.label} ({b.kind}): {b.why}" for b in self.borrows)
        state = f" [{self.consumed}]" if self.consumed else ""
        return f"<node #{self.id} {self.op} {tuple(self.shape)} at {format_site(self.site)}{state} borrows [{held}]>"

    def vjp(self, i: int, g: Array) -> Array:
        """The gradient for input ``i`` given the gradient ``g`` of this node's output."""
        rule = self.rule
        if rule is not None:
            s = self.saved
            if rule.variadic:
                return rule.vjps[0](g, s[0], *s[1:], _i=i, **self.attrs)  # type: ignore[misc]
            fn = rule.vjps[i]
            assert fn is not None
            if rule.aux:
                return fn(g, s[0], *s[1:], aux=self.aux, **self.attrs)
            return fn(g, s[0], *s[1:], **self.attrs)
        if self.op == "view":
            return scatter_path(g, self.in_shapes[0], self.path)  # type: ignore[arg-type]
        # copy_slices: the root's old value everywhere but the written region, which comes from the source
        if i == 0:
            g2 = g.copy()
            v = apply_path(g2, self.path)
            if self.key is None:
                v[...] = 0
            else:
                v[self.key] = 0
            return g2
        v = apply_path(g, self.path)
        if self.key is None:
            return v
        picked = v[self.key]
        return picked if self.aux is None else picked * self.aux  # only the writes that landed

    def release_borrows(self) -> None:
        if self.borrows:
            release_all(self.borrows)
            self.borrows = []


@contextmanager
def _exclusive_all(ts: list[Tensor], site: Site, what: str) -> Iterator[None]:
    """Exclusive borrows on every tensor, all or none, for owngrad's own multi-tensor updates."""
    holder = BlockHolder(what, site, "wait for it to finish")
    taken = acquire_all([(t._storage.ledger, t._region) for t in ts], EXCLUSIVE, holder, "writing", site, what)
    try:
        yield
    finally:
        release_all(taken)


def _node_id(n: Node) -> int:
    return n.id


class _BackwardHolder:
    __slots__ = ("site",)

    def __init__(self, site: Site) -> None:
        self.site = site

    def holder_text(self) -> str:
        return f"g.backward running since {format_site(self.site)}"

    def hint(self) -> str:
        return ("leaves cannot change while backward runs (on_grad gets read-only handles); "
                "update them after g.backward returns")


class Grads:
    """Gradients of one backward, keyed by param. Handles are read-only; ``clip_norm_`` works in place.

    The arrays are kept as they come out of backward; the read-only handle on each is made on
    first request (most training steps hand the arrays straight to an optimizer)."""

    __slots__ = ("_graph", "_arrays", "_handles")

    def __init__(self, graph: Graph, arrays: dict[Node, Array]) -> None:
        self._graph = graph
        self._arrays = arrays
        self._handles: dict[Node, Tensor] = {}

    def _handle(self, node: Node) -> Tensor:
        t = self._handles.get(node)
        if t is None:
            t = self._handles[node] = Tensor._root_of(
                self._graph, self._arrays[node], "constant", None, None, ("gradient of", node.leaf),
                readonly="a gradient handle (from Grads)")
        return t

    def _leaf_node(self, p: object, what: str = "grads[...]") -> Node:
        if not isinstance(p, Tensor):
            raise GradError(f"{what}: expected a param tensor, got {type(p).__name__}")
        node = p._root._node
        if p._root._kind != "param" or node is None or node.leaf is None:
            raise GradError(f"{what}: {p._label()} is not a param: only params made by g.param(...) get gradients")
        if p._root is not p and p._path:
            raise GradError(f"{what}: {p._label()} is a view; ask for the param it was cut from")
        return node

    def __getitem__(self, p: Tensor) -> Tensor:
        node = self._leaf_node(p)
        if node not in self._arrays:
            raise GradError(f"grads[...]: the loss does not depend on {p._label()}, so it has no gradient")
        return self._handle(node)

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
        return [(p, self._handle(n)) for n in self._arrays if (p := n.leaf) is not None]

    def values(self) -> list[Tensor]:
        return [self._handle(n) for n in self._arrays]

    def _add_(self, other: Grads, site: Site) -> None:
        """Add ``other``'s gradients into these, all or nothing (``g.backward(into=...)``)."""
        mine = [(n, a) for n, a in other._arrays.items() if n in self._arrays]
        with _exclusive_all([t for n, _ in mine if (t := self._handles.get(n)) is not None], site,
                            "g.backward(into=...)"):
            for n, a in mine:
                self._arrays[n] += a
        for n, a in other._arrays.items():
            if n not in self._arrays:
                self._arrays[n] = a
                if n in other._handles:
                    self._handles[n] = other._handles[n]

    def clip_norm_(self, max_norm: float) -> float:
        """Scale every gradient in place so their joint L2 norm is at most ``max_norm``; return the norm before."""
        if not max_norm > 0:
            raise ValueError(f"clip_norm_: max_norm must be positive, got {max_norm}")
        total = 0.0
        for a in self._arrays.values():
            total += float((a.astype(np.float64) ** 2).sum())
        norm: float = total ** 0.5
        scale = max_norm / (norm + 1e-6)
        if scale < 1:
            with _exclusive_all(list(self._handles.values()), user_site(), "grads.clip_norm_"):
                for a in self._arrays.values():
                    a *= scale
        return norm

    def __repr__(self) -> str:
        inner = ", ".join(f"{p._label()}: {tuple(g.shape)}" for p, g in self.items())
        return f"Grads({inner})"


class _GradMode(threading.local):
    enabled = True


class Graph(TensorFactory):
    """Owns every recorded node, the params and constants made in it, and its no-grad state."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.xp = module_for(device)
        self._ids = itertools.count(1)
        self._pending: dict[Node, None] = {}
        self._mode = _GradMode()  # per thread, as torch's grad mode: no_grad in one thread leaves others recording
        self._lock = threading.RLock()
        self._ledger_lock = threading.Lock()  # shared by the ledgers of this graph's storages
        self._n_params = 0
        #: this graph's random stream (seeded 0): modules and dropout built without ``rng=`` draw from it
        self.rng = np.random.default_rng(0)

    def __repr__(self) -> str:
        return f"Graph(device={self.device!r}, pending={len(self._pending)})"

    def __enter__(self) -> Graph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()

    # --- leaves ---
    def param(self, data: Any, name: str | None = None) -> Tensor:
        """A leaf that gets a gradient. Float dtypes only; ``data`` is copied in."""
        arr = as_array(self, data, "g.param")
        if arr.dtype.kind != "f":
            raise TypeError(f"g.param: a param needs a floating dtype, got {arr.dtype} "
                            f"(convert first, e.g. data.astype(np.float32))")
        self._n_params += 1
        t = Tensor._root_of(self, arr, "param", None, name or None, name or f"param#{self._n_params}")
        leaf = Node(self, "param", (), (), user_site())
        leaf.leaf = t
        leaf.shape = t.shape
        t._node = leaf
        return t

    def constant(self, data: Any, name: str | None = None) -> Tensor:
        """A leaf without gradient; ``data`` is copied in."""
        arr = as_array(self, data, "g.constant")
        return Tensor._root_of(self, arr, "constant", None, name or None, name or "constant")

    def freeze(self, t: Tensor) -> Tensor:
        """A read-only handle on ``t``'s data: writes through it raise BorrowError."""
        self._check_mine(t, "g.freeze")
        return t._handle(readonly="frozen (made by g.freeze)")

    # --- recording ---
    @contextmanager
    def no_grad(self) -> Iterator[None]:
        """Record nothing and save nothing inside the block; writes still take exclusive borrows."""
        mode = self._mode
        prev = mode.enabled
        mode.enabled = False
        try:
            yield
        finally:
            mode.enabled = prev

    @property
    def _grad_enabled(self) -> bool:
        return self._mode.enabled

    def _check_mine(self, t: object, op: str) -> None:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected a Tensor, got {type(t).__name__}")
        if t._graph is not self:
            raise GraphError(f"{op}: the tensor {t._label()} belongs to another graph")

    def _apply(self, name: str, args: Sequence[Any], attrs: dict[str, Any] = _EMPTY,
               vattrs: dict[str, Any] | None = None) -> Tensor:
        """Run rule ``name`` forward on tensors/raw operands, and record a node if any input needs a gradient."""
        rule = RULES[name]
        arrays: list[Any] = []
        parents: list[Node | None] = []
        in_shapes: list[tuple[int, ...] | None] = []
        mask = 0  # bit i: input i needs a gradient
        device = None
        first = None
        grad_on = self._mode.enabled
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                if a._graph is not self:
                    raise GraphError(f"{name}: operands belong to different graphs ({a._label()} is from another)")
                data = a._data
                if device is None:
                    device = a._storage.device
                    first = data
                elif a._storage.device != device:
                    raise DeviceError(f"{name}: operands are on different devices ({device} and "
                                      f"{a._storage.device}); move one with t.to(...)")
                arrays.append(data)
                n = a._grad_node() if grad_on else None
                if n is not None:
                    mask |= 1 << i
                    in_shapes.append(data.shape)
                else:
                    in_shapes.append(None)
                parents.append(n)
            else:
                arrays.append(a)
                parents.append(None)
                in_shapes.append(None)
        xp = self.xp if first is None else np if type(first) is np.ndarray else xp_of(first)
        try:
            out = rule.forward(xp, *arrays, **attrs)
        except ValueError as e:  # numpy's AxisError is a ValueError too
            shapes = " and ".join(str(tuple(getattr(x, "shape", ()))) for x in arrays)
            raise ShapeError(f"{name}: operands of shapes {shapes} do not fit: {e}") from None
        except IndexError as e:
            shapes = " and ".join(str(tuple(getattr(x, "shape", ()))) for x in arrays)
            raise IndexError(f"{'tensor index' if name == 'gather' else name}: {e} (tensor shape {shapes})") from None
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from None
        aux = None
        if rule.aux:
            out, aux = out
        if type(out) is not np.ndarray or not out.flags.c_contiguous:
            out = owned(out, xp)
        if not mask:
            return Tensor._root_of(self, out, "constant", None, None, (name, 0))
        if vattrs or rule.shapes:
            attrs = {**attrs, **(vattrs or _EMPTY)}
            if rule.shapes:
                attrs["shapes"] = tuple([getattr(x, "shape", ()) for x in arrays])
        node = Node(self, name, tuple(parents), tuple(in_shapes), user_site(), rule, attrs, aux, out.shape)
        t = Tensor._root_of(self, out, "result", node, None, (name, node.id))
        node.out = weakref.ref(t)
        saved: list[Any] = [None] * (len(args) + 1)
        needs = rule.saves(mask)
        if needs:
            borrow: list[tuple[Any, Region]] = []
            for j in needs:
                src = t if j == 0 else args[j - 1]
                if isinstance(src, Tensor):
                    saved[j] = src._data
                    borrow.append((src._storage.ledger, src._region))
                else:
                    # a raw array operand is copied: the caller may change it before backward
                    saved[j] = src.copy() if isinstance(src, np.ndarray) or is_array(src) else src
            # all or none: a refused borrow leaves no node behind holding the others
            node.borrows = acquire_all(borrow, SHARED, node, "saved for backward", node.site, "save")
        node.saved = tuple(saved)
        self._register(node)
        return t

    def _register(self, node: Node) -> None:
        """Make ``node`` pending, with any view nodes it reads (views create theirs unregistered on
        use, so an op that fails its checks leaves the graph as it was)."""
        pending = self._pending
        for p in node.parents:
            if p is not None and p.op != "param" and p.consumed is None and p not in pending:
                self._register(p)
        pending[node] = None

    def _new_node(self, op: str, parents: tuple[Node | None, ...],
                  in_shapes: tuple[tuple[int, ...] | None, ...], register: bool = True) -> Node:
        node = Node(self, op, parents, in_shapes, user_site())
        if register:
            self._register(node)
        return node

    # --- backward ---
    def backward(self, loss: Tensor, seed: Any = None, retain: bool = False, into: Grads | None = None,
                 on_grad: Callable[[Tensor, Tensor], None] | None = None,
                 check_finite: bool = False) -> Grads:
        """Gradients of ``loss`` for every param it depends on; consumes the walked nodes unless ``retain``."""
        self._check_mine(loss, "g.backward")
        if on_grad is not None and not callable(on_grad):
            raise TypeError(f"g.backward: on_grad must be a callable (leaf, grad) -> None, got {type(on_grad).__name__}")
        if into is not None and not isinstance(into, Grads):
            raise TypeError(f"g.backward: into= must be a Grads, got {type(into).__name__}")
        if into is not None and into._graph is not self:
            raise GraphError("g.backward: into= holds the gradients of another graph")
        root = loss._grad_node()
        if root is None:
            raise GradError(f"g.backward: {loss._label()} does not depend on any param "
                            "(it was computed from constants only, or under g.no_grad())")
        xp = xp_of(loss._data)
        if seed is None:
            if loss.size != 1:
                raise GraphError(f"g.backward: the loss must be a scalar, got shape {loss.shape}; "
                                 "pass seed= (an array of the loss's shape) for a non-scalar output")
            g0 = xp.ones(loss._data.shape, dtype=loss._data.dtype)
        else:
            if isinstance(seed, Tensor):
                self._check_mine(seed, "g.backward(seed=...)")
                if seed.device != loss.device:
                    raise DeviceError(f"g.backward: seed is on {seed.device}, the loss on {loss.device}")
                g0 = seed._data
            else:
                try:
                    kind = np.asarray(seed).dtype.kind if not hasattr(seed, "dtype") else seed.dtype.kind
                    if kind not in "biuf":
                        raise TypeError
                    g0 = xp.asarray(seed, dtype=loss._data.dtype)
                except (TypeError, ValueError):
                    got = f"an array of dtype {seed.dtype}" if hasattr(seed, "dtype") else type(seed).__name__
                    raise TypeError(f"g.backward: seed must be a real array or tensor of the loss's shape "
                                    f"{loss.shape}, got {got}") from None
            if tuple(g0.shape) != loss.shape:
                raise ShapeError(f"g.backward: seed has shape {tuple(g0.shape)} but the loss has shape {loss.shape}")
        site = user_site()
        with self._lock:
            order = self._topo(root)
            holder = _BackwardHolder(site)
            leaves = [leaf for node in order if node.op == "param" and (leaf := node.leaf) is not None]
            leaf_borrows = acquire_all([(t._storage.ledger, t._region) for t in leaves], SHARED, holder,
                                       "read by backward", site, "read")
            try:
                result = Grads(self, {})
                self._run(order, root, g0, on_grad, check_finite, result)
            finally:
                release_all(leaf_borrows)
            if into is not None:
                into._add_(result, site)
                result = into
            if not retain:
                for node in order:
                    if node.op != "param":
                        self._drop(node, "consumed")
        return result

    def _topo(self, root: Node) -> list[Node]:
        """Nodes reachable from ``root`` in topological order (inputs first); refuses consumed ones.

        A node's inputs always exist before it does, so creation order (the node id) is a
        topological order: collecting the reachable set and sorting it by id is enough."""
        seen: set[Node] = {root}
        stack = [root]
        while stack:
            node = stack.pop()
            if node.consumed:
                raise GraphError(
                    f"g.backward: node #{node.id} {node.op} (recorded at {format_site(node.site)}) was already "
                    f"{node.consumed} by an earlier backward or free; pass retain=True to the earlier "
                    "g.backward(...) to walk it twice, or recompute the forward")
            for p in node.parents:
                if p is not None and p not in seen:
                    seen.add(p)
                    stack.append(p)
        return sorted(seen, key=_node_id)

    def _run(self, order: list[Node], root: Node, g0: Array,
             on_grad: Callable[[Tensor, Tensor], None] | None, check_finite: bool, out: Grads) -> None:
        grads: dict[Node, Array] = {root: g0}
        by_leaf = out._arrays
        handed: set[int] = set()  # ids of arrays already given to a leaf: vjps such as add's pass one
        # array to two inputs, and leaf gradients are updated in place later (into=, clip_norm_)

        def finish(leaf_node: Node) -> None:
            """A param's gradient is final: keep it (owned, in the param's dtype) and tell on_grad."""
            g = grads.pop(leaf_node, None)
            leaf = leaf_node.leaf
            if g is None or leaf is None:
                return
            g = leaf._graph.xp.asarray(g) if not hasattr(g, "flags") else g
            if g.dtype != leaf._data.dtype:
                g = g.astype(leaf._data.dtype)
            elif g.base is not None or not getattr(g.flags, "writeable", True) or g is g0 or id(g) in handed:
                g = g.copy()
            handed.add(id(g))
            by_leaf[leaf_node] = g
            if on_grad is not None:
                on_grad(leaf._handle(readonly="a leaf handed to on_grad"), out._handle(leaf_node))

        # With on_grad, a param's gradient is handed out as soon as every node that reads it has run
        # (the last layer's first, as an all-reduce wants); without, counting is skipped and all are
        # handed out at the end of the walk.
        waiting: dict[Node, int] | None = None
        if on_grad is not None:
            waiting = {}
            for node in order:
                for p in node.parents:
                    if p is not None and p.op == "param":
                        waiting[p] = waiting.get(p, 0) + 1
            if root.op == "param":
                finish(root)
        at_end: list[Node] = []
        for node in reversed(order):
            if node.op == "param":
                if waiting is None:
                    at_end.append(node)
                continue
            g = grads.pop(node, None)
            if g is not None:
                self._backprop(node, g, grads, check_finite)
            if waiting is not None:
                for p in node.parents:
                    if p is not None and p.op == "param":
                        left = waiting[p] - 1
                        waiting[p] = left
                        if left == 0:
                            finish(p)
        for node in at_end:
            finish(node)

    def _backprop(self, node: Node, g: Array, grads: dict[Node, Array], check_finite: bool) -> None:
        """Add ``node``'s input gradients (for output gradient ``g``) into ``grads``."""
        if isinstance(g, np.generic):  # numpy gives scalars, not 0-d arrays, for 0-d arithmetic
            g = np.asarray(g)
        for i, p in enumerate(node.parents):
                if p is None:
                    continue
                gi = node.vjp(i, g)
                shape = node.in_shapes[i]
                assert shape is not None  # a parent that gets a gradient has its shape recorded
                if gi.shape != shape:
                    gi = unbroadcast(gi, shape)
                if check_finite and not bool(xp_of(gi).isfinite(gi).all()):
                    raise GradError(
                        f"g.backward(check_finite=True): the gradient flowing from node #{node.id} {node.op} "
                        f"(recorded at {format_site(node.site)}) into its input {i} is not finite")
                prev = grads.get(p)
                grads[p] = gi if prev is None else prev + gi

    # --- freeing ---
    def _drop(self, node: Node, why: str) -> None:
        if why == "consumed" and node.aux is None and not any(is_array(a) for a in node.saved):
            # as torch: a node that saved no array (numbers at most) lost nothing, so a later backward may
            # walk it again
            # (only a node whose saved values were released refuses a second walk without retain)
            self._pending.pop(node, None)
            return
        node.release_borrows()
        node.saved = ()
        node.aux = None
        node.consumed = why
        self._pending.pop(node, None)

    def free(self, t: Tensor) -> int:
        """Drop the pending nodes that only ``t`` needs (releasing their borrows); return how many."""
        self._check_mine(t, "g.free")
        start = t._grad_node()
        if start is None or start.op == "param":
            return 0
        with self._lock:
            mine = self._ancestors([start])
            # still needed: whatever another pending node, or another live tensor, reads
            others = [n for n in tuple(self._pending) if n not in mine]  # tuple(): atomic under the GIL
            for n in mine:
                out = n.out() if n.out is not None else None
                if out is not None and out is not t:
                    others.append(n)
            keep = self._ancestors(others)
            dropped = [n for n in mine if n not in keep and n.op != "param" and not n.consumed]
            for n in dropped:
                self._drop(n, "freed")
        return len(dropped)

    def _ancestors(self, heads: list[Node]) -> set[Node]:
        seen: set[Node] = set()
        stack = list(heads)
        while stack:
            n = stack.pop()
            if n in seen or n.consumed:
                continue
            seen.add(n)
            stack.extend(p for p in n.parents if p is not None)
        return seen

    def clear(self) -> None:
        """Drop every pending node and release all their borrows."""
        with self._lock:
            for n in list(self._pending):
                self._drop(n, "freed")

    def pending(self) -> list[Node]:
        """The recorded nodes no backward has consumed yet, oldest first, each with its borrows."""
        return list(self._pending)

    # --- debugging ---
    def to_dot(self, t: Tensor) -> str:
        """The graph behind ``t`` in Graphviz DOT: op, output shape and borrow state per node."""
        self._check_mine(t, "g.to_dot")
        start = t._grad_node()
        lines = ["digraph owngrad {", '  rankdir="BT";', '  node [shape=box, fontname="monospace"];']
        if start is None:
            lines.append(f'  t [label="{t._label()} {t.shape} (constant)"];')
            lines.append("}")
            return "\n".join(lines)
        seen = self._ancestors([start]) | {start}
        for n in sorted(seen, key=lambda n: n.id):
            leaf = n.leaf
            if leaf is not None:
                label = f"{leaf._label()}\\nparam {leaf.shape}"
            else:
                held = "\\n".join(f"borrows {b.label} ({b.kind})" for b in n.borrows) or "no borrows"
                state = f"\\n[{n.consumed}]" if n.consumed else ""
                label = f"#{n.id} {n.op} {tuple(n.shape)}\\n{format_site(n.site)}\\n{held}{state}"
            lines.append(f'  n{n.id} [label="{label}"];')
            for p in n.parents:
                if p is not None:
                    lines.append(f"  n{p.id} -> n{n.id};")
        lines.append("}")
        return "\n".join(lines)

