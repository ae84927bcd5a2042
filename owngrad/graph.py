"""The graph: the one place nodes are recorded, and backward, freeing and debugging views of them.

A :class:`Graph` owns every node it records. Recording happens in three methods only:
:meth:`Graph.apply` (an op of the rule table), :meth:`Graph.record_view` (a view's node,
derived from its root's current node) and :meth:`Graph.record_write` (an in-place write, a
``copy_slices`` node); params get their leaf node in :meth:`Graph.param`. A node that saved an
operand holds a shared borrow on exactly that operand's region until backward consumes it or
the graph frees it. Backward is iterative, all-or-nothing and always adds into gradients
(backward.py): only when every gradient has been computed does it hand out :class:`Grads`,
consume the walked nodes and release their borrows.

The graph reads its tensors' internals (``_data``, ``_storage``, ``_region``, ``_node``) directly:
it owns them, and recording is the hot path.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .backend import Array, copy_of, is_array, module_for, owned, xp_of
from .backward import OnGrad, seed_gradient, topo_order, walk
from .errors import DeviceError, GradError, GraphError, ShapeError
from .factory import TensorFactory
from .grads import Grads
from .ledger import SHARED, Borrow, Region, acquire_all, release_all
from .node import PENDING, Node, NodeState
from .operands import as_array
from .roles import ReadOnly, Role
from .rules import ALL_ARGS, RULES, Rule
from .sites import Site, format_site, sync_user_frames, user_site
from .tensor import Tensor
from .traced import TracedArray, unwrap
from .tracer import Tracer
from .views import Step

__all__ = ["Graph", "Node", "Grads"]

_EMPTY: dict[str, Any] = {}
_CONSTANT, _RESULT = Role.CONSTANT, Role.RESULT


class _BackwardHolder:
    """The shared borrow a running backward holds on every leaf it reaches."""

    __slots__ = ("site",)

    def __init__(self, site: Site) -> None:
        self.site = site

    def holder_text(self) -> str:
        return f"g.backward running since {format_site(self.site)}"

    def hint(self) -> str:
        return ("leaves cannot change while backward runs (on_grad gets read-only handles); "
                "update them after g.backward returns")

    def abandoned(self) -> bool:
        return False  # ends when the backward returns

    def reclaim(self) -> None:
        raise AssertionError("a running backward is never abandoned")


class _GradMode(threading.local):
    enabled = True


class Graph(TensorFactory):
    """Owns every recorded node, the params and constants made in it, and its no-grad state."""

    _capture_stop = True  # a captured step guards a graph by identity (and its rng), never walks into it

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.xp = module_for(device)
        self._ids = itertools.count(1)
        self._pending: dict[Node, None] = {}
        self._mode = _GradMode()  # per thread, as torch's grad mode: no_grad in one thread leaves others recording
        self._lock = threading.RLock()
        #: shared by the ledgers of this graph's storages (acquiring borrows on several is atomic)
        self.ledger_lock = threading.Lock()
        self._n_params = 0
        #: this graph's random stream (seeded 0): modules and dropout built without ``rng=`` draw from it
        self.rng = np.random.default_rng(0)
        #: the recorder of the step being captured (g.capture), or None: eager ops check this one attribute
        self._tracer: Tracer | None = None
        #: held while a step of this graph is captured: captures (first calls) are serialised
        self._capture_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Graph(device={self.device!r}, pending={len(self._pending)})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Graph:
        """A graph is never copied: a deep copy of a module (or anything holding a graph) stays in it."""
        return self

    def __enter__(self) -> Graph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()

    # --- leaves ---
    def param(self, data: Any, name: str | None = None) -> Tensor:
        """A leaf that gets a gradient. Float dtypes only; ``data`` is copied in."""
        if self._tracer is not None:
            self._tracer.refuse("creating a param", help="make the param (or the module that owns it) outside the "
                                "captured function")
        arr = as_array(self, data, "g.param")
        if arr.dtype.kind != "f":
            raise TypeError(f"g.param: a param needs a floating dtype, got {arr.dtype} "
                            f"(convert first, e.g. data.astype(np.float32))")
        self._n_params += 1
        t = Tensor._root_of(self, arr, Role.PARAM, None, name or None, name or f"param#{self._n_params}")
        leaf = Node(next(self._ids), self, "param", (), (), user_site(), shape=t.shape)
        leaf.is_param = True
        leaf.leaf = t
        t._node = leaf
        return t

    def constant(self, data: Any, name: str | None = None) -> Tensor:
        """A leaf without gradient; ``data`` is copied in."""
        tr = self._tracer
        if tr is None and type(data) is TracedArray:  # a captured step's input, given to another graph
            data.refuse_use("g.constant of another graph (its work is not part of the step)")
        arr = as_array(self, unwrap(data), "g.constant")
        if tr is not None:
            tr.note(as_array, (self, data, "g.constant"), {}, arr)
        return Tensor._root_of(self, arr, Role.CONSTANT, None, name or None, name or "constant")

    def freeze(self, t: Tensor) -> Tensor:
        """A read-only handle on ``t``'s data: writes through it raise BorrowError."""
        self._check_mine(t, "g.freeze")
        return t._handle(readonly=ReadOnly.FROZEN)

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
    def grad_enabled(self) -> bool:
        """Whether ops record nodes in this thread (False inside ``g.no_grad()``)."""
        return self._mode.enabled

    def _check_mine(self, t: object, op: str) -> None:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected a Tensor, got {type(t).__name__}")
        if t._graph is not self:
            raise GraphError(f"{op}: the tensor {t._label()} belongs to another graph")

    def apply(self, name: str, args: Sequence[Any], attrs: dict[str, Any] = _EMPTY,
              vattrs: dict[str, Any] | None = None) -> Tensor:
        """Run rule ``name`` forward on tensors/raw operands, and record a node if any input needs a
        gradient: operands -> forward -> record. ``vattrs`` go to the vjps only."""
        # operands: the arrays, and for inputs that need a gradient their nodes (bit i of mask: input i)
        arrays: list[Any] = []
        parents: list[Node | None] = []
        in_shapes: list[tuple[int, ...] | None] = []
        mask = 0
        device = first = None
        grad_on = self._mode.enabled
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                if a._graph is not self:
                    raise GraphError(f"{name}: operands belong to different graphs ({a._label()} is from another)")
                data = a._data
                dev = a._storage.device
                if device is None:
                    device, first = dev, data
                elif dev != device:
                    raise DeviceError(f"{name}: operands are on different devices ({device} and "
                                      f"{dev}); move one with t.to(...)")
                arrays.append(data)
                # a root's node is its own; a view's is derived from its root's
                n = None if not grad_on else a._node if a._rootref is None else a._grad_node()
                if n is not None:
                    mask |= 1 << i
                in_shapes.append(None if n is None else data.shape)
                parents.append(n)
            else:
                arrays.append(a)
                parents.append(None)
                in_shapes.append(None)
        # forward
        rule = RULES[name]
        xp = self.xp if first is None else np if type(first) is np.ndarray else xp_of(first)
        tr = self._tracer
        try:
            if tr is None:
                out = rule.forward(xp, *arrays, **attrs) if attrs else rule.forward(xp, *arrays)
            else:
                out = tr.call_rule(name, rule.forward, xp, *arrays, **attrs)
        except (ValueError, IndexError, TypeError) as e:  # numpy's AxisError is a ValueError too
            raise _forward_error(name, arrays, e) from None
        aux = None
        if rule.aux:
            out, aux = out
        if type(out) is not np.ndarray or not out.flags.c_contiguous:
            out = owned(out, xp) if tr is None else tr.call(owned, out, xp)
        if tr is not None:
            for a in args:
                if isinstance(a, Tensor):
                    tr.read(a)
        if not mask:
            return Tensor._root_of(self, out, _CONSTANT, None, None, (name, 0))
        return self._record(rule, name, args, arrays, parents, in_shapes, mask, out, attrs, vattrs, aux, user_site())

    def _record(self, rule: Rule, name: str, args: Sequence[Any], arrays: list[Any], parents: list[Node | None],
                in_shapes: list[tuple[int, ...] | None], mask: int, out: Array, attrs: dict[str, Any],
                vattrs: dict[str, Any] | None, aux: Any,
                site: Site) -> Tensor:
        """The node of an op whose inputs in ``mask`` need a gradient. It saves what their vjps read,
        under shared borrows of exactly those regions (all or none: a refused borrow leaves no node
        behind holding the others)."""
        if vattrs or rule.shapes or rule.aux:
            attrs = {**attrs, **(vattrs or _EMPTY)}
            if rule.shapes:
                attrs["shapes"] = tuple([getattr(x, "shape", ()) for x in arrays])
            if rule.aux:
                attrs["aux"] = aux
        node = Node(next(self._ids), self, name, tuple(parents), tuple(in_shapes), site, rule, attrs, out.shape)
        t = Tensor._root_of(self, out, _RESULT, node, None, (name, node.id))
        node.out = weakref.ref(t)
        needs = rule.by_mask[0] if rule.variadic else rule.by_mask[mask]  # what the vjps of ``mask`` read
        if needs and needs[0] == ALL_ARGS:
            needs = tuple(range(1, len(args) + 1))
        if not needs:
            node.saved = (None,) * (len(args) + 1)
        else:
            saved: list[Any] = [None] * (len(args) + 1)
            borrow: list[tuple[Any, Region]] = []
            sources: list[Any] = [None] * len(saved)
            for j in needs:
                src = t if j == 0 else args[j - 1]
                if isinstance(src, Tensor):
                    saved[j] = src._data
                    st = src._storage
                    sources[j] = (st, src._region, src._layout)
                    led = st._ledger  # (a storage makes its ledger on first use)
                    borrow.append((st.ledger if led is None else led, src._region))
                    node.holds_arrays = True
                elif isinstance(src, (np.ndarray, TracedArray)) or is_array(src):
                    # a raw array operand is copied: the caller may change it
                    saved[j] = src.copy() if self._tracer is None else self._tracer.call(copy_of, src)
                    node.holds_arrays = True
                else:
                    saved[j] = src
            node.borrows = acquire_all(borrow, SHARED, node, "saved for backward", node.site, "save")
            node.sources = tuple(sources)
            node.saved = tuple(saved)
        if aux is not None:
            node.holds_arrays = True
        pending = self._pending  # register it (as _register does, inline: its parents are pending already
        for p in node.parents:  # unless one is a view's node, made on use)
            if p is not None and not p.is_param and p.state is PENDING and p not in pending:
                self._register(p)
        pending[node] = None
        return t

    def _register(self, node: Node) -> None:
        """Make ``node`` pending, with any view nodes it reads (views create theirs unregistered on
        use, so an op that fails its checks leaves the graph as it was)."""
        pending = self._pending
        for p in node.parents:
            if p is not None and not p.is_param and p.state is PENDING and p not in pending:
                self._register(p)
        pending[node] = None

    def record_view(self, root_node: Node, root_shape: tuple[int, ...], path: tuple[Step, ...],
                    view: Tensor) -> Node:
        """The node of a view: its root's current node seen through the view's steps. Made on use and
        registered only when an op reads it."""
        node = Node(next(self._ids), self, "view", (root_node,), (root_shape,), user_site(), RULES["view"],
                    {"path": path, "shapes": (root_shape,)}, view.shape)
        node.saved = (None, None)
        node.out = weakref.ref(view)
        return node

    def record_write(self, root: Tensor, src: Tensor | None, path: tuple[Step, ...], key: Any,
                     landed: Array | None) -> None:
        """An in-place write into ``root`` (through ``path``, then ``key`` for an advanced key) of a
        value with history ``src`` (or none): a ``copy_slices`` node becomes the root's current node."""
        old = root._node
        src_node = src._grad_node() if src is not None else None
        in_shapes = (root.shape if old is not None else None,
                     src.shape if src is not None and src_node is not None else None)
        node = Node(next(self._ids), self, "copy_slices", (old, src_node), in_shapes, user_site(),
                    RULES["copy_slices"], {"path": path, "key": key, "landed": landed}, root.shape)
        node.saved = (None, None, None)
        node.out = weakref.ref(root)
        self._register(node)
        root._node = node
        root._kind = Role.RESULT

    # the name the recording API had before it was public (kept for code written against it)
    _apply = apply

    # --- backward ---
    def backward(self, loss: Tensor, seed: Any = None, retain: bool = False, into: Grads | None = None,
                 on_grad: OnGrad | None = None, check_finite: bool = False, create_graph: bool = False) -> Grads:
        """Gradients of ``loss`` for every param it depends on; consumes the walked nodes unless ``retain``.
        ``create_graph=True``: the gradients carry history (higher.py, docs/semantics.md)."""
        if create_graph:
            return self._backward_create_graph(loss, seed, retain, into, on_grad, check_finite)
        self._check_mine(loss, "g.backward")
        if on_grad is not None and not callable(on_grad):
            raise TypeError("g.backward: on_grad must be a callable (leaf, grad) -> None, got "
                            f"{type(on_grad).__name__}")
        if into is not None and not isinstance(into, Grads):
            raise TypeError(f"g.backward: into= must be a Grads, got {type(into).__name__}")
        if into is not None and into.graph is not self:
            raise GraphError("g.backward: into= holds the gradients of another graph")
        tr = self._tracer
        if tr is not None and on_grad is not None:
            tr.refuse("g.backward(on_grad=...) (a hook runs Python on each gradient)",
                      help="use the Grads the backward returns, or run hooked backwards outside g.capture(...)")
        root = loss._grad_node()
        if root is None:
            raise GradError(f"g.backward: {loss._label()} does not depend on any param "
                            "(it was computed from constants only, or under g.no_grad())")
        g0 = seed_gradient(loss, seed)
        site = user_site()
        with self._lock:
            order = topo_order(root)
            leaves: list[tuple[Any, Region]] = []  # every live leaf's (ledger, region)
            for node in order:
                if node.is_param and (ref := node._leaf) is not None and (t := ref()) is not None:
                    st = t._storage
                    leaves.append((st.ledger if (led := st._ledger) is None else led, t._region))
            result = Grads(self, {})
            held = acquire_all(leaves, SHARED, _BackwardHolder(site), "read by backward", site, "read")
            try:
                walk(order, root, g0, on_grad, check_finite, result, tr)
            finally:
                release_all(held)
            if into is not None:
                into._add_(result, site)  # noqa: SLF001 - accumulation is the graph's, not the user's
                result = into
            if not retain:
                self._consume_walked(order)
        return result

    #: ``g.grad(outputs, inputs, grad_outputs=None, create_graph=False, retain=False, allow_unused=False)`` and
    #: ``g.backward(..., create_graph=True)``: installed by higher.py, which sits above the graph (its
    #: differentiable vjps are written in tensor operations)
    grad: Callable[..., Any]
    _backward_create_graph: Callable[..., Grads]

    def _consume_walked(self, order: list[Node]) -> None:
        """Consume the walked nodes, and with a node a create_graph walk recorded, the nodes that walk kept."""
        stack = [node for node in order if not node.is_param]
        held: list[Borrow] = []  # every consumed node's borrows, released together (one hold of the lock)
        pending = self._pending
        try:
            while stack:
                node = stack.pop()
                pending.pop(node, None)
                if node.holds_arrays:  # release what it saved (as torch, a node that saved no array stays walkable)
                    held += node.borrows
                    node.borrows = []
                    node.release(NodeState.CONSUMED)
                kept = node.kept
                if kept is not None:  # and what those kept, for a gradient of a gradient
                    node.kept = None
                    stack.extend(k for k in kept if k.state is PENDING)
                    kept.clear()  # one list is shared by every node of that walk: consumed once
        finally:
            release_all(held)

    # --- captured steps ---
    #: ``step = g.capture(fn, fallback=False, max_plans=8, verify=False)``: installed by capture.py, which
    #: sits above the graph (as JAX's upper layers install methods on core types)
    capture: Callable[..., Any]

    # --- freeing ---
    def free(self, t: Tensor) -> int:
        """Drop the pending nodes that only ``t`` needs (releasing their borrows); return how many."""
        self._check_mine(t, "g.free")
        start = t._grad_node()
        if start is None or start.is_param:
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
            dropped = [n for n in mine if n not in keep and not n.is_param and n.state is PENDING]
            for n in dropped:
                self._pending.pop(n, None)
                n.release(NodeState.FREED)
        return len(dropped)

    def _ancestors(self, heads: list[Node]) -> set[Node]:
        seen: set[Node] = set()
        stack = list(heads)
        while stack:
            n = stack.pop()
            if n in seen or n.state is not PENDING:
                continue
            seen.add(n)
            stack.extend(p for p in n.parents if p is not None)
        return seen

    def _reachable(self) -> set[Node]:
        """The pending nodes some live tensor still reaches (the others can never be walked). Live tensors are
        found through the nodes that made them (``Node.out``); CPython frees a tensor when its last reference
        goes, so the answer is deterministic. While a step is being captured every node it recorded counts as
        reachable (the recorder reaches them too); those left before it (a step that raised) are judged as ever."""
        sync_user_frames()  # a name the user deleted no longer counts (Python < 3.13 keeps frame snapshots)
        with self._lock:
            tr = self._tracer
            recorded = set() if tr is None else {n for n in self._pending if n not in tr.pending_before}
            heads: list[Node] = list(recorded)
            for n in tuple(self._pending):
                t = n.out() if n.out is not None else None
                if t is not None:
                    heads.append(n)
                    if t._root._node is not None:
                        heads.append(t._root._node)
            return self._ancestors(heads)

    def _release_abandoned(self) -> None:
        """Release the pending nodes no live tensor reaches: nothing can ever backward through them, so their
        borrows protect nothing (an evaluation forward computed and dropped without ``no_grad``). The ledger
        asks for it when a borrow conflicts only with such nodes."""
        with self._lock:
            live = self._reachable()
            for n in [n for n in tuple(self._pending) if n not in live and n.state is PENDING]:
                self._pending.pop(n, None)
                n.release(NodeState.FREED)

    def _results_needing(self, node: Node) -> list[Tensor]:
        """The live tensors whose history still runs through ``node`` (for the message of a conflict it holds)."""
        with self._lock:
            outs = [t for n in tuple(self._pending) if n.out is not None for t in (n.out(),) if t is not None]
            return [t for t in outs if t._root._node is not None and node in self._ancestors([t._root._node])]

    def clear(self) -> None:
        """Drop every pending node and release all their borrows."""
        with self._lock:
            for n in list(self._pending):
                self._pending.pop(n, None)
                n.release(NodeState.FREED)

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
        for n in sorted(self._ancestors([start]) | {start}, key=lambda n: n.id):
            lines.append(f'  n{n.id} [label="{_dot_label(n)}"];')
            lines.extend(f"  n{p.id} -> n{n.id};" for p in n.parents if p is not None)
        lines.append("}")
        return "\n".join(lines)


def _dot_label(n: Node) -> str:
    leaf = n.leaf
    if leaf is not None:
        return f"{leaf._label()}\\nparam {leaf.shape}"
    held = "\\n".join(f"borrows {b.label} ({b.kind})" for b in n.borrows) or "no borrows"
    state = f"\\n[{n.consumed}]" if n.consumed else ""
    return f"#{n.id} {n.op} {tuple(n.shape)}\\n{format_site(n.site)}\\n{held}{state}"


def _forward_error(name: str, arrays: list[Any], e: Exception) -> Exception:
    """numpy's error in a rule's forward as owngrad's (naming the op and the shapes)."""
    shapes = " and ".join(str(tuple(getattr(x, "shape", ()))) for x in arrays)
    if isinstance(e, ValueError):
        return ShapeError(f"{name}: operands of shapes {shapes} do not fit: {e}")
    if isinstance(e, IndexError):
        return IndexError(f"{'tensor index' if name == 'gather' else name}: {e} (tensor shape {shapes})")
    return TypeError(f"{name}: {e}")


def graph_of(x: Tensor | Node) -> Graph:
    """The graph of a tensor or a node, typed as the :class:`Graph` it is: the layers below graph.py (where
    tensors and nodes are defined) name it only through protocols (``GraphAPI``, ``NodeOwner``)."""
    return x.graph if type(x) is Node else x._graph  # type: ignore[return-value,union-attr]
