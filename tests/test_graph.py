"""The graph: its leaves, Grads, an iterative backward, pending() and to_dot()."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import owngrad as og


def test_spec_example() -> None:
    rng = np.random.default_rng(0)
    wd = rng.standard_normal((3, 2))
    g = og.Graph()
    w = g.param(wd, name="w")
    x = g.constant(np.ones((4, 3)))
    loss = (x @ w).relu().sum()
    grads = g.backward(loss)
    assert isinstance(grads, og.Grads)
    assert grads[w].shape == w.shape and grads[w].dtype == w.dtype
    expect = np.ones((4, 3)).T @ ((np.ones((4, 3)) @ wd) > 0).astype(float)
    np.testing.assert_allclose(grads[w].numpy(), expect)
    np.testing.assert_allclose(loss.item(), np.maximum(np.ones((4, 3)) @ wd, 0).sum())
    assert g.device == "cpu" and w.device == "cpu"
    assert "grad" not in dir(w) and not hasattr(w, "grad"), "gradients live only in Grads"


# --- leaves: dtypes and copies -----------------------------------------------------------------

@pytest.mark.parametrize("data, dtype", [
    (1.5, np.float32), ([1.0, 2.0], np.float32), ([[1, 2], [3, 4]], np.float32), ((0.5, 1.5), np.float32),
    (np.zeros(2, np.float64), np.float64), (np.zeros(2, np.float32), np.float32),
    (np.zeros(2, np.float16), np.float16), (np.float64(2.0), np.float64),
])
@pytest.mark.parametrize("maker", ["param", "constant"])
def test_leaf_dtypes(data: object, dtype: type, maker: str) -> None:
    g = og.Graph()
    t = getattr(g, maker)(data)
    assert t.dtype == np.dtype(dtype), f"{data!r} -> {t.dtype}"
    np.testing.assert_array_equal(t.numpy(), np.asarray(data, dtype=dtype))
    assert t.shape == np.shape(data) and t.ndim == np.ndim(data) and t.size == np.size(data)


@pytest.mark.parametrize("data", [np.arange(3), np.array([True, False]), np.arange(3, dtype=np.uint8)])
def test_constants_keep_numpy_dtype(data: np.ndarray) -> None:
    assert og.Graph().constant(data).dtype == data.dtype


def test_data_is_copied_in() -> None:
    g = og.Graph()
    a = np.ones(3)
    w = g.param(a, name="w")
    c = g.constant(a)
    a[:] = 7.0
    np.testing.assert_array_equal(w.numpy(), 1.0)
    np.testing.assert_array_equal(c.numpy(), 1.0)
    out = w.numpy()
    out[:] = 9.0  # numpy() is a copy too
    np.testing.assert_array_equal(w.numpy(), 1.0)
    nc = np.asfortranarray(np.arange(6.0).reshape(2, 3))[:, ::-1]  # non-contiguous input
    np.testing.assert_array_equal(g.param(nc).numpy(), nc)


def test_tensor_properties() -> None:
    g = og.Graph()
    w = g.param(np.ones((2, 3)), name="w")
    c = g.constant(np.ones(3))
    y = w * c
    v = w[0]
    assert w.name == "w" and w.graph is g
    assert w.requires_grad and w.is_leaf and w.base is None
    assert not c.requires_grad and c.is_leaf
    assert y.requires_grad and not y.is_leaf
    assert v.base is w and v.shape == (3,)
    assert og.Graph().constant(2.0).item() == 2.0
    r = repr(w)
    assert "float64" in r and "cpu" in r and "param" in r and "1." in r, r
    y2 = w.log()
    r2 = repr(w)
    assert "borrow" in r2 and r2 != r, f"repr should show the borrow state: {r2}"
    del y2


def test_gradient_handle_repr_says_whose_gradient_it_is() -> None:
    g = og.Graph()
    w = g.param(np.ones((2, 3)), name="w")
    grads = g.backward((w * 2.0).sum())
    r, rv = repr(grads[w]), repr(grads[w][1:])
    assert "gradient of w" in r and "read-only" in r and "constant" not in r, r
    assert "gradient of w[1" in rv and "constant" not in rv, rv


# --- Grads ------------------------------------------------------------------------------------------

def test_grads_mapping_api() -> None:
    g = og.Graph()
    a = g.param(np.ones(2), name="a")
    b = g.param(np.full(3, 2.0), name="b")
    unused = g.param(np.ones(1), name="unused")
    grads = g.backward((a * 3.0).sum() + (b * b).sum())
    assert len(grads) == 2
    assert a in grads and b in grads and unused not in grads
    items = dict((id(p), gr.numpy()) for p, gr in grads.items())
    np.testing.assert_array_equal(items[id(a)], 3.0)
    np.testing.assert_array_equal(items[id(b)], 4.0)
    assert {id(p) for p, _ in grads.items()} == {id(a), id(b)}


def test_clip_norm_returns_pre_clip_norm_and_clips_in_place() -> None:
    g = og.Graph()
    a = g.param(np.array([3.0, 0.0]), name="a")
    b = g.param(np.array([0.0]), name="b")
    grads = g.backward((a * a).sum() + (b * 4.0).sum())  # grads: [6, 0], [4]
    norm = grads.clip_norm_(1.0)
    assert norm == pytest.approx(np.sqrt(36 + 16))
    new = np.concatenate([grads[a].numpy(), grads[b].numpy()])
    assert np.linalg.norm(new) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(new / np.linalg.norm(new), np.array([6.0, 0.0, 4.0]) / np.sqrt(52), rtol=1e-5)
    assert grads.clip_norm_(10.0) == pytest.approx(1.0, rel=1e-5)  # under the limit: unchanged
    assert np.linalg.norm(np.concatenate([grads[a].numpy(), grads[b].numpy()])) == pytest.approx(1.0, rel=1e-5)


def test_backward_into_accumulates() -> None:
    g = og.Graph()
    a = g.param(np.array([1.0, 2.0]), name="a")
    b = g.param(np.array([1.0]), name="b")
    acc = g.backward((a * a).sum())
    same = g.backward((a * 3.0).sum() + (b * 5.0).sum(), into=acc)
    assert same is acc
    np.testing.assert_allclose(acc[a].numpy(), [2.0 + 3.0, 4.0 + 3.0])
    np.testing.assert_allclose(acc[b].numpy(), [5.0])
    assert len(acc) == 2


def test_gradient_dtype_follows_the_param() -> None:
    g = og.Graph()
    a = g.param(np.ones(3, np.float32), name="a")
    c = g.constant(np.ones(3, np.float64))
    grads = g.backward((a * c).sum())  # the product is float64
    assert grads[a].dtype == np.float32


def test_gradients_always_add() -> None:
    g = og.Graph()
    a = g.param(np.array([2.0]), name="a")
    y = a * a + a.exp() * a + a
    np.testing.assert_allclose(g.backward(y.sum())[a].numpy(), 2 * 2.0 + np.exp(2.0) * 3.0 + 1)


# --- backward is iterative --------------------------------------------------------------------------

def test_ten_thousand_op_chain() -> None:
    g = og.Graph()
    a = g.param(np.array([1.0]), name="a")
    y = a
    for _ in range(10_000):
        y = y * 1.0001
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(min(limit, 3000))
    try:
        grads = g.backward(y.sum())
    finally:
        sys.setrecursionlimit(limit)
    np.testing.assert_allclose(grads[a].numpy(), 1.0001 ** 10_000, rtol=1e-9)
    assert g.pending() == []


def test_diamond_graph() -> None:
    g = og.Graph()
    a = g.param(np.array([0.5]), name="a")
    h = a.exp()
    y = h * h.tanh() + h.sqrt()
    e = np.exp(0.5)
    expect = (np.tanh(e) + e * (1 - np.tanh(e) ** 2) + 0.5 / np.sqrt(e)) * e
    np.testing.assert_allclose(g.backward(y.sum())[a].numpy(), expect)


# --- pending() and to_dot() ---------------------------------------------------------------------------------

def test_pending_lists_nodes_with_their_borrows() -> None:
    g = og.Graph()
    w = g.param(np.full(3, 0.5), name="w")
    assert g.pending() == []
    y = w.log()
    z = (y * 2.0).sum()
    pend = g.pending()
    assert [n.op for n in pend] == ["log", "mul", "sum"], pend
    ids = [n.id for n in pend]
    assert ids == sorted(ids), "oldest first"
    log = pend[0]
    assert [(b.label, b.kind) for b in log.borrows] == [("w", "shared")]
    assert pend[1].borrows == [] and pend[2].borrows == []
    assert "log" in repr(log) and "test_graph.py" in repr(log)
    g.backward(z)
    assert g.pending() == []


def test_to_dot() -> None:
    g = og.Graph()
    w = g.param(np.full((3, 2), 0.5), name="w")
    x = g.constant(np.ones((4, 3)), name="x")
    y = (x @ w).log().sum()
    dot = g.to_dot(y)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    for op in ("matmul", "log", "sum"):
        assert op in dot, dot
    assert "w" in dot and "(3, 2)" in dot, "the param's name and shape"
    assert "shared" in dot, "borrow state"
    assert len(re.findall(r"->", dot)) >= 3
    c = g.constant(np.ones(2))
    assert "(2,)" in g.to_dot(c)


def test_comparisons_are_constant_booleans() -> None:
    g = og.Graph()
    w = g.param(np.array([-1.0, 2.0]), name="w")
    m = w > 0
    assert m.dtype == np.bool_ and not m.requires_grad
    np.testing.assert_array_equal(m.numpy(), [False, True])
    assert g.pending() == []


def test_unary_and_reduction_methods_exist() -> None:
    g = og.Graph()
    x = g.param(np.arange(1.0, 7.0).reshape(2, 3), name="x")
    a = x.numpy()
    np.testing.assert_allclose(x.max(axis=1).numpy(), a.max(axis=1))
    np.testing.assert_allclose(x.min(axis=0, keepdims=True).numpy(), a.min(axis=0, keepdims=True))
    np.testing.assert_allclose(x.var(axis=1).numpy(), a.var(axis=1))
    np.testing.assert_allclose(x.softmax(axis=-1).numpy().sum(axis=-1), 1.0)
    for name in ("exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs"):
        assert getattr(og, name)(x).shape == (2, 3)


def test_a_second_backward_walks_nodes_that_saved_nothing_as_torch_does() -> None:
    g = og.Graph()
    w = g.param(np.array([1.0, 2.0]))
    y = w * 2.0 + 1.0  # mul by a number and add save nothing
    first = g.backward(y.sum())
    second = g.backward((y[1:] + 0.0).sum())  # walks the same nodes again: nothing was released
    np.testing.assert_array_equal(first[w].numpy(), [2.0, 2.0])
    np.testing.assert_array_equal(second[w].numpy(), [0.0, 2.0])
    z = w.exp()  # exp saves its output: the first backward releases it
    g.backward(z.sum())
    with pytest.raises(og.GraphError, match="retain=True"):
        g.backward(z.sum())


def test_to_dot_labels_every_node_with_op_shape_and_borrows() -> None:
    g = og.Graph()
    w = g.param(np.ones((3, 2)), name="w")
    x = g.constant(np.ones((4, 3)), name="x")
    dot = g.to_dot((x @ w).relu().sum())
    assert "matmul (4, 2)" in dot and "relu (4, 2)" in dot and "sum ()" in dot
    assert "borrows x (shared)" in dot and "w\\nparam (3, 2)" in dot


def test_a_loss_formats_like_a_number() -> None:
    g = og.Graph()
    loss = g.param(np.array([0.25, 0.5])).sum()
    assert f"{loss:.3f}" == "0.750"
    with pytest.raises(TypeError, match="one-element"):
        f"{g.param(np.ones(2)):.3f}"
