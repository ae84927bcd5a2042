"""Memory: no growth over long runs. Nodes are released after backward, no reference
cycle holds arrays (everything is freed by reference counting alone, with the cycle collector
off), and tracemalloc sees flat memory over hundreds of training steps.

Bounds come from array sizes, never from timings: over the second half of a run the traced
memory may grow by less than the bytes of the arrays ONE step allocates, so leaking even the
smallest per-step array every step (or a node per step) fails.
"""

from __future__ import annotations

import gc
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import owngrad as og

BATCH, D_IN, HIDDEN, D_OUT = 32, 16, 32, 4


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Reference counting alone must free everything: a cycle would show up as growth."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def step_bytes() -> int:
    """Bytes of the float64 arrays one hand-written step allocates (inputs, activations, grads)."""
    f = 8
    acts = BATCH * D_IN + 4 * BATCH * HIDDEN + 3 * BATCH * D_OUT
    grads = D_IN * HIDDEN + HIDDEN + HIDDEN * D_OUT + D_OUT
    return f * (acts + 2 * grads)


def make_mlp(g: og.Graph) -> list[og.Tensor]:
    rng = np.random.default_rng(0)
    return [g.param(rng.standard_normal((D_IN, HIDDEN)) * 0.3, name="w1"), g.param(np.zeros(HIDDEN), name="b1"),
            g.param(rng.standard_normal((HIDDEN, D_OUT)) * 0.3, name="w2"), g.param(np.zeros(D_OUT), name="b2")]


def train_steps(g: og.Graph, params: list[og.Tensor], xs: np.ndarray, ys: np.ndarray, lo: int, hi: int,
                check: Callable[[], None] | None = None) -> float:
    w1, b1, w2, b2 = params
    loss_v = 0.0
    for i in range(lo, hi):
        x = g.constant(xs[i % len(xs)])
        y = g.constant(ys[i % len(ys)])
        h = (x @ w1 + b1).tanh()
        h = h[:, 0:HIDDEN]  # a view in the chain
        out = h @ w2 + b2
        d = out - y
        loss = (d * d).mean()
        grads = g.backward(loss)
        with g.no_grad():
            for p in params:
                p -= 0.05 * grads[p]
        loss_v = float(loss.item())
        if check is not None:
            check()
    return loss_v


def data(n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((n, BATCH, D_IN))
    ys = np.tanh(xs[..., :D_OUT])
    return xs, ys


def test_memory_flat_over_many_steps(no_gc: None) -> None:
    g = og.Graph()
    params = make_mlp(g)
    xs, ys = data()
    first = train_steps(g, params, xs, ys, 0, 50)  # warm-up: caches, first allocations
    tracemalloc.start()
    try:
        # warm up under tracing: CPython's free lists fill up (to a fixed cap) first, see below
        train_steps(g, params, xs, ys, 50, 1250)
        mid, _ = tracemalloc.get_traced_memory()
        last = train_steps(g, params, xs, ys, 1250, 1450)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    growth = end - mid
    bound = step_bytes()
    assert growth < bound, (f"memory grew by {growth} bytes over 200 steps with gc off "
                            f"(one step's arrays: {bound} bytes)")
    assert last < first, "the model did not train (the loop is not doing the work it claims)"
    assert g.pending() == []
    assert all(p._storage.ledger.live() == [] for p in params)


def test_no_true_leak_with_the_cycle_collector_on() -> None:
    """With gc on (as users run), what a run leaves after a collection does not grow either."""
    g = og.Graph()
    params = make_mlp(g)
    xs, ys = data()
    train_steps(g, params, xs, ys, 0, 50)
    tracemalloc.start()
    try:
        train_steps(g, params, xs, ys, 50, 150)
        gc.collect()
        mid, _ = tracemalloc.get_traced_memory()
        train_steps(g, params, xs, ys, 150, 350)
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end - mid < step_bytes(), f"memory grew by {end - mid} bytes over 200 steps even after gc.collect()"
    assert g.pending() == []


def test_pending_empty_and_nodes_released_after_each_backward(no_gc: None) -> None:
    g = og.Graph()
    params = make_mlp(g)
    xs, ys = data(4)
    refs: list[weakref.ref[Any]] = []
    w1, b1, w2, b2 = params

    def one_step() -> None:
        x = g.constant(xs[0])
        h = (x @ w1 + b1).tanh()
        loss = ((h[:, 0:HIDDEN] @ w2 + b2) ** 2).mean()
        refs.extend(weakref.ref(n) for n in g.pending())
        assert len(g.pending()) >= 6
        g.backward(loss)
        assert g.pending() == [], "backward left pending nodes"

    for _ in range(20):
        one_step()
    assert refs
    alive = [r() for r in refs if r() is not None]
    assert not alive, f"{len(alive)} nodes are still alive after backward with no reference left, e.g. {alive[0]!r}"


def test_backward_frees_saved_arrays_while_the_loss_lives(no_gc: None) -> None:
    """The loss tensor keeps its node chain, but backward drops what the nodes saved."""
    g = og.Graph()
    w = g.param(np.ones((64, 64)), name="w")
    x = g.constant(np.ones((8, 64)))
    h = (x @ w).tanh()          # tanh saves its output h
    e = (h * 0.5).exp()         # exp saves its output e
    h_arr = weakref.ref(h._data)
    e_arr = weakref.ref(e._data)
    loss = e.sum()
    del h, e
    assert h_arr() is not None and e_arr() is not None  # saved for backward
    g.backward(loss)
    assert h_arr() is None and e_arr() is None, "a consumed node still holds a saved array"
    assert loss.item() > 0


def test_free_and_clear_release_nodes_and_arrays(no_gc: None) -> None:
    g = og.Graph()
    w = g.param(np.ones((32, 32)), name="w")
    y = (w * 2.0).exp()
    arr = weakref.ref(y._data)
    node = weakref.ref(g.pending()[-1])
    z = w.tanh().sum()
    del y
    assert arr() is not None
    g.free(z)
    assert arr() is not None  # z does not need y's nodes: they stay pending
    g.clear()
    assert g.pending() == []
    assert arr() is None and node() is None, "g.clear() left a node or its saved array alive"
    assert w._storage.ledger.live() == []


def test_graph_and_tensors_die_without_the_cycle_collector(no_gc: None) -> None:
    g = og.Graph()
    w = g.param(np.ones((16, 16)), name="w")
    x = g.constant(np.ones((4, 16)))
    loss = (x @ w).relu().sum()
    grads = g.backward(loss)
    gr = weakref.ref(grads[w]._data)
    xr = weakref.ref(x._data)
    lr = weakref.ref(loss)
    del grads, loss, x
    assert gr() is None and xr() is None and lr() is None, "a cycle keeps gradients, constants or results alive"


def test_gc_finds_no_garbage_after_training(no_gc: None) -> None:
    gc.collect()
    g = og.Graph()
    params = make_mlp(g)
    xs, ys = data(4)
    train_steps(g, params, xs, ys, 0, 100)
    del g, params
    found = gc.collect()
    assert found <= 40, f"the cycle collector found {found} objects after 100 steps: reference cycles per step"
    assert gc.garbage == []


def test_inplace_and_views_do_not_leak(no_gc: None) -> None:
    """Recorded in-place writes through views (copy_slices nodes) and view caches, many times."""
    g = og.Graph()
    w = g.param(np.linspace(-1, 1, 64).reshape(8, 8), name="w")

    def step() -> None:
        y = w * 2.0
        y[0:2] = 0.0
        y[:, 3] += w[:, 1]
        loss = (y * y).sum() + (w[2:4] ** 2).sum()
        g.backward(loss)

    for _ in range(30):
        step()
    tracemalloc.start()
    try:
        # warm up under tracing: CPython's tuple free lists keep freed tuples, which tracemalloc counts
        # as live, and they fill up (to a fixed cap) over the first ~1000 traced steps
        for _ in range(1200):
            step()
        mid, _ = tracemalloc.get_traced_memory()
        for _ in range(150):
            step()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = 8 * 64 * 10  # ten 8x8 float64 arrays: less than one step allocates
    assert end - mid < bound, f"memory grew by {end - mid} bytes over 150 steps of in-place writes"
    assert g.pending() == [] and w._storage.ledger.live() == []


def test_training_layer_memory_flat(no_gc: None) -> None:
    if not (hasattr(og, "nn") and hasattr(og.nn, "MLP") and hasattr(og, "optim")):
        pytest.skip("the training layer does not exist (yet)")
    g = og.Graph()
    model = og.nn.MLP(g, [D_IN, HIDDEN, D_OUT], rng=0)
    opt = og.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((8, BATCH, D_IN)).astype(np.float32)
    ys = rng.integers(0, D_OUT, size=(8, BATCH))

    def steps(n: int, start: int) -> float:
        v = 0.0
        for i in range(start, start + n):
            x = g.constant(xs[i % 8])
            loss = og.nn.functional.cross_entropy(model(x), ys[i % 8])
            opt.step(g.backward(loss))
            v = float(loss.item())
        return v

    first = steps(30, 0)
    tracemalloc.start()
    try:
        steps(1000, 30)  # warm up under tracing (CPython's free lists fill up first, see above)
        mid, _ = tracemalloc.get_traced_memory()
        last = steps(150, 1030)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = 4 * (BATCH * D_IN + 4 * BATCH * HIDDEN + 3 * BATCH * D_OUT)  # float32 arrays of one step
    assert end - mid < bound, f"memory grew by {end - mid} bytes over 150 optimizer steps (bound {bound})"
    assert last < first
    assert g.pending() == []
    assert all(p._storage.ledger.live() == [] for p in model.parameters())
