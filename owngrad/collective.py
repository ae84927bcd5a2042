"""The ranks of an MPI job and the one way owngrad makes them act together: *rounds*.

Every collective step owngrad takes (a gradient reduction, a metric, a broadcast, a barrier, a save,
leaving the program) starts with a round: each rank sends every other rank a small :class:`Header`
(what it is about to do, the user's line, its position in the data, the layout of what it will
send) and reads theirs. The collective itself (an ``Iallreduce``, an ``Ibcast``) starts only once
the headers agree, so two ranks never pair different collectives (one rank's metric with another's
gradient bucket), and a rank that does something else, leaves, skips a step or dies is named in an
error on every rank instead of a hang:

- headers travel point to point, so a rank that sent nothing within ``World.timeout`` seconds is
  named exactly; a header that disagrees is reported with every rank's step, rank 0 first;
- every wait polls for *notices*: a rank that stops (an uncaught exception, ``RankFailed``, a
  mismatch found at exit) tells the others why before it exits, and waits (up to the timeout) for
  theirs, so each rank prints its own clear message before any rank's exit code ends the job;
- at the end of the program every rank takes part in a last round (:attr:`Phase.EXIT`): a rank that
  returns early or calls ``sys.exit`` while the others still train is reported on every rank.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from .errors import ShapeError
from .sites import format_site, user_site

__all__ = ["Phase", "Header", "Round", "RankFailed", "World"]

_HDR_TAG = 31_336  # point-to-point headers of rounds
_NOTICE_TAG = 31_337  # point-to-point notices: "this rank stops, because ..."


class RankFailed(RuntimeError):
    """The ranks cannot go on together (another rank failed, left, skipped a step, did something else
    or stopped answering): this rank stops instead of waiting forever or pairing the wrong steps."""


class Phase(enum.Enum):
    """What a rank is about to do together with the others (what a round is about)."""

    CHECK = "DataParallel(...) (the model check)"
    GRADIENTS = "the gradient reduction"
    JOIN = "the end of dp.join() (out of data)"
    REDUCE = "world.allreduce / world.mean (metrics)"
    BROADCAST = "broadcast_parameters"
    OPTIMIZER = "broadcast_optimizer_state"
    BARRIER = "world.barrier()"
    SAVE = "distributed.save"
    DIAGNOSE = "the check of which ranks produced which gradients"
    EXIT = "the end of the program (it returned or called sys.exit)"


#: phases that may meet in one round: a rank out of data shadows the others' gradient reductions
_COMPATIBLE = {frozenset({Phase.GRADIENTS, Phase.JOIN})}


@dataclass(frozen=True)
class Header:
    """What one rank is about to do: compared across ranks before any collective starts. ``layout``
    must be equal on every rank (what each will send); ``payload`` is carried, not compared."""

    phase: Phase
    site: str
    cursor: tuple[int, int] | None = None  # (epoch, batch) of og.data.batches(..., world=world)
    layout: Any = None
    samples: int = 0
    payload: Any = None

    def describe(self) -> str:
        where = f" at {self.site}" if self.site else ""
        at = f" (batch {self.cursor[1] + 1} of epoch {self.cursor[0] + 1})" if self.cursor is not None else ""
        return f"{self.phase.value}{where}{at}"


def _layout_difference(a: Any, b: Any) -> str:
    """The first entry where two layouts differ, for a message (entries are tuples ``(name, ...)``)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        for x, y in zip(a, b):
            if x != y:
                return f"{_entry(x)} vs {_entry(y)}"
        return f"{len(a)} entries vs {len(b)}"
    return f"{a!r} vs {b!r}"


def _entry(x: Any) -> str:
    if isinstance(x, tuple) and len(x) == 3 and isinstance(x[1], tuple):
        return f"{x[0]} of shape {x[1]} {x[2]}"
    return repr(x)


def disagreement(headers: dict[int, Header]) -> tuple[bool, str] | None:
    """Why these ranks' headers cannot meet in one round (every rank named, rank 0 first), or None;
    the flag says whether the ranks are at different steps (True: they cannot go on together) or
    only their data differ (False: a usage error every rank reports the same way, e.g. model shapes)."""
    ranks = sorted(headers)
    first = headers[ranks[0]]
    for r in ranks[1:]:
        h = headers[r]
        pair = f"rank {ranks[0]} is at {first.describe()}\n  rank {r} is at {h.describe()}"
        if h.phase is not first.phase and frozenset({h.phase, first.phase}) not in _COMPATIBLE:
            return True, f"the ranks are at different steps:\n  {pair}"
        if h.cursor is not None and first.cursor is not None and h.cursor != first.cursor:
            return True, ("the ranks are at different batches (a rank skipped a step, e.g. caught an exception "
                          f"and went on):\n  {pair}")
    for r in ranks[1:]:
        h = headers[r]
        if h.layout != first.layout:
            return False, (f"{_layout_difference(first.layout, h.layout)} (rank {ranks[0]}'s first, then "
                           f"rank {r}'s)")
    return None


class Round:
    """One round: this rank's header sent to every other rank, theirs received as they arrive."""

    __slots__ = ("world", "header", "got")

    def __init__(self, world: World, header: Header) -> None:
        world.check_alive()
        self.world, self.header = world, header
        self.got: dict[int, Header] = {world.rank: header}
        for r in world.others():
            world.send(header, r, _HDR_TAG)

    def poll(self) -> bool:
        """Receive the headers that have arrived (never blocks); True once every rank's is here.
        Raises RankFailed as soon as one shows a rank at another step."""
        comm = self.world.comm
        for r in self.world.others():
            if r not in self.got:
                msg = comm.improbe(source=r, tag=_HDR_TAG)
                if msg is not None:
                    self.got[r] = msg.recv()
                    clash = disagreement({self.world.rank: self.header, r: self.got[r]})
                    if clash is not None and clash[0]:
                        self.world.fail(f"{self.header.phase.value}: {clash[1]}")
        return len(self.got) == self.world.size

    def agreed(self) -> bool:
        """Whether every header is here and they agree (never blocks)."""
        return self.poll() and disagreement(self.got) is None

    def finish(self) -> list[Header]:
        """Every rank's header, by rank, once all have arrived and agree. RankFailed names the ranks
        that sent nothing within the timeout, or the ranks at other steps; ShapeError (every rank
        the same) the first difference in what the ranks were about to send."""
        self.world.wait_until(self.poll, self.header.describe(),
                              lambda: [r for r in self.world.others() if r not in self.got])
        clash = disagreement(self.got)
        if clash is not None:
            raise ShapeError(f"{self.header.phase.value}: the ranks do not match: {clash[1]}")
        return [self.got[r] for r in range(self.world.size)]


class World:
    """The ranks of one MPI communicator: ``rank``, ``size``, ``comm`` (an ``mpi4py`` communicator) and
    ``timeout``: the longest a rank waits for the others at any collective step before it stops with
    :class:`RankFailed` naming the ranks it did not hear from."""

    def __init__(self, comm: Any, timeout: float = 300.0) -> None:
        if not timeout > 0:
            raise ValueError(f"World: timeout must be positive (seconds), got {timeout!r}")
        self.comm = comm
        self.rank: int = comm.Get_rank()
        self.size: int = comm.Get_size()
        self.timeout = float(timeout)
        #: this rank's position in the data, (epoch, batch), set by og.data.batches(..., world=world):
        #: gradient rounds compare it, so a rank that skipped a step is caught at the next one
        self.cursor: tuple[int, int] | None = None
        #: the number of samples of this rank's current batch (set there too): dp.backward's default
        self.batch_samples: int | None = None
        #: staged: device buffers are copied to the host around each collective; set True for an MPI
        #: built CUDA-aware, which takes device (cupy) buffers directly
        self.device_direct = False
        self._inflight: list[tuple[Any, tuple[Any, ...]]] = []  # requests in flight and their buffers
        self._stopped: dict[int, str] = {}  # ranks that sent a notice (or stopped answering): why
        self._gone: set[int] = set()  # ranks that stopped answering (nothing is sent to them)
        self._broken: str | None = None  # why this rank cannot take part in collectives any more
        self._told = False  # whether the others have been sent this rank's notice
        self._deferred: list[Callable[[], None]] = []  # collectives agreed but not started yet, in order
        self._flushing = False

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, timeout={self.timeout:g})"

    def others(self) -> list[int]:
        return [r for r in range(self.size) if r != self.rank]

    # --- messages ---
    def send(self, obj: Any, dest: int, tag: int) -> None:
        """A non-blocking point-to-point message (completed later, by polling)."""
        self.keep(self.comm.isend(obj, dest=dest, tag=tag))

    def keep(self, request: Any, *buffers: Any) -> None:
        """Keep ``request`` and the buffers MPI reads or writes alive until it completes, whoever still
        refers to them (gradients dropped while their reduction is in flight must not free its memory)."""
        self._inflight.append((request, buffers))
        if len(self._inflight) > 64:
            self._inflight = [(q, b) for q, b in self._inflight if not q.Test()]

    def defer(self, launch: Callable[[], None]) -> None:
        """``launch`` starts collectives whose round had not agreed yet: it runs before this rank starts
        any later collective (:meth:`flush`), so every rank starts them in the same order, even when
        the gradients they belong to are dropped without a wait."""
        self._deferred.append(launch)

    def flush(self) -> None:
        """Run the deferred launches, oldest first (before any new collective starts)."""
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._deferred:
                self._deferred[0]()
                self._deferred.pop(0)
        finally:
            self._flushing = False

    def check_alive(self) -> None:
        """Raise RankFailed if an earlier failure broke this rank's place among the others."""
        if self._broken is not None:
            raise RankFailed(f"rank {self.rank} cannot take part in collective steps any more: {self._broken}")

    def fail(self, why: str) -> NoReturn:
        """Mark this rank unable to go on with the others, and raise RankFailed saying why."""
        if self._broken is None:
            self._broken = why
        raise RankFailed(why)

    def abandon(self, exc: BaseException, what: str) -> None:
        """This rank cannot complete ``what``, a collective step it started: the others are told now
        (they stop instead of waiting for it), and this rank takes no further part."""
        why = f"{_first_line(exc)} (during {what})"
        if self._broken is None:
            self._broken = why
        self._notify(why)

    def _notify(self, why: str) -> None:
        if not self._told:
            self._told = True
            for r in self.others():
                if r not in self._gone:
                    self.send(why, r, _NOTICE_TAG)

    def _check_notices(self) -> None:
        from mpi4py import MPI

        status = MPI.Status()
        msg = self.comm.improbe(source=MPI.ANY_SOURCE, tag=_NOTICE_TAG, status=status)
        if msg is not None:
            src, why = status.Get_source(), msg.recv()
            self._stopped[src] = why
            self.fail(f"rank {src} stopped: {why}\n  so rank {self.rank} stops too, instead of waiting for it")

    def wait_until(self, done: Callable[[], bool], what: str, missing: Callable[[], list[int]] | None = None) -> None:
        """Poll ``done`` until it is True, watching for notices; RankFailed after ``timeout`` seconds,
        naming the ranks ``missing`` returns (else every other rank)."""
        self.check_alive()
        start = time.monotonic()
        deadline = start + self.timeout
        delay = 2e-5
        while not done():
            self._check_notices()
            now = time.monotonic()
            if now > deadline:
                silent = missing() if missing is not None else self.others()
                for r in silent:
                    self._stopped.setdefault(r, "stopped answering")
                    self._gone.add(r)
                names = ", ".join(str(r) for r in silent)
                self.fail(f"rank {self.rank} waited {self.timeout:g} s at {what} and rank(s) {names} sent nothing: "
                          "stopped, killed or stuck (the limit is distributed.init(timeout=...))")
            # MPI progresses only inside MPI calls: poll without sleeping for the first 2 ms (a small
            # all-reduce needs several exchanges), then back off so a long wait leaves the cores alone
            if now - start < 2e-3:
                os.sched_yield()
            else:
                time.sleep(delay)
                delay = min(5e-4, delay * 2)

    def wait(self, requests: list[Any], what: str = "a collective step") -> None:
        """Complete MPI ``requests``, watching for notices meanwhile, within the timeout."""
        from mpi4py import MPI

        self.wait_until(lambda: bool(MPI.Request.Testall(requests)), what)

    def exchange(self, header: Header) -> list[Header]:
        """One round, waited for: every rank's header, by rank, once they agree."""
        return Round(self, header).finish()

    # --- small collectives ---
    def allreduce(self, x: np.ndarray) -> np.ndarray:
        """The sum over ranks of a small host array (metrics, counts); ranks that pass arrays of other
        shapes or dtypes are refused, every one naming both."""
        from mpi4py import MPI

        send = np.ascontiguousarray(x)
        self.exchange(Header(Phase.REDUCE, format_site(user_site()), layout=(("array", send.shape, str(send.dtype)),)))
        out = np.empty_like(send)
        self.flush()
        self.wait([self.comm.Iallreduce(send, out, op=MPI.SUM)], Phase.REDUCE.value)
        return out

    def mean(self, value: float, weight: float = 1.0) -> float:
        """The weighted mean of a number over ranks (a rank with weight 0 contributes nothing)."""
        total = self.allreduce(np.array([value * weight if weight else 0.0, weight], dtype=np.float64))
        return float(total[0] / total[1])

    def barrier(self) -> None:
        """Return once every rank has reached its barrier."""
        self.exchange(Header(Phase.BARRIER, format_site(user_site())))

    # --- stopping ---
    def stop(self, exc: BaseException) -> None:
        """Tell every other rank why this one stops, wait (up to the timeout) until each has said it
        stops too or is known gone, then end the process with exit code 1."""
        first = _first_line(exc)
        self._notify(f"it stopped too ({first})" if isinstance(exc, RankFailed) else first)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and any(r not in self._stopped for r in self.others()):
            with contextlib.suppress(RankFailed):
                self._check_notices()
            time.sleep(1e-3)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)

    def _at_exit(self) -> None:
        """The last round: every rank must reach the end of the program."""
        if self._broken is not None:
            return
        try:
            self.flush()
            self.exchange(Header(Phase.EXIT, ""))
            deadline = time.monotonic() + self.timeout
            while self._inflight and time.monotonic() < deadline:
                self._inflight = [(q, b) for q, b in self._inflight if not q.Test()]
        except RankFailed as e:
            print(f"rank {self.rank}: {type(e).__name__}: {e}", file=sys.stderr)
            self.stop(e)

    def install_hooks(self) -> None:
        """An uncaught exception on this rank stops every rank (each with its own message); the end of
        the program is a round every rank must reach."""
        previous = sys.excepthook

        def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
            if isinstance(exc, RankFailed):
                print(f"rank {self.rank}: {kind.__name__}: {exc}", file=sys.stderr)
            else:
                print(f"rank {self.rank} failed:", file=sys.stderr)
                previous(kind, exc, tb)
            self.stop(exc)

        sys.excepthook = hook
        atexit.register(self._at_exit)

    def save_checkpoint(self, path: str | os.PathLike[str], module_or_state: Any,
                        write: Callable[[str | os.PathLike[str], Any], None]) -> None:
        """``write(path, module_or_state)`` on rank 0 once every rank has reached this call; every rank returns
        once it is written (a rank that goes on to load it finds it complete), and a failure to write raises
        on every rank."""
        site = format_site(user_site())
        self.exchange(Header(Phase.SAVE, site, layout=os.fspath(path)))
        error = None
        if self.rank == 0:
            try:
                write(path, module_or_state)
            except Exception as e:  # every rank reports it, not only the one that wrote
                error = f"{type(e).__name__}: {e}"
        headers = self.exchange(Header(Phase.SAVE, site, layout=os.fspath(path), payload=error))
        if headers[0].payload is not None:
            raise OSError(f"distributed.save at {site}: rank 0 could not write {os.fspath(path)}: "
                          f"{headers[0].payload}")



_WORLD: World | None = None  # the world of this process once init() ran (as torch.distributed's state)


def current() -> World | None:
    """The world ``owngrad.distributed.init`` made in this process, or None."""
    return _WORLD


def set_current(world: World) -> None:
    """Make ``world`` this process's world (``owngrad.distributed.init`` does)."""
    global _WORLD
    _WORLD = world


def _first_line(exc: BaseException) -> str:
    """``'ValueError: message'`` (its first line), or the bare name for an exception without one."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
