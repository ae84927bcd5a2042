"""Higher-order gradients: g.grad, backward(create_graph=True), and the borrow rules between backwards.

The second-order checks are driven from the op table (tests/op_cases.py) like the first-order ones:

* every case, float64: the gradient of ``S = sum_i <grad_i, w_i>`` (the first gradients weighted by random
  ``w``) by double backward against central differences of ``S`` computed from first-order gradients;
* every case torch has: the same double backward against ``torch.autograd.grad(create_graph=True)``;
* every rule of the op table has a differentiable vjp (``EXTRA`` records each rule; each row is checked).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import owngrad as og
from gradcheck import check_grad_grads, evaluate, second_order
from op_cases import CASES, EXTRA, EXTRA_IDS, NOT_HERE, Case
from owngrad.dvjps import DVJPS
from owngrad.rules import RULES

# float32 cases (a cast) check second order in float64 only through their float64 part: the same tolerances
SECOND = [c for c in CASES if c.eps <= 1e-4]


# --- 1. second order against finite differences ---------------------------------------------------

@pytest.mark.parametrize("case", SECOND, ids=[c.name for c in SECOND])
def test_second_order_example(case: Case) -> None:
    shapes, kw = case.example
    check_grad_grads(case.call(kw), *case.arrays(shapes, kw, 1), eps=case.eps, rtol=case.rtol, atol=case.atol, rng=1)


@pytest.mark.parametrize("case", SECOND, ids=[c.name for c in SECOND])
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_second_order(case: Case, data: Any) -> None:
    shapes, kw = data.draw(case.shapes, label="shapes, attrs")
    seed = data.draw(st.integers(0, 2**16), label="values seed")
    check_grad_grads(case.call(kw), *case.arrays(shapes, kw, seed), eps=case.eps, rtol=case.rtol, atol=case.atol,
                     rng=seed)


@pytest.mark.parametrize("row", EXTRA, ids=EXTRA_IDS)
def test_second_order_every_rule(row: Any) -> None:
    _, fn, arrays = row
    check_grad_grads(fn, *[a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays])


def test_every_rule_has_a_differentiable_vjp() -> None:
    import owngrad.nn.functional  # noqa: F401 - registers its rules and their differentiable vjps

    missing = sorted(set(RULES) - set(DVJPS) - set(NOT_HERE))
    assert not missing, f"rules without a differentiable vjp: {missing}"
    for name, fns in DVJPS.items():
        rule = RULES.get(name)
        if rule is not None and not rule.variadic:
            assert len(fns) == len(rule.vjps), f"{name}: one differentiable vjp per input"
            for f, v in zip(fns, rule.vjps):
                assert (f is None) == (v is None), f"{name}: a gradient for the same inputs as the rule"


def test_second_order_check_catches_a_wrong_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker can fail: a differentiable vjp with the right first order but a wrong second order."""
    monkeypatch.setitem(DVJPS, "tanh", (lambda g, ans, x: g * (1.0 - ans._data * ans._data),))  # ans as a constant
    with pytest.raises(AssertionError, match="second-order mismatch"):
        check_grad_grads(lambda x: x.tanh(), np.linspace(-1, 1, 5))


def test_rule_without_differentiable_vjp_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(DVJPS, "tanh")
    g = og.Graph()
    x = g.param(np.linspace(-1, 1, 5), name="x")
    y = (x.tanh() * x).sum()
    before = g.pending()
    with pytest.raises(og.GradError, match="'tanh'.*no differentiable vjp"):
        g.grad(y, x, create_graph=True)
    assert g.pending() == before  # nothing recorded, nothing consumed
    np.testing.assert_allclose(g.grad(y, x).numpy(), np.tanh(x.numpy()) + x.numpy() / np.cosh(x.numpy()) ** 2)


# --- 2. against torch's double backward --------------------------------------------------------------

TORCH = [c for c in SECOND if c.tfn is not None]


@pytest.mark.parametrize("case", TORCH, ids=[c.name for c in TORCH])
@settings(max_examples=2, deadline=None)
@given(data=st.data())
def test_double_backward_matches_torch(case: Case, data: Any) -> None:
    torch = pytest.importorskip("torch")
    shapes, kw = data.draw(case.shapes, label="shapes, attrs")
    seed = data.draw(st.integers(0, 2**16), label="values seed")
    arrays = case.arrays(shapes, kw, seed)
    r = np.random.default_rng(seed)
    fn = case.call(kw)
    out_shape = evaluate(fn, *arrays).shape
    v = r.standard_normal(out_shape)
    idx = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    ws = [r.standard_normal(arrays[i].shape) for i in idx]
    _, firsts, seconds = second_order(fn, *arrays, v=v, ws=ws)
    tin = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    assert case.tfn is not None
    tout = case.tfn(*tin, **kw)
    floats = [tin[i] for i in idx]
    if tout.numel() == 0:
        return
    tg = torch.autograd.grad(tout, floats, torch.as_tensor(v), create_graph=True, allow_unused=True)
    terms = [(gi * torch.as_tensor(w)).sum() for gi, w in zip(tg, ws) if gi is not None and gi.requires_grad]
    th: list[Any] = [None] * len(floats)
    if terms:
        th = list(torch.autograd.grad(sum(terms), floats, allow_unused=True))
    for i, (mine, theirs) in enumerate(zip(seconds, th)):
        expect = np.zeros_like(mine) if theirs is None else theirs.numpy(force=True)
        np.testing.assert_allclose(mine, expect, rtol=1e-10, atol=1e-10,
                                   err_msg=f"{case.name}: second derivative of input {i} differs from torch")
    for i, (mine, theirs) in enumerate(zip(firsts, tg)):
        expect = np.zeros_like(mine) if theirs is None else theirs.detach().numpy(force=True)
        np.testing.assert_allclose(mine, expect, rtol=1e-10, atol=1e-10,
                                   err_msg=f"{case.name}: gradient of input {i} differs from torch")


# --- 3. the API -----------------------------------------------------------------------------------------

def test_backward_create_graph_gives_read_only_gradients_with_history() -> None:
    g = og.Graph()
    w = g.param(np.array([0.5, -1.0, 2.0]), name="w")
    grads = g.backward((w * w * w).sum(), create_graph=True)
    gw = grads[w]
    np.testing.assert_allclose(gw.numpy(), 3 * w.numpy() ** 2)
    assert gw.requires_grad
    with pytest.raises(og.BorrowError, match="read-only"):
        gw += 1.0
    second = g.backward(gw.sum())
    np.testing.assert_allclose(second[w].numpy(), 6 * w.numpy())
    assert g.pending() == []


def test_third_order_of_a_power() -> None:
    g = og.Graph()
    x = g.param(np.array([0.5, -1.5]), name="x")
    d1 = g.grad((x ** 4).sum(), x, create_graph=True)
    d2 = g.grad(d1.sum(), x, create_graph=True)
    d3 = g.grad(d2.sum(), x)
    np.testing.assert_allclose(d2.numpy(), 12 * x.numpy() ** 2)
    np.testing.assert_allclose(d3.numpy(), 24 * x.numpy())
    assert g.pending() == []


def test_grad_of_intermediate_and_several_inputs() -> None:
    g = og.Graph()
    x = g.param(np.array([1.0, 2.0]), name="x")
    h = x * 3.0
    y = (h * h).sum()
    gh, gx = g.grad(y, [h, x])
    np.testing.assert_allclose(gh.numpy(), 2 * h.numpy())
    np.testing.assert_allclose(gx.numpy(), 18 * x.numpy())
    assert isinstance(g.grad((x * x).sum(), x), og.Tensor)  # one input: one tensor


def test_grad_refuses_unused_and_constant_inputs() -> None:
    g = og.Graph()
    x = g.param(np.ones(2), name="x")
    z = g.param(np.ones(2), name="z")
    c = g.constant(np.ones(2), name="c")
    y = (x * c).sum()
    with pytest.raises(og.GradError, match="do not depend on the input z"):
        g.grad(y, [x, z])  # refused before the walk: nothing consumed
    for create_graph in (False, True):
        with pytest.raises(og.GradError, match="do not depend on the input z"):
            g.grad(y, z, create_graph=create_graph)
    assert all(n.walkable for n in g.pending())
    with pytest.raises(og.GradError, match="c has no gradient history"):
        g.grad(y, c, retain=True)
    gx, gz = g.grad(y, [x, z], allow_unused=True)
    assert gz is None
    np.testing.assert_allclose(gx.numpy(), 1.0)


def test_several_outputs_with_grad_outputs_and_on_grad() -> None:
    g = og.Graph()
    x = g.param(np.array([0.3, 0.7]), name="x")
    a, b = x.sin(), (x * x).sum()
    gx = g.grad([a, b], x, grad_outputs=[np.array([1.0, 2.0]), None], create_graph=True)
    np.testing.assert_allclose(gx.numpy(), np.cos(x.numpy()) * [1.0, 2.0] + 2 * x.numpy())
    np.testing.assert_allclose(g.grad(gx.sum(), x).numpy(), -np.sin(x.numpy()) * [1.0, 2.0] + 2.0)
    seen: list[tuple[str, bool]] = []
    grads = g.backward((x ** 3).sum(), create_graph=True,
                       on_grad=lambda leaf, gr: seen.append((leaf.name or "", gr.requires_grad)))
    assert seen == [("x", True)]
    np.testing.assert_allclose(grads[x].numpy(), 3 * x.numpy() ** 2)


@pytest.mark.parametrize("create_graph", [False, True])
def test_a_seed_reaching_an_input_unchanged_is_copied(create_graph: bool) -> None:
    g = og.Graph()
    x = g.param(np.array([1.0, 2.0]), name="x")
    v = g.constant(np.array([3.0, 4.0]), name="v")
    gx = g.grad(x, x, grad_outputs=v, create_graph=create_graph)
    v += 1.0  # the user's seed changes; the gradient does not
    np.testing.assert_array_equal(gx.numpy(), [3.0, 4.0])


def test_grad_outputs_with_history_are_differentiated() -> None:
    """The double-backward trick: a seed that carries history (as torch's grad_outputs)."""
    g = og.Graph()
    x = g.param(np.array([0.3, 0.7]), name="x")
    u = g.param(np.array([1.0, 2.0]), name="u")
    y = x.sin()
    vjp = g.grad(y, x, grad_outputs=u, create_graph=True)  # u * cos(x)
    gu = g.grad(vjp.sum(), u)
    np.testing.assert_allclose(gu.numpy(), np.cos(x.numpy()))


def test_create_graph_records_even_under_no_grad() -> None:
    g = og.Graph()
    x = g.param(np.array([1.0, 2.0]), name="x")
    y = (x * x * x).sum()
    with g.no_grad():
        d = g.grad(y, x, create_graph=True, retain=True)
        d1, d2 = g.grad(y, [x, x], create_graph=True)  # the second is a copy: recorded too
    assert d.requires_grad and d1.requires_grad and d2.requires_grad
    np.testing.assert_allclose(g.grad(d2.sum(), x, retain=True).numpy(), 6 * x.numpy())
    np.testing.assert_allclose(g.grad(d.sum(), x).numpy(), 6 * x.numpy())


def test_into_and_captured_steps_refuse_create_graph() -> None:
    g = og.Graph()
    w = g.param(np.ones(2), name="w")
    grads = g.backward((w * w).sum(), retain=True)
    with pytest.raises(og.GraphError, match="into= cannot accumulate gradients that carry history"):
        g.backward((w * w).sum(), create_graph=True, into=grads)

    def step(x: Any) -> Any:
        return g.grad((w * x).sum(), w, create_graph=True)

    with pytest.raises(og.GraphError, match="create_graph=True"):
        g.capture(step)(np.ones(2))

    def plain(x: Any) -> Any:
        return g.grad((w * x).sum(), w)

    with pytest.raises(og.GraphError, match="g.grad"):  # its arrays would not be replayed: refused, never stale
        g.capture(plain)(np.ones(2))


# --- 4. borrows and consumption between the first and the second backward -------------------------------

def test_write_between_first_and_second_backward_is_refused_at_the_write() -> None:
    g = og.Graph()
    w = g.param(np.array([0.5, 1.5]), name="w")
    x = g.constant(np.array([2.0, -1.0]), name="x")
    loss = (w.sin() * x).sum()
    gw = g.backward(loss, create_graph=True)[w]  # x * cos(w): its cos node saved w
    penalty = (gw * gw).sum()
    with pytest.raises(og.BorrowError, match=r"cannot write w .*\n.*w is borrowed \(shared\) by node #\d+ (sin|cos)"):
        with g.no_grad():
            w -= 0.1
    np.testing.assert_allclose(w.numpy(), [0.5, 1.5])  # nothing changed
    grads = g.backward(penalty)
    assert g.pending() == []  # the second backward consumed the first backward's graph too
    np.testing.assert_allclose(grads[w].numpy(), -2 * x.numpy() ** 2 * np.cos(w.numpy()) * np.sin(w.numpy()))
    with g.no_grad():
        w -= 0.1 * grads[w]  # now the write is allowed


def test_second_order_nodes_save_the_gradient_under_shared_borrows() -> None:
    g = og.Graph()
    w = g.param(np.array([1.0, 2.0]), name="w")
    grads = g.backward((w * w * w).sum(), create_graph=True)
    kept = (grads[w] * grads[w]).sum()  # mul saves the gradient (both operands); a live result keeps it
    with pytest.raises(og.BorrowError, match="borrowed \\(shared\\) by node"):
        grads.clip_norm_(1e-3)  # an in-place scale of a saved gradient
    g.backward(kept)


def test_loss_reading_output_and_gradient_consumes_everything() -> None:
    """The physics-informed pattern: y and dy/dx both in the loss; one backward consumes both graphs."""
    g = og.Graph()
    w = g.param(np.array([[0.5], [-0.3]]), name="w")
    x = g.param(np.array([[0.1, 0.4], [0.2, -0.7]]), name="x")
    y = (x @ w).relu() + (x @ w).tanh()
    dy = g.grad(y.sum(), x, create_graph=True)
    loss = (dy * dy).sum() + (y * y).sum()
    grads = g.backward(loss)
    assert g.pending() == []
    torch = pytest.importorskip("torch")
    wt = torch.tensor([[0.5], [-0.3]], dtype=torch.float64, requires_grad=True)
    xt = torch.tensor([[0.1, 0.4], [0.2, -0.7]], dtype=torch.float64, requires_grad=True)
    yt = (xt @ wt).relu() + (xt @ wt).tanh()
    (dyt,) = torch.autograd.grad(yt.sum(), xt, create_graph=True)
    gwt, gxt = torch.autograd.grad((dyt * dyt).sum() + (yt * yt).sum(), [wt, xt])
    np.testing.assert_allclose(grads[w].numpy(), gwt.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads[x].numpy(), gxt.numpy(), rtol=1e-12)


def test_gradients_left_unused_are_consumed_with_the_walk() -> None:
    """A penalty on one param's gradient: the others' recorded vjps (which saved the params) go with it,
    so the optimizer step that follows is not refused."""
    g = og.Graph()
    w1 = g.param(np.array([[0.5, -0.2], [0.1, 0.3]]), name="w1")
    w2 = g.param(np.array([0.7, -0.4]), name="w2")
    x = g.constant(np.array([[1.0, 2.0], [-1.0, 0.5]]), name="x")
    grads = g.backward(((x @ w1).tanh() @ w2).sum(), create_graph=True)
    penalty = (grads[w1] * grads[w1]).sum()  # grads[w2] (tanh's output, saved) is never used
    second = g.backward(penalty)
    assert g.pending() == []
    opt = og.optim.SGD([w1, w2], lr=0.1)
    opt.step(second)  # exclusive borrows on both params: nothing holds them any more
    with pytest.raises(og.GraphError, match="already consumed"):
        g.backward(grads[w2].sum())  # its nodes went with the walk


def test_retain_keeps_the_first_graph_and_a_consumed_one_is_refused() -> None:
    g = og.Graph()
    x = g.param(np.array([0.2, 0.9]), name="x")
    y = x.exp().sum()
    d = g.grad(y, x, create_graph=True)
    s = d.sum()
    g.grad(s, x, retain=True)
    assert g.pending()  # retained
    g.grad(s, x)  # consumes both graphs
    assert g.pending() == []
    with pytest.raises(og.GraphError, match="already consumed"):
        g.grad(y, x)


def test_linear_function_gradient_without_history_consumes_at_once() -> None:
    g = og.Graph()
    w = g.param(np.ones(3), name="w")
    c = g.constant(np.arange(3.0), name="c")
    d = g.grad((w * c).sum(), w, create_graph=True)
    assert not d.requires_grad and g.pending() == []
    with g.no_grad():
        c += 1.0  # nothing holds c any more


# --- 5. og.functional ----------------------------------------------------------------------------------

A = np.random.default_rng(3).standard_normal((4, 4))
X0 = np.array([0.3, -1.2, 2.0, 0.5])


def _f(x: og.Tensor) -> og.Tensor:
    return ((x @ A).tanh() * x).sum() + x.exp().sum()


def _tf(x: Any) -> Any:
    import torch

    return ((x @ torch.tensor(A)).tanh() * x).sum() + x.exp().sum()


def test_functional_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    from torch.autograd import functional as TF

    g = og.Graph()
    x = g.constant(X0, name="x")
    v = np.array([1.0, -2.0, 0.5, 3.0])
    np.testing.assert_allclose(og.functional.hessian(_f, x).numpy(), TF.hessian(_tf, torch.tensor(X0)).numpy(),
                               rtol=1e-10, atol=1e-12)
    value, hv = og.functional.hvp(_f, x, v)
    tv, thv = TF.hvp(_tf, torch.tensor(X0), torch.tensor(v))
    np.testing.assert_allclose(value.numpy(), tv.numpy(), rtol=1e-12)
    np.testing.assert_allclose(hv.numpy(), thv.numpy(), rtol=1e-10, atol=1e-12)
    jac = og.functional.jacobian(lambda t: (t @ A).tanh(), x)
    np.testing.assert_allclose(jac.numpy(), TF.jacobian(lambda t: (t @ torch.tensor(A)).tanh(),
                                                        torch.tensor(X0)).numpy(), rtol=1e-10, atol=1e-12)
    assert g.pending() == []


def test_hvp_of_several_inputs_matches_torch() -> None:
    """The use on a network: the Hessian of the loss in its params, times one vector per param."""
    torch = pytest.importorskip("torch")
    from torch.autograd import functional as TF

    r = np.random.default_rng(2)
    w1, b1, w2 = r.standard_normal((3, 4)), r.standard_normal(4), r.standard_normal((4, 2))
    xd = r.standard_normal((5, 3))
    vs = [r.standard_normal(a.shape) for a in (w1, b1, w2)]
    g = og.Graph()
    x = g.constant(xd)

    def loss(w1: og.Tensor, b1: og.Tensor, w2: og.Tensor) -> og.Tensor:
        return og.nn.functional.cross_entropy((x @ w1 + b1).tanh() @ w2, np.array([0, 1, 1, 0, 1]))

    def tloss(w1: Any, b1: Any, w2: Any) -> Any:
        return torch.nn.functional.cross_entropy((torch.tensor(xd) @ w1 + b1).tanh() @ w2,
                                                 torch.tensor([0, 1, 1, 0, 1]))

    value, hvs = og.functional.hvp(loss, [g.constant(a) for a in (w1, b1, w2)], vs)
    tv, thv = TF.hvp(tloss, tuple(torch.tensor(a) for a in (w1, b1, w2)), tuple(torch.tensor(a) for a in vs))
    np.testing.assert_allclose(value.numpy(), tv.numpy(), rtol=1e-12)
    for mine, theirs in zip(hvs, thv):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-9, atol=1e-12)
    assert g.pending() == []


def test_functional_of_a_linear_function_is_zero() -> None:
    g = og.Graph()
    x = g.constant(X0)
    np.testing.assert_array_equal(og.functional.hessian(lambda t: (t * 2.0).sum(), x).numpy(), np.zeros((4, 4)))
    np.testing.assert_array_equal(og.functional.hvp(lambda t: (t * 2.0).sum(), x, X0)[1].numpy(), np.zeros(4))
    np.testing.assert_array_equal(og.functional.jacobian(lambda t: t * 2.0, x).numpy(), 2 * np.eye(4))


# --- 6. training-layer paths (composed of the rules above) against torch -----------------------------

def test_norm_conv_pool_embedding_paths_match_torch() -> None:
    """A gradient penalty (the squared norm of the input gradient) through LayerNorm, BatchNorm1d (training),
    Conv2d + MaxPool2d and Embedding, differentiated for the weights, against torch."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    r = np.random.default_rng(5)
    x0 = r.standard_normal((3, 2, 5, 5))
    e0 = r.standard_normal((6, 4))
    g = og.Graph()
    conv = og.nn.Conv2d(g, 2, 3, 3, padding=1, rng=0, dtype=np.float64)
    ln = og.nn.LayerNorm(g, 12, dtype=np.float64)
    bn = og.nn.BatchNorm1d(g, 12, dtype=np.float64)
    emb = g.param(e0, name="emb")
    x = g.param(x0, name="x")
    idx = np.array([[0, 5, 5, 2, 1, 0, 3, 3, 4, 1, 2, 0]] * 3)

    def f(x: og.Tensor) -> og.Tensor:
        h = og.nn.functional.max_pool2d(conv(x).tanh(), 2).reshape(3, 12)
        h = bn(ln(h)) * og.nn.functional.embedding(emb, idx).sum(axis=-1)
        return (h.tanh() ** 2).sum()

    dx = g.grad(f(x), x, create_graph=True)
    params = [conv.weight, conv.bias, ln.weight, ln.bias, bn.weight, bn.bias, emb]
    mine = g.grad((dx * dx).sum(), params)
    assert g.pending() == []

    tw = [torch.tensor(p.numpy(), requires_grad=True) for p in params]
    tx = torch.tensor(x0, requires_grad=True)

    def tf(x: Any) -> Any:
        h = TF.max_pool2d(TF.conv2d(x, tw[0], tw[1], padding=1).tanh(), 2).reshape(3, 12)
        h = TF.layer_norm(h, (12,), tw[2], tw[3])
        h = TF.batch_norm(h, None, None, tw[4], tw[5], training=True)
        h = h * TF.embedding(torch.as_tensor(idx), tw[6]).sum(-1)
        return (h.tanh() ** 2).sum()

    (tdx,) = torch.autograd.grad(tf(tx), tx, create_graph=True)
    theirs = torch.autograd.grad((tdx * tdx).sum(), tw)
    np.testing.assert_allclose(dx.numpy(), tdx.detach().numpy(), rtol=1e-9, atol=1e-12)
    for p, a, b in zip(params, mine, theirs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-8, atol=1e-11, err_msg=p.name or "")


def test_dropout_second_order_uses_the_same_mask() -> None:
    g = og.Graph()
    x = g.param(np.linspace(0.5, 2.0, 8), name="x")
    y = og.nn.functional.dropout(x, 0.5, rng=3)
    mask = y.numpy() / x.numpy()
    d = g.grad((y ** 3).sum(), x, create_graph=True)
    np.testing.assert_allclose(d.numpy(), 3 * mask ** 3 * x.numpy() ** 2)
    np.testing.assert_allclose(g.grad(d.sum(), x).numpy(), 6 * mask ** 3 * x.numpy())


# --- 7. third order: the rules a create_graph walk itself records are differentiable too ----------------

def _gradient_of(f: Any) -> Any:
    """``x -> the gradients of f at x``, flattened into one tensor with history (a function whose own
    second derivative is f's third)."""
    def fn(*xs: og.Tensor) -> og.Tensor:
        g = xs[0].graph
        ps = [x if x.requires_grad else g.param(x.numpy()) for x in xs]
        grads = g.grad(f(*ps), ps, create_graph=True)
        return og.concatenate([t.reshape(-1) for t in grads])
    return fn


_R3 = np.random.default_rng(11)
THIRD = [
    ("tanh_sigmoid_matmul", lambda x, y: ((x @ y).tanh().sigmoid() * (x.T @ x).sum()).sum(),
     [_R3.uniform(-1, 1, (3, 2)), _R3.uniform(-1, 1, (2, 4))]),
    ("batched_matmul_views", lambda x, y: ((x @ y)[:, ::-1].exp() * x.sum()).sum(),
     [_R3.uniform(-1, 1, (2, 3, 2)), _R3.uniform(-1, 1, (2, 3))]),
    ("cross_entropy_rdiv", lambda x: og.nn.functional.cross_entropy(x / (x * x + 1.0).sum(), np.array([1, 0, 2]))
     + (1.0 / (x * x + 1.0)).sum(), [_R3.uniform(-1, 1, (3, 4))]),
    ("cross_entropy_sum_none_1d", lambda x: og.nn.functional.cross_entropy(x * x, np.array([1, 0, 2]), reduction="sum")
     + (og.nn.functional.cross_entropy(x.tanh(), np.array([3, 3, 0]), reduction="none") ** 2).sum()
     + og.nn.functional.cross_entropy(x[1] * x[0], np.array(2)), [_R3.uniform(-1, 1, (3, 4))]),
    ("conv_pools_gelu", lambda x, w: (og.nn.functional.avg_pool2d(og.nn.functional.max_pool2d(
        og.nn.functional.gelu(og.nn.functional.conv2d(x, w, padding=1)), 2), 1) ** 3).sum(),
     [_R3.uniform(-1, 1, (1, 2, 4, 4)), _R3.uniform(-1, 1, (2, 2, 3, 3))]),
    ("gather_scatter_write", lambda x: _write_rows(x), [_R3.uniform(-1, 1, (3, 3))]),
]


def _write_rows(x: og.Tensor) -> og.Tensor:
    y = x * x
    y[[0, 2]] = x[1:3] ** 3
    y[:, 1] = y[:, 0] * x[:, 2]
    return (y ** 2).sum()


@pytest.mark.parametrize("row", THIRD, ids=[r[0] for r in THIRD])
def test_third_order(row: Any) -> None:
    _, f, arrays = row
    check_grad_grads(_gradient_of(f), *arrays)


def test_functional_refuses_bad_input() -> None:
    g = og.Graph()
    x = g.constant(X0)
    with pytest.raises(TypeError, match="x must be a Tensor"):
        og.functional.hvp(_f, X0, X0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating dtype"):
        og.functional.jacobian(_f, g.constant(np.arange(3)))
    with pytest.raises(ValueError, match="one element"):
        og.functional.hessian(lambda t: t * 2.0, x)
    assert g.pending() == []


# --- 8. the create_graph walk on a second array backend (no hard-coded numpy on device data) ------------

def _float_gradient_of(f: Any) -> Any:
    """Like :func:`_gradient_of`, for functions with integer inputs too (labels: no gradient)."""
    def fn(*xs: og.Tensor) -> og.Tensor:
        floats = [x for x in xs if x.dtype.kind == "f"]
        out = f(*xs)
        grads = xs[0].graph.grad((out * out).sum(), floats, create_graph=True, allow_unused=True)
        return og.concatenate([t.reshape(-1) for t in grads if t is not None] + [out.reshape(-1)])
    return fn


@pytest.mark.parametrize("row", EXTRA, ids=EXTRA_IDS)
def test_second_order_on_a_second_backend(row: Any) -> None:
    import backend_double
    from device_runs import compare

    name, fn, arrays = row
    if name == "cast":
        pytest.skip("float32 values: compared on the CPU by test_second_order_every_rule")
    compare(backend_double.DEVICE, name, _float_gradient_of(fn), arrays, rtol=1e-9, atol=1e-11)


def test_a_walk_that_fails_midway_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A vjp that raises after the walk recorded other vjps: those nodes (and their borrows) are dropped."""
    def broken(g: og.Tensor, ans: Any, x: Any) -> og.Tensor:
        raise RuntimeError("boom")

    monkeypatch.setitem(DVJPS, "sin", (broken,))
    g = og.Graph()
    x = g.param(np.array([0.2, 0.4]), name="x")
    y = (x.sin() * x.exp()).sum()  # the walk records mul's and exp's vjps before it reaches sin
    before = list(g.pending())
    ledgers = {id(b.ledger): b.ledger for n in before for b in n.borrows}
    live = {k: len(led.live()) for k, led in ledgers.items()}
    with pytest.raises(RuntimeError, match="boom"):
        g.grad(y, x, create_graph=True)
    assert g.pending() == before
    assert {k: len(led.live()) for k, led in ledgers.items()} == live  # the dropped nodes' borrows are gone
    monkeypatch.undo()
    np.testing.assert_allclose(g.grad(y, x).numpy(), np.exp(x.numpy()) * (np.cos(x.numpy()) + np.sin(x.numpy())))


# --- 9. random programs: a gradient penalty through chains of ops, views and in-place writes vs torch ---

def _ops_table() -> list[tuple[str, Any, Any]]:
    """(name, owngrad step, torch step): each maps (h, w) -> h' of the same shape (3, 3)."""
    import torch

    def og_write(h: og.Tensor, w: og.Tensor) -> og.Tensor:
        y = h * 1.0
        y[0] = h[1] * w[2]  # a write through a view of a non-leaf (copy_slices)
        return y

    def th_write(h: Any, w: Any) -> Any:
        y = h * 1.0
        y[0] = h[1] * w[2]
        return y

    def og_scatter(h: og.Tensor, w: og.Tensor) -> og.Tensor:
        y = h * w
        y[[2, 0]] = h[[0, 1]].tanh()  # advanced indices (torch and owngrad differ on repeated ones)
        return y

    def th_scatter(h: Any, w: Any) -> Any:
        y = h * w
        y[torch.tensor([2, 0])] = h[torch.tensor([0, 1])].tanh()
        return y

    return [
        ("tanh", lambda h, w: h.tanh(), lambda h, w: h.tanh()),
        ("sigmoid_mul", lambda h, w: og.sigmoid(h) * w, lambda h, w: h.sigmoid() * w),
        ("matmul", lambda h, w: h @ w, lambda h, w: h @ w),
        ("matmul_T", lambda h, w: w.T @ h.sin(), lambda h, w: w.T @ h.sin()),
        ("softmax", lambda h, w: h.softmax(axis=-1) * 3.0, lambda h, w: h.softmax(-1) * 3.0),
        ("flip_view", lambda h, w: h[::-1] * w[:, ::-1], lambda h, w: h.flip(0) * w.flip(1)),
        ("exp_div", lambda h, w: (h * 0.3).exp() / (w * w + 1.0), lambda h, w: (h * 0.3).exp() / (w * w + 1.0)),
        ("logsumexp", lambda h, w: h - h.logsumexp(axis=0, keepdims=True), lambda h, w: h - h.logsumexp(0, True)),
        ("var_norm", lambda h, w: (h - h.mean(axis=1, keepdims=True)) / (h.var(axis=1, keepdims=True) + 1.0).sqrt(),
         lambda h, w: (h - h.mean(1, True)) / (h.var(1, keepdim=True, unbiased=False) + 1.0).sqrt()),
        ("write_row", og_write, th_write),
        ("scatter_rows", og_scatter, th_scatter),
        ("square_pow", lambda h, w: h.square() * 0.5 + (w * w + 1.0) ** 0.5, lambda h, w: h.square() * 0.5
         + (w * w + 1.0) ** 0.5),
    ]


@settings(max_examples=25, deadline=None)
@given(steps=st.lists(st.integers(0, 11), min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_random_gradient_penalties_match_torch(steps: list[int], seed: int) -> None:
    torch = pytest.importorskip("torch")
    table = _ops_table()
    r = np.random.default_rng(seed)
    x0, w0 = r.uniform(-1, 1, (3, 3)), r.uniform(-1, 1, (3, 3))
    g = og.Graph()
    x, w = g.param(x0, name="x"), g.param(w0, name="w")
    tx, tw = torch.tensor(x0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    h, th = x, tx
    for k in steps:
        h, th = table[k][1](h, w), table[k][2](th, tw)
    h, th = h * w, th * tw  # w always takes part
    dx = g.grad((h * h).sum(), x, create_graph=True)  # the gradient penalty: |d loss / dx|^2 plus the loss
    grads = g.backward((dx * dx).sum() + (h * h).sum())
    (tdx,) = torch.autograd.grad((th * th).sum(), tx, create_graph=True)
    tgx, tgw = torch.autograd.grad((tdx * tdx).sum() + (th * th).sum(), [tx, tw])
    names = [table[k][0] for k in steps]
    np.testing.assert_allclose(grads[x].numpy(), tgx.numpy(), rtol=1e-9, atol=1e-11, err_msg=str(names))
    np.testing.assert_allclose(grads[w].numpy(), tgw.numpy(), rtol=1e-9, atol=1e-11, err_msg=str(names))
    assert g.pending() == []


def test_jacobian_with_history_is_differentiable() -> None:
    g = og.Graph()
    x = g.param(np.array([0.4, -0.3, 0.9]), name="x")
    jac = og.functional.jacobian(lambda t: (t * t * t).sin(), x, create_graph=True)  # diagonal: 3 x^2 cos(x^3)
    xv = x.numpy()
    np.testing.assert_allclose(jac.numpy(), np.diag(3 * xv ** 2 * np.cos(xv ** 3)), atol=1e-15)
    assert jac.requires_grad
    d = g.grad(jac.sum(), x)  # x has history: f ran on x itself
    np.testing.assert_allclose(d.numpy(), 6 * xv * np.cos(xv ** 3) - 9 * xv ** 4 * np.sin(xv ** 3), rtol=1e-12)
    assert g.pending() == []


@pytest.mark.parametrize("kind", ["GRU", "LSTM", "RNN"])
def test_recurrent_layers_second_order_match_torch(kind: str) -> None:
    """A gradient penalty through a 2-layer bidirectional recurrent layer (the recurrence rule's differentiable
    vjp: back-propagation through time in tensor operations) equals torch's double backward."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(3, 4, num_layers=2, bidirectional=True).double()
    g = og.Graph()
    m = getattr(og.nn, kind)(g, 3, 4, num_layers=2, bidirectional=True, dtype=np.float64)
    m.load_state_dict({k: v.detach().numpy().copy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(0).normal(size=(5, 2, 3))
    px, tx = g.param(x.copy()), torch.tensor(x, requires_grad=True)
    gx = g.grad((m(px)[0] ** 2).sum(), px, create_graph=True)
    grads = g.backward((gx ** 2).sum())
    (tgx,) = torch.autograd.grad((tm(tx)[0] ** 2).sum(), tx, create_graph=True)
    (tgx ** 2).sum().backward()
    np.testing.assert_allclose(gx.numpy(), tgx.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(grads[p].numpy(), dict(tm.named_parameters())[name].grad.numpy(), rtol=1e-9,
                                   atol=1e-12, err_msg=name)
