"""Storage regions and the borrow ledger: who may read or write which elements, and why.

No calculus lives here. A :class:`Region` is a set of elements of a storage's base array,
described per base axis as an arithmetic progression ``(start, step, count)``. Every view
made by basic indexing (ints, slices with any step, ``None``, ``...``), and every transpose
of one, selects exactly such a product set, so overlap between two of them is decided
exactly: two products intersect iff their progressions intersect on every axis, and two
progressions intersect iff a congruence system has a solution inside both ranges (CRT).
Where a view's elements cannot be named per axis (indexing into a reshape of a view, or into
an expanded view), the tensor layer falls back to the parent view's whole region: a superset,
so the check is conservative there, never unsound.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from math import gcd
from typing import Any, Protocol

from .errors import BorrowError
from .sites import Site, format_site

__all__ = ["Progression", "Region", "Borrow", "BorrowLedger", "BlockHolder", "Holder", "Storage", "SHARED", "EXCLUSIVE",
           "acquire_all", "release_all", "borrowing"]

SHARED = "shared"
EXCLUSIVE = "exclusive"
_new = object.__new__

#: One base axis: ``start + k * step`` for ``k`` in ``range(count)``; step may be negative.
Progression = tuple[int, int, int]


def _normalize(p: Progression) -> Progression:
    start, step, count = p
    if count <= 1:
        return (start, 1, count)
    if step < 0:
        return (start + (count - 1) * step, -step, count)
    return p


def progressions_intersect(a: Progression, b: Progression) -> bool:
    """Exact: do two arithmetic progressions share an element?"""
    s1, d1, n1 = _normalize(a)
    s2, d2, n2 = _normalize(b)
    if n1 == 0 or n2 == 0:
        return False
    lo = max(s1, s2)
    hi = min(s1 + (n1 - 1) * d1, s2 + (n2 - 1) * d2)
    if lo > hi:
        return False
    if d1 == 1 or d2 == 1:
        if d1 == 1 and d2 == 1:
            return True
        # the strided one has an element in [lo, hi] iff its first element >= lo is <= hi
        s, d = (s2, d2) if d1 == 1 else (s1, d1)
        return s + -(-(lo - s) // d) * d <= hi
    g = gcd(d1, d2)
    diff = s2 - s1
    if diff % g:
        return False
    m = d2 // g
    k0 = ((diff // g) * pow(d1 // g, -1, m)) % m if m > 1 else 0
    x0 = s1 + d1 * k0  # common element (mod lcm)
    lcm = d1 * m
    x = x0 + -(-(lo - x0) // lcm) * lcm  # first common element >= lo
    return x <= hi


@dataclass(frozen=True, slots=True)
class Region:
    """A product of per-axis progressions over a storage's base shape."""

    axes: tuple[Progression, ...]

    @staticmethod
    def full(shape: tuple[int, ...]) -> Region:
        r = _FULL.get(shape)
        if r is None:  # regions are immutable: one per shape, shared by every storage of that shape
            if len(_FULL) >= 4096:
                _FULL.clear()
            r = _FULL[shape] = Region(tuple((0, 1, n) for n in shape))
        return r

    def is_empty(self) -> bool:
        return any(c == 0 for _, _, c in self.axes)

    def overlaps(self, other: Region) -> bool:
        if self is other:
            return not self.is_empty()
        for a, b in zip(self.axes, other.axes):
            if a == b:
                if a[2] == 0:
                    return False
            elif a[2] == 1 and b[2] == 1:  # one element each (an int index): the same one?
                if a[0] != b[0]:
                    return False
            elif not progressions_intersect(a, b):  # also False when either is empty
                return False
        return True

    def describe(self, label: str, base_shape: tuple[int, ...]) -> str:
        """``w[0:2]``, ``x[::2, 1]``, or just ``w`` for the whole storage."""
        parts = []
        for (start, step, count), n in zip(self.axes, base_shape):
            parts.append(_describe_axis(start, step, count, n))
        while parts and parts[-1] == ":":
            parts.pop()
        return f"{label}[{', '.join(parts)}]" if parts else label


_FULL: dict[tuple[int, ...], Region] = {}


def _describe_axis(start: int, step: int, count: int, n: int) -> str:
    if count == n and step == 1 and start == 0:
        return ":"
    if count == 1:
        return str(start)
    if count == 0:
        return f"{start}:{start}"
    stop = start + count * step
    if step < 0:
        stop_s = "" if stop < 0 else str(stop)
        return f"{start}:{stop_s}:{step}"
    stop_s = "" if stop >= n else str(stop)
    start_s = "" if start == 0 else str(start)
    return f"{start_s}:{stop_s}" if step == 1 else f"{start_s}:{stop_s}:{step}"


class Holder(Protocol):
    """Who holds a borrow: a graph node, a ``borrow()`` block, a running backward."""

    def holder_text(self) -> str: ...

    def hint(self) -> str: ...

    def abandoned(self) -> bool:
        """Whether nothing can ever use this holder's borrows any more (a pending node that no live tensor
        reaches). Asked before a conflict is reported."""
        ...

    def reclaim(self) -> None:
        """Release what an abandoned holder (and whatever else is abandoned with it) holds."""
        ...


def _reclaimed(clash: list[Borrow]) -> bool:
    """When every holder of a conflicting borrow is abandoned, release them and answer True; otherwise change
    nothing (a refused borrow leaves the ledger as it was). Called without the ledger's lock (a release takes it)."""
    holders = list({id(b.holder): b.holder for b in clash}.values())
    if not all([h.abandoned() for h in holders]):
        return False
    for h in holders:
        h.reclaim()
    return True


class Borrow:
    """One live borrow on a region of a storage."""

    __slots__ = ("region", "kind", "holder", "why", "ledger")

    def __init__(self, region: Region, kind: str, holder: Holder, why: str, ledger: BorrowLedger) -> None:
        self.ledger = ledger
        self.region = region
        self.kind = kind
        self.holder = holder
        self.why = why

    @property
    def label(self) -> str:
        """``w[0:2]``: the region in the storage's words, made only when a message needs it."""
        return self.region.describe(self.ledger.label, self.ledger.shape)

    def __repr__(self) -> str:
        return f"<Borrow {self.kind} {self.label} by {self.holder.holder_text()}: {self.why}>"


class BorrowLedger:
    """The live borrows of one storage. Acquire is all-or-nothing: a refused borrow changes nothing."""

    __slots__ = ("shape", "label", "_live", "_n_excl", "_lock")

    def __init__(self, shape: tuple[int, ...], label: str, lock: Any = None) -> None:
        self.shape = shape
        self.label = label
        self._live: dict[Borrow, None] = {}
        self._n_excl = 0  # live exclusive borrows: while there are none, a shared borrow cannot conflict
        self._lock = threading.Lock() if lock is None else lock  # a graph shares one lock among its ledgers

    def __len__(self) -> int:
        return len(self._live)

    def live(self) -> list[Borrow]:
        return list(self._live)

    def conflicts(self, region: Region, kind: str) -> list[Borrow]:
        """Every live borrow that a new ``kind`` borrow of ``region`` would conflict with."""
        if kind != EXCLUSIVE and not self._n_excl:
            return []
        out = []
        excl = kind == EXCLUSIVE
        memo: dict[int, bool] = {}  # many borrows share one Region object (every node that saved w)
        for b in self._live:
            if excl or b.kind == EXCLUSIVE:
                r = b.region
                hit = memo.get(id(r))
                if hit is None:
                    hit = memo[id(r)] = r.overlaps(region)
                if hit:
                    out.append(b)
        return out

    def acquire(
        self, region: Region, kind: str, holder: Holder, why: str, site: Site | None = None,
        access: str = "",
    ) -> Borrow:
        """Take a borrow or raise :class:`BorrowError` naming every conflicting holder."""
        for retry in (False, True):
            with self._lock:
                clash = self.conflicts(region, kind) if self._live else []
                if not clash:
                    b = Borrow(region, kind, holder, why, self)
                    self._live[b] = None
                    if kind == EXCLUSIVE:
                        self._n_excl += 1
                    return b
            if retry or not _reclaimed(clash):
                break
        raise BorrowError(self.conflict_message(region, kind, clash, site, access))

    def check(self, region: Region, kind: str, site: Site | None = None, access: str = "") -> None:
        """Raise as :meth:`acquire` would, without taking anything."""
        if self._live:
            with self._lock:
                clash = self.conflicts(region, kind)
            if clash and _reclaimed(clash):
                with self._lock:
                    clash = self.conflicts(region, kind)
            if clash:
                raise BorrowError(self.conflict_message(region, kind, clash, site, access))

    def release(self, borrow: Borrow) -> None:
        with self._lock:
            if self._live.pop(borrow, 0) is None and borrow.kind == EXCLUSIVE:
                self._n_excl -= 1

    def release_all(self, borrows: Iterable[Borrow]) -> None:
        for b in borrows:
            self.release(b)

    def conflict_message(
        self, region: Region, kind: str, clash: list[Borrow], site: Site | None, access: str
    ) -> str:
        label = region.describe(self.label, self.shape)
        verb = "write" if kind == EXCLUSIVE else "read"
        how = f" for {access}" if access and access not in ("write", "read") else ""
        where = f" at {format_site(site)}" if site else ""
        lines = [f"cannot {verb} {label} ({kind} borrow{how}){where}"]
        hints: list[str] = []
        for b in clash:
            line = f"  {b.label} is borrowed ({b.kind}) by {b.holder.holder_text()}: {b.why}"
            if line not in lines:
                lines.append(line)
            h = b.holder.hint()
            if h not in hints:
                hints.append(h)
        for h in hints:
            lines.append(f"  help: {h}")
        return "\n".join(lines)


def acquire_all(requests: list[tuple[BorrowLedger, Region]], kind: str, holder: Holder, why: str,
                site: Site | None = None, access: str = "") -> list[Borrow]:
    """Borrows on several storages, all or none: a conflict on the third leaves the first two untaken.
    Ledgers that share one lock (those of one graph) are checked and filled under one hold of it."""
    if not requests:
        return []
    lock = requests[0][0]._lock
    excl = kind == EXCLUSIVE
    with lock:  # the common case: nothing to check (no exclusive borrow for a shared one, no borrow at all
        # for an exclusive one), so every borrow is taken at once
        for led, _ in requests:
            if led._lock is not lock or (led._live if excl else led._n_excl):
                break
        else:
            out = []
            for led, region in requests:
                b = _new(Borrow)  # (Borrow.__init__, inline)
                b.ledger, b.region, b.kind, b.holder, b.why = led, region, kind, holder, why
                led._live[b] = None
                out.append(b)
                if excl:
                    led._n_excl += 1
            return out
    if len(requests) == 1:
        led, region = requests[0]
        return [led.acquire(region, kind, holder, why, site, access)]
    if not all([led._lock is lock for led, _ in requests]):
        taken: list[Borrow] = []
        try:
            for led, region in requests:
                taken.append(led.acquire(region, kind, holder, why, site, access))
        except BaseException:
            release_all(taken)
            raise
        return taken
    for retry in (False, True):
        with lock:
            bad = next(((led, region, clash) for led, region in requests if led._live
                        for clash in (led.conflicts(region, kind),) if clash), None)
            if bad is None:
                out = []
                for led, region in requests:
                    b = Borrow(region, kind, holder, why, led)
                    led._live[b] = None
                    if excl:
                        led._n_excl += 1
                    out.append(b)
                return out
        if retry or not _reclaimed(bad[2]):
            break
    assert bad is not None
    led, region, clash = bad
    raise BorrowError(led.conflict_message(region, kind, clash, site, access))


class borrowing:  # noqa: N801 - used as a function: ``with borrowing(...):``
    """The one way owngrad holds borrows for a block of work: every borrow is taken first, all or
    none (:func:`acquire_all`), and all are released when the block ends, however it ends.
    (A class, not a generator: it sits on every write's path.)"""

    __slots__ = ("_requests", "_args", "taken")

    def __init__(self, requests: list[tuple[BorrowLedger, Region]], kind: str, holder: Holder, why: str,
                 site: Site | None = None, access: str = "") -> None:
        self._requests = requests
        self._args = (kind, holder, why, site, access)
        self.taken: list[Borrow] = []

    def __enter__(self) -> list[Borrow]:
        self.taken = acquire_all(self._requests, *self._args)
        return self.taken

    def __exit__(self, *exc: object) -> None:
        release_all(self.taken)


def release_all(borrows: list[Borrow]) -> None:
    """Release several borrows (under one hold of the lock when their ledgers share it)."""
    if not borrows:
        return
    lock = borrows[0].ledger._lock
    for b in borrows:
        if b.ledger._lock is not lock:
            for b in borrows:
                b.ledger.release(b)
            return
    with lock:
        for b in borrows:
            led = b.ledger
            if led._live.pop(b, 0) is None and b.kind == EXCLUSIVE:
                led._n_excl -= 1


class BlockHolder:
    """A ``with t.borrow()`` / ``t.borrow_mut()`` block (or another short-lived user of a region)."""

    __slots__ = ("what", "site", "_hint")

    def __init__(self, what: str, site: Site, hint: str) -> None:
        self.what = what
        self.site = site
        self._hint = hint

    def holder_text(self) -> str:
        return f"{self.what} at {format_site(self.site)}"

    def hint(self) -> str:
        return self._hint

    def abandoned(self) -> bool:
        return False  # a block ends when its `with` does

    def reclaim(self) -> None:
        raise AssertionError("a borrow() block is never abandoned")


class Storage:
    """The memory a tensor and its views share: one C-contiguous base array and its ledger.

    The ledger is made on first use: most op results are never borrowed, and a result's label
    (``(mul #7)``) is formatted only then."""

    __slots__ = ("array", "device", "_ledger", "_label", "_lock")

    def __init__(self, array: Any, label: str | tuple[str, int], device: str, lock: Any = None) -> None:
        self.array = array
        self.device = device
        self._ledger: BorrowLedger | None = None
        self._label = label
        self._lock = lock

    @property
    def ledger(self) -> BorrowLedger:
        led = self._ledger
        if led is None:
            return self._make_ledger()
        return led

    def _make_ledger(self) -> BorrowLedger:
        # under the graph's ledger lock, so two threads cannot each make one (never called with it held)
        with self._lock if self._lock is not None else contextlib.nullcontext():
            led = self._ledger
            if led is not None:
                return led
            lab = self._label
            if isinstance(lab, tuple):  # (op, node id) of a result, formatted only when a message needs it
                what, node_id = lab
                lab = f"({what} #{node_id})" if node_id else f"({what})"
            led = self._ledger = BorrowLedger(tuple(self.array.shape), lab, self._lock)
        return led
