"""Containers (ModuleList, ModuleDict, ParameterList) with torch's state_dict keys, og.nn.init's formulas
and fan conventions against torch's, each init an in-place write under the borrow rules, and
Module.to(dtype) / double() / float()."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import owngrad as og

init = og.nn.init


def test_containers_register_under_torchs_keys() -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()

    class Net(og.nn.Module):
        def __init__(self) -> None:
            super().__init__(g)
            self.layers = og.nn.ModuleList([og.nn.Linear(g, 3, 4), og.nn.ReLU(), og.nn.Linear(g, 4, 2)])
            self.heads = og.nn.ModuleDict({"a": og.nn.Linear(g, 2, 1), "b": og.nn.Linear(g, 2, 3, bias=False)})
            self.scales = og.nn.ParameterList([g.param(np.ones(2)), g.param(np.zeros(3))])

    class TNet(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)])
            self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 1), "b": torch.nn.Linear(2, 3, bias=False)})
            self.scales = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(2)),
                                                  torch.nn.Parameter(torch.zeros(3))])

    net, tnet = Net(), TNet()
    assert list(net.state_dict()) == list(tnet.state_dict())
    assert [k for k, _ in net.named_parameters()] == [k for k, _ in tnet.named_parameters()]
    assert len(net.layers) == 3 and isinstance(net.layers[-1], og.nn.Linear)
    assert [type(m).__name__ for m in net.layers[1:]] == ["ReLU", "Linear"]
    assert "a" in net.heads and net.heads.keys() == ["a", "b"] and len(net.scales) == 2
    assert net.scales[1].shape == (3,)


def test_module_list_edits_keep_torchs_order_and_refuse_non_modules() -> None:
    g = og.Graph()
    a, b, c = og.nn.Linear(g, 2, 2), og.nn.Linear(g, 2, 3), og.nn.Linear(g, 2, 4)
    ml = og.nn.ModuleList([a, b])
    ml.insert(0, c)
    assert list(ml) == [c, a, b] and [k.split(".")[0] for k in ml.state_dict()][::2] == ["0", "1", "2"]
    ml[1] = b
    assert list(ml) == [c, b, b]
    del ml[0]
    assert list(ml) == [b, b] and len(ml.parameters()) == 2
    with pytest.raises(TypeError, match="Module"):
        ml.append(g.param(np.ones(2)))  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="out of range"):
        ml[5]
    md = og.nn.ModuleDict([("x", a)])
    with pytest.raises(KeyError, match="has no module 'y'"):
        md["y"]
    with pytest.raises(TypeError, match="param"):
        og.nn.ParameterList([g.constant(np.ones(2))])


def test_gain_and_fans_are_torchs() -> None:
    torch = pytest.importorskip("torch")
    for nl, param in [("linear", None), ("tanh", None), ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                      ("selu", None), ("sigmoid", None), ("conv2d", None)]:
        assert init.calculate_gain(nl, param) == pytest.approx(torch.nn.init.calculate_gain(nl, param), abs=1e-15)
    # the fans through the bounds the inits draw within: the largest of many draws approaches the bound
    g = og.Graph()
    for shape in [(40, 30), (16, 8, 3, 3), (300, 5)]:
        w = g.param(np.zeros(shape))
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
        init.xavier_uniform_(w, gain=2.0, rng=0)
        bound = 2.0 * math.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.97 * bound
        init.kaiming_uniform_(w, a=math.sqrt(5), rng=1)  # torch's Linear/Conv init
        bound = math.sqrt(6.0 / ((1 + 5) * fan_in))
        assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.97 * bound
        init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", rng=2)
        assert w.numpy().std() == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.1)
        init.xavier_normal_(w, rng=3)
        assert w.numpy().std() == pytest.approx(math.sqrt(2.0 / (fan_in + fan_out)), rel=0.1)


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (8, 2, 2)])
def test_orthogonal_is_orthogonal(shape: tuple[int, ...]) -> None:
    g = og.Graph()
    w = g.param(np.zeros(shape))
    init.orthogonal_(w, gain=1.5, rng=0)
    m = w.numpy().reshape(shape[0], -1) / 1.5
    small = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    np.testing.assert_allclose(small, np.eye(small.shape[0]), atol=1e-12)


def test_simple_fills_and_their_statistics() -> None:
    g = og.Graph()
    w = g.param(np.zeros((200, 300), dtype=np.float32))
    assert init.uniform_(w, -2.0, 3.0) is w and w.dtype == np.float32
    assert w.numpy().min() >= -2.0 and w.numpy().max() <= 3.0 and w.numpy().mean() == pytest.approx(0.5, abs=0.02)
    init.normal_(w, 1.0, 0.5)
    assert w.numpy().mean() == pytest.approx(1.0, abs=0.01) and w.numpy().std() == pytest.approx(0.5, rel=0.02)
    init.trunc_normal_(w, std=1.0, a=-0.5, b=0.5)
    assert np.abs(w.numpy()).max() <= 0.5
    init.constant_(w, 0.25)
    assert (w.numpy() == 0.25).all()
    init.ones_(w)
    assert (w.numpy() == 1).all()
    init.zeros_(w)
    assert (w.numpy() == 0).all()
    init.eye_(w)
    assert np.array_equal(w.numpy(), np.eye(200, 300, dtype=np.float32))
    # draws come from the graph's stream unless a generator or seed is given: seeded draws repeat
    a, b = g.param(np.zeros(4)), g.param(np.zeros(4))
    init.normal_(a, rng=7)
    init.normal_(b, rng=np.random.default_rng(7))
    assert np.array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("fill", [lambda w: init.zeros_(w), lambda w: init.xavier_uniform_(w),
                                  lambda w: init.orthogonal_(w), lambda w: init.kaiming_normal_(w),
                                  lambda w: init.constant_(w, 3.0)],
                         ids=["zeros_", "xavier_uniform_", "orthogonal_", "kaiming_normal_", "constant_"])
def test_init_is_a_write_under_the_borrow_rules(fill: Any) -> None:
    g = og.Graph()
    w = g.param(np.full((3, 3), 2.0), name="w")
    pending = (w * w).sum()  # saved w for its backward
    with pytest.raises(og.BorrowError, match=r"cannot write w.*test_nn_containers_init.py"):
        fill(w)
    assert (w.numpy() == 2.0).all()
    g.backward(pending)
    fill(w)
    assert not (w.numpy() == 2.0).all()
    with pytest.raises(og.BorrowError):
        fill(g.freeze(w))


def test_init_refuses_bad_arguments() -> None:
    g = og.Graph()
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(g.param(np.zeros(3)))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(g.param(np.zeros((3, 3))), mode="fan")
    with pytest.raises(ValueError, match="nonlinearity"):
        init.kaiming_uniform_(g.param(np.zeros((3, 3))), nonlinearity="swish")
    with pytest.raises(TypeError, match="floating"):
        init.zeros_(g.constant(np.zeros(3, dtype=np.int64)))


def test_module_to_double_and_float() -> None:
    g = og.Graph()
    net = og.nn.Sequential(og.nn.Linear(g, 3, 4, rng=0), og.nn.BatchNorm1d(g, 4), og.nn.Linear(g, 4, 2, rng=1))
    before = net.state_dict()
    assert net.double() is net
    sd = net.state_dict()
    assert [k for k in sd] == [k for k in before]
    for k, v in sd.items():
        want = np.int64 if k.endswith("num_batches_tracked") else np.float64
        assert v.dtype == want, k
        np.testing.assert_array_equal(v, before[k])
    assert net.parameters()[0].name == "0.weight"
    out = net(g.constant(np.ones((5, 3))))
    assert out.dtype == np.float64
    g.backward(out.sum())
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    with pytest.raises(TypeError, match="floating"):
        net.to(np.int32)


def test_to_keeps_tied_params_tied() -> None:
    g = og.Graph()
    emb = og.nn.Embedding(g, 5, 3, rng=0)
    head = og.nn.Linear(g, 3, 5, bias=False, rng=1)
    head.weight = emb.weight
    model = og.nn.Sequential(emb, head).to("float64")
    assert model[0].weight is model[1].weight and model[0].weight.dtype == np.float64  # type: ignore[union-attr]
    assert len(model.parameters()) == 1
