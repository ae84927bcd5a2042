"""Parameter groups, learning-rate schedules and EMA: torch's values over many steps (float64), and the
borrow rules on every write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og
from owngrad.optim import lr_scheduler as S


def _pair(kind: str) -> tuple[Any, ...]:
    """An owngrad and a torch optimizer over the same two params, in two groups."""
    torch = pytest.importorskip("torch")
    g = og.Graph()
    w, b = g.param(np.linspace(-1, 1, 3)), g.param(np.array([0.5, -0.2]))
    tw = torch.tensor(w.numpy(), requires_grad=True)
    tb = torch.tensor(b.numpy(), requires_grad=True)
    if kind == "sgd":
        opt = og.optim.SGD([{"params": [w]}, {"params": [b], "lr": 0.03, "weight_decay": 0.1}], lr=0.05, momentum=0.9)
        topt = torch.optim.SGD([{"params": [tw]}, {"params": [tb], "lr": 0.03, "weight_decay": 0.1}], lr=0.05,
                               momentum=0.9)
    else:
        opt = og.optim.AdamW([{"params": [w]}, {"params": [b], "weight_decay": 0.0}], lr=0.05)
        topt = torch.optim.AdamW([{"params": [tw]}, {"params": [tb], "weight_decay": 0.0}], lr=0.05)
    return g, (w, b), opt, (tw, tb), topt


def _loss(w: Any, b: Any) -> Any:
    return (w * w * w * w).sum() + (b * b).sum() * 2.0 + (w[0:2] * b).sum()  # bounded below: no divergence


SCHEDULES: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = [
    ("none", lambda o: None, lambda o: None),
    ("step", lambda o: S.StepLR(o, 5, gamma=0.5), lambda o: __import__("torch").optim.lr_scheduler.StepLR(o, 5, 0.5)),
    ("cosine", lambda o: S.CosineAnnealingLR(o, 12, eta_min=0.001),
     lambda o: __import__("torch").optim.lr_scheduler.CosineAnnealingLR(o, 12, 0.001)),
    ("linear", lambda o: S.LinearLR(o, 0.25, 1.0, 10),
     lambda o: __import__("torch").optim.lr_scheduler.LinearLR(o, 0.25, 1.0, 10)),
    ("onecycle", lambda o: S.OneCycleLR(o, [0.1, 0.05], total_steps=30),
     lambda o: __import__("torch").optim.lr_scheduler.OneCycleLR(o, [0.1, 0.05], total_steps=30)),
    ("onecycle3", lambda o: S.OneCycleLR(o, 0.1, epochs=3, steps_per_epoch=10, three_phase=True,
                                         anneal_strategy="linear"),
     lambda o: __import__("torch").optim.lr_scheduler.OneCycleLR(o, 0.1, epochs=3, steps_per_epoch=10,
                                                                 three_phase=True, anneal_strategy="linear")),
]


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("name, make, tmake", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_groups_and_schedules_follow_torch(kind: str, name: str, make: Any, tmake: Any) -> None:
    g, (w, b), opt, (tw, tb), topt = _pair(kind)
    sched, tsched = make(opt), tmake(topt)
    for _ in range(29):
        opt.step(g.backward(_loss(w, b)))
        topt.zero_grad()
        _loss(tw, tb).backward()
        topt.step()
        if sched is not None:
            sched.step()
            tsched.step()
            np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12)
        np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b.numpy(), tb.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert np.isfinite(w.numpy()).all() and np.isfinite(b.numpy()).all()  # equal numbers, not equal overflows


def test_a_group_lr_change_takes_effect_at_the_next_step() -> None:
    g = og.Graph()
    w = g.param(np.ones(2))
    opt = og.optim.SGD([{"params": [w], "lr": 0.5}], lr=0.1)
    opt.param_groups[0]["lr"] = 0.25
    opt.step(g.backward(w.sum()))
    np.testing.assert_array_equal(w.numpy(), [0.75, 0.75])
    opt.lr = 0.5  # the attribute sets every group
    assert opt.param_groups[0]["lr"] == 0.5 and opt.lr == 0.5


def test_group_state_dict_round_trips() -> None:
    g = og.Graph()
    w, b = g.param(np.ones(2)), g.param(np.ones(3))
    opt = og.optim.Adam([{"params": [w]}, {"params": [b], "lr": 0.5}], lr=0.1)
    opt.step(g.backward((w * w).sum() + (b * b).sum()))
    sd = opt.state_dict()
    assert [gr["params"] for gr in sd["param_groups"]] == [[0], [1]] and sd["param_groups"][1]["lr"] == 0.5
    w2, b2 = g.param(np.ones(2)), g.param(np.ones(3))
    opt2 = og.optim.Adam([{"params": [w2]}, {"params": [b2]}], lr=0.9)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[1]["lr"] == 0.5 and opt2.state[0]["step"] == 1


@pytest.mark.parametrize("bad, exc, text", [
    ([{"params": []}, {"lr": 0.1}], TypeError, "params"),
    ([{"params": [], "momentun": 0.9}], TypeError, "momentun"),
])
def test_bad_groups_are_refused(bad: Any, exc: type, text: str) -> None:
    with pytest.raises(exc, match=text):
        og.optim.SGD(bad, lr=0.1)


def test_a_param_in_two_groups_is_refused() -> None:
    g = og.Graph()
    w = g.param(np.ones(2), name="w")
    with pytest.raises(ValueError, match="more than one parameter group"):
        og.optim.SGD([{"params": [w]}, {"params": [w]}], lr=0.1)


def test_ema_averages_in_place_and_evaluates_the_copy() -> None:
    g = og.Graph()
    model = og.nn.Linear(g, 2, 1, rng=0, dtype=np.float64)
    ema = og.optim.EMA(model, decay=0.9)
    start = ema.module.weight.numpy()
    with g.no_grad():
        model.weight.add_(1.0)
    ema.update()
    np.testing.assert_allclose(ema.module.weight.numpy(), 0.9 * start + 0.1 * (start + 1.0), rtol=1e-14)
    x = g.constant(np.ones((3, 2)))
    np.testing.assert_allclose(ema.module(x).numpy(), x.numpy() @ ema.module.weight.numpy().T + ema.module.bias.numpy())
    xp = g.param(np.ones((3, 2)))
    pending = ema.module(xp).sum()  # the input needs a gradient, so matmul saved the averaged weight
    before = ema.module.weight.numpy()
    with pytest.raises(og.BorrowError, match="EMA.update"):
        ema.update()
    np.testing.assert_array_equal(ema.module.weight.numpy(), before)  # all or nothing
    g.free(pending)
    ema.update()
    assert ema.num_updates == 2 and ema.state_dict()["module"].keys() == model.state_dict().keys()
