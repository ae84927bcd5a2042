"""Exception safety: an exception in ``on_grad``, a KeyboardInterrupt inside backward, an
error inside a borrow block, an error in the middle of an optimizer step. Afterwards: no leaked
borrow, no half-applied update, no consumed nodes (a second backward works), and the graph works.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

import owngrad as og


class Boom(Exception):
    pass


def live(*ts: og.Tensor) -> list[list[tuple[str, str]]]:
    return [sorted((repr(b.region), b.kind) for b in t._storage.ledger.live()) for t in ts]


def setup() -> tuple[og.Graph, og.Tensor, og.Tensor, og.Tensor, og.Tensor, og.Tensor]:
    rng = np.random.default_rng(1)
    g = og.Graph()
    w1 = g.param(rng.standard_normal((3, 4)), name="w1")
    w2 = g.param(rng.standard_normal((4, 2)), name="w2")
    b = g.param(rng.standard_normal(2), name="b")
    x = g.constant(rng.standard_normal((5, 3)), name="x")
    loss = ((x @ w1).tanh() @ w2 + b).sigmoid().sum()
    return g, w1, w2, b, x, loss


def reference_grads() -> dict[str, np.ndarray]:
    g, w1, w2, b, x, loss = setup()
    gr = g.backward(loss)
    return {p.name: gt.numpy() for p, gt in gr.items()}


@pytest.mark.parametrize("exc", [Boom("on_grad failed"), KeyboardInterrupt()], ids=["Exception", "KeyboardInterrupt"])
@pytest.mark.parametrize("at_call", [1, 2, 3])
def test_on_grad_raises(exc: BaseException, at_call: int) -> None:
    g, w1, w2, b, x, loss = setup()
    pending = [n.id for n in g.pending()]
    borrows = live(w1, w2, b, x)
    seen: list[str] = []

    def hook(leaf: og.Tensor, grad: og.Tensor) -> None:
        seen.append(str(leaf.name))
        if len(seen) == at_call:
            raise exc

    with pytest.raises(type(exc)):
        g.backward(loss, on_grad=hook)
    assert len(seen) == at_call
    # nothing consumed, the backward's leaf borrows released, the saved borrows still there
    assert [n.id for n in g.pending()] == pending
    assert all(n.consumed is None for n in g.pending())
    assert live(w1, w2, b, x) == borrows
    # a second backward works and gives the right gradients
    got = {p.name: gt.numpy() for p, gt in g.backward(loss).items()}
    ref = reference_grads()
    assert got.keys() == ref.keys()
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-12)
    assert g.pending() == []
    assert live(w1, w2, b, x) == [[], [], [], []]
    # and the params can be updated again
    with g.no_grad():
        w1 -= 0.1
    assert w1._storage.ledger.live() == []


def test_on_grad_raises_with_into_leaves_into_untouched() -> None:
    g, w1, w2, b, x, loss = setup()
    acc = g.backward((x @ w1).sum() + w2.sum() + b.sum())
    before = {p.name: gt.numpy() for p, gt in acc.items()}

    def hook(leaf: og.Tensor, grad: og.Tensor) -> None:
        raise Boom

    with pytest.raises(Boom):
        g.backward(loss, into=acc, on_grad=hook)
    for p, gt in acc.items():
        np.testing.assert_array_equal(gt.numpy(), before[p.name])
    g.backward(loss, into=acc)  # works afterwards, and adds
    ref = reference_grads()
    for p, gt in acc.items():
        np.testing.assert_allclose(gt.numpy(), before[p.name] + ref[p.name], rtol=1e-12)


def test_keyboard_interrupt_inside_a_vjp(monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt raised deep in the walk (inside a node's vjp) leaves nothing behind."""
    g, w1, w2, b, x, loss = setup()
    pending = [n.id for n in g.pending()]
    borrows = live(w1, w2, b, x)
    calls = {"n": 0}

    def interrupting(real: Any) -> Any:
        def vjp(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        return vjp

    for node in g.pending():  # every recorded node's vjps raise at the third call among them
        rule = node.rule
        assert rule is not None and not rule.variadic
        monkeypatch.setattr(node, "rule", dataclasses.replace(
            rule, vjps=tuple(None if f is None else interrupting(f) for f in rule.vjps)))
    with pytest.raises(KeyboardInterrupt):
        g.backward(loss)
    assert calls["n"] == 3
    monkeypatch.undo()
    assert [n.id for n in g.pending()] == pending
    assert live(w1, w2, b, x) == borrows
    got = {p.name: gt.numpy() for p, gt in g.backward(loss).items()}
    ref = reference_grads()
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-12)


def test_check_finite_failure_then_backward_works() -> None:
    g = og.Graph()
    w = g.param(np.array([0.0, 1.0]), name="w")
    loss = w.sqrt().sum()  # d sqrt / dw is inf at 0
    pending = [n.id for n in g.pending()]
    with np.errstate(all="ignore"):
        with pytest.raises(og.GradError):
            g.backward(loss, check_finite=True)
        assert [n.id for n in g.pending()] == pending
        assert w._storage.ledger.live() == []
        gr = g.backward(loss)
    np.testing.assert_array_equal(gr[w].numpy(), [np.inf, 0.5])


# --- borrow blocks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_error_inside_borrow_block(exc: type[BaseException]) -> None:
    g = og.Graph()
    t = g.param(np.arange(6.0).reshape(2, 3), name="t")
    with pytest.raises(exc):
        with t.borrow() as a:
            assert not a.flags.writeable
            with pytest.raises(og.BorrowError):
                t += 1.0  # the block holds a shared borrow
            raise exc()
    assert t._storage.ledger.live() == []
    t += 1.0  # free again
    np.testing.assert_array_equal(t.numpy(), np.arange(6.0).reshape(2, 3) + 1)


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_error_inside_borrow_mut_block(exc: type[BaseException]) -> None:
    g = og.Graph()
    t = g.param(np.zeros((2, 3)), name="t")
    keep: list[Any] = []
    with pytest.raises(exc):
        with t.borrow_mut() as a:
            keep.append(a)
            a[0] = 7.0
            with pytest.raises(og.BorrowError):
                with t.borrow():
                    pass
            raise exc()
    assert t._storage.ledger.live() == []
    assert not keep[0].flags.writeable, "the array handed out by borrow_mut is still writable after the block"
    with pytest.raises(ValueError):
        keep[0][1] = 1.0
    with t.borrow() as r:  # readable again
        np.testing.assert_array_equal(r, [[7.0] * 3, [0.0] * 3])
    loss = (t * t).sum()
    np.testing.assert_array_equal(g.backward(loss)[t].numpy(), 2 * t.numpy())


def test_error_in_nested_borrow_blocks_releases_both() -> None:
    g = og.Graph()
    t = g.param(np.zeros((4, 3)), name="t")
    with pytest.raises(og.BorrowError):
        with t[0:2].borrow_mut():
            with t[2:4].borrow_mut():
                with t[2:4].borrow():  # conflicts with the block around it: BorrowError inside
                    pass
    assert t._storage.ledger.live() == []
    with pytest.raises(Boom):
        with t[0:2].borrow_mut(), t[2:4].borrow():
            raise Boom
    assert t._storage.ledger.live() == []


def test_failed_borrow_acquire_takes_nothing() -> None:
    g = og.Graph()
    t = g.param(np.zeros((4, 3)), name="t")
    with t[0:2].borrow_mut():
        before = live(t)
        for _ in range(3):
            with pytest.raises(og.BorrowError):
                with t.borrow():
                    pass
        assert live(t) == before
    assert live(t) == [[]]


def test_error_inside_no_grad_restores_recording() -> None:
    g = og.Graph()
    w = g.param(np.ones(3))
    with pytest.raises(Boom):
        with g.no_grad():
            raise Boom
    y = w * 2.0
    assert y.requires_grad and g.pending()


def test_error_inside_graph_context_clears() -> None:
    with pytest.raises(Boom):
        with og.Graph() as g:
            w = g.param(np.ones(3), name="w")
            y = w.exp()
            assert w._storage.ledger.live() == [] and y._storage.ledger.live()
            raise Boom
    assert g.pending() == []
    assert y._storage.ledger.live() == []


# --- in-place writes that fail half-way -------------------------------------------------------------

def test_failed_recorded_inplace_changes_nothing() -> None:
    g = og.Graph()
    w = g.param(np.ones((3, 2)), name="w")
    y = w * 2.0
    z = y.exp()  # saves its output z, not y: y is writable
    pending = [n.id for n in g.pending()]
    data = y.numpy()
    for bad in (np.ones(5), "a", g.param(np.ones(3))):
        with pytest.raises((og.ShapeError, TypeError)):
            y += bad
    assert [n.id for n in g.pending()] == pending
    np.testing.assert_array_equal(y.numpy(), data)
    y[0] = 0.0  # still works, and is recorded
    gr = g.backward((y * z).sum())
    # through y (row 0 overwritten): 2 * z; through z = exp(2w): 2 * z * y_new = 4 * z on rows 1, 2
    expected = 6.0 * np.exp(2.0) * np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(gr[w].numpy(), expected, rtol=1e-12)


# --- Grads: into= and clip_norm_ are all-or-nothing -------------------------------------------------

@pytest.mark.parametrize("blocked", ["w1", "w2", "b"])
def test_backward_into_with_a_borrowed_gradient_is_all_or_nothing(blocked: str) -> None:
    g, w1, w2, b, x, loss = setup()
    acc = g.backward((x @ w1).sum() + (w2 * 1.0).sum() + (b * 1.0).sum())
    before = {p.name: gt.numpy() for p, gt in acc.items()}
    target = {p.name: p for p in (w1, w2, b)}[blocked]
    pending = [n.id for n in g.pending()]
    borrows = live(w1, w2, b, x)
    with acc[target].borrow():
        with pytest.raises(og.BorrowError):
            g.backward(loss, into=acc)
    for p, gt in acc.items():
        np.testing.assert_array_equal(gt.numpy(), before[p.name],
                                      err_msg=f"into= was half-applied: {p.name} changed while {blocked} was borrowed")
    assert [n.id for n in g.pending()] == pending, "a failed backward consumed its nodes"
    assert live(w1, w2, b, x) == borrows
    g.backward(loss, into=acc)
    ref = reference_grads()
    for p, gt in acc.items():
        np.testing.assert_allclose(gt.numpy(), before[p.name] + ref[p.name], rtol=1e-12)


@pytest.mark.parametrize("blocked", ["w1", "w2", "b"])
def test_clip_norm_with_a_borrowed_gradient_is_all_or_nothing(blocked: str) -> None:
    g, w1, w2, b, x, loss = setup()
    gr = g.backward(loss)
    before = {p.name: gt.numpy() for p, gt in gr.items()}
    target = {p.name: p for p in (w1, w2, b)}[blocked]
    with gr[target].borrow():
        with pytest.raises(og.BorrowError):
            gr.clip_norm_(1e-3)
    for p, gt in gr.items():
        np.testing.assert_array_equal(gt.numpy(), before[p.name],
                                      err_msg=f"clip_norm_ was half-applied: {p.name} scaled while {blocked} "
                                              "was borrowed")
    norm = gr.clip_norm_(1e-3)
    assert norm == pytest.approx(np.sqrt(sum((a ** 2).sum() for a in before.values())))


# --- optimizers ---------------------------------------------------------------------------------------

OPTIMS: list[tuple[str, dict[str, Any]]] = [("SGD", {"lr": 0.1}), ("SGD", {"lr": 0.1, "momentum": 0.9}),
                                            ("Adam", {"lr": 0.01}), ("AdamW", {"lr": 0.01}),
                                            ("RMSprop", {"momentum": 0.5, "centered": True}), ("Adadelta", {}),
                                            ("Adagrad", {}), ("Adamax", {}), ("NAdam", {}), ("RAdam", {})]


def _opt_state(opt: Any) -> list[dict[str, Any]]:
    return [{k: (np.array(v, copy=True) if hasattr(v, "shape") else v) for k, v in st.items()}
            for st in opt.state_dict()["state"]]


def _assert_state_equal(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b)
    for da, db in zip(a, b):
        assert da.keys() == db.keys()
        for k in da:
            np.testing.assert_array_equal(da[k], db[k])


def _optim_setup(name: str, kw: dict[str, Any]) -> tuple[og.Graph, list[og.Tensor], Any, og.Tensor]:
    if not hasattr(og, "optim"):
        pytest.skip("og.optim does not exist (yet)")
    g, w1, w2, b, x, loss = setup()
    params = [w1, w2, b]
    opt = getattr(og.optim, name)(params, **kw)
    opt.step(g.backward(loss))  # a first step, so the state (momentum, moments) is not empty
    return g, params, opt, x


@pytest.mark.parametrize("name,kw", OPTIMS, ids=[f"{n}-{'-'.join(k)}" for n, k in OPTIMS])
def test_optimizer_step_borrow_error_on_third_param(name: str, kw: dict[str, Any]) -> None:
    g, params, opt, x = _optim_setup(name, kw)
    w1, w2, b = params
    loss = ((x @ w1).tanh() @ w2 + b).sigmoid().sum()
    grads = g.backward(loss)
    data = [p.numpy() for p in params]
    state = _opt_state(opt)
    blocker = b * b  # a pending node saved b: the step must fail at b, the third param
    counts = [len(p._storage.ledger) for p in params]
    with pytest.raises(og.BorrowError) as info:
        opt.step(grads)
    assert "b" in str(info.value) and "saved for backward" in str(info.value)
    for p, d in zip(params, data):
        np.testing.assert_array_equal(p.numpy(), d, err_msg=f"{p.name} was updated by a refused step")
    _assert_state_equal(_opt_state(opt), state)
    assert [len(p._storage.ledger) for p in params] == counts, "the refused step leaked a borrow"
    g.free(blocker)
    opt.step(grads)  # works now, and changes every param
    assert all(not np.array_equal(p.numpy(), d) for p, d in zip(params, data))
    assert all(len(p._storage.ledger) == 0 for p in params)


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("name,kw", OPTIMS, ids=[f"{n}-{'-'.join(k)}" for n, k in OPTIMS])
def test_optimizer_step_interrupted_mid_update(name: str, kw: dict[str, Any], exc: type[BaseException],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An error while the third param is being updated (after the first two were written) must
    not leave a half-applied step: every param and the optimizer state as before, no borrow held."""
    g, params, opt, x = _optim_setup(name, kw)
    w1, w2, b = params
    grads = g.backward(((x @ w1).tanh() @ w2 + b).sigmoid().sum())
    data = [p.numpy() for p in params]
    state = _opt_state(opt)
    real = type(opt).update
    calls = {"n": 0}

    def update(self: Any, p: Any, grad: Any, st: dict[str, Any], group: dict[str, Any]) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise exc()
        return real(self, p, grad, st, group)

    monkeypatch.setattr(type(opt), "update", update)
    with pytest.raises(exc):
        opt.step(grads)
    monkeypatch.setattr(type(opt), "update", real)
    assert all(len(p._storage.ledger) == 0 for p in params), "the interrupted step leaked a borrow"
    for p, d in zip(params, data):
        np.testing.assert_array_equal(p.numpy(), d, err_msg=f"half-applied step: {p.name} was updated")
    _assert_state_equal(_opt_state(opt), state)
    opt.step(grads)
    assert all(not np.array_equal(p.numpy(), d) for p, d in zip(params, data))


def test_load_state_dict_refused_changes_nothing() -> None:
    if not hasattr(og, "nn") or not hasattr(og.nn, "MLP"):
        pytest.skip("og.nn.MLP does not exist (yet)")
    g = og.Graph()
    model = og.nn.MLP(g, [3, 4, 2], rng=0)
    named = dict(model.named_parameters())
    before = {k: p.numpy() for k, p in named.items()}
    new = {k: v + 1.0 for k, v in before.items()}
    last = list(named)[-1]
    blocker = named[last] * named[last]  # a pending node saved the last param
    with pytest.raises(og.BorrowError):
        model.load_state_dict(new)
    for k, p in named.items():
        np.testing.assert_array_equal(p.numpy(), before[k], err_msg=f"load_state_dict half-applied: {k} changed")
    g.free(blocker)
    model.load_state_dict(new)
    for k, p in named.items():
        np.testing.assert_array_equal(p.numpy(), new[k])


def test_fit_interrupted_leaves_no_pending_nodes() -> None:
    if not (hasattr(og, "fit") and hasattr(og, "optim") and hasattr(og, "data")):
        pytest.skip("the training layer does not exist (yet)")
    g = og.Graph()
    model = og.nn.MLP(g, [3, 4, 2], rng=0)
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    xs = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    ys = np.array([0, 1] * 4)
    calls = {"n": 0}

    def loss_fn(out: og.Tensor, y: og.Tensor) -> og.Tensor:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return og.nn.functional.cross_entropy(out, y)

    with pytest.raises(KeyboardInterrupt):  # eager: loss_fn runs at every batch
        og.fit(model, og.data.batches(xs, ys, 2), loss_fn, opt, epochs=1, progress=False, capture=False)
    assert g.pending() == [], "an interrupted fit left the batch's forward pending (it holds borrows on the weights)"
    calls["n"] = 2
    with pytest.raises(KeyboardInterrupt):  # captured: the interrupt comes while the first batch is captured
        og.fit(model, og.data.batches(xs, ys, 2), loss_fn, opt, epochs=1, progress=False)
    assert g.pending() == []
    assert all(len(p._storage.ledger) == 0 for p in model.parameters())
    hist = og.fit(model, og.data.batches(xs, ys, 2), og.nn.functional.cross_entropy, opt, epochs=1, progress=False)
    assert np.isfinite(hist["loss"][0])


def test_an_interrupt_while_saving_leaks_no_borrow(monkeypatch: pytest.MonkeyPatch) -> None:
    g = og.Graph()
    w = g.param(np.ones(3), name="w")
    c = np.ones(3)

    class Boom(np.ndarray):
        def copy(self, order: str = "C") -> np.ndarray:  # called when the node saves this operand
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        w ** c.view(Boom)  # pow saves w (a borrow) and the exponent (a copy, which is interrupted)
    assert w._storage.ledger.live() == [] and g.pending() == []
    with g.no_grad():
        w -= 1.0  # nothing holds w
