"""RNN, GRU and LSTM with num_layers > 1, bidirectional, initial states, unbatched inputs and
inter-layer dropout: torch's keys, shapes, outputs and gradients in float64."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import owngrad as og

RNG = np.random.default_rng(5)

CONFIGS = [
    ("RNN", {"num_layers": 2}),
    ("RNN", {"nonlinearity": "relu", "bidirectional": True}),
    ("GRU", {"num_layers": 3, "bidirectional": True, "batch_first": True}),
    ("GRU", {"num_layers": 2, "bias": False}),
    ("LSTM", {"num_layers": 2, "bidirectional": True}),
    ("LSTM", {"num_layers": 2, "batch_first": True, "dropout": 0.3}),  # eval mode: dropout is off
]


def _run(kind: str, kw: dict[str, Any], with_state: bool) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    g = og.Graph()
    m = getattr(og.nn, kind)(g, 3, 4, dtype=np.float64, **kw)
    tm = getattr(torch.nn, kind)(3, 4, **kw).double()
    assert list(m.state_dict()) == list(tm.state_dict())
    assert [v.shape for v in m.state_dict().values()] == [tuple(v.shape) for v in tm.state_dict().values()]
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    m.eval()
    tm.eval()
    bf = kw.get("batch_first", False)
    x0 = RNG.standard_normal((2, 5, 3) if bf else (5, 2, 3))
    n = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    h0 = RNG.standard_normal((n, 2, 4))
    c0 = RNG.standard_normal((n, 2, 4))
    x, h, c = g.param(x0), g.param(h0), g.param(c0)
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x0, h0, c0))
    if kind == "LSTM":
        out, (hn, cn) = m(x, (h, c) if with_state else None)
        tout, (thn, tcn) = tm(tx, (th, tc) if with_state else None)
        loss, tloss = (out * out).sum() + (hn * cn).sum(), (tout * tout).sum() + (thn * tcn).sum()
    else:
        out, hn = m(x, h if with_state else None)
        tout, thn = tm(tx, th if with_state else None)
        loss, tloss = (out * out).sum() + (hn * hn).sum(), (tout * tout).sum() + (thn * thn).sum()
    assert out.shape == tuple(tout.shape) and hn.shape == tuple(thn.shape)
    leaves = [x, h, c] if with_state else [x]
    grads = g.backward(loss)
    tloss.backward()
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(hn.numpy(), thn.detach().numpy(), rtol=1e-10, atol=1e-13)
    for a, ta in zip(leaves, (tx, th, tc)):
        if a is c and kind != "LSTM":
            continue
        np.testing.assert_allclose(grads[a].numpy(), ta.grad.numpy(), rtol=1e-9, atol=1e-12)
    for (k, p), (_, tp) in zip(m.named_parameters(), tm.named_parameters()):
        np.testing.assert_allclose(grads[p].numpy(), tp.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("kind,kw", CONFIGS, ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items())}"
                                                  for k, kw in CONFIGS])
def test_stacked_layers_match_torch(kind: str, kw: dict[str, Any]) -> None:
    _run(kind, kw, with_state=False)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_initial_states_match_torch(kind: str) -> None:
    _run(kind, {"num_layers": 2, "bidirectional": True}, with_state=True)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_unbatched_input_matches_torch(kind: str) -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    m = getattr(og.nn, kind)(g, 3, 4, num_layers=2, dtype=np.float64)
    tm = getattr(torch.nn, kind)(3, 4, num_layers=2).double()
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x0 = RNG.standard_normal((6, 3))
    out, state = m(g.constant(x0))
    tout, tstate = tm(torch.tensor(x0))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-13)
    h, th = (state[0], tstate[0]) if kind == "LSTM" else (state, tstate)
    assert h.shape == tuple(th.shape) == (2, 4)
    np.testing.assert_allclose(h.numpy(), th.detach().numpy(), rtol=1e-10, atol=1e-13)


def test_dropout_acts_between_layers_in_training_only() -> None:
    g = og.Graph()
    x = g.constant(RNG.standard_normal((5, 2, 3)))
    deep = og.nn.GRU(g, 3, 4, num_layers=2, dropout=0.5, rng=0, dtype=np.float64)
    a, _ = deep(x)
    b, _ = deep(x)
    assert not np.allclose(a.numpy(), b.numpy())  # a fresh mask each call
    deep.eval()
    np.testing.assert_array_equal(deep(x)[0].numpy(), deep(x)[0].numpy())
    shallow = og.nn.GRU(g, 3, 4, num_layers=1, dropout=0.5, rng=0, dtype=np.float64)  # no layer after the last
    train_out = shallow(x)[0].numpy()
    np.testing.assert_array_equal(train_out, shallow.eval()(x)[0].numpy())


def test_recurrent_layers_refuse_bad_arguments() -> None:
    g = og.Graph()
    with pytest.raises(ValueError, match="num_layers"):
        og.nn.LSTM(g, 3, 4, num_layers=0)
    with pytest.raises(ValueError, match="nonlinearity"):
        og.nn.RNN(g, 3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout"):
        og.nn.GRU(g, 3, 4, dropout=1.5)
    m = og.nn.GRU(g, 3, 4, num_layers=2)
    with pytest.raises(og.ShapeError, match=r"initial state of shape \(2, 2, 4\)"):
        m(g.zeros((5, 2, 3)), g.zeros((1, 2, 4)))
    with pytest.raises(og.ShapeError, match="input_size 3"):
        m(g.zeros((5, 2, 2)))
    with pytest.raises(og.ShapeError, match="empty"):
        m(g.zeros((0, 2, 3)))


def test_rnn_cell_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    for nl in ("tanh", "relu"):
        g = og.Graph()
        cell = og.nn.RNNCell(g, 3, 4, nonlinearity=nl, dtype=np.float64)
        tcell = torch.nn.RNNCell(3, 4, nonlinearity=nl).double()
        cell.load_state_dict({k: v.detach().numpy() for k, v in tcell.state_dict().items()})
        x0, h0 = RNG.standard_normal((2, 3)), RNG.standard_normal((2, 4))
        np.testing.assert_allclose(cell(g.constant(x0), g.constant(h0)).numpy(),
                                   tcell(torch.tensor(x0), torch.tensor(h0)).detach().numpy(), rtol=1e-12)


def test_a_stacked_bidirectional_lstm_step_captures_bitwise() -> None:
    def make() -> tuple[og.Graph, og.nn.LSTM, og.optim.SGD]:
        g = og.Graph()
        m = og.nn.LSTM(g, 3, 4, num_layers=2, bidirectional=True, batch_first=True, rng=0, dtype=np.float64)
        return g, m, og.optim.SGD(m.parameters(), lr=0.1)

    def stepper(g: og.Graph, m: og.nn.LSTM, opt: og.optim.SGD) -> Any:
        def step(x: og.Tensor) -> og.Tensor:
            out, _ = m(x)  # h_n and c_n unused: nothing may be left pending
            loss = (out * out).mean()
            opt.step(g.backward(loss))
            return loss
        return step

    ge, me, oe = make()
    gc, mc, oc = make()
    eager, captured = stepper(ge, me, oe), gc.capture(stepper(gc, mc, oc))
    for i in range(3):
        x0 = np.random.default_rng(i).standard_normal((2, 5, 3))
        assert eager(ge.constant(x0)).item() == captured(gc.constant(x0)).item()
    for a, b in zip(me.parameters(), mc.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_recurrence_matches_finite_differences(kind: str) -> None:
    from gradcheck import check_grads

    def run(x: og.Tensor, h0: og.Tensor, w: og.Tensor) -> og.Tensor:
        m = getattr(og.nn, kind)(x.graph, 3, 2, bidirectional=True, rng=1, dtype=np.float64)
        m.weight_hh_l0 = w  # a param of the check: its gradient is checked too
        if kind == "LSTM":
            out, (h, c) = m(x, (h0, h0 * 0.5))
            return out.sum(axis=-1) + (h * c).sum()
        out, h = m(x, h0)
        return out.sum(axis=-1) + (h * h).sum()

    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
    check_grads(run, RNG.standard_normal((4, 2, 3)), RNG.standard_normal((2, 2, 2)),
                RNG.standard_normal((gates * 2, 2)))


def test_recurrence_saves_its_inputs_and_backs_up_twice() -> None:
    g = og.Graph()
    m = og.nn.LSTM(g, 3, 4, rng=0, dtype=np.float64)
    h0 = g.constant(np.ones((1, 2, 4)))
    c0 = g.constant(np.zeros((1, 2, 4)))
    x = g.param(RNG.standard_normal((5, 2, 3)))
    out, _ = m(x, (h0, c0))
    loss = (out * out).sum()
    with pytest.raises(og.BorrowError, match=r"recurrence"):
        h0 += 1.0  # the initial state is saved (as torch saves hx; the second-order backward replays from it)
    opt = og.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(og.BorrowError, match=r"weight_hh_l0.*recurrence"):
        opt.step(g.backward(m.weight_hh_l0.sum()))
    first = g.backward(loss, retain=True)[x].numpy()
    np.testing.assert_array_equal(g.backward(loss)[x].numpy(), first)


def test_an_initial_state_given_as_an_array_is_a_constant() -> None:
    g = og.Graph()
    rnn = og.nn.GRU(g, 4, 6, dtype=np.float64)
    x = g.constant(np.random.default_rng(0).normal(size=(5, 3, 4)))
    h0 = np.random.default_rng(1).normal(size=(1, 3, 6))
    out, h = rnn(x, h0)
    ref, href = rnn(x, g.constant(h0))
    assert np.array_equal(out.numpy(), ref.numpy()) and np.array_equal(h.numpy(), href.numpy())
    with pytest.raises(og.ShapeError, match=r"expected an initial state of shape \(1, 3, 6\).*got \(2, 3, 6\)"):
        rnn(x, np.zeros((2, 3, 6)))
