"""The device-dispatch seam without a GPU: the whole op-and-gradient table on a second array backend.

Device ``"fake"`` (tests/backend_double.py) stores ``DArray``s -- not numpy arrays -- and makes
every hard-coded numpy call on device data raise. Each case runs on ``"cpu"`` and on ``"fake"``;
values and gradients must agree, every array the graph keeps (outputs, saved operands,
gradients) must live on the case's device, and no transfer may happen but ``.numpy()``,
``.to(device)`` and the host data a user hands in (``g.param``, ``seed=``, index arrays).

The tables are tests/op_cases.py's: ``CASES`` (drawn with hypothesis) and ``EXTRA`` (fixed
inputs that on their own record every rule in ``owngrad.rules.RULES``). The same runs
(tests/device_runs.py) happen on cupy in test_cuda.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import backend_double
import owngrad as og
import owngrad.rules as rules_mod
from backend_double import TRANSFERS, DArray, HostRoundTrip, dnp
from device_runs import case_run, compare, run_on, train_steps
from op_cases import CASES, EXTRA, EXTRA_IDS, IDS, POS, A, B, M
from owngrad.backend import device_of
from owngrad.rules import RULES

FAKE = backend_double.DEVICE


@pytest.mark.parametrize("case", EXTRA, ids=EXTRA_IDS)
def test_extra_table_on_fake(case: tuple[str, Callable[..., og.Tensor], list[np.ndarray]]) -> None:
    name, fn, arrays = case
    compare(FAKE, name, fn, arrays)


def test_extra_table_covers_every_rule() -> None:
    recorded: set[str] = set()
    for _name, fn, arrays in EXTRA:
        try:
            recorded |= run_on("cpu", fn, arrays).ops
        except Exception:  # a failing case is reported by its own test; count what it recorded
            g = og.Graph()
            with contextlib.suppress(Exception):
                fn(*[g.param(a) if a.dtype.kind == "f" else g.constant(a) for a in arrays])
            recorded |= {n.op for n in g.pending()}
    missing = sorted(set(RULES) - recorded - {"to"})  # "to" needs two devices: test_to_* below
    assert not missing, f"rules without a case in EXTRA: {missing}"


# --- the op table (op_cases.CASES) on the fake device -----------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_example_on_fake(case: Any) -> None:
    shapes, kw = case.example
    case_run(case, shapes, kw, 1, FAKE)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_case_drawn_on_fake(case: Any, data: Any) -> None:
    shapes, kw = data.draw(case.shapes, label="shapes, attrs")
    seed = data.draw(st.integers(0, 2**16), label="values seed")
    case_run(case, shapes, kw, seed, FAKE)


# --- the double itself is strict (so a pass means something) --------------------------------

def test_double_refuses_every_numpy_path() -> None:
    d = dnp.asarray(np.arange(6.0).reshape(2, 3))
    assert type(d) is DArray and not isinstance(d, np.ndarray)
    for bad in (lambda: np.asarray(d), lambda: np.array(d), lambda: np.exp(d), lambda: np.sum(d),
                lambda: np.concatenate([d, d]), lambda: np.maximum(d, 0), lambda: d + np.ones(3),
                lambda: np.ones(3) * d, lambda: dnp.exp(np.ones(3)), lambda: dnp.zeros(3) + [1.0, 2.0, 3.0]):
        with pytest.raises(HostRoundTrip, match="host round-trip"):
            bad()
    assert not hasattr(d.flags, "writeable"), "cupy's flags have no writeable: neither may the double's"
    assert type(d[0, 1]) is DArray and d[0, 1].shape == ()  # cupy: 0-d arrays, never numpy scalars
    assert type(d.sum()) is DArray
    assert type(np.float64(2.0) * d) is DArray  # numpy scalars mix, as on cupy
    assert isinstance(d.get(), np.ndarray)


def test_hardcoded_numpy_in_a_forward_fails_on_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = RULES["exp"]
    monkeypatch.setitem(rules_mod.RULES, "exp", dataclasses.replace(bad, forward=lambda xp, x: np.exp(x)))
    run_on("cpu", lambda x: x.exp(), [A])  # numpy on the CPU is fine...
    with pytest.raises((TypeError, ValueError), match="host round-trip"):  # ...and caught on the fake device
        run_on(FAKE, lambda x: x.exp(), [A])


def test_hardcoded_numpy_in_a_vjp_fails_on_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = RULES["tanh"]
    monkeypatch.setitem(rules_mod.RULES, "tanh", dataclasses.replace(
        bad, vjps=(lambda g, ans, x: g * (1 - np.square(ans)),)))
    run_on("cpu", lambda x: x.tanh(), [A])
    with pytest.raises(TypeError, match="host round-trip"):
        run_on(FAKE, lambda x: x.tanh(), [A])


# --- the ledger behaves the same on both devices --------------------------------------------

DEVICES = ["cpu", FAKE]


@pytest.mark.parametrize("device", DEVICES)
def test_saved_region_blocks_a_write_and_changes_nothing(device: str) -> None:
    g = og.Graph(device=device)
    x = g.param(POS, name="x")
    _kept = x[0:2].log()  # saves x[0:2]; kept alive (a dropped result gives its borrows up)
    before = x.numpy()
    with pytest.raises(og.BorrowError, match=r"x\[0?:2\]"):
        with g.no_grad():
            x[1] += 1.0
    np.testing.assert_array_equal(x.numpy(), before)
    with g.no_grad():
        x[2] += 1.0  # disjoint from the saved rows
    assert x.numpy()[2, 0] == before[2, 0] + 1.0
    assert device_of(x._data) == device


@pytest.mark.parametrize("device", DEVICES)
def test_disjoint_views_do_not_conflict(device: str) -> None:
    g = og.Graph(device=device)
    x = g.param(np.ones((4, 6)), name="x")
    y = (x[::2] * x[::2]).sum()  # saves the even rows
    with g.no_grad():
        x[1::2] *= 3.0  # odd rows: fine
        x[:, 0:3][1] -= 1.0  # a view of a view, odd row: fine
        with pytest.raises(og.BorrowError):
            x[:, 1] += 1.0  # a column crosses the even rows
    grads = g.backward(y)
    expect = np.zeros((4, 6))
    expect[::2] = 2.0
    np.testing.assert_array_equal(grads[x].numpy(), expect)


@pytest.mark.parametrize("device", DEVICES)
def test_borrow_blocks_hand_out_device_arrays(device: str) -> None:
    g = og.Graph(device=device)
    x = g.param(A, name="x")
    with x.borrow() as a:
        assert device_of(a) == device
        with pytest.raises(og.BorrowError):
            x += 1.0
    with x[0:2].borrow_mut() as a:
        assert device_of(a) == device
        a[...] = 5.0  # zero-copy: the tensor sees it
        with pytest.raises(og.BorrowError):
            x[1].borrow().__enter__()
        with x[2].borrow():  # disjoint row: fine
            pass
    np.testing.assert_array_equal(x.numpy()[0:2], 5.0)
    np.testing.assert_array_equal(x.numpy()[2], A[2])
    x += 1.0  # the borrow ended


def test_borrow_mut_array_is_frozen_after_the_block_on_cpu_only() -> None:
    """The documented difference (docs/devices.md): numpy arrays can be frozen, cupy's cannot."""
    g = og.Graph()
    x = g.param(A)
    with x.borrow_mut() as a:
        pass
    with pytest.raises(ValueError):
        a[0] = 1.0
    gf = og.Graph(device=FAKE)
    with gf.param(A).borrow_mut() as d:
        pass
    assert not hasattr(d.flags, "writeable")


@pytest.mark.parametrize("device", DEVICES)
def test_recorded_write_through_a_view_gives_exact_gradients(device: str) -> None:
    g = og.Graph(device=device)
    x = g.param(A)
    y = x * 2
    y[0:2] = 0.0
    grads = g.backward((y * y).sum())
    expect = 8 * A
    expect[0:2] = 0.0
    np.testing.assert_allclose(grads[x].numpy(), expect, rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_grads_accumulate_clip_and_check_finite(device: str) -> None:
    g = og.Graph(device=device)
    x = g.param(A)
    grads = g.backward((x * x).sum(), check_finite=True)
    g.backward((x * 3.0).sum(), into=grads)
    np.testing.assert_allclose(grads[x].numpy(), 2 * A + 3, rtol=1e-12)
    norm = grads.clip_norm_(0.5)
    assert norm == pytest.approx(float(np.linalg.norm(2 * A + 3)))
    assert float(np.linalg.norm(grads[x].numpy())) == pytest.approx(0.5, rel=1e-5)
    assert device_of(grads[x]._data) == device
    with pytest.raises(og.GradError, match="not finite"), pytest.warns(RuntimeWarning, match="invalid value"):
        g.backward((x * np.inf).sum(), check_finite=True)  # inf - inf in the sum: numpy warns on either backend


@pytest.mark.parametrize("device", DEVICES)
def test_leaf_updates_in_place(device: str) -> None:
    g = og.Graph(device=device)
    w = g.param(A)
    c = g.constant(B)
    with g.no_grad():
        w -= 0.1 * c
        w[0] = 0.0
        w.mul_(2.0).clamp_(-1.0, 1.0)
        c.copy_(w)
        c.fill_(g.constant(np.array(2.0)))
    expect = A - 0.1 * B
    expect[0] = 0.0
    np.testing.assert_allclose(w.numpy(), np.clip(expect * 2, -1, 1), rtol=1e-12)
    np.testing.assert_array_equal(c.numpy(), 2.0)
    assert device_of(w._data) == device and device_of(c._data) == device


# --- transfers: only .numpy(), .to(device) and the host data a user hands in ------------------

def test_no_hidden_transfers() -> None:
    g = og.Graph(device=FAKE)
    w = g.param(M, name="w")
    x = g.constant(A)
    lab = g.constant(np.array([0, 2, 2, 1]))
    TRANSFERS.update(to_host=0, to_device=0)
    h = x @ w  # saves x only: h is free for a recorded in-place write
    h[0:1] *= 2.0
    h = h.tanh()
    loss = (og.maximum(h, 0.1) * h.softmax(axis=-1)).sum(axis=1) + h[lab].sum()
    loss = loss.mean() + h.var() + og.concatenate([h, h * 2]).logsumexp()
    grads = g.backward(loss, check_finite=True)
    grads.clip_norm_(1.0)
    assert TRANSFERS == {"to_host": 0, "to_device": 0}, f"hidden transfers during ops/backward: {TRANSFERS}"
    grads[w].numpy()
    assert TRANSFERS == {"to_host": 1, "to_device": 0}


def test_numpy_and_repr_are_host_copies() -> None:
    g = og.Graph(device=FAKE)
    x = g.param(A)
    h = x.numpy()
    assert type(h) is np.ndarray
    h[0, 0] = 99.0
    assert x.numpy()[0, 0] == A[0, 0]
    assert "device=fake" in repr(x)
    assert x[1, 2].item() == A[1, 2]
    assert float(x.sum()) == pytest.approx(A.sum())


def test_to_from_fake_to_cpu_and_gradient_flows_back() -> None:
    g = og.Graph(device=FAKE)
    x = g.param(A)
    y = x.to("cpu")
    assert y.device == "cpu" and type(y._data) is np.ndarray
    grads = g.backward((y * y).sum())
    assert device_of(grads[x]._data) == FAKE
    np.testing.assert_allclose(grads[x].numpy(), 2 * A, rtol=1e-12)


def test_to_from_cpu_to_fake_and_gradient_flows_back() -> None:
    g = og.Graph()
    x = g.param(A)
    y = x.to(FAKE)
    assert y.device == FAKE and type(y._data) is DArray
    loss = (y * y.exp()).sum().to("cpu")
    grads = g.backward(loss)
    assert type(grads[x]._data) is np.ndarray
    np.testing.assert_allclose(grads[x].numpy(), np.exp(A) * (1 + A), rtol=1e-12)


def test_param_from_device_array_and_back() -> None:
    d = dnp.asarray(A)
    g = og.Graph(device=FAKE)
    x = g.param(d)
    assert type(x._data) is DArray and x._data is not d  # copied in
    c = og.Graph().param(d)  # onto the CPU: an explicit transfer through get()
    np.testing.assert_array_equal(c.numpy(), A)


# --- mixing devices raises -----------------------------------------------------------------

def _two_devices() -> tuple[og.Graph, og.Tensor, og.Tensor]:
    g = og.Graph(device=FAKE)
    x = g.param(A)
    with g.no_grad():
        y = x.to("cpu")
    return g, x, y


@pytest.mark.parametrize("op", ["+", "*", "@T", "maximum", "where", "concatenate", "stack"])
def test_mixing_devices_in_an_op_raises(op: str) -> None:
    g, x, y = _two_devices()
    f = {"+": lambda: x + y, "*": lambda: y * x, "@T": lambda: x @ y.T, "maximum": lambda: og.maximum(x, y),
         "where": lambda: og.where(y > 0, x, x), "concatenate": lambda: og.concatenate([x, y]),
         "stack": lambda: og.stack([x, y])}[op]
    with pytest.raises(og.DeviceError):
        f()


def test_mixing_devices_in_a_write_raises() -> None:
    g, x, y = _two_devices()
    before = x.numpy()
    with pytest.raises(og.DeviceError):
        x[0:1] = y[0:1]
    with pytest.raises(og.DeviceError):
        with g.no_grad():
            x += y
    np.testing.assert_array_equal(x.numpy(), before)


def test_host_array_meeting_device_tensor_raises() -> None:
    g = og.Graph(device=FAKE)
    x = g.param(A)
    with pytest.raises(og.DeviceError):
        x + np.ones(4)
    with pytest.raises(og.DeviceError):
        og.where(np.ones((3, 4), dtype=bool), x, x)


def test_device_array_meeting_cpu_tensor_raises() -> None:
    x = og.Graph().param(A)
    with pytest.raises(og.DeviceError):
        x + dnp.ones(4)


def test_device_array_operand_on_its_own_device() -> None:
    g = og.Graph(device=FAKE)
    x = g.param(A)
    grads = g.backward((x * dnp.asarray(B)).sum())
    np.testing.assert_allclose(grads[x].numpy(), B, rtol=1e-12)


def test_cuda_without_cupy_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError, GPU or not
    with pytest.raises(og.DeviceError, match=r"pip install -e '\.\[cuda\]'"):
        og.Graph(device="cuda")


def test_unknown_device_raises() -> None:
    with pytest.raises(og.DeviceError, match="tpu"):
        og.Graph(device="tpu")
    with pytest.raises(og.DeviceError):
        og.Graph().param(A).to("tpu")


# --- the training layer dispatches too -------------------------------------------------------

@pytest.mark.parametrize("optname", ["sgd", "adam", "adamw"])
def test_training_steps_match_cpu(optname: str) -> None:
    ref, got = train_steps("cpu", optname), train_steps(FAKE, optname)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-10)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-10, atol=1e-12)
    for k in ref[2]:
        assert type(got[2][k]) is np.ndarray  # state_dict is host arrays on every device
        np.testing.assert_allclose(got[2][k], ref[2][k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_fit_matches_cpu() -> None:
    def fit(device: str) -> dict[str, list[float]]:
        g = og.Graph(device=device)
        m = og.nn.MLP(g, [4, 8, 3])
        r = np.random.default_rng(0)
        xs, ys = r.standard_normal((20, 4)).astype(np.float32), r.integers(0, 3, 20)
        return og.fit(m, og.data.batches(xs, ys, 8, rng=0), og.nn.functional.cross_entropy,
                      og.optim.Adam(m.parameters()), epochs=2, metrics={"acc": og.training.accuracy},
                      progress=False)
    ref, got = fit("cpu"), fit(FAKE)
    assert got.keys() == ref.keys()
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-6, err_msg=k)


def test_state_dict_round_trip_on_fake(tmp_path: Any) -> None:
    g = og.Graph(device=FAKE)
    m = og.nn.Sequential(og.nn.Linear(g, 3, 2, rng=0), og.nn.BatchNorm1d(g, 2))
    sd = {k: v * 2 for k, v in m.state_dict().items()}
    m.load_state_dict(sd)  # loading a checkpoint is an explicit host->device transfer
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    for _, t in m.named_parameters():
        assert device_of(t._data) == FAKE
    og.save(tmp_path / "m.npz", m)
    og.load(tmp_path / "m.npz", into=m)


# --- the "cuda" branch of owngrad.backend, driven by a stand-in cupy (the double under cupy's names) ---

def _stand_in_cupy(monkeypatch: pytest.MonkeyPatch, n_gpus: Any = 1) -> None:
    import types

    import owngrad.backend as backend

    cp = types.ModuleType("cupy")
    for k, v in vars(dnp).items():
        setattr(cp, k, v)
    for k in ("ndarray", "newaxis", "inf", "nan", "pi", "e"):
        setattr(cp, k, getattr(type(dnp), k))
    add = dnp.add
    cp.add = lambda *a, **k: add(*a, **k)  # type: ignore[attr-defined]  # no .at: owngrad must use cupyx
    used: list[int] = []

    def count() -> int:
        if isinstance(n_gpus, Exception):
            raise n_gpus
        return int(n_gpus)

    def scatter_add(a: Any, idx: Any, v: Any) -> None:
        used.append(1)
        add.at(a, idx, v)

    cp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count))  # type: ignore[attr-defined]
    cpx = types.ModuleType("cupyx")
    cpx.scatter_add = scatter_add  # type: ignore[attr-defined]
    cpx.used = used  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "cupyx", cpx)
    monkeypatch.setattr(backend, "_BACKENDS", dict(backend._BACKENDS))  # restored after the test
    monkeypatch.setattr(backend, "_cupy_tried", False)


@pytest.mark.parametrize("case", [c for c in EXTRA if c[0] in ("gather_int", "recorded_inplace", "views",
                                                                "F.conv2d", "F.max_pool2d", "composite")],
                         ids=lambda c: c[0])
def test_cuda_branch_with_a_stand_in_cupy(monkeypatch: pytest.MonkeyPatch,
                                          case: tuple[str, Callable[..., og.Tensor], list[np.ndarray]]) -> None:
    _stand_in_cupy(monkeypatch)
    name, fn, arrays = case
    compare("cuda", name, fn, arrays)
    if name == "gather_int":
        assert sys.modules["cupyx"].used, "repeated-index gradients must go through cupyx.scatter_add"


@pytest.mark.parametrize("n_gpus", [0, RuntimeError("cudaErrorNoDevice")])
def test_cuda_without_a_gpu_says_so(monkeypatch: pytest.MonkeyPatch, n_gpus: Any) -> None:
    _stand_in_cupy(monkeypatch, n_gpus)
    with pytest.raises(og.DeviceError, match="no GPU"):
        og.Graph(device="cuda")
