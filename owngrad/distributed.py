"""Data-parallel training over MPI (``mpi4py``): ``mpiexec -n N python train.py``.

- :func:`init` returns the :class:`World` (``rank``, ``size``, ``comm``, ``timeout``);
  :func:`broadcast_parameters` copies a rank's params and buffers to every rank and checks that they
  agree; :func:`broadcast_optimizer_state` does the same for an optimizer; :func:`save` writes a
  checkpoint on rank 0 behind a barrier.
- :class:`DataParallel` wraps a model; ``dp.backward(loss)`` returns the ``Grads`` of the global batch:
  each rank's gradient weighted by its number of samples, reduced in buckets (one dtype each, a fixed
  order every rank agreed at construction) whose ``Iallreduce`` starts while backward goes on.
  ``dp.no_sync()`` accumulates micro-batches locally; ``dp.join(opt)`` lets ranks with less data
  shadow the others' steps; buffers (running statistics) are broadcast every step.
- Every collective step is a round of :mod:`owngrad.collective`: the ranks agree on what they are
  about to do before they do it, and a rank that fails, leaves, skips a step or stops answering makes
  every rank stop with :class:`RankFailed` naming it, within ``World.timeout``.
- Borrows: every gradient in flight is held under an exclusive borrow whose holder names the line that
  started the reduction; reading ``grads[w]`` (or clipping, or stepping) before it completes raises.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .backend import Array, to_device, xp_of
from .collective import Header, Phase, RankFailed, Round, World, current, set_current
from .errors import GradError
from .grads import Grads
from .handle import array_of, exclusive
from .io import _write_checkpoint
from .ledger import BlockHolder, borrowing
from .nn.modules import Module
from .sites import Site, format_site, user_site
from .tensor import Tensor

__all__ = ["World", "RankFailed", "init", "current", "broadcast_parameters", "broadcast_optimizer_state", "save",
           "DataParallel"]



def init(comm: Any = None, timeout: float = 300.0) -> World:
    """The world of this process (MPI's ``COMM_WORLD`` unless ``comm`` is given). ``timeout``: the
    longest any rank waits for the others at a collective step before it stops, naming them.

    Installs two hooks: an uncaught exception (``KeyboardInterrupt`` included) on one rank tells every
    other rank, which stop with :class:`RankFailed` naming it; and the end of the program is a last
    step every rank must reach (a rank that returns early or calls ``sys.exit`` is named on every rank).
    Every rank then exits with code 1."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("owngrad.distributed needs mpi4py: pip install -e '.[mpi]'") from e
    world = World(MPI.COMM_WORLD if comm is None else comm, timeout)
    set_current(world)
    world.install_hooks()
    return world


def _site() -> str:
    return format_site(user_site())


def _layout(named: list[tuple[str, Any]]) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    return tuple((k, tuple(int(n) for n in v.shape), str(v.dtype)) for k, v in named)


class _Transfer:
    """One collective on one buffer. A device buffer is staged through the host (one explicit copy each
    way) unless ``world.device_direct`` says MPI is CUDA-aware and takes it as it is."""

    __slots__ = ("request", "host", "dest")

    def __init__(self, request: Any, host: np.ndarray | None, dest: Array | None) -> None:
        self.request, self.host, self.dest = request, host, dest

    def land(self) -> None:
        """After completion: copy a staged result back to the device buffer."""
        if self.host is not None and self.dest is not None:
            self.dest[...] = xp_of(self.dest).asarray(self.host)
            self.host = None


def _staged(world: World, a: Array) -> bool:
    return not isinstance(a, np.ndarray) and not world.device_direct


def _allreduce(world: World, send: Array, recv: Array) -> _Transfer:
    from mpi4py import MPI

    world.flush()  # collectives deferred earlier start first: the same order on every rank
    if _staged(world, send):
        host = to_device(send, "cpu")
        out = np.empty_like(host)
        request = world.comm.Iallreduce(host, out, op=MPI.SUM)
        world.keep(request, host, out)
        return _Transfer(request, out, recv)
    request = world.comm.Iallreduce(send, recv, op=MPI.SUM)
    world.keep(request, send, recv)
    return _Transfer(request, None, None)


def _broadcast(world: World, buf: Array, root: int) -> _Transfer:
    world.flush()
    if _staged(world, buf):
        host = np.ascontiguousarray(to_device(buf, "cpu"))
        request = world.comm.Ibcast(host, root=root)
        world.keep(request, host)
        return _Transfer(request, host, buf)
    request = world.comm.Ibcast(buf, root=root)
    world.keep(request, buf)
    return _Transfer(request, None, None)


def _complete(world: World, transfers: list[_Transfer], what: str) -> None:
    world.wait([t.request for t in transfers], what)
    for t in transfers:
        t.land()


def _broadcast_arrays(world: World, arrays: list[np.ndarray], root: int, what: str) -> list[np.ndarray]:
    """``arrays`` of rank ``root`` on every rank (same shapes and dtypes, 0-d included)."""
    flats = [np.array(a, copy=True).reshape(-1) for a in arrays]
    _complete(world, [_broadcast(world, f, root) for f in flats], what)
    return [f.reshape(np.shape(a)) for f, a in zip(flats, arrays)]


def _digest(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def broadcast_parameters(model: Module, world: World, root: int = 0) -> None:
    """Copy rank ``root``'s params and buffers (0-d ones included) to every rank, in place under
    exclusive borrows, then check that every rank holds the same values. Models whose names, shapes or
    dtypes differ are refused on every rank with a ShapeError naming both ranks' shapes, rank 0's first."""
    site = _site()
    state = model.state_dict()
    world.exchange(Header(Phase.BROADCAST, site, layout=_layout(list(state.items()))))
    got = _broadcast_arrays(world, list(state.values()), root, f"broadcast_parameters at {site}")
    model.load_state_dict(dict(zip(state, got)))
    digests = [h.payload for h in world.exchange(Header(Phase.BROADCAST, site, payload=_digest(got)))]
    if len(set(digests)) > 1:
        bad = [r for r, d in enumerate(digests) if d != digests[root]]
        world.fail(f"broadcast_parameters at {site}: rank(s) {bad} still differ from rank {root} after the broadcast")


def broadcast_optimizer_state(opt: Any, world: World, root: int = 0) -> None:
    """Copy rank ``root``'s optimizer state (after ``opt.load_state_dict`` on that rank, for instance) to
    every rank, so that momentum and Adam's moments agree; optimizers over params of other shapes are
    refused on every rank, naming both."""
    site = _site()
    layout = _layout([(f"param {i}", p) for i, p in enumerate(opt.params)])
    state = opt.state_dict() if world.rank == root else None
    headers = world.exchange(Header(Phase.OPTIMIZER, site, layout=(type(opt).__name__, *layout), payload=state))
    if world.rank != root:
        opt.load_state_dict(headers[root].payload)


def save(path: str | os.PathLike[str], module_or_state: Any, world: World) -> None:
    """Write a checkpoint (``og.save``) on rank 0 once every rank has reached this call, and return on
    every rank once it is written: a rank that goes on to load it finds it complete. A failure to write
    raises on every rank."""
    world.save_checkpoint(path, module_or_state, _write_checkpoint)


class _Bucket:
    """A flat buffer of several params' gradients (one dtype, on the graph's device), reduced by one
    ``Iallreduce``. After the values comes one flag per param: 1 where this rank produced its gradient,
    so the reduced flags count the ranks that did."""

    __slots__ = ("params", "offsets", "size", "send", "recv", "arrived", "transfer")

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params
        sizes = [p.size for p in params]
        self.offsets = np.cumsum([0, *sizes[:-1]]).tolist()
        self.size = sum(sizes)
        self.send = xp_of(array_of(params[0])).zeros(self.size + len(params), dtype=params[0].dtype)
        self.recv = self.send.copy()
        self.arrived: dict[int, Tensor] = {}  # position in the bucket -> this rank's gradient handle
        self.transfer: _Transfer | None = None

    def flags(self) -> np.ndarray:
        """The reduced flags, on the host: how many ranks produced each param's gradient."""
        return np.asarray(to_device(self.recv[self.size:], "cpu"))

    def put(self, i: int, grad: Array, handle: Tensor | None) -> None:
        off = self.offsets[i]
        self.send[off:off + self.params[i].size] = grad.reshape(-1)
        self.send[self.size + i] = 1
        if handle is not None:
            self.arrived[i] = handle


class _Reduction:
    """One step's gradient reduction: its round, its buckets (started in their fixed order as they fill
    and the round agrees), the buffer broadcast and the borrows held until :meth:`finish`."""

    def __init__(self, dp: DataParallel, where: Site, samples: int, headers: list[Header] | None) -> None:
        site = format_site(where)
        self.dp, self.where, self.site, self.samples = dp, where, site, samples
        self.world = dp.world
        self.buckets = [_Bucket([dp.params[i] for i in plan]) for plan in dp.plan]
        self.slot = {id(array_of(p)): (b, i) for b in self.buckets for i, p in enumerate(b.params)}
        self.round = None if headers is not None else Round(self.world, dp.header(Phase.GRADIENTS, site, samples))
        self.headers = headers
        self.started = 0
        self.closed = False
        self.deferred = False
        self.holder = BlockHolder("the gradient all-reduce started", where,
                                  "call grads.wait() first (opt.step(grads) waits by itself)")
        self.borrows: list[borrowing] = []
        self.buffer_flats: list[Array] = []
        self.buffer_transfers: list[_Transfer] = []
        self.used: list[str] = []
        self.done = False
        self.error: BaseException | None = None

    @property
    def total(self) -> int:
        assert self.headers is not None
        return sum(h.samples for h in self.headers)

    def on_grad(self, leaf: Tensor, grad: Tensor) -> None:
        hit = self.slot.get(id(array_of(leaf)))  # the handle given to on_grad shares its param's array
        if hit is not None:
            b, i = hit
            b.put(i, array_of(grad), grad)
            self.start_ready(closing=False)

    def start_ready(self, closing: bool) -> None:
        """Start the buckets that are full (every one once backward is over), in their fixed order, once
        the round has agreed (without waiting for it: what is not started here, finish() starts)."""
        if self.headers is None:
            assert self.round is not None
            if not self.round.agreed():
                if closing and not self.deferred:
                    self.deferred = True
                    self.world.defer(self.launch)  # started before any later collective, or by finish()
                return
            self.headers = self.round.finish()
        while self.started < len(self.buckets):
            b = self.buckets[self.started]
            if not closing and len(b.arrived) < len(b.params):
                return
            self.start(b)
            self.started += 1
        if closing and self.dp.broadcast_buffers and self.dp.buffers and not self.buffer_transfers:
            self.start_buffers()

    def launch(self) -> None:
        """Wait for the round, then start every bucket and buffer not started yet."""
        if self.headers is None:
            assert self.round is not None
            self.headers = self.round.finish()
        self.start_ready(closing=True)

    def hold(self, ts: list[Tensor], what: str) -> None:
        """Exclusive borrows on ``ts`` until finish(): nothing may read or write them meanwhile."""
        borrow = exclusive(ts, self.where, what, self.holder, "in flight")
        borrow.__enter__()  # released by finish(), once the reduction has completed
        self.borrows.append(borrow)

    def start(self, b: _Bucket) -> None:
        if self.total > 0:
            b.send[:b.size] *= 1.0 / self.total  # each rank sends (sum of its samples' gradients) / (global count)
        if not self.closed:
            self.hold(list(b.arrived.values()), "all-reduce")
        b.transfer = _allreduce(self.world, b.send, b.recv)

    def close(self, grads: Grads) -> None:
        """After backward: fill what on_grad did not bring (accumulated or unused gradients), hold every
        gradient and buffer not in flight yet, and start what the round allows."""
        for b in self.buckets:
            for i, p in enumerate(b.params):
                if i not in b.arrived and p in grads:
                    handle = grads[p]
                    b.put(i, array_of(handle), handle)
        self.used = [n for n, p in zip(self.dp.names, self.dp.params) if p in grads]
        waiting = [h for b in self.buckets[self.started:] for h in b.arrived.values()]
        self.hold(waiting + (self.dp.buffers if self.dp.broadcast_buffers else []), "all-reduce")
        self.closed = True
        self.start_ready(closing=True)

    def start_buffers(self) -> None:
        assert self.headers is not None
        root = next((r for r, h in enumerate(self.headers) if h.samples > 0), 0)
        for t in self.dp.buffers:
            a = array_of(t)
            flat = xp_of(a).ascontiguousarray(a).reshape(-1).copy()
            self.buffer_flats.append(flat)
            self.buffer_transfers.append(_broadcast(self.world, flat, root))

    def finish(self, grads: Grads) -> None:
        """Complete the reductions, check that the ranks produced the same params' gradients, write the
        averages into ``grads`` and the broadcast buffers into the model, release the borrows."""
        if self.error is not None:
            raise self.error
        if self.done:
            return
        self.world.flush()  # this reduction's launch, and older ones, if they were deferred
        transfers = [b.transfer for b in self.buckets if b.transfer is not None] + self.buffer_transfers
        _complete(self.world, transfers, f"the gradient reduction started at {self.site}")
        try:
            self.check_used()
        except GradError as e:
            self.error = e
            raise
        self.write(grads)
        for borrow in self.borrows:
            borrow.__exit__(None, None, None)
        self.done = True

    def check_used(self) -> None:
        assert self.headers is not None
        contributing = sum(1 for h in self.headers if h.samples > 0)
        partial = [p for b in self.buckets for i, p in enumerate(b.params)
                   if 0 < float(b.flags()[i]) < contributing]
        if partial and not self.dp.find_unused_parameters:
            self.explain_unused()

    def explain_unused(self) -> None:
        """Every rank reports the same error: which params got no gradient on which ranks."""
        mine = Header(Phase.DIAGNOSE, self.site, samples=self.samples, payload=self.used)
        headers = self.world.exchange(mine)
        lines = []
        for name in self.dp.names:
            users = [r for r, h in enumerate(headers) if h.samples > 0 and name in h.payload]
            idle = [r for r, h in enumerate(headers) if h.samples > 0 and name not in h.payload]
            if users and idle:
                lines.append(f"  {name}: no gradient on rank(s) {idle} (rank(s) {users} produced one)")
        raise GradError(f"DataParallel: at the gradient reduction started at {self.site}, the ranks did not produce "
                        "gradients for the same params:\n" + "\n".join(lines) + "\n  help: a param the loss does not "
                        "use on every rank (a branch, a frozen head) needs DataParallel(..., "
                        "find_unused_parameters=True), which reduces it as zero where it is unused")

    def write(self, grads: Grads) -> None:
        for b in self.buckets:
            for i, p in enumerate(b.params):
                if float(b.flags()[i]) == 0:
                    continue  # no rank produced this gradient: it is absent everywhere, as in one process
                off = b.offsets[i]
                value = b.recv[off:off + p.size].reshape(p.shape)
                mine = grads._array_of(p)  # noqa: SLF001 - still borrowed by this reduction: no handle
                if mine is not None:
                    mine[...] = value
                else:
                    grads._set_array(p, value.copy())  # noqa: SLF001 - the reduction owns these gradients
        for t, flat in zip(self.dp.buffers, self.buffer_flats):
            array_of(t)[...] = flat.reshape(t.shape)


def _plan(params: list[Tensor], bucket_bytes: int) -> list[list[int]]:
    """Buckets as lists of param positions: one dtype each, filled in reverse registration order (the
    order backward usually finishes gradients: the last layer first), up to ``bucket_bytes`` each."""
    out: list[list[int]] = []
    for dtype in dict.fromkeys(str(p.dtype) for p in reversed(params)):
        cur: list[int] = []
        size = 0
        for i in reversed(range(len(params))):
            p = params[i]
            if str(p.dtype) != dtype:
                continue
            cur.append(i)
            size += p.size * p.dtype.itemsize
            if size >= bucket_bytes:
                out.append(cur)
                cur, size = [], 0
        if cur:
            out.append(cur)
    return out


class _Local:
    """Gradients accumulated under ``dp.no_sync()``: refused until a synced ``dp.backward(..., into=)``."""

    __slots__ = ("grads", "samples", "borrow")

    def __init__(self, grads: Grads, samples: int, borrow: borrowing) -> None:
        self.grads, self.samples, self.borrow = grads, samples, borrow


class DataParallel:
    """``dp = DataParallel(model, world)``; ``dp(x)`` runs the model (and notes the batch size);
    ``dp.backward(loss)`` returns the gradients of the global batch, reduced while backward runs.
    Construction checks that every rank's model has the same params and buffers (names, shapes,
    dtypes), then copies rank 0's values to every rank, as DDP does.

    - ``loss`` is the mean over this rank's samples (``samples=``; by default the first axis of the
      first argument of this step's ``dp(...)`` call, else the size of this rank's current batch of
      ``og.data.batches(..., world=world)``); each rank's gradient is weighted by its samples, so
      any split of a global batch (uneven, or empty on some rank: :meth:`empty_backward`) gives the
      gradient of the mean over the global batch, as one process would.
    - Gradients travel in buckets of at most ``bucket_mb`` (one dtype each) in an order fixed here and
      agreed by every rank. Every step checks that the ranks produced gradients for the same params: a
      param used on some ranks only is a GradError naming it and the ranks, unless
      ``find_unused_parameters=True`` (then it is reduced as zero where unused).
    - ``broadcast_buffers`` (default): buffers (BatchNorm's running statistics) are broadcast from the
      first rank with samples at every step, so every rank holds the same.
    """

    def __init__(self, model: Module, world: World, bucket_mb: float = 25.0, find_unused_parameters: bool = False,
                 broadcast_buffers: bool = True) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"DataParallel: expected an og.nn.Module, got {type(model).__name__}")
        self.model, self.world = model, world
        named = list(model.named_parameters())
        self.names = [k for k, _ in named]
        self.params = [p for _, p in named]
        self.buffers = [b for _, b in model.named_buffers()]
        self.bucket_bytes = max(1, int(bucket_mb * 2 ** 20))
        self.find_unused_parameters = bool(find_unused_parameters)
        self.broadcast_buffers = bool(broadcast_buffers)
        self.plan = _plan(self.params, self.bucket_bytes)
        self.layout = (_layout(named), _layout(list(model.named_buffers())), tuple(map(tuple, self.plan)),
                       ("find_unused_parameters", self.find_unused_parameters),
                       ("broadcast_buffers", self.broadcast_buffers))
        self.steps = 0
        self._sync = True
        self._local: _Local | None = None
        self._samples: int | None = None
        world.exchange(Header(Phase.CHECK, _site(), layout=self.layout[0] + self.layout[1] + self.layout[3:]))
        #: what every step's header carries: the layout was compared in full above, a digest suffices
        self.digest = hashlib.sha256(repr(self.layout).encode()).hexdigest()[:16]
        broadcast_parameters(model, world)  # every rank starts from rank 0's params and buffers (as DDP)

    def header(self, phase: Phase, site: str, samples: int) -> Header:
        cursor = self.world.cursor if phase is Phase.GRADIENTS else None
        return Header(phase, site, cursor, ("DataParallel layout", self.digest), samples, payload=self.steps)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        first = args[0] if args else None
        shape = getattr(first, "shape", None)
        self._samples = int(shape[0]) if shape else None
        return self.model(*args, **kwargs)

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        """``with dp.no_sync(): grads = dp.backward(loss, into=grads)``: accumulate micro-batches on this
        rank only. The gradients are refused (not averaged yet) until a ``dp.backward(loss, into=grads)``
        outside the block reduces the sum of every micro-batch of every rank."""
        self._sync = False
        try:
            yield
        finally:
            self._sync = True

    def backward(self, loss: Tensor, samples: int | None = None, into: Grads | None = None,
                 overlap: bool = True) -> Grads:
        """The gradient of the mean loss over the global batch. With ``overlap`` each bucket's reduction
        starts as soon as its gradients are final; the returned ``Grads`` are refused until
        ``grads.wait()`` (which ``opt.step`` calls). ``into``: the Grads accumulated under no_sync."""
        where = user_site()
        n = samples if samples is not None else self._samples if self._samples is not None else self.world.batch_samples
        self._samples = None
        if n is None or int(n) < 0:
            raise ValueError("dp.backward: pass samples= (the number of samples whose mean the loss is), call the "
                             "model as dp(x), or draw batches from og.data.batches(..., world=world), so that "
                             "this rank's batch size is known")
        n = int(n)
        if not self._sync:
            return self._accumulate(loss, n, into, where)
        done = self._take_local(into)
        return self._reduce(loss, n, done, into, where, overlap, None)

    def empty_backward(self) -> Grads:
        """This rank's share of the global batch is empty: take part in the step's reduction with no
        samples (it contributes nothing) and get the averaged gradients, as every other rank."""
        return self._reduce(None, 0, 0, None, user_site(), False, None)

    def _reduce(self, loss: Tensor | None, n: int, done: int, into: Grads | None, where: Site, overlap: bool,
                headers: list[Header] | None) -> Grads:
        site = format_site(where)
        if done == 0 and n == 0:
            loss = None
        red = _Reduction(self, where, n + done, headers)
        g = self.model.graph
        try:
            if loss is None:
                grads = into if into is not None else Grads(g, {})
            else:
                hook = red.on_grad if overlap and into is None else None
                grads = g.backward(loss, seed=np.full(loss.shape, float(n)), into=into, on_grad=hook)
            red.close(grads)
        except BaseException as e:
            self.world.abandon(e, f"the gradient reduction at {site}")
            raise
        self.steps += 1
        grads.on_wait(lambda: red.finish(grads))
        return grads

    def _accumulate(self, loss: Tensor, n: int, into: Grads | None, where: Site) -> Grads:
        done = self._take_local(into)
        grads = self.model.graph.backward(loss, seed=np.full(loss.shape, float(n)), into=into)
        holder = BlockHolder("gradient accumulation under dp.no_sync()", where,
                             "reduce them first: dp.backward(loss, into=grads) outside dp.no_sync()")
        borrow = exclusive(grads.values(), where, "dp.no_sync()", holder, "not averaged over the ranks yet")
        borrow.__enter__()
        self._local = _Local(grads, done + n, borrow)
        site = format_site(where)

        def refuse() -> None:
            raise GradError(f"these gradients were accumulated under dp.no_sync() (at {site}) and are not averaged "
                            "over the ranks yet: pass them to dp.backward(loss, into=grads) outside no_sync()")

        grads.on_wait(refuse)
        return grads

    def _take_local(self, into: Grads | None) -> int:
        """The samples accumulated in ``into`` (the Grads of the last no_sync step), released for more."""
        local, self._local = self._local, None
        if local is not None:
            local.borrow.__exit__(None, None, None)
            local.grads._drop_pending()  # noqa: SLF001 - the accumulation owns them
        if into is None:
            return 0
        if local is None or local.grads is not into:
            raise GradError("dp.backward(into=grads): grads must be the Grads returned by the last dp.backward "
                            "under dp.no_sync() (this DataParallel accumulates them)")
        return local.samples

    @contextmanager
    def join(self, opt: Any = None) -> Iterator[None]:
        """``with dp.join(opt): for xb, yb in my_batches: ...``: ranks may have different numbers of
        batches. A rank whose loop ended takes part in the others' remaining steps with no samples
        (stepping ``opt`` with the averaged gradients, so every rank keeps the same params) until every
        rank's loop has ended. Without ``opt``, the params and buffers of the rank that ran the most
        steps are broadcast at the end."""
        site = _site()
        yield
        while True:
            headers = self.world.exchange(self.header(Phase.JOIN, site, 0))
            if all(h.phase is Phase.JOIN for h in headers):
                break
            grads = self._reduce(None, 0, 0, None, user_site(), False, headers)
            if opt is not None:
                opt.step(grads)
            else:
                grads.wait()
        if opt is None:
            last = max(range(self.world.size), key=lambda r: (headers[r].payload, -r))
            broadcast_parameters(self.model, self.world, root=last)
