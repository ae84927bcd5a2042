"""Every differentiable op gradient-checked from one table (tests/op_cases.py's ``CASES``).

Each case is checked three ways:

* float64 central differences along random directions (tests/gradcheck.py), several shapes;
* against torch, values and gradients, where torch is importable;
* the union of ops the cases record covers every rule in ``owngrad.rules.RULES``, so adding a
  rule without a case fails ``test_table_covers_every_rule``.

The last part of the file checks what a node saves: only what the gradients of its inputs that
need one require (and so it borrows nothing else).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import owngrad as og
from gradcheck import check_grads, gradients, recorded_ops
from op_cases import CASES, IDS, NOT_HERE, Case, functional
from owngrad.rules import RULES

# --- 1. gradient checks -----------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_gradient(case: Case, data: Any) -> None:
    shapes, kw = data.draw(case.shapes, label="shapes, attrs")
    seed = data.draw(st.integers(0, 2**16), label="values seed")
    fn = case.call(kw)
    ops = check_grads(fn, *case.arrays(shapes, kw, seed), eps=case.eps, rtol=case.rtol, atol=case.atol, rng=seed)
    assert case.rules <= ops, f"{case.name} should record {set(case.rules)}, recorded {ops}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_example(case: Case) -> None:
    shapes, kw = case.example
    check_grads(case.call(kw), *case.arrays(shapes, kw, 1), eps=case.eps, rtol=case.rtol, atol=case.atol, rng=1)


# --- 2. the table covers every rule ------------------------------------------------------------

def test_table_covers_every_rule() -> None:
    recorded: set[str] = set()
    unreachable = []
    for case in CASES:
        shapes, kw = case.example
        if case.needs is not None and functional(case.needs) is None:
            unreachable.append(f"og.nn.functional.{case.needs}")
            continue
        try:
            recorded |= recorded_ops(lambda *ts, c=case, k=kw: c.fn(*ts, **k), *case.arrays(shapes, kw, 0))
        except Exception as e:  # its rules stay uncovered; say why
            unreachable.append(f"{case.name}: {type(e).__name__}: {e}")
    missing = sorted(set(RULES) - recorded - set(NOT_HERE))
    assert not missing, (f"rules that no case in CASES records: {missing} "
                         f"(cases that could not run: {unreachable})")
    assert set(NOT_HERE) <= set(RULES), "NOT_HERE names a rule that no longer exists"


def test_every_case_is_named_once() -> None:
    assert len(set(IDS)) == len(IDS)


def test_check_grads_catches_a_wrong_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself can fail: break exp's vjp and it must notice."""
    import owngrad.rules as rules

    bad = rules.RULES["exp"]
    monkeypatch.setitem(rules.RULES, "exp", dataclasses.replace(bad, vjps=(lambda g, ans, x: g * ans * 1.01,)))
    with pytest.raises(AssertionError, match="gradient mismatch"):
        check_grads(lambda x: x.exp(), np.linspace(-1, 1, 6))


# --- 3. torch agrees on values and gradients ------------------------------------------------

@pytest.mark.parametrize("case", [c for c in CASES if c.tfn is not None], ids=[c.name for c in CASES if c.tfn])
@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_matches_torch(case: Case, data: Any) -> None:
    torch = pytest.importorskip("torch")
    shapes, kw = data.draw(case.shapes, label="shapes, attrs")
    seed = data.draw(st.integers(0, 2**16), label="values seed")
    fn = case.call(kw)
    arrays = case.arrays(shapes, kw, seed)
    value, grads = gradients(fn, *arrays, seed=None)
    tin = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    assert case.tfn is not None
    tout = case.tfn(*tin, **kw)
    np.testing.assert_allclose(value, tout.detach().numpy(), rtol=1e-4 if case.eps > 1e-4 else 1e-10,
                               atol=1e-10, err_msg=f"{case.name}: values differ from torch")
    floats = [t for t in tin if t.requires_grad]
    if tout.numel() == 0:
        return
    tg = torch.autograd.grad(tout, floats, torch.ones_like(tout), allow_unused=True)
    mine = [gr for gr in grads if gr is not None]
    for i, (a, b) in enumerate(zip(mine, tg)):
        expect = np.zeros_like(a) if b is None else b.numpy()
        np.testing.assert_allclose(a, expect, rtol=1e-4 if case.eps > 1e-4 else 1e-9, atol=1e-10,
                                   err_msg=f"{case.name}: gradient of input {i} differs from torch")


# --- 4. a node saves only what its inputs' gradients need ------------------------------------

def _node(g: og.Graph, op: str) -> og.Node:
    nodes = [n for n in g.pending() if n.op == op]
    assert len(nodes) == 1, f"expected one pending {op} node, got {g.pending()}"
    return nodes[0]


def _refused(g: og.Graph, t: og.Tensor) -> bool:
    """Would an (untracked) in-place write to ``t`` be refused by a borrow?"""
    before = t.numpy()
    try:
        with g.no_grad():
            t += 1.0
    except og.BorrowError:
        np.testing.assert_array_equal(t.numpy(), before)
        return True
    with g.no_grad():
        t -= 1.0
    return False


@pytest.mark.parametrize("op", ["exp", "tanh", "sigmoid", "sqrt", "relu"])
def test_saves_output_only(op: str) -> None:
    g = og.Graph()
    x = g.param(np.full((2, 3), 0.5), name="x")
    y = getattr(x, op)()
    node = _node(g, op)
    assert len(node.borrows) == 1, node.borrows
    label = node.borrows[0].label
    assert op in label and label != "x" and not label.startswith("x["), label
    assert not _refused(g, x), f"{op} must not save its input"
    with pytest.raises(og.BorrowError):
        y += 1.0  # the output is saved: a recorded write to it is refused too


def test_log_saves_input_only() -> None:
    g = og.Graph()
    x = g.param(np.full((2, 3), 0.5), name="x")
    y = x.log()
    node = _node(g, "log")
    assert [b.label for b in node.borrows] == ["x"]
    assert _refused(g, x)
    y += 1.0  # not saved: a recorded in-place op on the result is fine
    grads = g.backward(y.sum())
    np.testing.assert_allclose(grads[x].numpy(), 1 / 0.5)


@pytest.mark.parametrize("op", ["+", "-"])
def test_add_sub_save_nothing(op: str) -> None:
    g = og.Graph()
    x = g.param(np.ones(3), name="x")
    w = g.param(np.ones(3), name="w")
    y = x + w if op == "+" else x - w
    assert _node(g, "add" if op == "+" else "sub").borrows == []
    assert not _refused(g, x) and not _refused(g, w)
    y *= 2.0  # nothing saved the result either: a recorded in-place op is fine
    grads = g.backward(y.sum())
    np.testing.assert_allclose(grads[x].numpy(), 2.0)
    np.testing.assert_allclose(grads[w].numpy(), 2.0 if op == "+" else -2.0)


def test_mul_by_constant_saves_only_the_constant() -> None:
    g = og.Graph()
    x = g.param(np.ones((2, 2)), name="x")
    c = g.constant(np.full((2, 2), 3.0), name="c")
    _kept = x * c  # kept: a result no variable holds gives its borrows up at the next conflict
    node = _node(g, "mul")
    assert [b.label for b in node.borrows] == ["c"]
    assert _refused(g, c)
    assert not _refused(g, x)


def test_mul_of_two_params_saves_both() -> None:
    g = og.Graph()
    x = g.param(np.ones(2), name="x")
    w = g.param(np.ones(2), name="w")
    _kept = x * w
    assert sorted(b.label for b in _node(g, "mul").borrows) == ["w", "x"]
    assert _refused(g, x) and _refused(g, w)


def test_mul_by_python_scalar_saves_nothing() -> None:
    g = og.Graph()
    x = g.param(np.ones(2), name="x")
    x * 3.0
    assert _node(g, "mul").borrows == []
    assert not _refused(g, x)


def test_matmul_with_constant_saves_only_the_constant() -> None:
    g = og.Graph()
    a = g.constant(np.ones((4, 3)), name="a")
    w = g.param(np.ones((3, 2)), name="w")
    _kept = a @ w
    assert [b.label for b in _node(g, "matmul").borrows] == ["a"]
    assert _refused(g, a) and not _refused(g, w)


@pytest.mark.parametrize("op", ["sum", "mean", "neg", "reshape_copy"])
def test_shape_only_ops_save_nothing(op: str) -> None:
    g = og.Graph()
    x = g.param(np.ones((3, 2)), name="x")
    {"sum": lambda: x.sum(axis=0), "mean": lambda: x.mean(), "neg": lambda: -x,
     "reshape_copy": lambda: x.T.reshape(-1)}[op]()
    assert _node(g, op).borrows == []
    assert not _refused(g, x)


def test_saved_region_is_the_view_not_the_whole_storage() -> None:
    g = og.Graph()
    x = g.param(np.full((4, 3), 0.5), name="x")
    _kept = x[0:2].log()
    assert [b.label for b in _node(g, "log").borrows] in (["x[0:2]"], ["x[:2]"])
    with g.no_grad():
        x[2:4] += 1.0  # disjoint from the saved rows
    assert _refused(g, x[1])
    assert _refused(g, x[:, 0])


def test_nothing_saved_when_no_input_needs_a_gradient() -> None:
    g = og.Graph()
    c = g.constant(np.full(3, 0.5), name="c")
    y = c.log()
    assert g.pending() == [] and not y.requires_grad
    assert not _refused(g, c)


def test_where_does_not_save_the_branches() -> None:
    g = og.Graph()
    x = g.param(np.ones(3), name="x")
    y = g.param(np.ones(3), name="y")
    og.where(np.array([True, False, True]), x, y)
    node = _node(g, "where")
    assert not any(b.label in ("x", "y") for b in node.borrows), node.borrows
    assert not _refused(g, x) and not _refused(g, y)
