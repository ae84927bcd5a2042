"""Higher-order gradients: g.grad, backward(create_graph=True), and the borrow rules between backwards.

The second-order checks are driven from the op table (tests/op_cases.py) like the first-order ones:

* every case, float64: the gradient of ``S = sum_i <grad_i, w_i>`` (the first gradients weighted by random
  ``w``) by double backward against central differences of ``S`` computed from first-order gradients;
* every case torch has: the same double backward against ``torch.autograd.grad(create_graph=True)``;
* every rule of the op table has a differentiable vjp (``EXTRA`` records each rule; each row is checked).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import owngrad as og
from gradcheck import check_grad_grads, evaluate, second_order
from op_cases import CASES, EXTRA, EXTRA_IDS, IDS, NOT_HERE, Case
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
