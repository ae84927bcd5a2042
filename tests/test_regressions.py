"""Bugs found by review, each pinned by the program that showed it."""

from __future__ import annotations

import numpy as np
import pytest

import owngrad as og


def test_two_params_fed_by_one_add_get_separate_gradient_arrays() -> None:
    # add's vjp hands the same array to both inputs; in-place consumers must not see it twice
    g = og.Graph()
    w = g.param(np.array([1.0, 2.0]), name="w")
    v = g.param(np.array([0.5, 1.5]), name="v")
    grads = g.backward(((w + v) * (w + v)).sum())
    assert grads._arrays[w._node] is not grads._arrays[v._node]  # type: ignore[index]
    before = float(np.sqrt(sum((a ** 2).sum() for a in (grads[w].numpy(), grads[v].numpy()))))
    assert grads.clip_norm_(1.0) == pytest.approx(before)
    after = float(np.sqrt(sum((a ** 2).sum() for a in (grads[w].numpy(), grads[v].numpy()))))
    assert after == pytest.approx(1.0, rel=1e-5)


def test_backward_into_adds_each_gradient_once() -> None:
    g = og.Graph()
    w = g.param(np.array([1.0, 2.0]))
    v = g.param(np.array([0.5, 1.5]))
    acc = g.backward(((w + v) * 1.0).sum())
    g.backward(((w + v) * 1.0).sum(), into=acc)
    np.testing.assert_array_equal(acc[w].numpy(), [2.0, 2.0])
    np.testing.assert_array_equal(acc[v].numpy(), [2.0, 2.0])


def test_inplace_float_into_int_result_is_refused_on_the_recorded_path_too() -> None:
    g = og.Graph()
    p = g.param(np.array([1.0, 2.0]))
    r = (p * 1.0).astype(np.int32)  # an int result of a recorded op
    before = [n.id for n in g.pending()]
    with pytest.raises(TypeError, match="truncating"):
        r += 0.5
    np.testing.assert_array_equal(r.numpy(), [1, 2])
    assert [n.id for n in g.pending()] == before


def test_clamp_with_array_bounds_checks_shapes_first_and_records_nothing_on_failure() -> None:
    g = og.Graph()
    w = g.param(np.ones((2, 3)))
    y = w * 2.0
    before = [n.id for n in g.pending()]
    with pytest.raises(og.ShapeError):
        y.clamp_(lo=np.zeros((3, 2)))
    assert [n.id for n in g.pending()] == before
    np.testing.assert_array_equal(y.numpy(), np.full((2, 3), 2.0))


def test_clamp_with_tensor_bounds_is_differentiable_like_og_clip() -> None:
    g = og.Graph()
    x = g.param(np.array([0.0, 1.0, 2.0, -1.0]))
    lo = g.param(np.zeros(4))
    hi = g.param(np.ones(4))
    y = x * 1.0
    y.clamp_(lo, hi)
    grads = g.backward(y.sum())
    np.testing.assert_array_equal(y.numpy(), [0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(grads[x].numpy(), [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(grads[lo].numpy(), [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(grads[hi].numpy(), [0.0, 0.0, 1.0, 0.0])


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


def test_advanced_index_out_of_range_is_an_index_error_naming_the_shape() -> None:
    g = og.Graph()
    w = g.param(np.ones((4, 2)))
    with pytest.raises(IndexError, match=r"tensor index: .*\(tensor shape \(4, 2\)\)"):
        w[np.array([0, 7])]
    assert g.pending() == []


def test_view_membership_in_grads_agrees_with_getitem() -> None:
    g = og.Graph()
    w = g.param(np.ones(3))
    grads = g.backward((w * 2.0).sum())
    assert w in grads and w[0:1] not in grads
    with pytest.raises(og.GradError):
        grads[w[0:1]]


def test_to_dot_labels_every_node_with_op_shape_and_borrows() -> None:
    g = og.Graph()
    w = g.param(np.ones((3, 2)), name="w")
    x = g.constant(np.ones((4, 3)), name="x")
    dot = g.to_dot((x @ w).relu().sum())
    assert "matmul (4, 2)" in dot and "relu (4, 2)" in dot and "sum ()" in dot
    assert "borrows x (shared)" in dot and "w\\nparam (3, 2)" in dot


def test_layers_built_without_a_seed_differ_and_stay_reproducible() -> None:
    def build() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        g = og.Graph()
        a, b = og.nn.Linear(g, 8, 8), og.nn.Linear(g, 8, 8)
        d1, d2 = og.nn.Dropout(0.5), og.nn.Dropout(0.5)
        x = g.constant(np.ones((4, 6)))
        return a.weight.numpy(), b.weight.numpy(), d1(x).numpy(), d2(x).numpy()

    wa, wb, m1, m2 = build()
    assert not np.array_equal(wa, wb), "two default layers got the same init"
    assert not np.array_equal(m1, m2), "two default dropout layers drew the same mask"
    for got, want in zip(build(), (wa, wb, m1, m2)):
        np.testing.assert_array_equal(got, want)  # the graph's stream is seeded: same program, same numbers
    g = og.Graph()
    np.testing.assert_array_equal(og.nn.Linear(g, 8, 8, rng=3).weight.numpy(),
                                  og.nn.Linear(og.Graph(), 8, 8, rng=3).weight.numpy())


def test_a_loss_formats_like_a_number() -> None:
    g = og.Graph()
    loss = g.param(np.array([0.25, 0.5])).sum()
    assert f"{loss:.3f}" == "0.750"
    with pytest.raises(TypeError, match="one-element"):
        f"{g.param(np.ones(2)):.3f}"


def test_fit_takes_metrics_as_a_list_of_named_functions() -> None:
    g = og.Graph()
    model = og.nn.MLP(g, [4, 3], rng=0)
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    batches = og.data.batches(rng.standard_normal((12, 4)), rng.integers(0, 3, 12), batch_size=4, rng=0)
    history = og.fit(model, batches, og.nn.functional.cross_entropy, opt, epochs=2,
                     metrics=[og.training.accuracy], progress=False)
    assert set(history) == {"loss", "accuracy"} and len(history["accuracy"]) == 2
    with pytest.raises(TypeError, match="named functions"):
        og.fit(model, batches, og.nn.functional.cross_entropy, opt, metrics=[lambda o, y: 0.0], progress=False)


@pytest.mark.parametrize("write", [lambda r: r[0].__iadd__(0.5), lambda r: r.clamp_(0.5, 1.5), lambda r: r.__itruediv__(2)],
                         ids=["view+=0.5", "clamp_", "/=2"])
def test_a_refused_int_write_records_nothing(write: object) -> None:
    g = og.Graph()
    r = (g.param(np.array([1.0, 2.0])) * 1.0).astype(np.int32)
    before = [n.id for n in g.pending()]
    with pytest.raises(TypeError, match="truncating"):
        write(r)  # type: ignore[operator]
    assert [n.id for n in g.pending()] == before
    np.testing.assert_array_equal(r.numpy(), [1, 2])


def test_on_grad_streams_each_gradient_as_soon_as_it_is_final() -> None:
    # W2's gradient is final after the second layer's node; the first layer's gradient is not finite.
    # on_grad must have seen W2 before backward reaches (and refuses) the first layer.
    g = og.Graph()
    x = g.constant(np.ones((2, 3)))
    w1 = g.param(np.zeros((3, 4)), name="w1")  # x @ w1 == 0: sqrt's gradient there is inf
    w2 = g.param(np.ones((4, 1)), name="w2")
    loss = ((x @ w1).sqrt() @ w2).sum()
    seen: list[str | None] = []
    with pytest.raises(og.GradError, match="not finite"):
        g.backward(loss, check_finite=True, on_grad=lambda leaf, grad: seen.append(leaf.name))
    assert seen == ["w2"]
    grads = g.backward(loss, on_grad=lambda leaf, grad: seen.append(leaf.name))  # nothing was consumed
    assert seen == ["w2", "w2", "w1"] and len(grads) == 2
