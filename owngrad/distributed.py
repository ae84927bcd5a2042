"""Data-parallel training over MPI (``mpi4py``): ``mpiexec -n N python train.py``.

- :func:`init` returns the :class:`World` (``rank``, ``size``, ``comm``);
  :func:`broadcast_parameters` copies rank 0's weights to every rank and checks that they agree.
- :class:`DataParallel` wraps a model; ``dp.backward(loss)`` returns the ``Grads`` averaged over the
  ranks. Gradients are packed into buckets as backward makes them final (``on_grad``: the last
  layer's first) and each full bucket's ``Iallreduce`` starts at once, while backward goes on.
- Borrows: every gradient in flight is held under an exclusive borrow whose holder names the line
  that started the reduction; reading ``grads[w]`` (or clipping) before it completes raises
  ``BorrowError`` naming that line. ``grads.wait()`` completes them; ``opt.step(grads)`` waits.
- Faults: an uncaught exception on one rank is sent to the others before that rank aborts; a rank
  waiting for a reduction stops with :class:`RankFailed` naming the failing rank and its exception,
  instead of hanging.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from .errors import ShapeError
from .grads import Grads
from .handle import array_of, exclusive
from .ledger import BlockHolder, borrowing
from .nn.modules import Module
from .sites import user_site
from .tensor import Tensor

__all__ = ["World", "RankFailed", "init", "current", "broadcast_parameters", "DataParallel"]

_ERR_TAG = 31_337  # point-to-point messages that carry a failing rank's exception
_WORLD: World | None = None  # the world of this process once init() ran (as torch.distributed's state)


class RankFailed(RuntimeError):
    """Another rank raised; this one stops instead of waiting for it forever."""


class World:
    """The ranks of one MPI communicator: ``rank``, ``size`` and ``comm`` (an ``mpi4py`` communicator)."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.rank: int = comm.Get_rank()
        self.size: int = comm.Get_size()

    def wait(self, requests: list[Any]) -> None:
        """Complete ``requests``, watching for another rank's failure meanwhile (no hang)."""
        from mpi4py import MPI

        while not MPI.Request.Testall(requests):
            self._check_failures()
            time.sleep(2e-5)

    def _check_failures(self) -> None:
        from mpi4py import MPI

        status = MPI.Status()
        if self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_ERR_TAG, status=status):
            src = status.Get_source()
            msg = self.comm.recv(source=src, tag=_ERR_TAG)
            raise RankFailed(f"rank {src} failed: {msg}\n  this rank ({self.rank}) stops instead of waiting for it")

    def allreduce(self, x: np.ndarray) -> np.ndarray:
        """The sum over ranks of a small array (non-blocking underneath, so a failure elsewhere is seen)."""
        from mpi4py import MPI

        out = np.empty_like(x)
        self.wait([self.comm.Iallreduce(np.ascontiguousarray(x), out, op=MPI.SUM)])
        return out

    def mean(self, value: float, weight: float = 1.0) -> float:
        """The weighted mean of a number over ranks."""
        total = self.allreduce(np.array([value * weight, weight], dtype=np.float64))
        return float(total[0] / total[1])

    def notify_failure(self, message: str) -> None:
        """Tell every other rank that this one failed (before it aborts)."""
        for r in range(self.size):
            if r != self.rank:
                self.comm.isend(message, dest=r, tag=_ERR_TAG)

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"


def init(comm: Any = None) -> World:
    """The world of this process (MPI's ``COMM_WORLD`` unless ``comm`` is given). Installs an
    exception hook: an uncaught exception is sent to the other ranks, printed, and the job aborted."""
    global _WORLD
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("owngrad.distributed needs mpi4py: pip install -e '.[mpi]'") from e
    world = World(MPI.COMM_WORLD if comm is None else comm)
    _WORLD = world
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        if not isinstance(exc, RankFailed):
            world.notify_failure(f"{kind.__name__}: {exc}")
        previous(kind, exc, tb)
        sys.stderr.flush()
        time.sleep(0.5)  # let the others print why they stop before the job goes down
        world.comm.Abort(1)

    sys.excepthook = hook
    return world


def current() -> World | None:
    """The world :func:`init` made in this process, or None."""
    return _WORLD


def broadcast_parameters(model: Module, world: World) -> None:
    """Copy rank 0's params and buffers to every rank (in place, under exclusive borrows), then check
    that every rank holds the same values."""
    state = model.state_dict()
    for k in state:
        arr = np.ascontiguousarray(state[k])
        world.wait([world.comm.Ibcast(arr, root=0)])
        state[k] = arr
    model.load_state_dict(state)
    sums = np.array([float(np.asarray(v, dtype=np.float64).sum()) for v in model.state_dict().values()])
    spread = world.allreduce(np.abs(sums - world.allreduce(sums) / world.size))
    if np.any(spread > 0):
        raise RuntimeError("broadcast_parameters: the ranks still disagree after the broadcast")


class _Bucket:
    """A flat buffer of several params' gradients, reduced by one ``Iallreduce``."""

    __slots__ = ("params", "offsets", "send", "recv", "arrived", "request", "handles", "borrow")

    def __init__(self, params: list[Tensor], dtype: Any) -> None:
        self.params = params
        sizes = [p.size for p in params]
        self.offsets = dict(zip((id(p) for p in params), np.cumsum([0, *sizes[:-1]]).tolist()))
        self.send = np.empty(sum(sizes), dtype=dtype)
        self.recv = np.empty_like(self.send)
        self.arrived: list[tuple[Tensor, Tensor]] = []
        self.request: Any = None
        self.handles: list[Tensor] = []
        self.borrow: borrowing | None = None


class DataParallel:
    """``dp = DataParallel(model, world, bucket_mb=25)``; ``dp(x)`` runs the model; ``dp.backward(loss)``
    returns this rank's gradients averaged over every rank, reduced while backward runs."""

    def __init__(self, model: Module, world: World, bucket_mb: float = 25.0) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"DataParallel: expected an og.nn.Module, got {type(model).__name__}")
        self.model, self.world = model, world
        named = list(model.named_parameters())
        mine = [(k, p.shape, str(p.dtype)) for k, p in named]
        for r, theirs in enumerate(world.comm.allgather(mine)):
            if theirs != mine:
                diff = next((f"{a} vs {b}" for a, b in zip(mine, theirs) if a != b),
                            f"{len(mine)} vs {len(theirs)} params")
                raise ShapeError(f"DataParallel: rank {r}'s model does not match rank {world.rank}'s: {diff}")
        self.params = [p for _, p in named]
        self.bucket_bytes = max(1, int(bucket_mb * 2 ** 20))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def _buckets(self, params: list[Tensor]) -> list[_Bucket]:
        """Buckets in the order backward finishes gradients (the last layer first)."""
        out: list[_Bucket] = []
        cur: list[Tensor] = []
        size = 0
        for p in reversed(params):
            cur.append(p)
            size += p.size * p.dtype.itemsize
            if size >= self.bucket_bytes:
                out.append(_Bucket(cur, cur[0].dtype))
                cur, size = [], 0
        if cur:
            out.append(_Bucket(cur, cur[0].dtype))
        return out

    def backward(self, loss: Tensor, overlap: bool = True) -> Grads:
        """The gradients of ``loss`` averaged over the ranks. With ``overlap`` each bucket's reduction
        starts as soon as its gradients are final; the returned ``Grads`` are borrowed until
        ``grads.wait()`` (which ``opt.step`` calls)."""
        site = user_site()
        g = loss.graph
        buckets = self._buckets(self.params)
        where = {id(array_of(p)): (b, p) for b in buckets for p in b.params}
        holder = BlockHolder("the gradient all-reduce started", site,
                             "call grads.wait() first (opt.step(grads) waits by itself)")

        def start(b: _Bucket) -> None:
            from mpi4py import MPI

            b.handles = [gr for _, gr in b.arrived]
            b.borrow = exclusive(b.handles, site, "all-reduce", holder, "in flight")
            b.borrow.__enter__()  # released by _finish, when the reduction has completed
            b.request = self.world.comm.Iallreduce(b.send, b.recv, op=MPI.SUM)

        def on_grad(leaf: Tensor, grad: Tensor) -> None:
            hit = where.get(id(array_of(leaf)))  # the handle given to on_grad shares its param's array
            if hit is None:
                return
            b, p = hit
            off = b.offsets[id(p)]
            b.send[off:off + p.size] = array_of(grad).reshape(-1)
            b.arrived.append((p, grad))
            if overlap and len(b.arrived) == len(b.params):
                start(b)

        grads = g.backward(loss, on_grad=on_grad)
        for b in buckets:
            if b.request is None:
                missing = [p for p in b.params if all(p is not q for q, _ in b.arrived)]
                for p in missing:  # a param the loss does not reach: it contributes zeros
                    off = b.offsets[id(p)]
                    b.send[off:off + p.size] = 0
                start(b)
        grads.on_wait(lambda: self._finish(buckets))
        return grads

    def _finish(self, buckets: list[_Bucket]) -> None:
        self.world.wait([b.request for b in buckets])
        n = self.world.size
        for b in buckets:
            for p, gr in b.arrived:
                off = b.offsets[id(p)]
                array_of(gr)[...] = (b.recv[off:off + p.size] / n).reshape(p.shape)
            if b.borrow is not None:
                b.borrow.__exit__(None, None, None)
