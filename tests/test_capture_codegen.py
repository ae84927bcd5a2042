"""The generated code of a captured step: what it writes inline or in place, and that it stays the eager step.

Each program is built twice from the same seeds; one copy runs eagerly, the other through
``g.capture``, and after every call their results and params must be bitwise equal. The programs
are chosen to tempt the code generator: temporaries returned to the user, kept by an optimizer,
aliased by a view, read after the rule that could overwrite them, inputs whose dtype or shape change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og
from owngrad import plancode, rules, shapes
from owngrad.nn import functional as F


def _bits(v: Any) -> Any:
    if isinstance(v, og.Tensor):
        v = v.numpy()
    if isinstance(v, (tuple, list)):
        return [_bits(x) for x in v]
    a = np.asarray(v)
    return (a.shape, a.dtype.str, a.tobytes())


def _twins(build: Callable[[og.Graph], tuple[Callable[..., Any], list[og.Tensor]]]) -> tuple[Any, Any, Any, Any]:
    ge, gc = og.Graph(), og.Graph()
    fe, pe = build(ge)
    fc, pc = build(gc)
    return fe, pe, gc.capture(fc), pc


def _same_over(build: Callable[[og.Graph], tuple[Callable[..., Any], list[og.Tensor]]],
               batches: list[tuple[Any, ...]]) -> Any:
    """Run both twins over ``batches``; every result (kept until the end) and every param equal bitwise."""
    fe, pe, step, pc = _twins(build)
    kept = []
    for args in batches:
        out_e, out_c = fe(*args), step(*args)
        assert _bits(out_e) == _bits(out_c)
        assert [_bits(p) for p in pe] == [_bits(p) for p in pc]
        kept.append((_bits(out_e), out_c))
    for was, out_c in kept:  # a later replay never wrote into an earlier call's result
        assert _bits(out_c) == was
    return step


def _mlp(g: og.Graph, opt: str = "sgd") -> tuple[Callable[..., Any], list[og.Tensor]]:
    rng = np.random.default_rng(0)
    w1 = g.param(rng.standard_normal((5, 7)), name="w1")
    b1 = g.param(rng.standard_normal(7), name="b1")
    w2 = g.param(rng.standard_normal((7, 3)), name="w2")
    params = [w1, b1, w2]
    o = og.optim.SGD(params, lr=0.1) if opt == "sgd" else _KeepsGrads(params)

    def step(x: Any, y: Any) -> Any:
        h = (g.constant(x) @ w1 + b1).relu()
        loss = F.cross_entropy(h @ w2, g.constant(y))
        o.step(g.backward(loss))
        return loss

    return step, params


class _KeepsGrads(og.optim.SGD):
    """An optimizer that keeps each gradient array itself (no copy) as its state."""

    def __init__(self, params: list[og.Tensor]) -> None:
        super().__init__(params, lr=0.05)

    def update(self, p: Any, g: Any, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Any]:
        prev = state.get("last")
        state["last"] = g
        return 1.0, group["lr"] * (g if prev is None else g + prev)


def _batches(n: int = 4, rows: int = 6, nan: bool = False) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        x = rng.standard_normal((rows, 5))
        if nan:
            x[0, 0] = np.nan
            x[1, :] = -0.0
        out.append((x, rng.integers(0, 3, rows)))
    return out


def test_every_known_rule_still_matches_its_copy() -> None:
    # a rule edited since its inline spelling was written falls back to a plain call: this says so
    known = {rules.RULES[n].forward for n in ("add", "sub", "mul", "div", "neg", "relu", "matmul")}
    known |= {rules.RULES["relu"].vjps[0], rules.RULES["matmul"].vjps[0], rules.RULES["matmul"].vjps[1],
              rules.RULES["mul"].vjps[0], rules.RULES["mul"].vjps[1], rules.RULES["neg"].vjps[0],
              rules.RULES["sub"].vjps[1], shapes.unbroadcast}
    assert known == set(plancode._KNOWN)
    assert plancode._returns_first(rules.RULES["add"].vjps[1])
    assert not plancode._returns_first(rules.RULES["sub"].vjps[1])


def test_an_mlp_step_runs_inline_and_in_place_and_equals_eager() -> None:
    step = _same_over(_mlp, _batches())
    source = step.plans_of()[0].replay.__doc__
    assert "out=" in source and " @ " in source and "np.maximum" in source


def test_nan_and_negative_zero_pass_the_inline_rules_as_eagerly() -> None:
    _same_over(_mlp, _batches(nan=True))


def test_a_gradient_kept_by_the_optimizer_is_never_overwritten() -> None:
    _same_over(lambda g: _mlp(g, "keep"), _batches(6))


def test_returned_temporaries_and_views_of_them_are_never_overwritten() -> None:
    def build(g: og.Graph) -> tuple[Callable[..., Any], list[og.Tensor]]:
        w = g.param(np.linspace(-1, 1, 20).reshape(4, 5), name="w")
        o = og.optim.SGD([w], lr=0.1)

        def step(x: Any) -> Any:
            h = g.constant(x) @ w
            z = h + 1.0
            t = z.T  # a view of z, read after the relu that reads z last
            r = z.relu()
            loss = (r * r).sum() + (t * 2.0).sum()
            o.step(g.backward(loss))
            return r, t, loss

        return step, [w]

    rng = np.random.default_rng(2)
    _same_over(build, [(rng.standard_normal((3, 4)),) for _ in range(4)])


def test_a_returned_temporary_is_never_overwritten_by_the_rule_that_reads_it_last() -> None:
    def build(g: og.Graph) -> tuple[Callable[..., Any], list[og.Tensor]]:
        w = g.param(np.linspace(-1, 1, 20).reshape(4, 5), name="w")
        o = og.optim.SGD([w], lr=0.1)

        def step(x: Any) -> Any:
            z = g.constant(x) @ w - 0.25
            r = z.relu()  # the last read of z, which the step returns
            loss = (r * r).sum()
            o.step(g.backward(loss))
            return z, loss

        return step, [w]

    rng = np.random.default_rng(5)
    _same_over(build, [(rng.standard_normal((3, 4)),) for _ in range(4)])


def test_an_operand_read_after_the_rule_that_could_overwrite_it_is_kept() -> None:
    def build(g: og.Graph) -> tuple[Callable[..., Any], list[og.Tensor]]:
        w = g.param(np.linspace(-1, 1, 12).reshape(3, 4), name="w")
        o = og.optim.SGD([w], lr=0.1)

        def step(x: Any) -> Any:
            a = g.constant(x) @ w
            b = a * 3.0  # a is read again below: b must not be written into a
            c = (a - b).relu() + a
            loss = (c * c).mean()
            o.step(g.backward(loss))
            return loss

        return step, [w]

    rng = np.random.default_rng(3)
    _same_over(build, [(rng.standard_normal((2, 3)),) for _ in range(4)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_of_another_dtype_or_shape_get_their_own_plan(dtype: Any) -> None:
    def build(g: og.Graph) -> tuple[Callable[..., Any], list[og.Tensor]]:
        w = g.param(np.linspace(-1, 1, 12).reshape(3, 4), name="w")
        o = og.optim.SGD([w], lr=0.1)

        def step(x: Any) -> Any:
            h = (g.constant(x) @ w + 0.5).relu()
            loss = (h * h).sum()
            o.step(g.backward(loss))
            return loss, h

        return step, [w]

    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((n, 3)).astype(dt) for n in (2, 5, 2) for dt in (dtype, np.float64, np.float32)]
    step = _same_over(build, [(x,) for x in xs])
    assert step.plans >= 2
