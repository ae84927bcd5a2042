"""Unit tests of the plugin's dataflow analysis (owngrad/mypy_plugin/): the lattice and its join, the CFG,
the fixed point over loops and branches, summaries across functions, and the writers read from the stubs.

The end-to-end cases build small programs in one in-process mypy run (``CASES``: each program, and the lines
the plugin must report); the exact messages are tested by tests/test_mypy_plugin.py."""

from __future__ import annotations

import inspect
import os
import textwrap
from typing import Any

import pytest

pytest.importorskip("mypy")

from mypy import build  # noqa: E402
from mypy.modulefinder import BuildSource  # noqa: E402
from mypy.nodes import FuncDef  # noqa: E402
from mypy.options import Options  # noqa: E402

from owngrad.mypy_plugin import OwngradPlugin  # noqa: E402
from owngrad.mypy_plugin.cfg import build_cfg  # noqa: E402
from owngrad.mypy_plugin.lattice import (  # noqa: E402
    NONE,
    Bound,
    Interval,
    Kind,
    Loc,
    Obj,
    State,
    Status,
    Val,
    join,
    join_vals,
    regions_overlap,
)
from owngrad.mypy_plugin.tables import writers_of  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUBS = os.path.join(ROOT, "tests", "typing", "installed")


def _obj(name: str, kind: Kind = Kind.PARAM) -> Obj:
    o = Obj(("test", name), kind, 1, name=name)
    o.locs = frozenset({Loc(o)})
    return o


# --- the lattice ---
def test_symbolic_slices_are_disjoint_when_they_meet_at_the_same_name() -> None:
    k = Bound("k", 0)
    head, tail = Interval(Bound(None, 0), k), Interval(k, None)
    assert head.disjoint(tail) and tail.disjoint(head)
    assert not Interval(Bound("k", -1), None).disjoint(head)  # w[k - 1:] overlaps w[:k]
    assert not Interval(Bound("j", 0), None).disjoint(head)  # another name: not provably disjoint
    assert Interval(Bound("t", 0), Bound("t", 1)).disjoint(Interval(Bound("t", -1), Bound("t", 0)))  # w[t], w[t - 1]


def test_regions_compare_axis_by_axis() -> None:
    rows = (Interval(Bound(None, 0), Bound(None, 2)),)
    cols_a = (None, Interval(Bound(None, 0), Bound(None, 2)))
    cols_b = (None, Interval(Bound(None, 2), Bound(None, 4)))
    assert not regions_overlap(cols_a, cols_b)  # w[:, 0:2] and w[:, 2:4]
    assert regions_overlap(rows, cols_b) and regions_overlap(None, rows)


def test_locations_overlap_along_attribute_paths() -> None:
    m = _obj("m", Kind.MODULE)
    weight, bias, whole = Loc(m, ("weight",)), Loc(m, ("bias",)), Loc(m)
    assert weight.overlaps(whole) and whole.overlaps(bias)  # a step over all of m writes m.weight
    assert not weight.overlaps(bias)
    assert not weight.overlaps(Loc(_obj("other", Kind.MODULE), ("weight",)))


def test_join_of_result_states() -> None:
    a, b, c = _obj("a", Kind.RESULT), _obj("b", Kind.RESULT), _obj("c", Kind.RESULT)
    left, right = State(), State()
    left.mark(a, Status.PENDING)
    right.mark(a, Status.CONSUMED, 7)
    left.mark(b, Status.CONSUMED, 3)
    right.mark(b, Status.CONSUMED, 5)
    right.mark(c, Status.PENDING)  # made on one path only
    out = join(left, right)
    assert out.status(a) == (Status.MAYBE, 0)  # reported neither as pending nor as consumed
    assert out.status(b) == (Status.CONSUMED, 3)
    assert out.status(c) == (Status.PENDING, 0) and out.pending() == [c]
    assert join(out, out) == out


def test_join_of_values_keeps_positions_and_elements() -> None:
    a, b = _obj("a"), _obj("b")
    pair = Val(frozenset({a}), items=(Val(frozenset({a})), NONE))
    other = Val(frozenset({b}), items=(NONE, Val(frozenset({b}))))
    joined = join_vals(pair, other)
    assert joined.items is not None and joined.items[0].objs == {a} and joined.items[1].objs == {b}
    lst = Val(frozenset({a}), elem=Val(frozenset({a})))
    assert join_vals(lst, Val(frozenset({b}), elem=Val(frozenset({b})))).element().objs == {a, b}


# --- the CFG ---
def _func(source: str) -> FuncDef:
    res = _build({"cfgcase": source}, plugin=False)
    node = res.graph["cfgcase"].tree.names["f"].node
    assert isinstance(node, FuncDef)
    return node


def test_cfg_of_branches_loops_and_returns() -> None:
    fd = _func("""
        def f(c: bool, xs: list[int]) -> int:
            y = 0
            if c:
                y = 1
            else:
                return 2
            for x in xs:
                if x:
                    break
                y += x
            return y
    """)
    cfg = build_cfg(fd.body.body)
    preds = cfg.preds()
    assert len(preds[cfg.exit]) == 2  # the early return and the last one
    loops = [b for b in cfg.blocks if any(cfg.blocks.index(s) < cfg.blocks.index(b) for s in b.succ)]
    assert loops, "the loop body links back to its head"
    assert all(b in preds or b is cfg.entry for b in cfg.blocks)


# --- the writers come from the stubs ---
def test_writers_are_the_stubs_mut_methods_and_the_runtime_inplace_ops() -> None:
    from owngrad.inplace import InplaceOps

    res = _build({"uses": "import owngrad\n"}, plugin=False)
    tensor = res.graph["owngrad.tensor"].tree.names["Tensor"].node
    writers = writers_of(tensor)  # type: ignore[arg-type]
    runtime = {n for n, f in vars(InplaceOps).items() if callable(f) and "._inplace(" in inspect.getsource(f)}
    assert runtime and writers - {"borrow_mut"} == runtime
    assert "borrow_mut" in writers  # the exclusive borrow handed out as an array: a write too
    assert {"lerp_", "masked_fill_", "index_add_", "pow_", "__ipow__"} <= writers


# --- the analysis, end to end: (program, lines reported) ---
_HEAD = "import numpy as np\nimport owngrad as og\n"
#: each program's lines marked ``# E`` must be reported, and no other
CASES: dict[str, str] = {
    "loop_carries_pending": """
        def f(g: og.Graph, n: int) -> None:
            w = g.param(np.zeros(3))
            for _ in range(n):
                w.mul_(0.5)  # E
                y = (w * w).sum()
            g.free(y)
    """,
    "loop_consumes_each_iteration": """
        def f(g: og.Graph, n: int) -> None:
            w = g.param(np.zeros(3))
            for _ in range(n):
                y = (w * w).sum()
                g.backward(y)
                w.mul_(0.5)
    """,
    "branch_join_no_false_alarm": """
        def f(g: og.Graph, c: bool) -> None:
            w = g.param(np.ones(3))
            x = g.param(np.ones(3))
            if c:
                y = (x * w).sum()
            else:
                y = (x * w * w).sum()
            g.backward(y)
            w.add_(1.0)
    """,
    "consumed_on_one_path_only": """
        def f(g: og.Graph, c: bool) -> None:
            w = g.param(np.ones(3))
            loss = (w * w).sum()
            if c:
                g.backward(loss)
            w.add_(1.0)
            g.backward(loss)
    """,
    "early_return_does_not_fall_through": """
        def f(g: og.Graph, c: bool) -> None:
            w = g.param(np.ones(3))
            loss = (w * w).sum()
            if c:
                g.free(loss)
                return
            w.add_(1.0)  # E
            g.free(loss)
    """,
    "saves_only_what_backward_needs": """
        def f(g: og.Graph) -> None:
            w = g.param(np.ones(3))
            x = g.constant(np.ones(3))
            a = (x * w).sum()
            b = (w + 1.0).sum()
            w.add_(1.0)
            g.backward(a)
            g.backward(b)
    """,
    "disjoint_symbolic_slices": """
        def f(g: og.Graph, k: int) -> None:
            w = g.param(np.ones((4, 3)))
            h = g.param(np.ones((2, k)))
            loss = (h @ w[:k]).sum()
            w[k:] *= 0.5
            w[:, 0] *= 0.5  # E
            g.backward(loss)
    """,
    "gru_outputs_split": """
        def f(g: og.Graph, x: og.Tensor) -> None:
            gru = og.nn.GRU(g, 3, 4)
            opt = og.optim.SGD(gru.parameters(), lr=0.1)
            out, h = gru(x)
            opt.step(g.backward(h.sum()))
            g.backward(out.sum())  # E
    """,
    "closure_called_from_its_function": """
        def f(g: og.Graph, x: og.Tensor) -> None:
            model = og.nn.Sequential(og.nn.Linear(g, 4, 8), og.nn.Tanh(), og.nn.Linear(g, 8, 1))
            opt = og.optim.SGD(model.parameters(), lr=0.1)

            def step(xb: og.Tensor) -> None:
                opt.step(g.backward((model(xb) ** 2).mean()))

            pending = model(x).sum()
            step(x)  # E
            g.free(pending)
            step(x)
    """,
    "module_level_script": """
        g = og.Graph()
        model = og.nn.Sequential(og.nn.Linear(g, 4, 8), og.nn.Tanh(), og.nn.Linear(g, 8, 1))
        opt = og.optim.SGD(model.parameters(), lr=0.1)
        x = g.constant(np.ones((2, 4)))

        def helper() -> None:
            opt.step(g.backward((model(x) ** 2).mean()))

        helper()
        probe = model(x).sum()
        helper()  # E
        g.free(probe)
        helper()
    """,
    "summary_of_a_helper": """
        def scale(t: og.Tensor[og.Mut]) -> None:
            t.mul_(0.5)

        def pending(w: og.Tensor[og.Mut]) -> og.Tensor[og.Mut]:
            return (w * w).sum()

        def f(g: og.Graph) -> None:
            w = g.param(np.ones(3))
            v = g.param(np.ones(3))
            loss = pending(w)
            scale(v)
            scale(w)  # E
            g.backward(loss)
            scale(w)
    """,
    "summary_of_a_method_and_property": """
        class Holder:
            def __init__(self, g: og.Graph) -> None:
                self.g = g
                self.w = g.param(np.ones(3))

            @property
            def loss(self) -> og.Tensor[og.Mut]:
                return (self.w * self.w).sum()

            def finish(self, loss: og.Tensor) -> None:
                self.g.backward(loss)

        def f(g: og.Graph) -> None:
            h = Holder(g)
            loss = h.loss
            h.w.add_(1.0)  # E
            h.finish(loss)
            h.finish(loss)  # E
    """,
}


def _build(sources: dict[str, str], plugin: bool) -> Any:
    opts = Options()
    opts.mypy_path = [STUBS]
    opts.incremental = False
    opts.show_traceback = True
    opts.preserve_asts = True
    extra = [OwngradPlugin(opts)] if plugin else []
    return build.build([BuildSource(f"{name}.py", name, textwrap.dedent(src)) for name, src in sources.items()],
                       opts, extra_plugins=extra)


@pytest.fixture(scope="module")
def reported() -> dict[str, set[int]]:
    res = _build({name: _HEAD + textwrap.dedent(src) for name, src in CASES.items()}, plugin=True)
    out: dict[str, set[int]] = {name: set() for name in CASES}
    for line in res.errors:
        if line.endswith("[owngrad-borrow]"):
            name, lineno = line.split(":")[:2]
            out[os.path.splitext(os.path.basename(name))[0]].add(int(lineno))
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_flow_case(case: str, reported: dict[str, set[int]]) -> None:
    source = _HEAD + textwrap.dedent(CASES[case])
    marked = {i for i, line in enumerate(source.splitlines(), 1) if line.endswith("# E")}
    assert reported[case] == marked
