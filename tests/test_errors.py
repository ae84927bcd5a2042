"""Clear, typed errors for bad input -- and a failed call changes nothing."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og


def state(g: og.Graph, *ts: og.Tensor) -> Any:
    """Data of ``ts``, pending nodes with their borrows, and the live borrows of every ledger they touch."""
    ledgers = {id(b.ledger): b.ledger for n in g.pending() for b in n.borrows}
    return ([t.numpy().tolist() for t in ts],
            [(n.id, n.op, [(b.label, b.kind) for b in n.borrows]) for n in g.pending()],
            sorted((k, len(led.live())) for k, led in ledgers.items()))


def clean(e: BaseException) -> None:
    """No numpy traceback from deep inside: the error is not chained to an internal exception."""
    assert e.__cause__ is None, f"chained to {e.__cause__!r}"
    assert e.__context__ is None or e.__suppress_context__, f"shows {e.__context__!r} as context"


# --- ShapeError ---------------------------------------------------------------------------------

SHAPE_CASES: list[tuple[str, Callable[[og.Tensor, og.Tensor], Any], str]] = [
    ("add", lambda a, b: a + b, "add"),
    ("sub", lambda a, b: a - b, "sub"),
    ("mul", lambda a, b: b * a, "mul"),
    ("div", lambda a, b: a / b, "div"),
    ("pow", lambda a, b: a ** b, "pow"),
    ("matmul", lambda a, b: a @ b, "matmul"),
    ("og.matmul", lambda a, b: og.matmul(b, a), "matmul"),
    ("maximum", lambda a, b: og.maximum(a, b), "maximum"),
    ("minimum", lambda a, b: og.minimum(a, b), "minimum"),
    ("where", lambda a, b: og.where(a > 0, a, b), "where"),
    ("concatenate", lambda a, b: og.concatenate([a, b], axis=1), "concatenate"),
    ("stack", lambda a, b: og.stack([a, b]), "stack"),
]


@pytest.mark.parametrize("name, fn, op", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_shape_error_names_op_and_both_shapes(name: str, fn: Any, op: str) -> None:
    g = og.Graph()
    a = g.param(np.ones((2, 3)), name="a")
    b = g.param(np.ones((4,)), name="b")
    before = state(g, a, b)
    with pytest.raises(og.ShapeError) as ei:
        fn(a, b)
    msg = str(ei.value)
    assert isinstance(ei.value, ValueError)
    assert op in msg, msg
    assert re.search(r"\(2, ?3\)", msg) and re.search(r"\(4,\)", msg), f"both shapes must be named: {msg}"
    clean(ei.value)
    assert state(g, a, b) == before


@pytest.mark.parametrize("call, op, shape_text", [
    (lambda a: a.reshape(5), "reshape", r"\(5,?\)"),
    (lambda a: a.sum(axis=2), "sum", "axis"),
    (lambda a: a.mean(axis=(0, 3)), "mean", "axis"),
    (lambda a: a.softmax(axis=4), "softmax", "axis"),
    (lambda a: a.expand(3, 3), "expand", r"\(3, ?3\)"),
    (lambda a: a.transpose(0, 0), "transpose", r"\(0, ?0\)"),
    (lambda a: a.squeeze(0), "squeeze", "axis"),
    (lambda a: a.unsqueeze(5), "unsqueeze", "axis"),
])
def test_shape_errors_of_single_tensor_ops(call: Any, op: str, shape_text: str) -> None:
    g = og.Graph()
    a = g.param(np.ones((2, 3)), name="a")
    with pytest.raises(og.ShapeError) as ei:
        call(a)
    msg = str(ei.value)
    assert op in msg and re.search(r"\(2, ?3\)", msg) and re.search(shape_text, msg), msg
    clean(ei.value)
    assert g.pending() == []


def test_in_place_shape_error_changes_nothing() -> None:
    g = og.Graph()
    a = g.param(np.ones((2, 3)), name="a")
    r = a * 2.0
    before = state(g, a, r)
    for t in (a, r):
        with pytest.raises(og.ShapeError) as ei:
            t += np.ones(4)
        assert re.search(r"\(2, ?3\)", str(ei.value)) and re.search(r"\(4,\)", str(ei.value)), str(ei.value)
        with pytest.raises(og.ShapeError):
            t[0] = np.ones((2, 3))
        with pytest.raises(og.ShapeError):
            t.copy_(np.ones((3, 2)))
    assert state(g, a, r) == before


def test_seed_of_wrong_shape() -> None:
    g = og.Graph()
    a = g.param(np.ones((2, 3)), name="a")
    y = a * 2.0
    before = state(g, a)
    with pytest.raises(og.ShapeError) as ei:
        g.backward(y, seed=np.ones(3))
    assert re.search(r"\(2, ?3\)", str(ei.value)) and "(3,)" in str(ei.value)
    assert state(g, a) == before
    grads = g.backward(y, seed=np.full((2, 3), 0.5))
    np.testing.assert_allclose(grads[a].numpy(), 1.0)


# --- TypeError for bad data ---------------------------------------------------------------------

@pytest.mark.parametrize("data", [np.array(["a", "b"]), np.array([object(), 1]), np.array([1 + 2j]),
                                  "abc", b"ab", None, [1j, 2], {"a": 1}],
                         ids=["str array", "object array", "complex array", "str", "bytes", "None", "complex list",
                              "dict"])
@pytest.mark.parametrize("maker", ["param", "constant"])
def test_unsupported_data_is_a_type_error(data: Any, maker: str) -> None:
    g = og.Graph()
    with pytest.raises(TypeError) as ei:
        getattr(g, maker)(data)
    assert f"g.{maker}" in str(ei.value), str(ei.value)
    clean(ei.value)


@pytest.mark.parametrize("data", [np.array([1, 2]), np.array([True]), np.arange(3, dtype=np.uint8), np.int64(3)],
                         ids=["int64", "bool", "uint8", "numpy int scalar"])
def test_param_needs_a_float_dtype(data: Any) -> None:
    g = og.Graph()
    with pytest.raises(TypeError) as ei:
        g.param(data)
    msg = str(ei.value)
    assert "float" in msg and str(np.asarray(data).dtype) in msg, msg
    g.constant(data)  # a constant may hold integers or booleans


def test_unsupported_operand_type() -> None:
    g = og.Graph()
    a = g.param(np.ones(2), name="a")
    for bad in ("x", object(), {"k": 1}, np.array(["a", "b"])):
        with pytest.raises(TypeError):
            a + bad  # type: ignore[operator]
    with pytest.raises(TypeError):
        a * (1 + 2j)
    assert g.pending() == []


# --- GraphError ------------------------------------------------------------------------------------

def test_mixing_graphs_is_a_graph_error() -> None:
    g, h = og.Graph(), og.Graph()
    a = g.param(np.ones(3), name="a")
    b = h.param(np.ones(3), name="b")
    b_sum = b.sum()
    h_before = h.pending()
    calls: list[Callable[[], Any]] = [lambda: a + b, lambda: b * a, lambda: og.maximum(a, b),
                                      lambda: og.where(a > 0, a, b), lambda: og.concatenate([a, b]),
                                      lambda: og.stack([b, a]), lambda: a @ b, lambda: g.backward(b_sum),
                                      lambda: g.freeze(b), lambda: g.free(b), lambda: a.copy_(b)]
    for call in calls:
        with pytest.raises(og.GraphError) as ei:
            call()
        assert "graph" in str(ei.value), str(ei.value)
    assert g.pending() == [] and h.pending() == h_before
    np.testing.assert_array_equal(a.numpy(), 1.0)


def test_backward_twice_without_retain() -> None:
    g = og.Graph()
    a = g.param(np.ones(3), name="a")
    y = (a * a).sum()
    g.backward(y)
    with pytest.raises(og.GraphError) as ei:
        g.backward(y)
    msg = str(ei.value)
    assert "retain=True" in msg and "consumed" in msg and "test_errors.py:" in msg, msg


def test_backward_through_a_consumed_part_of_the_graph() -> None:
    g = og.Graph()
    a = g.param(np.ones(3), name="a")
    h = a.exp()
    g.backward(h.sum())
    with pytest.raises(og.GraphError, match="retain=True"):
        g.backward((h * 2.0).sum())  # the new node is fine, the exp below it is consumed


def test_non_scalar_loss_needs_a_seed() -> None:
    g = og.Graph()
    a = g.param(np.ones((2, 3)), name="a")
    y = a * 2.0
    before = state(g, a)
    with pytest.raises(og.GraphError) as ei:
        g.backward(y)
    msg = str(ei.value)
    assert "scalar" in msg and "seed" in msg and re.search(r"\(2, ?3\)", msg), msg
    assert state(g, a) == before
    g.backward(y.sum())


def test_leaf_write_with_gradient_history(here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.ones(3), name="w")
    v = g.param(np.full(3, 2.0), name="v")
    c = g.constant(np.ones(3), name="c")
    v2, v_1, v_tail = v * 2.0, v[1], v[1:]  # right-hand sides with gradient history
    before = state(g, w, v, c)
    writes: list[Callable[[], Any]] = [lambda: w.__iadd__(v2), lambda: w.__setitem__(0, v_1),
                                       lambda: w.copy_(v), lambda: w[1:].add_(v_tail)]
    for write in writes:
        with pytest.raises(og.GraphError) as ei:
            write()
        msg = str(ei.value)
        assert "no_grad" in msg and "w" in msg, msg
        assert f"test_errors.py:{write.__code__.co_firstlineno}" in msg, msg
    assert state(g, w, v, c) == before
    with g.no_grad():
        w += v * 2.0  # inside no_grad the history is knowingly dropped
    np.testing.assert_array_equal(w.numpy(), 5.0)
    assert not w.requires_grad or w.is_leaf
    # scalars, arrays, constants and gradient handles are fine anywhere
    w += 1.0
    w -= np.ones(3)
    w += c
    grads = g.backward((w * v).sum())
    w -= grads[w] * 0.5  # grads[w] is v = 2
    np.testing.assert_array_equal(w.numpy(), 5.0)
    w.copy_(grads[v])  # grads[v] is w at backward time = 6
    np.testing.assert_array_equal(w.numpy(), 6.0)


# --- GradError ------------------------------------------------------------------------------------------

def test_grad_error_for_non_params_and_unrelated_params() -> None:
    g = og.Graph()
    a = g.param(np.ones(3), name="a")
    b = g.param(np.ones(3), name="b")
    c = g.constant(np.ones(3), name="c")
    grads = g.backward((a * c).sum())
    with pytest.raises(og.GradError) as ei:
        grads[b]
    assert isinstance(ei.value, LookupError)
    assert "b" in str(ei.value) and "does not depend" in str(ei.value), str(ei.value)
    with pytest.raises(og.GradError) as ei:
        grads[c]
    assert "c" in str(ei.value) and "not a param" in str(ei.value), str(ei.value)
    r = a * 2.0
    with pytest.raises(og.GradError, match="not a param"):
        grads[r]
    with pytest.raises(og.GradError):
        grads["a"]  # type: ignore[index]
    assert b not in grads and c not in grads and a in grads


def test_backward_of_something_that_needs_no_gradient() -> None:
    g = og.Graph()
    c = g.constant(np.ones(3), name="c")
    with pytest.raises((og.GradError, og.GraphError)) as ei:
        g.backward(c.sum())
    assert "param" in str(ei.value)


# --- check_finite ----------------------------------------------------------------------------------------

def test_check_finite_names_the_node(here: Callable[[], str]) -> None:
    g = og.Graph()
    a = g.param(np.array([1.0, 4.0]), name="a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = a.sqrt() - 1.0
        line = here(); y = s.log()  # noqa: E702
        loss = (y * 0.0).sum()  # the forward value is finite, its gradient is not
        before = state(g, a)
        with pytest.raises(og.GradError) as ei:
            g.backward(loss, check_finite=True)
        msg = str(ei.value)
        log = next(n for n in g.pending() if n.op == "log")
        assert f"#{log.id} log" in msg and line in msg, msg
        assert state(g, a) == before, "a failed backward consumes nothing and leaks no borrow"
        grads = g.backward(loss)  # NaN/inf propagate like numpy without check_finite
        assert not np.isfinite(grads[a].numpy()[0]) and np.isfinite(grads[a].numpy()[1])
    with g.no_grad():
        a += 1.0


def test_nan_propagates_like_numpy() -> None:
    g = og.Graph()
    a = g.param(np.array([-1.0, 4.0]), name="a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = a.sqrt()
        np.testing.assert_array_equal(np.isnan(y.numpy()), [True, False])


# --- DeviceError --------------------------------------------------------------------------------------------

def test_unknown_device() -> None:
    with pytest.raises(og.DeviceError) as ei:
        og.Graph(device="tpu")
    assert "tpu" in str(ei.value)


# --- a failed call changes nothing ---------------------------------------------------------------------------

def test_refused_save_releases_what_it_took() -> None:
    g = og.Graph()
    x = g.param(np.ones(3), name="x")
    w = g.param(np.ones(3), name="w")
    with w.borrow_mut():
        with pytest.raises(og.BorrowError):
            x * w  # saves x (for w's gradient), then cannot save w
    assert g.pending() == []
    with g.no_grad():
        x += 1.0  # x's borrow was given back
    x * w


def test_failed_backward_changes_nothing() -> None:
    g = og.Graph()
    a = g.param(np.full(3, 0.5), name="a")
    y = a.log()
    loss = y.sum()
    before = state(g, a)
    for call in (lambda: g.backward(y), lambda: g.backward(loss, seed=np.ones(2)),
                 lambda: g.backward(loss, into=3)):  # type: ignore[arg-type]
        with pytest.raises((og.GraphError, og.ShapeError, TypeError)):
            call()
        assert state(g, a) == before
    np.testing.assert_allclose(g.backward(loss)[a].numpy(), 2.0)


def test_unsqueeze_float_axis_is_a_clear_type_error() -> None:
    g = og.Graph()
    with pytest.raises(TypeError, match="unsqueeze"):
        g.param(np.ones((2, 3))).unsqueeze(1.5)  # type: ignore[arg-type]
