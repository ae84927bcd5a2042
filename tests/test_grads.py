"""Gradients handed out by backward: each param gets its own array (in-place consumers such as
``clip_norm_`` and ``into=`` never see one twice), ``into=`` checks its graph first, membership
agrees with lookup, and ``on_grad`` streams each gradient, under the param's name, as soon as it is final."""

from __future__ import annotations

from typing import Any

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


def test_view_membership_in_grads_agrees_with_getitem() -> None:
    g = og.Graph()
    w = g.param(np.ones(3))
    grads = g.backward((w * 2.0).sum())
    assert w in grads and w[0:1] not in grads
    with pytest.raises(og.GradError):
        grads[w[0:1]]


def test_on_grad_streams_each_gradient_as_soon_as_it_is_final() -> None:
    # W2's gradient is final after the second layer's node; the first layer's gradient is not finite.
    # on_grad must have seen W2 before backward reaches (and refuses) the first layer.
    g = og.Graph()
    x = g.constant(np.ones((2, 3)))
    w1 = g.param(np.zeros((3, 4)), name="w1")  # x @ w1 == 0: sqrt's gradient there is inf
    w2 = g.param(np.ones((4, 1)), name="w2")
    loss = ((x @ w1).sqrt() @ w2).sum()
    seen: list[str | None] = []
    with pytest.raises(og.GradError, match="not finite"), pytest.warns(RuntimeWarning):  # 1/0, inf * 0
        g.backward(loss, check_finite=True, on_grad=lambda leaf, grad: seen.append(leaf.name))
    assert seen == ["w2"]
    with pytest.warns(RuntimeWarning):  # sqrt's gradient at 0: 1/0, then inf * 0
        grads = g.backward(loss, on_grad=lambda leaf, grad: seen.append(leaf.name))  # nothing was consumed
    assert seen == ["w2", "w2", "w1"] and len(grads) == 2


def test_frozen_and_on_grad_handles_keep_the_name() -> None:
    g = og.Graph()
    w = g.param(np.ones(2), name="w")
    assert g.freeze(w).name == "w"
    seen: list[Any] = []
    g.backward((w * 2).sum(), on_grad=lambda leaf, grad: seen.append(leaf.name))
    assert seen == ["w"]


def test_backward_into_grads_of_another_graph_is_a_graph_error() -> None:
    g, g2 = og.Graph(), og.Graph()
    w = g.param(np.ones(3))
    u = g2.param(np.ones(2))
    other = g2.backward(u.sum())
    loss = (w * 3).sum()
    with pytest.raises(og.GraphError):
        g.backward(loss, into=other)
    assert len(other) == 1
    assert g.backward(loss)[w].numpy().tolist() == [3.0, 3.0, 3.0]  # the failed call consumed nothing
