"""The borrow ledger on its own: exact regions and all-or-nothing borrows.

Regions are made the way tensors make them -- ``views.normalize_key`` + ``views.sub_region`` over a
base shape, transposes permuting the layout -- and checked against a brute-force truth: the same
keys applied to ``np.arange(size).reshape(shape)`` give the exact set of base elements selected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import owngrad as og
from owngrad.ledger import EXCLUSIVE, SHARED, BorrowLedger, Region, progressions_intersect
from owngrad.views import normalize_key, sub_region


class View:
    """A region of a base array together with the exact element ids it selects."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.base_shape = shape
        self.ids = np.arange(int(np.prod(shape))).reshape(shape)
        self.region = Region.full(shape)
        self.layout: tuple[int, ...] | None = tuple(range(len(shape)))
        self.steps: list[Any] = []

    def index(self, key: Any) -> View:
        v = self._copy()
        nk = normalize_key(key, v.ids.shape)
        v.region, v.layout = sub_region(self.region, self.layout, nk, v.ids.shape)
        v.ids = v.ids[nk]
        v.steps.append(key)
        return v

    def transpose(self, perm: tuple[int, ...]) -> View:
        v = self._copy()
        v.ids = v.ids.transpose(perm)
        v.layout = None if self.layout is None else tuple(self.layout[p] for p in perm)
        v.steps.append(("T", perm))
        return v

    def _copy(self) -> View:
        v = View.__new__(View)
        v.base_shape, v.ids, v.region, v.layout, v.steps = (self.base_shape, self.ids, self.region, self.layout,
                                                            list(self.steps))
        return v

    @property
    def elements(self) -> set[int]:
        return set(self.ids.ravel().tolist())

    def __repr__(self) -> str:
        return f"x{''.join(f'[{s}]' for s in self.steps)} -> {self.region}"


def x(shape: tuple[int, ...]) -> View:
    return View(shape)


class Holder:
    def __init__(self, name: str) -> None:
        self.name = name

    def holder_text(self) -> str:
        return self.name

    def hint(self) -> str:
        return f"help for {self.name}"

    def abandoned(self) -> bool:
        return False

    def reclaim(self) -> None:
        raise AssertionError("never abandoned")


def truly_overlap(a: View, b: View) -> bool:
    return bool(a.elements & b.elements)


# --- strategies ---------------------------------------------------------------------------------

@st.composite
def views(draw: Any, shape: tuple[int, ...], max_steps: int = 2) -> View:
    """A view of ``shape`` cut by up to ``max_steps`` basic indexings (any steps) and transposes."""
    v = x(shape)
    for _ in range(draw(st.integers(0, max_steps))):
        if v.ids.ndim >= 2 and draw(st.booleans()) and draw(st.booleans()):
            v = v.transpose(tuple(draw(st.permutations(range(v.ids.ndim)))))
        elif v.ids.ndim >= 1:
            v = v.index(draw(hnp.basic_indices(v.ids.shape, allow_newaxis=True, allow_ellipsis=True)))
    return v


# --- exact overlap --------------------------------------------------------------------------------

def _ov(a: View, b: View) -> bool:
    r1, r2 = a.region.overlaps(b.region), b.region.overlaps(a.region)
    assert r1 == r2, "overlap must be symmetric"
    return r1


@pytest.mark.parametrize("a, b", [
    (lambda v: v.index(slice(0, 2)), lambda v: v.index(slice(2, 4))),
    (lambda v: v.index(slice(None, None, 2)), lambda v: v.index(slice(1, None, 2))),
    (lambda v: v.index(slice(0, None, 3)), lambda v: v.index(slice(2, None, 3))),
    (lambda v: v.index(slice(None, None, -2)), lambda v: v.index(slice(-2, None, -2))),
    (lambda v: v.index(slice(1, None, 4)), lambda v: v.index(slice(None, None, 2))),
    (lambda v: v.index(0), lambda v: v.index(1)),
    (lambda v: v.index(-1), lambda v: v.index(slice(0, -1))),
    (lambda v: v.index((slice(None), 0)), lambda v: v.index((slice(None), 1))),
    (lambda v: v.index((Ellipsis, 2)), lambda v: v.index((slice(None), slice(0, 2)))),
    (lambda v: v.index((None, slice(None), 0)), lambda v: v.index((slice(None), 3))),
    (lambda v: v.transpose((1, 0)).index(0), lambda v: v.index((slice(None), 1))),
    (lambda v: v.index(slice(2, 6)).index(slice(0, 2)), lambda v: v.index(slice(0, 2))),  # view of a view
    (lambda v: v.index(slice(1, None)).index(slice(None, None, 2)), lambda v: v.index(slice(2, None, 2))),
], ids=["rows 0:2|2:4", "::2|1::2", "0::3|2::3", "::-2|-2::-2", "1::4|::2", "row 0|row 1", "last|all but last",
        "col 0|col 1", "...,2|:, 0:2", "None,:,0|:,3", "T[0]|col 1", "view of view", "strided view of view"])
def test_disjoint_2d(a: Any, b: Any) -> None:
    base = x((8, 4))
    va, vb = a(base), b(base)
    assert not truly_overlap(va, vb), "the example itself must be disjoint"
    assert not _ov(va, vb), f"{va} and {vb} are disjoint but the ledger says they overlap"


@pytest.mark.parametrize("a, b", [
    (lambda v: v.index(slice(0, 3)), lambda v: v.index(slice(2, 4))),
    (lambda v: v.index(slice(None, None, 2)), lambda v: v.index(slice(2, None, 4))),
    (lambda v: v.index(slice(None, None, -3)), lambda v: v.index(slice(1, None, 3))),
    (lambda v: v.index((slice(None), 0)), lambda v: v.index(3)),
    (lambda v: v.transpose((1, 0)).index(1), lambda v: v.index((slice(None), 1))),
    (lambda v: v.index(slice(2, 6)).index(slice(1, 2)), lambda v: v.index(3)),
], ids=["0:3|2:4", "::2|2::4", "::-3|1::3", "col 0|row 3", "T[1]|col 1", "view of view hits row 3"])
def test_overlapping_2d(a: Any, b: Any) -> None:
    base = x((8, 4))
    va, vb = a(base), b(base)
    assert truly_overlap(va, vb)
    assert _ov(va, vb)


def test_rows_vs_columns_3d() -> None:
    base = x((3, 4, 5))
    assert not _ov(base.index((0, slice(None), 1)), base.index((1, slice(None), 1)))
    assert not _ov(base.index((Ellipsis, 0)), base.index((Ellipsis, 1)))
    assert not _ov(base.index((slice(None), 0)), base.index((slice(None), 2, slice(None, None, -1))))
    assert _ov(base.index((slice(None), 0)), base.index((Ellipsis, 4)))
    assert not _ov(base.index((slice(None), slice(None), slice(0, 5, 2))),
                   base.index((2, Ellipsis)).index((slice(None), slice(1, 5, 2))))
    t = base.transpose((2, 0, 1))  # (5, 3, 4): t[k] is base[..., k]
    assert not _ov(t.index(0), base.index((Ellipsis, 1)))
    assert _ov(t.index(1), base.index((Ellipsis, 1)))


def test_empty_region_overlaps_nothing() -> None:
    base = x((4, 4))
    assert not _ov(base.index(slice(2, 2)), base)
    assert not _ov(base.index((slice(None), slice(3, 1))), base.index((slice(None), slice(None))))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))
def test_overlap_is_exact(data: Any, shape: tuple[int, ...]) -> None:
    a, b = data.draw(views(shape), label="a"), data.draw(views(shape), label="b")
    assert _ov(a, b) == truly_overlap(a, b), f"{a} vs {b}"


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.integers(-12, 12), st.integers(-4, 4).filter(bool), st.integers(0, 6)),
       st.tuples(st.integers(-12, 12), st.integers(-4, 4).filter(bool), st.integers(0, 6)))
def test_progressions_intersect_brute_force(p: tuple[int, int, int], q: tuple[int, int, int]) -> None:
    els = lambda s, d, n: {s + k * d for k in range(n)}  # noqa: E731
    assert progressions_intersect(p, q) == bool(els(*p) & els(*q))


# --- labels and messages ------------------------------------------------------------------------------

@pytest.mark.parametrize("key, expected", [
    ((), "w"), (slice(0, 2), ("w[0:2]", "w[:2]")), (1, "w[1]"), ((slice(None), 0), "w[:, 0]"),
    (slice(None, None, 2), ("w[::2]", "w[0::2]", "w[0:8:2]", "w[:7:2]")),
])
def test_region_describe(key: Any, expected: Any) -> None:
    v = x((8, 3)).index(key) if key != () else x((8, 3))
    text = v.region.describe("w", (8, 3))
    assert text in ((expected,) if isinstance(expected, str) else expected), text


def test_conflict_message_names_every_holder_and_help() -> None:
    led = BorrowLedger((4, 3), "w")
    base = x((4, 3))
    led.acquire(base.index(slice(0, 2)).region, SHARED, Holder("node #7 matmul recorded at train.py:24"),
                "saved for backward")
    led.acquire(base.index(1).region, SHARED, Holder("node #9 exp recorded at train.py:25"), "saved for backward")
    led.acquire(base.index(3).region, SHARED, Holder("node #11 log recorded at train.py:26"), "saved for backward")
    with pytest.raises(og.BorrowError) as ei:
        led.acquire(base.index(slice(0, 2)).region, EXCLUSIVE, Holder("me"), "writing",
                    (("/src/train.py", 31, "step"),), access="+=")
    msg = str(ei.value)
    lines = msg.splitlines()
    assert "cannot write" in lines[0] and "train.py:31" in lines[0] and "exclusive" in lines[0], msg
    assert "w[" in lines[0], msg
    assert any("node #7 matmul recorded at train.py:24" in ln and "saved for backward" in ln and "shared" in ln
               for ln in lines), msg
    assert any("node #9 exp recorded at train.py:25" in ln for ln in lines), msg
    assert "node #11" not in msg, "a disjoint borrow is not a conflict and must not be named"
    assert any(ln.strip().startswith("help:") for ln in lines), msg
    assert "/src/" not in msg, "file names are shortened to the file's name"


def test_check_raises_like_acquire_without_taking() -> None:
    led = BorrowLedger((4,), "v")
    r = Region.full((4,))
    b = led.acquire(r, SHARED, Holder("a"), "saved")
    led.check(r, SHARED)
    assert len(led) == 1
    with pytest.raises(og.BorrowError):
        led.check(r, EXCLUSIVE)
    assert led.live() == [b]
    led.release(b)
    led.release(b)  # releasing twice is harmless
    led.check(r, EXCLUSIVE)
    assert len(led) == 0


# --- the state machine ----------------------------------------------------------------------------

BASE = (6, 4, 3)


class LedgerMachine(RuleBasedStateMachine):
    """Random shared/exclusive borrows, write attempts and releases against a brute-force model."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = BorrowLedger(BASE, "x")
        self.model: list[tuple[Any, View, str]] = []  # (borrow, view, kind)
        self.n = 0

    def _expect_conflict(self, v: View, kind: str) -> list[Any]:
        return [b for b, w, k in self.model if (kind == EXCLUSIVE or k == EXCLUSIVE) and truly_overlap(v, w)]

    def _snapshot(self) -> list[Any]:
        return list(self.ledger.live())

    @rule(v=views(BASE), kind=st.sampled_from([SHARED, EXCLUSIVE]))
    def acquire(self, v: View, kind: str) -> None:
        self.n += 1
        holder = Holder(f"holder {self.n}")
        clash = self._expect_conflict(v, kind)
        before = self._snapshot()
        if clash:
            with pytest.raises(og.BorrowError) as ei:
                self.ledger.acquire(v.region, kind, holder, "testing", (("t.py", self.n, "f"),))
            assert self._snapshot() == before, "a refused acquire must change nothing"
            msg = str(ei.value)
            for b in clash:
                assert b.holder.holder_text() in msg, f"conflicting holder not named:\n{msg}"
        else:
            b = self.ledger.acquire(v.region, kind, holder, "testing", (("t.py", self.n, "f"),))
            assert b.kind == kind and b.region == v.region
            self.model.append((b, v, kind))

    @rule(v=views(BASE))
    def write_attempt(self, v: View) -> None:
        """An in-place write: check, then take and release an exclusive borrow."""
        clash = self._expect_conflict(v, EXCLUSIVE)
        before = self._snapshot()
        try:
            self.ledger.check(v.region, EXCLUSIVE)
            b = self.ledger.acquire(v.region, EXCLUSIVE, Holder("write"), "writing")
        except og.BorrowError:
            assert clash, f"write to {v} refused though nothing overlaps"
        else:
            assert not clash, f"write to {v} allowed while {clash} overlap"
            self.ledger.release(b)
        assert self._snapshot() == before

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def release(self, data: Any) -> None:
        i = data.draw(st.integers(0, len(self.model) - 1))
        b, _, _ = self.model.pop(i)
        self.ledger.release(b)
        self.ledger.release(b)  # idempotent

    @rule(a=views(BASE), b=views(BASE))
    def overlap_agrees(self, a: View, b: View) -> None:
        assert a.region.overlaps(b.region) == truly_overlap(a, b), f"{a} vs {b}"

    @invariant()
    def ledger_matches_model(self) -> None:
        assert set(self.ledger.live()) == {b for b, _, _ in self.model}
        assert len(self.ledger) == len(self.model)

    @invariant()
    def no_conflicting_borrows_coexist(self) -> None:
        for i, (_, v, k) in enumerate(self.model):
            for _, w, k2 in self.model[i + 1:]:
                if EXCLUSIVE in (k, k2):
                    assert not truly_overlap(v, w), f"{k} {v} and {k2} {w} coexist"

    def teardown(self) -> None:
        self.ledger.release_all([b for b, _, _ in self.model])
        assert len(self.ledger) == 0 and self.ledger.live() == []


LedgerMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase
