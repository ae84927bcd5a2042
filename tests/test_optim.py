"""og.optim: PyTorch's exact update rules, all-or-nothing steps under exclusive borrows, state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og

SHAPES = [(3, 4), (4,), (2, 2, 3)]


def _loss(ps: list[og.Tensor], coefs: list[np.ndarray]) -> og.Tensor:
    # a loss whose gradient changes with the params (so momentum/Adam state matters)
    total = (ps[0] * ps[0] * coefs[0]).sum()
    for p, c in zip(ps[1:], coefs[1:]):
        total = total + (p.tanh() * c).sum()
    return total


def _run_ours(make: Callable[[list[og.Tensor]], Any], init: list[np.ndarray], coefs: list[np.ndarray],
              steps: int) -> list[np.ndarray]:
    g = og.Graph()
    ps = [g.param(a) for a in init]
    opt = make(ps)
    for _ in range(steps):
        opt.step(g.backward(_loss(ps, coefs)))
    return [p.numpy() for p in ps]


def _run_torch(torch: Any, make: Callable[[list[Any]], Any], init: list[np.ndarray], coefs: list[np.ndarray],
               steps: int) -> list[np.ndarray]:
    ps = [torch.tensor(a, requires_grad=True) for a in init]
    cs = [torch.tensor(c) for c in coefs]
    opt = make(ps)
    for _ in range(steps):
        opt.zero_grad()
        total = (ps[0] * ps[0] * cs[0]).sum()
        for p, c in zip(ps[1:], cs[1:]):
            total = total + (p.tanh() * c).sum()
        total.backward()
        opt.step()
    return [p.detach().numpy() for p in ps]


CONFIGS = [
    ("sgd", lambda m, ps: m.SGD(ps, lr=0.1)),
    ("sgd momentum", lambda m, ps: m.SGD(ps, lr=0.05, momentum=0.9)),
    ("sgd dampening wd", lambda m, ps: m.SGD(ps, lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("sgd nesterov", lambda m, ps: m.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("adam", lambda m, ps: m.Adam(ps, lr=0.01)),
    ("adam betas wd", lambda m, ps: m.Adam(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adamw", lambda m, ps: m.AdamW(ps, lr=0.01)),
    ("adamw wd", lambda m, ps: m.AdamW(ps, lr=0.02, betas=(0.5, 0.9), weight_decay=0.3)),
    ("adadelta", lambda m, ps: m.Adadelta(ps)),
    ("adadelta wd", lambda m, ps: m.Adadelta(ps, lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1)),
    ("rmsprop", lambda m, ps: m.RMSprop(ps)),
    ("rmsprop centered momentum wd", lambda m, ps: m.RMSprop(ps, lr=0.003, alpha=0.9, eps=1e-6, weight_decay=0.1,
                                                             momentum=0.7, centered=True)),
    ("rmsprop momentum", lambda m, ps: m.RMSprop(ps, lr=0.003, momentum=0.5)),
    ("adagrad", lambda m, ps: m.Adagrad(ps, lr=0.1)),
    ("adagrad decay", lambda m, ps: m.Adagrad(ps, lr=0.1, lr_decay=0.05, weight_decay=0.1,
                                              initial_accumulator_value=0.3, eps=1e-6)),
    ("adamax", lambda m, ps: m.Adamax(ps)),
    ("adamax wd", lambda m, ps: m.Adamax(ps, lr=0.05, betas=(0.7, 0.9), eps=1e-4, weight_decay=0.1)),
    ("nadam", lambda m, ps: m.NAdam(ps, lr=0.01)),
    ("nadam wd", lambda m, ps: m.NAdam(ps, lr=0.01, betas=(0.8, 0.95), weight_decay=0.1, momentum_decay=0.01)),
    ("nadam decoupled", lambda m, ps: m.NAdam(ps, lr=0.01, weight_decay=0.2, decoupled_weight_decay=True)),
    ("radam", lambda m, ps: m.RAdam(ps, lr=0.01)),
    # rho_t passes 5 at the sixth step, so the rectified branch is taken too
    ("radam wd", lambda m, ps: m.RAdam(ps, lr=0.01, betas=(0.8, 0.999), weight_decay=0.1)),
    ("radam decoupled", lambda m, ps: m.RAdam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.2,
                                              decoupled_weight_decay=True)),
]


@pytest.mark.parametrize("name,make", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_matches_torch(name: str, make: Callable[..., Any]) -> None:
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(1)
    init = [r.standard_normal(s) for s in SHAPES]
    coefs = [r.standard_normal(s) for s in SHAPES]
    ours = _run_ours(lambda ps: make(og.optim, ps), init, coefs, steps=6)
    theirs = _run_torch(torch, lambda ps: make(torch.optim, ps), init, coefs, steps=6)
    for a, b, i in zip(ours, theirs, init):
        assert not np.allclose(a, i)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_sgd_by_hand() -> None:
    g = og.Graph()
    p = g.param(np.array([1.0, -2.0]))
    opt = og.optim.SGD([p], lr=0.5, momentum=0.5)
    opt.step(g.backward((p * p).sum()))      # grad 2p = [2, -4]; buf = [2, -4]; p = [0, 0]
    np.testing.assert_allclose(p.numpy(), [0.0, 0.0])
    opt.step(g.backward((p * 3.0).sum()))    # grad [3, 3]; buf = 0.5*[2,-4] + [3,3] = [4, 1]
    np.testing.assert_allclose(p.numpy(), [-2.0, -0.5])


def test_step_is_all_or_nothing_under_borrows() -> None:
    g = og.Graph()
    ps = [g.param(np.full(s, 1.0)) for s in SHAPES]
    opt = og.optim.Adam(ps, lr=0.1)
    grads = g.backward(sum(((p * p).sum() for p in ps[1:]), (ps[0] * ps[0]).sum()))
    pending = (ps[2] * ps[2]).sum()          # a pending node saved the third param
    with pytest.raises(og.BorrowError, match=r"cannot write .* \(exclusive borrow for Adam.step\) at test_optim.py"):
        opt.step(grads)
    for p, s in zip(ps, SHAPES):             # first two untouched, nothing else changed
        assert np.array_equal(p.numpy(), np.full(s, 1.0))
    assert opt.state == [{}, {}, {}]
    g.backward(pending)
    opt.step(grads)
    assert all(st["step"] == 1 for st in opt.state)
    assert not np.array_equal(ps[0].numpy(), np.full(SHAPES[0], 1.0))


def test_readonly_handles_and_non_grads_are_refused() -> None:
    g = og.Graph()
    p = g.param(np.ones(3))
    opt = og.optim.SGD([p], lr=0.1)
    grads = g.backward((p * p).sum())
    with pytest.raises(TypeError, match="og.Grads"):
        opt.step({p: grads[p]})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a param"):
        og.optim.SGD([g.constant(np.ones(3))], lr=0.1)
    with pytest.raises(TypeError, match="not a param"):
        og.optim.SGD([p[0:2]], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        og.optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty"):
        og.optim.Adam([], lr=0.1)
    assert np.array_equal(p.numpy(), np.ones(3))


def test_params_without_gradient_are_skipped() -> None:
    g = og.Graph()
    a, b = g.param(np.ones(2)), g.param(np.ones(2))
    opt = og.optim.SGD([a, b], lr=1.0, momentum=0.9)
    opt.step(g.backward((a * 2.0).sum()))
    np.testing.assert_allclose(a.numpy(), [-1.0, -1.0])
    np.testing.assert_allclose(b.numpy(), [1.0, 1.0])
    assert opt.state[1] == {}


def test_state_dict_roundtrip() -> None:
    r = np.random.default_rng(0)
    init = [r.standard_normal(s) for s in SHAPES]
    coefs = [r.standard_normal(s) for s in SHAPES]
    g = og.Graph()
    ps = [g.param(a) for a in init]
    opt = og.optim.Adam(ps, lr=0.05, betas=(0.8, 0.9))
    for _ in range(3):
        opt.step(g.backward(_loss(ps, coefs)))
    sd = opt.state_dict()
    g2 = og.Graph()
    qs = [g2.param(p.numpy()) for p in ps]
    opt2 = og.optim.Adam(qs, lr=1.0)
    opt2.load_state_dict(sd)
    assert opt2.lr == 0.05 and opt2.betas == (0.8, 0.9)
    for _ in range(2):
        opt.step(g.backward(_loss(ps, coefs)))
        opt2.step(g2.backward(_loss(qs, coefs)))
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    sd["state"][0]["exp_avg"] = np.zeros((9, 9))
    with pytest.raises(og.ShapeError, match="exp_avg"):
        opt2.load_state_dict(sd)
    with pytest.raises(ValueError, match="SGD"):
        og.optim.SGD(qs, lr=0.1).load_state_dict(opt.state_dict())


def test_a_step_with_none_of_its_params_in_the_grads_says_so() -> None:
    g = og.Graph()
    actor = og.nn.Linear(g, 3, 2, rng=0, name="actor")
    critic = og.nn.Linear(g, 3, 1, rng=1, name="critic")
    opt_critic = og.optim.SGD(critic.parameters(), lr=0.1)
    x = g.constant(np.ones((4, 3), dtype=np.float32))
    grads_actor = g.backward(actor(x).sum())
    before = [p.numpy() for p in critic.parameters()]
    with pytest.raises(og.GradError) as ei:
        opt_critic.step(grads_actor)  # the copy-paste slip: the actor's gradients
    msg = str(ei.value)
    assert "critic.weight" in msg and "actor.weight" in msg and "none of this optimizer's params" in msg, msg
    for p, b in zip(critic.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), b)


def test_a_step_with_some_of_its_params_steps_those_as_torch() -> None:
    g = og.Graph()
    w = g.param(np.ones(2), name="w")
    b = g.param(np.ones(2), name="b")
    opt = og.optim.SGD([w, b], lr=0.5)
    opt.step(g.backward((w * 2.0).sum()))
    np.testing.assert_array_equal(w.numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(b.numpy(), [1.0, 1.0])


def _lbfgs_problem(r: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    init = [r.standard_normal((4, 3)) * 0.5, r.standard_normal(4) * 0.1, r.standard_normal((1, 4)) * 0.5]
    return init, r.standard_normal((16, 3)), r.standard_normal((16, 1))


@pytest.mark.parametrize("kw", [{}, {"history_size": 3, "max_iter": 7, "lr": 0.8},
                                {"line_search_fn": "strong_wolfe"},
                                {"line_search_fn": "strong_wolfe", "history_size": 2, "max_iter": 5}],
                         ids=["default", "short history", "strong_wolfe", "strong_wolfe short"])
def test_lbfgs_matches_torch(kw: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    init, x, y = _lbfgs_problem(np.random.default_rng(3))
    g = og.Graph()
    ps = [g.param(a) for a in init]
    xs, ys = g.constant(x), g.constant(y)
    opt = og.optim.LBFGS(ps, **kw)

    def closure() -> og.Tensor:
        h = (xs @ ps[0].T + ps[1]).tanh() @ ps[2].T
        return ((h - ys) ** 2).mean()

    tps = [torch.tensor(a, requires_grad=True) for a in init]
    topt = torch.optim.LBFGS(tps, **kw)

    def tclosure() -> Any:
        topt.zero_grad()
        h = torch.tanh(torch.tensor(x) @ tps[0].T + tps[1]) @ tps[2].T
        loss = ((h - torch.tensor(y)) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(3):
        ours = opt.step(closure)
        theirs = topt.step(tclosure)
        np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-10)
    assert opt.state[0]["func_evals"] == topt.state[tps[0]]["func_evals"]
    assert opt.state[0]["n_iter"] == topt.state[tps[0]]["n_iter"]
    for p, tp, a in zip(ps, tps, init):
        assert not np.allclose(p.numpy(), a)
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-9, atol=1e-11)


def test_lbfgs_closure_may_return_its_grads_and_refuses_gradients_or_pending_borrows() -> None:
    g = og.Graph()
    p = g.param(np.array([3.0, -2.0]))
    opt = og.optim.LBFGS([p], line_search_fn="strong_wolfe")
    opt.step(lambda: (lambda loss: (loss, g.backward(loss)))(((p - 1.0) ** 2).sum()))
    np.testing.assert_allclose(p.numpy(), [1.0, 1.0], atol=1e-6)
    with pytest.raises(TypeError, match="closure"):
        opt.step(g.backward((p * p).sum()))  # type: ignore[arg-type]

    def torch_style() -> og.Tensor:  # runs the backward itself and returns only the loss
        loss = ((p - 2.0) ** 2).sum()
        g.backward(loss)
        return loss

    with pytest.raises(og.GraphError, match=r"(?s)LBFGS.step.*returns \(loss, grads\)"):
        opt.step(torch_style)
    before = p.numpy()
    pending = (p * p).sum()  # saved p: the step must be refused before any write
    with pytest.raises(og.BorrowError, match="LBFGS.step"):
        og.optim.LBFGS([p]).step(lambda: ((p - 5.0) ** 2).sum())
    np.testing.assert_array_equal(p.numpy(), before)
    g.backward(pending)


class SignSGD(og.optim.Optimizer):
    """A user's own optimizer, written against the public hooks only."""

    hyper_keys = ("lr", "decay")
    state_keys = ("count",)

    def __init__(self, params: Any, lr: float = 0.1, decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "decay": decay})

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        if group["decay"] < 0:
            raise ValueError("SignSGD: decay must be >= 0")

    def update(self, p: Any, g: Any, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Any]:
        state["count"] = state.get("count", 0) + 1
        return 1.0 - group["decay"], group["lr"] * np.sign(g)


def test_a_user_optimizer_through_the_public_hooks_is_driven_by_a_scheduler() -> None:
    g = og.Graph()
    p = g.param(np.array([1.0, -1.0, 0.5]))
    opt = SignSGD([p], lr=0.5)
    sched = og.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    expected = p.numpy()
    for k in range(3):
        grads = g.backward((p * np.array([1.0, -2.0, 3.0])).sum())
        opt.step(grads)
        expected = expected - 0.5 * 0.5 ** k * np.array([1.0, -1.0, 1.0])
        sched.step()
    np.testing.assert_array_equal(p.numpy(), expected)
    assert opt.state[0]["count"] == 3 and opt.lr == 0.5 ** 4
    with pytest.raises(ValueError, match="decay"):
        SignSGD([p], decay=-1.0)
    with pytest.raises(TypeError, match="unknown hyper-parameters"):
        SignSGD([{"params": [p], "momentum": 0.9}])
    pending = (p * p).sum()
    with pytest.raises(og.BorrowError, match="SignSGD.step"):
        opt.step(g.backward((p * 2.0).sum(), retain=True))
    g.backward(pending)


def test_lbfgs_state_dict_roundtrip_continues_identically() -> None:
    init, x, y = _lbfgs_problem(np.random.default_rng(4))

    def make() -> tuple[list[og.Tensor], Any, Any]:
        g = og.Graph()
        ps = [g.param(a) for a in init]
        xs, ys = g.constant(x), g.constant(y)
        return ps, og.optim.LBFGS(ps, history_size=4, max_iter=5), \
            lambda: (((xs @ ps[0].T + ps[1]).tanh() @ ps[2].T - ys) ** 2).mean()

    ps, opt, closure = make()
    opt.step(closure)
    qs, opt2, closure2 = make()
    for p, q in zip(ps, qs):
        with q.borrow_mut() as a:
            a[...] = p.numpy()
    opt2.load_state_dict(opt.state_dict())
    for _ in range(2):
        opt.step(closure)
        opt2.step(closure2)
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


NEW_OPTIMIZERS = [c for c in CONFIGS if c[0].split()[0] in ("adadelta", "rmsprop", "adagrad", "adamax", "nadam",
                                                             "radam")]


@pytest.mark.parametrize("name,make", NEW_OPTIMIZERS, ids=[c[0] for c in NEW_OPTIMIZERS])
def test_state_dict_roundtrip_of_every_optimizer(name: str, make: Callable[..., Any]) -> None:
    r = np.random.default_rng(5)
    init = [r.standard_normal(s) for s in SHAPES]
    coefs = [r.standard_normal(s) for s in SHAPES]
    g = og.Graph()
    ps = [g.param(a) for a in init]
    opt = make(og.optim, ps)
    for _ in range(3):
        opt.step(g.backward(_loss(ps, coefs)))
    g2 = og.Graph()
    qs = [g2.param(p.numpy()) for p in ps]
    opt2 = make(og.optim, qs)
    opt2.load_state_dict(opt.state_dict())
    for _ in range(2):
        opt.step(g.backward(_loss(ps, coefs)))
        opt2.step(g2.backward(_loss(qs, coefs)))
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
