"""Borrows at the Tensor level: who borrows what, when it is released, and what the errors say.

Messages are read as a newcomer would: the first line names the tensor and region, the access and
the file:line of the statement in *this* file; one line per conflicting holder with op, node id
and the line that recorded it; a help line. ``site = here(); stmt`` puts the expected file:line
on the same line as the statement.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og

INTERNAL = ("tensor.py", "graph.py", "ledger.py", "rules.py", "views.py", "ops.py", "contextlib.py", "sites.py",
            "owngrad/")


def node_of(g: og.Graph, op: str) -> og.Node:
    nodes = [n for n in g.pending() if n.op == op]
    assert len(nodes) == 1, g.pending()
    return nodes[0]


def assert_message(msg: str, target: str, site: str, holders: list[str], kind: str = "exclusive") -> None:
    """``target`` is a regex for the tensor/region, ``holders`` substrings that must each be on a holder line."""
    lines = msg.splitlines()
    assert re.search(target, lines[0]), f"first line should name {target!r}:\n{msg}"
    assert site in lines[0], f"first line should name the access at {site}:\n{msg}"
    assert kind in lines[0], msg
    for h in holders:
        assert any(h in ln for ln in lines[1:]), f"no line names the holder {h!r}:\n{msg}"
    assert any(ln.strip().startswith("help:") for ln in lines), f"no help line:\n{msg}"
    for name in INTERNAL:
        assert name not in msg, f"the message points into owngrad's internals ({name}):\n{msg}"


def snapshot(g: og.Graph, *ts: og.Tensor) -> Any:
    """Everything a refused call must leave as it was: data, pending nodes with their borrows, ledgers."""
    ledgers = {id(b.ledger): b.ledger for n in g.pending() for b in n.borrows}
    return ([t.numpy().tolist() for t in ts],
            [(n.id, n.op, [(b.label, b.kind) for b in n.borrows]) for n in g.pending()],
            sorted((k, tuple(sorted(map(id, led.live())))) for k, led in ledgers.items()))


# --- 2.6: the headline error ---------------------------------------------------------------------

def test_changing_a_weight_between_forward_and_backward(here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.ones((3, 2)), name="w")
    x = g.param(np.ones((4, 3)), name="x")
    rec = here(); h = x @ w  # noqa: E702
    loss = h.relu().sum()
    mm = node_of(g, "matmul")
    before = snapshot(g, w, x)
    with pytest.raises(og.BorrowError) as ei:
        site = here(); w[0:2] += 1.0  # noqa: E702
    assert isinstance(ei.value, RuntimeError)
    assert_message(str(ei.value), r"w\[0?:2\]", site, [f"node #{mm.id} matmul recorded at {rec}"])
    assert "saved for backward" in str(ei.value)
    assert snapshot(g, w, x) == before
    grads = g.backward(loss)  # the graph still works after the refusal
    np.testing.assert_allclose(grads[w].numpy(), np.full((3, 2), 4.0))
    w[0:2] += 1.0  # consumed: the write goes through now
    np.testing.assert_allclose(w.numpy()[0:2], 2.0)


def test_every_conflicting_holder_is_named(here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.full((4, 3), 0.5), name="w")
    l1 = here(); a = w[0:2].log()  # noqa: E702
    l2 = here(); b = w[1].sqrt() * w[1]  # noqa: E702
    l3 = here(); c = w[3].log()  # noqa: E702
    ids = {n.op: n.id for n in g.pending() if n.op in ("log", "mul")}
    with pytest.raises(og.BorrowError) as ei:
        with g.no_grad():
            site = here(); w[0:2] = 0.0  # noqa: E702
    msg = str(ei.value)
    log_nodes = [n for n in g.pending() if n.op == "log"]
    first_log = min(log_nodes, key=lambda n: n.id)
    assert_message(msg, r"w\[0?:2\]", site, [f"node #{first_log.id} log recorded at {l1}",
                                              f"node #{ids['mul']} mul recorded at {l2}"])
    assert l3 not in msg, "w[3] is disjoint from w[0:2]: its holder is no conflict"
    del a, b, c


@pytest.mark.parametrize("write", ["+=", "-=", "*=", "/=", "setitem", "zero_", "fill_", "copy_", "clamp_",
                                   "add_", "sub_", "mul_", "div_"])
def test_every_write_path_is_checked(write: str, here: Callable[[], str]) -> None:
    g = og.Graph()
    x = g.param(np.full(4, 0.5), name="x")
    y = x * 2.0  # a non-leaf nobody saved...
    rec = here(); z = y.log()  # noqa: E702  ...until log saves it
    before = snapshot(g, x, y)
    ops: dict[str, Callable[[], Any]] = {
        "+=": lambda: y.__iadd__(1.0), "-=": lambda: y.__isub__(1.0), "*=": lambda: y.__imul__(2.0),
        "/=": lambda: y.__itruediv__(2.0), "setitem": lambda: y.__setitem__(slice(1, 3), 0.0),
        "zero_": lambda: y.zero_(), "fill_": lambda: y.fill_(3.0), "copy_": lambda: y.copy_(np.zeros(4)),
        "clamp_": lambda: y.clamp_(0.0, 0.7), "add_": lambda: y.add_(1.0), "sub_": lambda: y.sub_(1.0),
        "mul_": lambda: y.mul_(2.0), "div_": lambda: y.div_(2.0)}
    with pytest.raises(og.BorrowError) as ei:
        ops[write]()
    site = f"test_borrows.py:{ops[write].__code__.co_firstlineno}"  # the lambda's line does the write
    assert_message(str(ei.value), r"\by\b|result of mul|mul", site, [f"log recorded at {rec}"])
    assert snapshot(g, x, y) == before, "a refused write changes nothing"
    grads = g.backward(z.sum())
    np.testing.assert_allclose(grads[x].numpy(), 1 / 0.5)


# --- 2.5: exact regions at the tensor level ---------------------------------------------------------

@pytest.mark.parametrize("saved, written", [
    (lambda w: w[0:2], lambda w: w[2:4]),
    (lambda w: w[::2], lambda w: w[1::2]),
    (lambda w: w[0::3], lambda w: w[2::3]),
    (lambda w: w[:, 0], lambda w: w[:, 1]),
    (lambda w: w[1], lambda w: w[3, 1:]),
    (lambda w: w.T[0], lambda w: w[:, 2]),
    (lambda w: w[1:][::2], lambda w: w[1:][1::2]),
    (lambda w: w[::-1][0], lambda w: w[0]),
], ids=["0:2|2:4", "::2|1::2", "0::3|2::3", "col 0|col 1", "row 1|row 3", "T[0]|col 2", "view of view",
        "negative step"])
def test_disjoint_writes_go_through(saved: Any, written: Any) -> None:
    g = og.Graph()
    w = g.param(np.full((6, 3), 0.5), name="w")
    out = saved(w).log().sum()
    with g.no_grad():
        written(w).fill_(2.0)  # disjoint from the saved region: allowed
    with pytest.raises(og.BorrowError):
        with g.no_grad():
            saved(w).fill_(2.0)
    expect = np.zeros(18)
    expect[np.ravel(saved(np.arange(18).reshape(6, 3)))] = 1 / 0.5  # the same key on numpy: which elements
    expect = expect.reshape(6, 3)
    np.testing.assert_allclose(g.backward(out)[w].numpy(), expect)


def test_disjoint_recorded_write_keeps_gradients_exact() -> None:
    g = og.Graph()
    x = g.param(np.full(4, 0.5), name="x")
    y = x * 1.0
    z = y[0:2].log()  # saves y[0:2]
    y[2:4] = 0.0  # disjoint: recorded, allowed
    grads = g.backward(z.sum() + (y * y).sum())
    np.testing.assert_allclose(grads[x].numpy(), [2 + 1.0, 2 + 1.0, 0.0, 0.0])


# --- 2.2 / 2.7: borrow() and borrow_mut() blocks ----------------------------------------------------

def test_borrow_gives_a_read_only_zero_copy_array() -> None:
    g = og.Graph()
    w = g.param(np.arange(6.0).reshape(2, 3), name="w")
    with w.borrow() as a:
        assert isinstance(a, np.ndarray) and not a.flags.writeable
        np.testing.assert_array_equal(a, np.arange(6.0).reshape(2, 3))
        with pytest.raises(ValueError):
            a[0, 0] = 5.0
    with g.no_grad():
        w += 1.0
    np.testing.assert_array_equal(a, np.arange(6.0).reshape(2, 3) + 1, err_msg="borrow() must not copy")


def test_borrow_mut_is_writable_inside_and_read_only_after() -> None:
    g = og.Graph()
    w = g.param(np.zeros(3), name="w")
    with w.borrow_mut() as a:
        assert a.flags.writeable
        a[1] = 7.0
    np.testing.assert_array_equal(w.numpy(), [0.0, 7.0, 0.0])
    assert not a.flags.writeable, "the array from borrow_mut must stop being writable when the block ends"
    with pytest.raises(ValueError):
        a[0] = 1.0
    with w[0:1].borrow_mut() as b:  # views can be borrowed too
        b[...] = 3.0
    np.testing.assert_array_equal(w.numpy(), [3.0, 7.0, 0.0])


def test_borrow_block_conflict_message(here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.zeros(3), name="w")
    blk = here(); cm = w.borrow(); cm.__enter__()  # noqa: E702
    try:
        with pytest.raises(og.BorrowError) as ei:
            with g.no_grad():
                site = here(); w.zero_()  # noqa: E702
        assert_message(str(ei.value), r"\bw\b", site, [f"borrow() block at {blk}"])
        with w.borrow():  # shared borrows coexist
            pass
    finally:
        cm.__exit__(None, None, None)
    with g.no_grad():
        w.zero_()


def test_borrow_mut_excludes_readers_and_savers(here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    with w.borrow_mut():
        with pytest.raises(og.BorrowError) as ei:
            with w.borrow():
                pass
        assert "borrow_mut() block at" in str(ei.value)
        before = len(g.pending())
        with pytest.raises(og.BorrowError):
            w.log()  # log must save w: it cannot while w is borrowed mutably
        assert len(g.pending()) == before, "a refused op records nothing"
        with pytest.raises(og.BorrowError):
            with w[1:].borrow_mut():
                pass
    w.log()  # released


@pytest.mark.parametrize("method", ["borrow", "borrow_mut"])
def test_exception_in_block_still_releases(method: str) -> None:
    g = og.Graph()
    w = g.param(np.zeros(3), name="w")
    with pytest.raises(KeyError):
        with getattr(w, method)() as a:
            raise KeyError("boom")
    if method == "borrow_mut":
        assert not a.flags.writeable
    with g.no_grad():
        w += 1.0  # nothing leaked
    with w.borrow_mut():
        pass


def test_a_refused_borrow_block_leaks_nothing() -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    y = w.log()
    for _ in range(3):
        with pytest.raises(og.BorrowError):
            with w.borrow_mut():
                pass
    g.free(y)
    with w.borrow_mut():
        pass


# --- 2.8: read-only handles ---------------------------------------------------------------------------

WRITES: dict[str, Callable[[og.Tensor], Any]] = {
    "+=": lambda t: t.__iadd__(1.0), "*=": lambda t: t.__imul__(2.0), "setitem": lambda t: t.__setitem__(0, 5.0),
    "zero_": lambda t: t.zero_(), "fill_": lambda t: t.fill_(1.0), "copy_": lambda t: t.copy_(np.ones(t.shape)),
    "clamp_": lambda t: t.clamp_(0.0, 0.1), "add_": lambda t: t.add_(1.0), "sub_": lambda t: t.sub_(1.0),
    "mul_": lambda t: t.mul_(1.0), "div_": lambda t: t.div_(2.0), "view +=": lambda t: t[0:1].__iadd__(1.0),
    "borrow_mut": lambda t: t.borrow_mut().__enter__(),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_freeze_is_read_only(write: str, here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.arange(3.0), name="w")
    f = g.freeze(w)
    with pytest.raises(og.BorrowError) as ei:
        WRITES[write](f)
    site = f"test_borrows.py:{WRITES[write].__code__.co_firstlineno}"  # the lambda's line does the write
    msg = str(ei.value)
    assert site in msg and "read-only" in msg and "w" in msg.splitlines()[0], msg
    assert not any(name in msg for name in INTERNAL), msg
    np.testing.assert_array_equal(w.numpy(), np.arange(3.0))
    with g.no_grad():
        w += 1.0  # the frozen handle holds no borrow and sees the new values
    np.testing.assert_array_equal(f.numpy(), np.arange(3.0) + 1)
    assert f.shape == w.shape and f.dtype == w.dtype


def test_freeze_read_only_through_indexing() -> None:
    g = og.Graph()
    w = g.param(np.zeros((2, 2)), name="w")
    f = g.freeze(w)
    with pytest.raises(og.BorrowError):
        f[1][0] = 1.0
    with pytest.raises(og.BorrowError):
        f.T[0] += 1.0
    assert (f * 2.0).sum().item() == 0.0  # reading works


@pytest.mark.parametrize("write", list(WRITES))
def test_gradient_handles_are_read_only(write: str) -> None:
    g = og.Graph()
    w = g.param(np.arange(3.0), name="w")
    grads = g.backward((w * w).sum())
    before = grads[w].numpy()
    with pytest.raises(og.BorrowError) as ei:
        WRITES[write](grads[w])
    assert "read-only" in str(ei.value)
    np.testing.assert_array_equal(grads[w].numpy(), before)


# --- 2.4: on_grad and the leaves during backward ------------------------------------------------------

def test_on_grad_gets_frozen_leaf_and_read_only_grad(here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.arange(3.0), name="w")
    b = g.param(np.ones(2), name="b")
    loss = (w * 2.0).sum() + (b * b).sum()
    calls: list[tuple[og.Tensor, np.ndarray, np.ndarray]] = []

    def on_grad(leaf: og.Tensor, grad: og.Tensor) -> None:
        calls.append((leaf, leaf.numpy(), grad.numpy()))
        for t in (leaf, grad):
            with pytest.raises(og.BorrowError, match="read-only"):
                t += 1.0
            with pytest.raises(og.BorrowError):
                t[0] = 0.0

    grads = g.backward(loss, on_grad=on_grad)
    assert len(calls) == 2, "on_grad is called once per param"
    by_value = {c[1].shape: c for c in calls}
    np.testing.assert_array_equal(by_value[(3,)][1], w.numpy())
    np.testing.assert_array_equal(by_value[(3,)][2], grads[w].numpy())
    np.testing.assert_array_equal(by_value[(2,)][2], grads[b].numpy())


def test_writing_a_leaf_from_on_grad_raises(here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.ones(3), name="w")
    v = g.param(np.ones(3), name="v")
    loss = (w * 3.0).sum() + (v * 2.0).sum()  # nothing saves w or v: only backward borrows them
    errors: list[tuple[str, str]] = []

    def on_grad(leaf: og.Tensor, grad: og.Tensor) -> None:
        with pytest.raises(og.BorrowError) as ei:
            with g.no_grad():
                site = here(); w.sub_(0.1)  # noqa: E702
        errors.append((str(ei.value), site))

    bw = here(); g.backward(loss, on_grad=on_grad)  # noqa: E702
    assert len(errors) == 2
    for msg, site in errors:
        assert_message(msg, r"\bw\b", site, [f"g.backward running since {bw}"])
    np.testing.assert_array_equal(w.numpy(), np.ones(3))
    with g.no_grad():
        w.sub_(0.1)  # released once backward returns
    np.testing.assert_allclose(w.numpy(), 0.9)


def test_exception_in_on_grad_releases_everything() -> None:
    g = og.Graph()
    w = g.param(np.ones(3), name="w")
    loss = (w * w).sum()

    def on_grad(leaf: og.Tensor, grad: og.Tensor) -> None:
        raise ValueError("hook failed")

    with pytest.raises(ValueError, match="hook failed"):
        g.backward(loss, on_grad=on_grad)
    grads = g.backward(loss)  # not consumed by the failed backward: it is all-or-nothing
    np.testing.assert_allclose(grads[w].numpy(), 2.0)
    with g.no_grad():
        w += 1.0


# --- backward consumes; retain, free, clear, context manager -----------------------------------------

def test_backward_consumes_and_releases() -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    loss = w.log().sum()
    assert g.pending()
    g.backward(loss)
    assert g.pending() == []
    with g.no_grad():
        w += 1.0  # the log node's borrow is gone


def test_retain_keeps_nodes_and_borrows() -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    loss = w.log().sum()
    first = g.backward(loss, retain=True)
    assert any(n.op == "log" and n.borrows for n in g.pending())
    with pytest.raises(og.BorrowError):
        with g.no_grad():
            w += 1.0
    second = g.backward(loss)
    np.testing.assert_allclose(second[w].numpy(), first[w].numpy())
    assert g.pending() == []
    with g.no_grad():
        w += 1.0


def test_free_releases_only_what_the_tensor_alone_needs() -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    a = w.log()  # saves w
    b = a.exp()
    c = a.tanh()
    n = g.free(b)
    assert n >= 1
    assert not any(nd.op == "exp" for nd in g.pending())
    assert any(nd.op == "log" for nd in g.pending()), "c still needs log: free(b) must keep it"
    with pytest.raises(og.BorrowError):
        with g.no_grad():
            w += 1.0
    grads = g.backward(c.sum())
    np.testing.assert_allclose(grads[w].numpy(), (1 - np.tanh(np.log(0.5)) ** 2) / 0.5, rtol=1e-12)
    g2 = og.Graph()
    v = g2.param(np.full(2, 0.5), name="v")
    y = v.log()
    g2.free(y)
    assert g2.pending() == []
    with g2.no_grad():
        v += 1.0
    with pytest.raises(og.GraphError):
        g2.backward(y.sum())


def test_clear_drops_everything() -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    y = w.log() + w.sqrt()
    g.clear()
    assert g.pending() == []
    with g.no_grad():
        w += 1.0
    with pytest.raises(og.GraphError):
        g.backward(y.sum())


def test_graph_as_context_manager_clears_on_exit() -> None:
    with og.Graph() as g:
        w = g.param(np.full(3, 0.5), name="w")
        w.log()
        assert g.pending()
    assert g.pending() == []
    with g.no_grad():
        w += 1.0


def test_graph_context_manager_clears_on_exception() -> None:
    with pytest.raises(ZeroDivisionError):
        with og.Graph() as g:
            w = g.param(np.full(3, 0.5), name="w")
            w.log()
            raise ZeroDivisionError("the block fails after recording")
    assert g.pending() == []


# --- no_grad, detach ------------------------------------------------------------------------------------

def test_no_grad_saves_nothing() -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    with g.no_grad():
        y = (w.log() * w).exp()
    assert g.pending() == [] and not y.requires_grad
    w += 1.0  # nothing borrowed w
    y += 1.0


def test_writes_inside_no_grad_still_take_exclusive_borrows(here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    rec = here(); _kept = w.log()  # noqa: E702 - kept alive: it holds the borrow
    with g.no_grad():
        with pytest.raises(og.BorrowError) as ei:
            site = here(); w += 1.0  # noqa: E702
    assert_message(str(ei.value), r"\bw\b", site, [f"log recorded at {rec}"])
    with w.borrow():
        with g.no_grad():
            with pytest.raises(og.BorrowError):
                w.zero_()


def test_detach_shares_the_ledger(here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    d = w.detach()
    assert not d.requires_grad and d.is_leaf
    rec = here(); y = w.log()  # noqa: E702
    with pytest.raises(og.BorrowError) as ei:
        site = here(); d += 1.0  # noqa: E702
    assert_message(str(ei.value), r".", site, [f"log recorded at {rec}"])
    np.testing.assert_array_equal(w.numpy(), 0.5)
    g.backward(y.sum())
    d += 1.0  # same storage: visible through w
    np.testing.assert_array_equal(w.numpy(), 1.5)
    with pytest.raises(og.BorrowError):
        with d.borrow_mut():
            with w.borrow():
                pass


def test_detached_saved_tensor_protects_the_original() -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    v = g.param(np.ones(3), name="v")
    _kept = v * w.detach()  # saves the detached handle, i.e. w's storage
    with pytest.raises(og.BorrowError):
        with g.no_grad():
            w += 1.0


# --- "a refused write changes nothing" across many shapes of write ------------------------------------

@pytest.mark.parametrize("target", ["leaf", "leaf view", "result", "result view", "detached"])
def test_a_refused_write_changes_nothing(target: str) -> None:
    g = og.Graph()
    x = g.param(np.full((3, 2), 0.5), name="x")
    r = x * 1.0
    saver = {"leaf": lambda: x.log(), "leaf view": lambda: x[1].log(), "result": lambda: r.log(),
             "result view": lambda: r[:, 1].log(), "detached": lambda: x.log()}[target]()
    t = {"leaf": x, "leaf view": x[1], "result": r, "result view": r[:, 1], "detached": x.detach()}[target]
    before = snapshot(g, x, r)
    writes: list[Callable[[], Any]] = [lambda: t.__iadd__(1.0), lambda: t.fill_(0.0), lambda: t.copy_(t.numpy() * 2),
                                       lambda: t.clamp_(0.0, 0.1), lambda: t.__setitem__(..., 3.0)]
    for write in writes:
        for grad_mode in (True, False):
            with pytest.raises(og.BorrowError):
                if grad_mode:
                    write()
                else:
                    with g.no_grad():
                        write()
            assert snapshot(g, x, r) == before
    grads = g.backward(saver.sum() + r.sum())
    expect = np.ones((3, 2))
    mask = np.zeros((3, 2), bool)
    if target in ("leaf", "result", "detached"):
        mask[:] = True
    elif target == "leaf view":
        mask[1] = True
    else:
        mask[:, 1] = True
    expect[mask] += 1 / 0.5
    np.testing.assert_allclose(grads[x].numpy(), expect)


# --- abandoned results: a pending node no live tensor reaches gives its borrows up -------------------------------

def _evaluate(model: og.nn.Module, x: og.Tensor) -> float:
    """An evaluation forward written without no_grad(): its result dies when the function returns."""
    return float(model(x).numpy().sum())


def test_a_dropped_forward_does_not_block_the_next_step() -> None:
    g = og.Graph()
    model = og.nn.Sequential(og.nn.Linear(g, 4, 4, rng=0), og.nn.Tanh(), og.nn.Linear(g, 4, 2, rng=1))
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    x = g.constant(np.ones((3, 4), dtype=np.float32))
    _evaluate(model, x)  # its nodes saved the second layer's weight and are still pending
    assert g.pending()
    opt.step(g.backward((model(x) ** 2).sum()))  # the step's write releases them instead of refusing
    assert not g.pending()


def test_a_result_still_held_keeps_its_borrow_and_the_error_names_the_variable(here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    held = w.log()
    before = [n.id for n in g.pending()]
    with pytest.raises(og.BorrowError) as ei:
        with g.no_grad():
            site = here(); w += 1.0  # noqa: E702
    msg = str(ei.value)
    assert site in msg and "`held` (live) still needs it" in msg, msg
    assert [n.id for n in g.pending()] == before and w.numpy().tolist() == [0.5, 0.5, 0.5]
    del held
    with g.no_grad():
        w += 1.0  # nothing reaches the log node now
    assert w.numpy().tolist() == [1.5, 1.5, 1.5]


def test_a_refused_write_releases_nothing() -> None:
    """A write that conflicts with a live result and with an abandoned one is refused, and the abandoned
    node stays pending too: a refused call changes nothing."""
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    w.log()  # abandoned at once
    kept = w * w
    pending = [n.id for n in g.pending()]
    with pytest.raises(og.BorrowError):
        with g.no_grad():
            w.zero_()
    assert [n.id for n in g.pending()] == pending
    g.backward(kept.sum())


def test_a_view_keeps_its_base_result_reachable() -> None:
    g = og.Graph()
    w = g.param(np.full((2, 3), 0.5), name="w")
    row = (w.exp() * w)[0]  # the product's result lives on through the view
    with pytest.raises(og.BorrowError):
        with g.no_grad():
            w += 1.0
    grads = g.backward(row.sum())
    assert grads[w].shape == (2, 3)
