"""og.nn: functional rules (finite differences in float64, and torch where installed) and modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og
import owngrad.nn.functional as F
from gradcheck import check_grads

R = np.random.default_rng(0)


def rnd(*shape: int) -> np.ndarray:
    return R.standard_normal(shape)


def _labels(n: int, c: int) -> np.ndarray:
    return np.random.default_rng(n * 31 + c).integers(0, c, size=n)


# --- finite differences: one row per rule and configuration ---------------------------------

GRAD_CASES: list[tuple[str, Callable[..., og.Tensor], tuple[Any, ...]]] = [
    ("conv2d", lambda x, w: F.conv2d(x, w), (rnd(2, 3, 5, 5), rnd(4, 3, 3, 3))),
    ("conv2d stride 2 pad 1 bias", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
     (rnd(2, 2, 6, 5), rnd(3, 2, 3, 2), rnd(3))),
    ("conv2d 1x1 uneven stride/pad", lambda x, w: F.conv2d(x, w, stride=(1, 2), padding=(2, 0)),
     (rnd(1, 3, 4, 5), rnd(2, 3, 1, 1))),
    ("conv2d dilation", lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(2, 3)),
     (rnd(2, 2, 7, 8), rnd(3, 2, 2, 3), rnd(3))),
    ("max_pool2d", lambda x: F.max_pool2d(x, 2), (rnd(2, 3, 4, 6),)),
    ("max_pool2d overlapping, odd", lambda x: F.max_pool2d(x, 3, stride=1), (rnd(1, 2, 5, 4),)),
    ("max_pool2d stride > kernel", lambda x: F.max_pool2d(x, (2, 1), stride=(3, 2)), (rnd(2, 1, 7, 5),)),
    ("cross_entropy mean", lambda z, y: F.cross_entropy(z, y), (rnd(5, 4), _labels(5, 4))),
    ("cross_entropy sum", lambda z, y: F.cross_entropy(z, y, reduction="sum"), (rnd(5, 4), _labels(5, 4))),
    ("cross_entropy none", lambda z, y: F.cross_entropy(z, y, reduction="none"), (rnd(6, 3), _labels(6, 3))),
    ("mse_loss", lambda a, b: F.mse_loss(a, b), (rnd(3, 4), rnd(3, 4))),
    ("mse_loss none", lambda a, b: F.mse_loss(a, b, reduction="none"), (rnd(5), rnd(5))),
    ("bce with logits", lambda z, t: F.binary_cross_entropy_with_logits(z, t), (rnd(4, 3), R.random((4, 3)))),
    ("embedding repeated", lambda w, i: F.embedding(w, i), (rnd(5, 3), np.array([[0, 2, 2], [4, 2, 0]]))),
    ("dropout fixed rng", lambda x: F.dropout(x, 0.4, True, rng=3), (rnd(4, 5),)),
    ("linear", lambda x, w, b: F.linear(x, w, b), (rnd(3, 4), rnd(2, 4), rnd(2))),
]


@pytest.mark.parametrize("name,fn,arrays", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradients_finite_differences(name: str, fn: Callable[..., og.Tensor], arrays: tuple[Any, ...]) -> None:
    check_grads(fn, *arrays)


def test_module_gradients_finite_differences() -> None:
    def bn(x: og.Tensor, w: og.Tensor, b: og.Tensor) -> og.Tensor:
        m = og.nn.BatchNorm1d(x.graph, 3, dtype=np.float64)
        m.weight, m.bias = w, b  # type: ignore[assignment]
        return m(x)

    def ln(x: og.Tensor) -> og.Tensor:
        return og.nn.LayerNorm(x.graph, (2, 3), dtype=np.float64)(x)

    check_grads(bn, rnd(6, 3), rnd(3), rnd(3))
    check_grads(ln, rnd(4, 2, 3))


# --- torch ---------------------------------------------------------------------------------

def _og_grads(fn: Callable[..., og.Tensor], *arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    g = og.Graph()
    ts = [g.param(a) if a.dtype.kind == "f" else g.constant(a) for a in arrays]
    out = fn(*ts)
    grads = g.backward(out.sum() if out.ndim else out)
    return out.numpy(), [grads[t].numpy() for t, a in zip(ts, arrays) if a.dtype.kind == "f"]


TORCH_CASES: list[tuple[str, Callable[..., og.Tensor], Callable[..., Any], tuple[np.ndarray, ...]]] = [
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
     lambda tf, x, w, b: tf.conv2d(x, w, b, stride=2, padding=1), (rnd(2, 3, 7, 6), rnd(4, 3, 3, 3), rnd(4))),
    ("conv2d dilation", lambda x, w, b: F.conv2d(x, w, b, padding=(0, 2), dilation=(3, 2)),
     lambda tf, x, w, b: tf.conv2d(x, w, b, padding=(0, 2), dilation=(3, 2)),
     (rnd(2, 3, 9, 7), rnd(4, 3, 3, 2), rnd(4))),
    ("max_pool2d", lambda x: F.max_pool2d(x, 3, stride=2), lambda tf, x: tf.max_pool2d(x, 3, stride=2),
     (rnd(2, 3, 7, 8),)),
    ("max_pool2d ties", lambda x: F.max_pool2d(x, 2), lambda tf, x: tf.max_pool2d(x, 2),
     (np.round(rnd(1, 2, 4, 4)).clip(0, 1),)),
    ("cross_entropy", lambda z, y: F.cross_entropy(z, y), lambda tf, z, y: tf.cross_entropy(z, y),
     (rnd(7, 5), _labels(7, 5))),
    ("cross_entropy none", lambda z, y: F.cross_entropy(z, y, reduction="none"),
     lambda tf, z, y: tf.cross_entropy(z, y, reduction="none"), (rnd(7, 5), _labels(7, 5))),
    ("bce", lambda z, t: F.binary_cross_entropy_with_logits(z, t),
     lambda tf, z, t: tf.binary_cross_entropy_with_logits(z, t), (rnd(4, 3) * 10, R.random((4, 3)))),
    ("mse", lambda a, b: F.mse_loss(a, b), lambda tf, a, b: tf.mse_loss(a, b), (rnd(3, 4), rnd(3, 4))),
    ("embedding", lambda w, i: F.embedding(w, i), lambda tf, w, i: tf.embedding(i, w),
     (rnd(6, 3), np.array([[1, 1, 5], [0, 1, 3]]))),
]


@pytest.mark.parametrize("name,ours,theirs,arrays", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_against_torch(name: str, ours: Callable[..., og.Tensor], theirs: Callable[..., Any],
                       arrays: tuple[np.ndarray, ...]) -> None:
    torch = pytest.importorskip("torch")
    value, grads = _og_grads(ours, *arrays)
    tt = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    out = theirs(torch.nn.functional, *tt)
    (out.sum() if out.ndim else out).backward()
    np.testing.assert_allclose(value, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    tgrads = [t.grad.numpy() for t, a in zip(tt, arrays) if a.dtype.kind == "f"]
    for ours_g, theirs_g in zip(grads, tgrads):
        np.testing.assert_allclose(ours_g, theirs_g, rtol=1e-10, atol=1e-12)


def test_modules_against_torch() -> None:
    torch = pytest.importorskip("torch")
    x = rnd(8, 5)
    g = og.Graph()
    ours = og.nn.Sequential(og.nn.Linear(g, 5, 6, rng=1, dtype=np.float64), og.nn.BatchNorm1d(g, 6, dtype=np.float64),
                            og.nn.Tanh(), og.nn.LayerNorm(g, 6, dtype=np.float64), og.nn.Linear(g, 6, 3, rng=2,
                                                                                               dtype=np.float64))
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.BatchNorm1d(6), torch.nn.Tanh(),
                                 torch.nn.LayerNorm(6), torch.nn.Linear(6, 3)).double()
    sd = theirs.state_dict()
    theirs.load_state_dict({k: torch.tensor(ours.state_dict()[k]) if k in ours.state_dict() else v
                            for k, v in sd.items()})
    for _ in range(2):  # two training-mode passes: the running statistics move twice
        out = ours(g.constant(x))
        grads = g.backward((out * out).sum())
        tout = theirs(torch.tensor(x))
        theirs.zero_grad()
        (tout * tout).sum().backward()
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-9, atol=1e-10)
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(grads[p].numpy(), tparams[name].grad.numpy(), rtol=1e-8, atol=1e-10)
    tsd = theirs.state_dict()
    for name, arr in ours.state_dict().items():
        np.testing.assert_allclose(arr, tsd[name].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    ours.eval()
    theirs.eval()
    with g.no_grad():
        np.testing.assert_allclose(ours(g.constant(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(),
                                   rtol=1e-9, atol=1e-10)


# --- validation ----------------------------------------------------------------------------

def test_cross_entropy_validates_labels() -> None:
    g = og.Graph()
    z = g.param(rnd(4, 3))
    with pytest.raises(TypeError, match="cross_entropy.*integer"):
        F.cross_entropy(z, np.array([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(og.ShapeError, match=r"cross_entropy.*\(4, 3\).*\(4, 1\)"):
        F.cross_entropy(z, np.zeros((4, 1), dtype=np.int64))
    with pytest.raises(og.ShapeError, match="cross_entropy"):
        F.cross_entropy(z, np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: label 3 is out of range for 3 classes"):
        F.cross_entropy(z, np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="cross_entropy: label -1"):
        F.cross_entropy(z, np.array([0, -1, 2, 0]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(z, np.array([0, 1, 2, 0]), reduction="avg")
    assert g.pending() == []
    # a constant label tensor works as well as an array
    assert F.cross_entropy(z, g.constant(np.array([0, 1, 2, 0]))).shape == ()


def test_shape_errors_name_the_op() -> None:
    g = og.Graph()
    with pytest.raises(og.ShapeError, match="conv2d.*same C"):
        F.conv2d(g.param(rnd(1, 2, 5, 5)), g.param(rnd(3, 4, 3, 3)))
    with pytest.raises(og.ShapeError, match="conv2d.*larger"):
        F.conv2d(g.param(rnd(1, 2, 2, 2)), g.param(rnd(3, 2, 3, 3)))
    with pytest.raises(og.ShapeError, match="max_pool2d"):
        F.max_pool2d(g.param(rnd(2, 3, 4)), 2)
    with pytest.raises(IndexError, match="embedding: index 5 is out of range for 5"):
        F.embedding(g.param(rnd(5, 2)), np.array([0, 5]))
    with pytest.raises(TypeError, match="embedding.*integer"):
        F.embedding(g.param(rnd(5, 2)), np.array([0.0, 1.0]))
    with pytest.raises(og.ShapeError, match="mse_loss"):
        F.mse_loss(g.param(rnd(3)), rnd(4))
    with pytest.raises(og.ShapeError, match="Linear"):
        og.nn.Linear(g, 4, 2)(g.constant(rnd(3, 5)))


# --- saved tensors: exactly what the gradients need ------------------------------------------

def test_conv2d_saves_only_what_is_needed() -> None:
    g = og.Graph()
    w = g.param(rnd(2, 1, 3, 3))
    x = g.constant(rnd(1, 1, 5, 5))
    y = F.conv2d(x, w)               # only w needs a gradient: only x is saved, w is not borrowed
    with g.no_grad():
        w += 1.0
    xp = g.param(rnd(1, 1, 5, 5))
    wc = g.constant(rnd(2, 1, 3, 3))
    y2 = F.conv2d(xp, wc)            # only x needs a gradient: wc is saved, so writing it is refused
    with pytest.raises(og.BorrowError, match="conv2d"):
        with g.no_grad():
            wc += 1.0
    g.backward(y.sum())
    g.backward(y2.sum())


def test_max_pool_borrows_nothing() -> None:
    g = og.Graph()
    x = g.param(rnd(1, 1, 4, 4))
    y = F.max_pool2d(x, 2)
    (node,) = [n for n in g.pending() if n.op == "max_pool2d"]
    assert node.borrows == []
    gx = g.backward(y.sum())[x].numpy()
    assert gx.sum() == 4 and set(np.unique(gx)) <= {0.0, 1.0}


def test_dropout() -> None:
    g = og.Graph()
    x = g.param(np.ones((200, 50)))
    assert F.dropout(x, 0.5, training=False) is x
    y = F.dropout(x, 0.3, training=True, rng=0).numpy()
    assert set(np.unique(y)) <= {0.0, 1 / 0.7}
    assert abs((y == 0).mean() - 0.3) < 0.02
    assert not F.dropout(x, 1.0, rng=0).numpy().any()
    m = og.nn.Dropout(0.5, rng=0)
    assert not np.array_equal(m(x).numpy(), m(x).numpy())  # a fresh mask per call
    m.eval()
    assert m(x) is x
    with pytest.raises(ValueError):
        F.dropout(x, 1.5)


# --- modules -------------------------------------------------------------------------------

def test_registry_and_names() -> None:
    g = og.Graph()
    model = og.nn.Sequential(og.nn.Linear(g, 4, 8), og.nn.ReLU(), og.nn.BatchNorm1d(g, 8),
                             og.nn.Linear(g, 8, 2, bias=False))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "3.weight"]
    assert len(model.parameters()) == 5 and model.graph is g
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias", "2.running_mean",
                                        "2.running_var", "2.num_batches_tracked", "3.weight"]  # torch's order
    assert model.training and model[2].training
    model.eval()
    assert not model.training and not model[2].training
    model.train()
    assert model[2].training
    mlp = og.nn.MLP(g, [3, 5, 5, 2], activation="tanh", rng=0)
    assert [type(m).__name__ for m in mlp] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert mlp(g.constant(rnd(4, 3).astype(np.float32))).shape == (4, 2)
    with pytest.raises(ValueError, match="activation"):
        og.nn.MLP(g, [3, 2], activation="swish")


def test_linear_and_conv_init_follow_torch() -> None:
    g = og.Graph()
    lin = og.nn.Linear(g, 100, 300, rng=0)
    w = lin.weight.numpy()
    assert w.shape == (300, 100) and w.dtype == np.float32
    assert np.abs(w).max() <= 0.1 and np.abs(w).max() > 0.099
    assert abs(w.std() - 0.1 / np.sqrt(3)) < 0.002
    assert lin.bias is not None and np.abs(lin.bias.numpy()).max() <= 0.1
    conv = og.nn.Conv2d(g, 4, 8, 3, rng=0)
    assert np.abs(conv.weight.numpy()).max() <= 1 / 6
    same = og.nn.Linear(g, 100, 300, rng=0)
    assert np.array_equal(same.weight.numpy(), w)
    assert not np.array_equal(og.nn.Linear(g, 100, 300, rng=1).weight.numpy(), w)


def test_load_state_dict_roundtrip_and_all_or_nothing() -> None:
    g = og.Graph()
    a = og.nn.MLP(g, [3, 4, 2], rng=0)
    b = og.nn.MLP(g, [3, 4, 2], rng=1)
    b.load_state_dict(a.state_dict())
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert np.array_equal(p.numpy(), q.numpy())
    c = og.nn.MLP(g, [3, 4, 2], rng=2)
    before = c.state_dict()
    bad = dict(a.state_dict())
    bad["2.weight"] = np.zeros((3, 4))
    with pytest.raises(og.ShapeError, match=r"2.weight has shape \(3, 4\).*\(2, 4\)"):
        c.load_state_dict(bad)
    missing = dict(a.state_dict())
    del missing["0.bias"]
    missing["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['0.bias'\].*unexpected keys \['extra'\]"):
        c.load_state_dict(missing)
    # a pending node saved the last layer's weight: refused before the first layer is written
    out = c(g.constant(rnd(2, 3).astype(np.float32)))
    with pytest.raises(og.BorrowError, match="2.weight"):
        c.load_state_dict(a.state_dict())
    for k, v in c.state_dict().items():
        assert np.array_equal(v, before[k]), k
    g.backward(out.sum())
    c.load_state_dict(a.state_dict())
    assert np.array_equal(c.state_dict()["0.weight"], a.state_dict()["0.weight"])


def test_batchnorm_running_stats_are_borrow_checked_writes() -> None:
    g = og.Graph()
    bn = og.nn.BatchNorm1d(g, 3, momentum=0.5, dtype=np.float64)
    x = rnd(10, 3) * 2 + 1
    out = bn(g.constant(x))            # pending nodes never save the running stats ...
    out2 = bn(g.constant(x))           # ... so a second update is allowed while the first is pending
    expect_mean = 0.75 * x.mean(axis=0)
    np.testing.assert_allclose(bn.running_mean.numpy(), expect_mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.25 + 0.75 * x.var(axis=0, ddof=1), rtol=1e-12)
    # ... but a running stat that someone is reading through borrow() cannot be updated
    with bn.running_mean.borrow():
        with pytest.raises(og.BorrowError, match="running_mean"):
            bn(g.constant(x))
    np.testing.assert_allclose(bn.running_mean.numpy(), expect_mean, rtol=1e-12)
    g.backward((out * out2).sum())
    bn.eval()
    with g.no_grad():
        y = bn(g.constant(x)).numpy()
    np.testing.assert_allclose(y, (x - expect_mean) / np.sqrt(bn.running_var.numpy() + 1e-5), rtol=1e-10)


def test_embedding_module_and_flatten_pool() -> None:
    g = og.Graph()
    emb = og.nn.Embedding(g, 10, 4, rng=0)
    out = emb(np.array([[1, 2], [2, 9]]))
    assert out.shape == (2, 2, 4)
    gw = g.backward(out.sum())[emb.weight].numpy()
    assert gw[:, 0].tolist() == [0, 1, 2, 0, 0, 0, 0, 0, 0, 1]
    x = g.param(rnd(2, 3, 4, 4))
    y = og.nn.Flatten()(og.nn.MaxPool2d(2)(x))
    assert y.shape == (2, 12)
    g.backward(y.sum())


# --- torch parity of the Module API ---------------------------------------------------------

def test_state_dict_keys_and_order_match_torch() -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    ours = og.nn.Sequential(og.nn.Linear(g, 4, 5), og.nn.BatchNorm1d(g, 5), og.nn.ReLU(),
                            og.nn.Sequential(og.nn.LayerNorm(g, 5), og.nn.Linear(g, 5, 2, bias=False)),
                            og.nn.Embedding(g, 3, 2))
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(),
                                 torch.nn.Sequential(torch.nn.LayerNorm(5), torch.nn.Linear(5, 2, bias=False)),
                                 torch.nn.Embedding(3, 2))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    # a torch checkpoint loads as it is (num_batches_tracked included), and ours into torch
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for k, v in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[k], v.numpy(), err_msg=k)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})


def test_tied_modules_are_listed_once_but_saved_under_every_name() -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    lin = og.nn.Linear(g, 3, 3)
    ours = og.nn.Sequential(lin, og.nn.ReLU(), lin)
    tl = torch.nn.Linear(3, 3)
    theirs = torch.nn.Sequential(tl, torch.nn.ReLU(), tl)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(ours.state_dict())


def test_load_state_dict_strict_false_and_old_checkpoints() -> None:
    g = og.Graph()
    m = og.nn.Sequential(og.nn.Linear(g, 3, 4, rng=0), og.nn.BatchNorm1d(g, 4))
    src = og.nn.Sequential(og.nn.Linear(g, 3, 4, rng=1), og.nn.BatchNorm1d(g, 4))
    state = {k: v for k, v in src.state_dict().items() if k != "0.bias"}
    state["extra"] = np.zeros(2)
    with pytest.raises(KeyError, match="missing keys"):
        m.load_state_dict(state)
    res = m.load_state_dict(state, strict=False)
    assert res.missing_keys == ["0.bias"] and res.unexpected_keys == ["extra"]
    assert np.array_equal(m.state_dict()["0.weight"], src.state_dict()["0.weight"])
    assert not np.array_equal(m.state_dict()["0.bias"], src.state_dict()["0.bias"])
    # a checkpoint written before BatchNorm had num_batches_tracked still loads (torch is lenient too)
    old = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert m.load_state_dict(old) == ([], [])
    with pytest.raises(TypeError, match="mapping"):
        m.load_state_dict([1, 2])  # type: ignore[arg-type]


def test_module_call_forwards_every_argument_and_helps_with_init_order() -> None:
    g = og.Graph()

    class Gated(og.nn.Module):
        def __init__(self, g: og.Graph) -> None:
            super().__init__(g)
            self.lin = og.nn.Linear(g, 3, 2, rng=0)

        def forward(self, x: og.Tensor, gate: og.Tensor, *, scale: float = 1.0) -> og.Tensor:
            return self.lin(x) * gate * scale

    m = Gated(g)
    x = g.constant(np.ones((4, 3), np.float32))
    assert m(x, g.constant(np.zeros((4, 2), np.float32)), scale=2.0).numpy().sum() == 0

    class Early(og.nn.Module):
        def __init__(self, g: og.Graph) -> None:
            self.lin = og.nn.Linear(g, 3, 2)
            super().__init__(g)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(g\) first"):
        Early(g)
    del m.lin
    assert m.parameters() == [] and m.state_dict() == {}
    with pytest.raises(TypeError, match="True or False"):
        m.train("no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Linear: expected a Tensor.*g.constant"):
        og.nn.Linear(g, 3, 2)([[1.0, 2.0, 3.0]])


def test_train_eval_reach_nested_children_and_repr_follows_torch() -> None:
    g = og.Graph()
    inner = og.nn.Sequential(og.nn.Dropout(0.5), og.nn.BatchNorm1d(g, 3))
    model = og.nn.Sequential(og.nn.Linear(g, 3, 3), inner)
    assert model.eval() is model
    assert not any(m.training for _, m in model.named_modules())
    model.train()
    assert all(m.training for _, m in model.named_modules())
    torch = pytest.importorskip("torch")
    assert repr(og.nn.Linear(g, 4, 5)) == repr(torch.nn.Linear(4, 5))
    assert repr(og.nn.Conv2d(g, 1, 16, 3, padding=1)) == repr(torch.nn.Conv2d(1, 16, 3, padding=1))
    assert repr(og.nn.Embedding(g, 10, 4)) == repr(torch.nn.Embedding(10, 4))
    assert "stride=2" in repr(og.nn.MaxPool2d(2))
    with pytest.raises(ValueError, match="stride"):
        og.nn.Conv2d(g, 1, 2, 3, stride=0)
    with pytest.raises(ValueError, match="kernel_size"):
        og.nn.MaxPool2d(0)


@pytest.mark.parametrize("shape,momentum", [((6, 4), 0.1), ((5, 4, 3), 0.1), ((6, 4), None), ((3, 4, 2), None)])
def test_batchnorm_matches_torch_3d_and_cumulative(shape: tuple[int, ...], momentum: float | None) -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    ours = og.nn.BatchNorm1d(g, 4, momentum=momentum, dtype=np.float64)
    theirs = torch.nn.BatchNorm1d(4, momentum=momentum).double()
    for step in range(3):
        x = rnd(*shape) * (step + 1) + step
        w = g.param(rnd(4))
        ours.weight = w
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w.numpy()))
        xo = g.param(x)
        out = ours(xo)
        gr = g.backward((out * out * out).sum())
        xt = torch.tensor(x, requires_grad=True)
        theirs.zero_grad()
        tout = theirs(xt)
        (tout * tout * tout).sum().backward()
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(gr[xo].numpy(), xt.grad.numpy(), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(gr[w].numpy(), theirs.weight.grad.numpy(), rtol=1e-7, atol=1e-9)
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-10, err_msg=k)
    ours.eval()
    theirs.eval()
    x = rnd(*shape)
    with g.no_grad():
        np.testing.assert_allclose(ours(g.constant(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-9)


def test_batchnorm_running_update_is_all_or_nothing() -> None:
    g = og.Graph()
    bn = og.nn.BatchNorm1d(g, 3, dtype=np.float64)
    x = g.constant(rnd(5, 3))
    with bn.running_var.borrow():            # running_mean is free, running_var is not
        with pytest.raises(og.BorrowError, match="running_var"):
            bn(x)
    assert not bn.running_mean.numpy().any() and int(bn.num_batches_tracked.item()) == 0
    g.clear()


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_probabilities_and_label_smoothing_match_torch(smoothing: float, reduction: str,
                                                                      soft: bool) -> None:
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(7)
    z = r.standard_normal((6, 4))
    if soft:
        target: np.ndarray = r.random((6, 4))
        target /= target.sum(axis=1, keepdims=True)
    else:
        target = r.integers(0, 4, 6)
    g = og.Graph()
    zz = g.param(z)
    out = F.cross_entropy(zz, target, reduction=reduction, label_smoothing=smoothing)
    gz = g.backward(out.sum())[zz].numpy()
    tz = torch.tensor(z, requires_grad=True)
    tout = torch.nn.functional.cross_entropy(tz, torch.tensor(target), reduction=reduction,
                                             label_smoothing=smoothing)
    tout.sum().backward()
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gz, tz.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_cross_entropy_float_labels_of_the_wrong_shape_explain_both_readings() -> None:
    g = og.Graph()
    z = g.param(rnd(4, 3))
    with pytest.raises(TypeError, match=r"integer dtype.*class probabilities only when they have the logits' "
                                        r"shape \(4, 3\)"):
        F.cross_entropy(z, np.array([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(z, np.array([0, 1, 2, 0]), label_smoothing=1.5)


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


def test_deepcopy_and_clone_give_new_params_in_the_same_graph_without_history() -> None:
    import copy

    g = og.Graph()
    model = og.nn.Sequential(og.nn.Linear(g, 3, 4, rng=0), og.nn.BatchNorm1d(g, 4), og.nn.ReLU(),
                             og.nn.Linear(g, 4, 2, rng=1))
    x = g.constant(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    pending = model(x).sum()  # the original's weights are borrowed by this forward
    for twin in (copy.deepcopy(model), model.clone()):
        assert twin.graph is g
        for (k, p), (k2, q) in zip(model.named_parameters(), twin.named_parameters()):
            assert k == k2 and p is not q and q.is_leaf and q.requires_grad
            np.testing.assert_array_equal(p.numpy(), q.numpy())
        for (_, b), (_, c) in zip(model.named_buffers(), twin.named_buffers()):
            assert b is not c
            np.testing.assert_array_equal(b.numpy(), c.numpy())
        with g.no_grad():  # the copy is free to change while the original is borrowed
            for q in twin.parameters():
                q.mul_(0.5)
        grads = g.backward(twin(x).sum())
        assert all(q in grads for q in twin.parameters()) and not any(p in grads for p in model.parameters())
    g.backward(pending)


def test_deepcopy_keeps_tied_params_tied() -> None:
    import copy

    g = og.Graph()
    lin = og.nn.Linear(g, 3, 3, rng=0)
    tied = og.nn.Sequential(lin, og.nn.Tanh(), lin)
    twin = copy.deepcopy(tied)
    assert len(twin.parameters()) == 2 and twin[0] is twin[2]


def test_a_module_name_prefixes_its_params_in_messages() -> None:
    g = og.Graph()
    actor = og.nn.MLP(g, [3, 4, 2], rng=0, name="actor")
    critic = og.nn.MLP(g, [3, 4, 1], rng=1, name="critic")
    assert actor.name == "actor" and [k for k, _ in actor.named_parameters()][0] == "0.weight"  # keys as torch
    x = g.constant(np.ones((2, 3), dtype=np.float32))
    pending = (critic(x) * critic(x)).sum()
    with pytest.raises(og.BorrowError) as ei:
        with g.no_grad():
            critic.parameters()[2].sub_(0.1)
    assert "critic.2.weight" in str(ei.value) and "actor" not in str(ei.value)
    g.backward(pending)

    class Agent(og.nn.Module):
        def __init__(self, g: og.Graph) -> None:
            super().__init__(g)
            self.body = og.nn.Linear(g, 3, 3, rng=0)

    agent = Agent(g, name="agent")  # user subclasses take name= too
    assert [p.name for p in agent.parameters()] == ["agent.body.weight", "agent.body.bias"]
    with pytest.raises(TypeError, match="name="):
        og.nn.Linear(g, 2, 2, name="")
