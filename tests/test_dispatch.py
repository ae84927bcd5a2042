"""SPEC 7 without a GPU: the whole op-and-gradient table on a second array backend.

Device ``"fake"`` (tests/backend_double.py) stores ``DArray``s -- not numpy arrays -- and makes
every hard-coded numpy call on device data raise. Each case runs on ``"cpu"`` and on ``"fake"``;
values and gradients must agree, every array the graph keeps (outputs, saved operands,
gradients) must live on the case's device, and no transfer may happen but ``.numpy()``,
``.to(device)`` and the host data a user hands in (``g.param``, ``seed=``, index arrays).

The table is test_rules.py's ``CASES`` (the spec table, drawn with hypothesis) plus this file's
``EXTRA`` cases, which on their own cover every rule in ``owngrad.rules.RULES`` (so the proof
stands even if the spec table moves). The same machinery runs on cupy in test_cuda.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import backend_double
import owngrad as og
import owngrad.rules as rules_mod
from backend_double import TRANSFERS, DArray, HostRoundTrip, dnp
from owngrad.backend import device_of
from owngrad.rules import RULES

FAKE = backend_double.DEVICE

try:  # the spec table (another helper's file): read, never edited
    import test_rules as _spec

    SPEC_CASES: list[Any] = list(_spec.CASES)
    SPEC_MISSING = ""
except Exception as e:  # pragma: no cover - depends on the other file
    SPEC_CASES = []
    SPEC_MISSING = f"tests/test_rules.py's CASES is not importable ({type(e).__name__}: {e})"

#: kw entries of spec cases that are *operands* (host arrays): made constants of the case's graph
OPERAND_KW: dict[str, tuple[str, ...]] = {"where": ("cond",)}
#: spec cases that pass a raw numpy array as an operand: a host array meeting device data must raise
HOST_OPERAND_CASES = {"concatenate_constant"}


# --- running one case on one device ---------------------------------------------------------

@dataclass
class Run:
    value: np.ndarray
    grads: list[np.ndarray | None]
    ops: set[str]


def _arrays_on(device: str, x: Any) -> list[Any]:
    """Every array-like value in ``x`` (tuples/lists/dicts walked), for the where-does-it-live checks."""
    out: list[Any] = []
    if isinstance(x, (tuple, list)):
        for v in x:
            out += _arrays_on(device, v)
    elif isinstance(x, dict):
        for v in x.values():
            out += _arrays_on(device, v)
    elif hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, np.generic):
        out.append(x)
    return out


def check_resident(g: og.Graph, out: og.Tensor, device: str) -> None:
    """The output and everything the pending nodes saved live on ``device``."""
    assert out.device == device, f"result is on {out.device}, expected {device}"
    assert device_of(out._data) == device, f"result data is a {type(out._data).__name__}, not a {device} array"
    for node in g.pending():
        for a in _arrays_on(device, list(node.saved) + [node.aux]):
            assert device_of(a) == device, (
                f"node #{node.id} {node.op} saved a {type(a).__name__} (host data) on device {device}")


def run_on(device: str, fn: Callable[..., og.Tensor], arrays: list[np.ndarray], seed: int = 0,
           kw: dict[str, Any] | None = None, operand_kw: tuple[str, ...] = ()) -> Run:
    """``fn``'s value and the gradient of ``<fn(x), v>`` (random ``v``) for each float input, on ``device``."""
    g = og.Graph(device=device)
    leaves = [g.param(a) if a.dtype.kind == "f" else g.constant(a) for a in arrays]
    kw = dict(kw or {})
    for k in operand_kw:
        kw[k] = g.constant(kw[k])
    out = fn(*leaves, **kw)
    assert isinstance(out, og.Tensor)
    check_resident(g, out, device)
    ops = {n.op for n in g.pending()}
    value = out.numpy()
    assert isinstance(value, np.ndarray)
    grads: list[np.ndarray | None] = [None] * len(leaves)
    if out.requires_grad:
        v = np.random.default_rng(seed).standard_normal(value.shape).astype(value.dtype)
        gr = g.backward(out, seed=v)
        for i, (leaf, a) in enumerate(zip(leaves, arrays)):
            if a.dtype.kind != "f":
                continue
            if leaf in gr:
                gt = gr[leaf]
                assert device_of(gt._data) == device, (
                    f"gradient of input {i} is a {type(gt._data).__name__}, not a {device} array")
                assert gt.shape == a.shape and gt.dtype == a.dtype
                grads[i] = gt.numpy()
            else:
                grads[i] = np.zeros_like(a)
        assert g.pending() == [], f"backward left nodes pending: {g.pending()}"
    return Run(value, grads, ops)


def assert_same(ref: Run, got: Run, name: str, device: str, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    """Same values, gradients and recorded ops. The fake device runs numpy underneath, so its
    tolerance is tight; a GPU's kernels round differently (test_cuda.py loosens it)."""
    if ref.value.dtype == np.float32:
        rtol, atol = max(rtol, 1e-5), max(atol, 1e-6)
    assert got.value.dtype == ref.value.dtype, f"{name}: dtype {got.value.dtype} on {device}, {ref.value.dtype} on cpu"
    np.testing.assert_allclose(got.value, ref.value, rtol=rtol, atol=atol,
                               err_msg=f"{name}: value on {device} differs from cpu")
    for i, (a, b) in enumerate(zip(ref.grads, got.grads)):
        if a is None:
            assert b is None
            continue
        assert b is not None
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol,
                                   err_msg=f"{name}: gradient of input {i} on {device} differs from cpu")
    assert got.ops == ref.ops, f"{name}: recorded {got.ops} on {device} but {ref.ops} on cpu"


def compare(device: str, name: str, fn: Callable[..., og.Tensor], arrays: list[np.ndarray], seed: int = 0,
            kw: dict[str, Any] | None = None, operand_kw: tuple[str, ...] = (), rtol: float = 1e-10,
            atol: float = 1e-12) -> Run:
    ref = run_on("cpu", fn, arrays, seed, kw, operand_kw)
    got = run_on(device, fn, arrays, seed, kw, operand_kw)
    assert_same(ref, got, name, device, rtol, atol)
    return got


# --- this file's own table: covers every rule by itself ---------------------------------------

def _cross_entropy(logits: og.Tensor, labels: og.Tensor, reduction: str = "mean") -> og.Tensor:
    """The ``cross_entropy`` rule itself (og.nn.functional has its own copy, covered below)."""
    return logits.graph._apply("cross_entropy", (logits, labels), {"reduction": reduction})


def F(name: str) -> Callable[..., og.Tensor]:
    """``og.nn.functional.<name>``; the case skips while it does not exist."""
    try:
        import owngrad.nn.functional as fmod
    except ImportError:
        pytest.skip("owngrad.nn.functional does not exist yet")
    fn = getattr(fmod, name, None)
    if fn is None:
        pytest.skip(f"og.nn.functional.{name} does not exist yet")
    return fn  # type: ignore[no-any-return]


def _recorded_inplace(x: og.Tensor, y: og.Tensor) -> og.Tensor:
    z = x * y
    z[0:1] = 0.0  # through a basic view
    z[:, 1] += x[:, 0]  # in-place add through a view, rhs with history
    z[[1, 1]] = y[1:2, :] * 3  # integer-array setitem
    z *= 2.0
    z.clamp_(-3.0, 3.0)
    return (z * x).sum(axis=0)


def _view_zoo(x: og.Tensor) -> og.Tensor:
    return (x[1, 2] * x[::-1, None, 1:] + x[..., 0:1].T.squeeze(0).unsqueeze(-1)[0]).sum(axis=1)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


R = _rng(7)
A = R.uniform(-2, 2, (3, 4))
B = R.uniform(-2, 2, (3, 4))
ROW = R.uniform(-2, 2, (4,))
POS = R.uniform(0.5, 2, (3, 4))
M = R.uniform(-2, 2, (4, 2))
BAT = R.uniform(-2, 2, (2, 3, 4))
LAB = np.array([0, 3, 1])

EXTRA: list[tuple[str, Callable[..., og.Tensor], list[np.ndarray]]] = [
    ("neg", lambda x: -x, [A]),
    ("exp_log_sqrt", lambda x: x.exp() + x.log() * x.sqrt(), [POS]),
    ("tanh_sigmoid_relu_abs", lambda x: x.tanh() * og.sigmoid(x) + x.relu() - og.abs(x), [A]),
    ("clip", lambda x: og.clip(x, -0.5, 0.7) + x.clip(lo=0.1), [A]),
    ("clip_tensor_bounds", lambda x, y: og.clip(x, y, 1.0), [A, B]),
    ("copy", lambda x: x.copy() * 3, [A]),
    ("cast", lambda x: x.astype(np.float32) * 2, [A]),
    ("arith_broadcast", lambda x, r: (x + r) * (x - r) / (r * r + 1) - 2 / (x * x + 1), [A, ROW]),
    ("pow", lambda x, y: x ** y + x ** 2 + 2.0 ** y, [POS, B]),
    ("matmul_2d", lambda x, m: x @ m, [A, M]),
    ("matmul_1d_2d", lambda r, m: r @ m, [ROW, M]),
    ("matmul_2d_1d", lambda x, r: og.matmul(x, r), [A, ROW]),
    ("matmul_batched", lambda b, m: b @ m, [BAT, M]),
    ("matmul_1d_1d", lambda r, s: r @ s, [ROW, ROW * 0.5]),
    ("maximum_minimum", lambda x, y: og.maximum(x, y) * og.minimum(x, 0.3), [A, B]),
    ("where", lambda x, y: og.where(x > y, x * 3, y), [A, B]),
    ("where_bcast", lambda x, r: og.where(x > 0, x, r), [A, ROW]),
    ("sum_mean", lambda x: x.sum(axis=0) * x.mean(axis=1, keepdims=True) + x.sum() + x.mean(axis=(0, 1)), [A]),
    ("max_min", lambda x: x.max(axis=1) + x.min(axis=0, keepdims=True).sum() + x.max(), [A]),
    ("var", lambda x: x.var(axis=0, ddof=1) + x.var(), [A]),
    ("logsumexp", lambda x: x.logsumexp(axis=1) + x.logsumexp(), [A]),
    ("softmax", lambda x: x.softmax(axis=-1) * x + x.log_softmax(axis=0), [A]),
    ("cross_entropy_mean", lambda x, y: _cross_entropy(x, y), [A, LAB]),
    ("cross_entropy_sum", lambda x, y: _cross_entropy(x, y, "sum"), [A, LAB]),
    ("cross_entropy_none", lambda x, y: _cross_entropy(x, y, "none"), [A, LAB]),
    ("cross_entropy_1d", lambda x, y: _cross_entropy(x, y), [ROW, np.array(2)]),
    ("expand", lambda x: x[0:1].expand(2, 3, 4) * x, [A]),
    ("reshape_view_and_copy", lambda x: x.reshape(2, 6).T.reshape(-1) * x.reshape(12), [A]),
    ("concatenate", lambda x, y: og.concatenate([x, y[0:1], x.graph.constant(np.ones((1, 4)))], axis=0), [A, B]),
    ("stack", lambda x, y: og.stack([x, y], axis=1) * og.stack([y, x], axis=1)[:, ::-1], [A, B]),
    ("gather_int", lambda x: x[[0, 0, 2]] * x[np.array([1, -1])].sum(), [A]),
    ("gather_bool", lambda x: x[x > 0] * 2, [A]),
    ("gather_tensor_index", lambda x, i: x[i, 1:] + x[:, 0][i].unsqueeze(1), [A, np.array([2, 0, 0])]),
    ("views", _view_zoo, [A]),
    ("transpose_permute", lambda b: b.transpose(2, 0, 1) * b.permute(2, 0, 1), [BAT]),
    ("recorded_inplace", _recorded_inplace, [A, B]),
    ("to_cpu_and_back_is_noop_on_same_device", lambda x: x.to(x.device) * 2, [A]),
    ("composite", lambda x, y: ((x * y).tanh()[..., ::-1] @ x.graph.constant(M)).relu().sum(axis=-1), [A, B]),
    # og.nn.functional (its rules register on import)
    ("F.cross_entropy", lambda x, y: F("cross_entropy")(x, y) + F("cross_entropy")(x, y, reduction="sum"),
     [A, LAB]),
    ("F.conv2d", lambda x, w, b: F("conv2d")(x, w, b, stride=(2, 1), padding=1),
     [R.uniform(-1, 1, (2, 2, 5, 4)), R.uniform(-1, 1, (3, 2, 3, 2)), R.uniform(-1, 1, (3,))]),
    ("F.max_pool2d", lambda x: F("max_pool2d")(x, 2) + F("max_pool2d")(x, (2, 1), (2, 2)),
     [R.permutation(32).reshape(1, 2, 4, 4) * 0.1]),
    ("F.embedding", lambda w: F("embedding")(w, np.array([[0, 2], [2, 2]])), [A]),
    ("F.mse_bce", lambda x, y: F("mse_loss")(x, y) + F("binary_cross_entropy_with_logits")(x, 0.3), [A, B]),
    ("F.dropout", lambda x: F("dropout")(x, 0.5, rng=3) * x, [A]),
]
EXTRA_IDS = [c[0] for c in EXTRA]


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


# --- the spec table (tests/test_rules.py) on the fake device -------------------------------

SPEC_IDS = [c.name for c in SPEC_CASES]


def spec_run(case: Any, shapes: Any, kw: dict[str, Any], seed: int, device: str = FAKE, rtol: float = 1e-10,
             atol: float = 1e-12) -> None:
    """One draw of a spec case on ``device``, compared with the CPU."""
    fn = case.call(kw)  # skips when an og.nn.functional it needs does not exist yet
    arrays = case.arrays(shapes, kw, seed)
    op_kw = OPERAND_KW.get(case.name, ())
    try:
        run_on("cpu", lambda *ts, **k: case.fn(*ts, **k), arrays, seed, kw, op_kw)
    except Exception as e:  # not a dispatch question: test_rules.py fails on it already
        pytest.skip(f"{case.name} fails on the CPU too ({type(e).__name__}: {str(e)[:120]}); "
                    "tests/test_rules.py reports that")
    if case.name in HOST_OPERAND_CASES:
        run_on("cpu", fn, arrays, seed)
        with pytest.raises(og.DeviceError):
            run_on(device, fn, arrays, seed)
        return
    compare(device, case.name, lambda *ts, **k: case.fn(*ts, **k), arrays, seed, kw, op_kw, rtol, atol)


@pytest.mark.skipif(not SPEC_CASES, reason=SPEC_MISSING or "no spec cases")
@pytest.mark.parametrize("case", SPEC_CASES, ids=SPEC_IDS)
def test_spec_example_on_fake(case: Any) -> None:
    shapes, kw = case.example
    spec_run(case, shapes, kw, 1)


@pytest.mark.skipif(not SPEC_CASES, reason=SPEC_MISSING or "no spec cases")
@pytest.mark.parametrize("case", SPEC_CASES, ids=SPEC_IDS)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_spec_drawn_on_fake(case: Any, data: Any) -> None:
    shapes, kw = data.draw(case.shapes, label="shapes, attrs")
    seed = data.draw(st.integers(0, 2**16), label="values seed")
    spec_run(case, shapes, kw, seed)


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
    x[0:2].log()  # saves x[0:2]
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
    with pytest.raises(og.GradError, match="not finite"):
        g.backward((x * np.inf).sum(), check_finite=True)


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
    with pytest.raises(og.DeviceError, match=r"pip install 'owngrad\[cuda\]'"):
        og.Graph(device="cuda")


def test_unknown_device_raises() -> None:
    with pytest.raises(og.DeviceError, match="tpu"):
        og.Graph(device="tpu")
    with pytest.raises(og.DeviceError):
        og.Graph().param(A).to("tpu")


# --- the training layer dispatches too -------------------------------------------------------

def train_steps(device: str, optname: str) -> tuple[list[float], np.ndarray, dict[str, np.ndarray]]:
    g = og.Graph(device=device)
    nn = og.nn
    model = nn.Sequential(nn.Conv2d(g, 1, 2, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(g, 8, 6, rng=1), nn.BatchNorm1d(g, 6), nn.Tanh(), nn.Dropout(0.3, rng=2),
                          nn.LayerNorm(g, 6), nn.Linear(g, 6, 3, rng=3))
    params = list(model.parameters())
    opt = {"sgd": lambda: og.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
           "adam": lambda: og.optim.Adam(params, lr=0.01),
           "adamw": lambda: og.optim.AdamW(params, lr=0.01)}[optname]()
    r = np.random.default_rng(0)
    xs, ys = r.standard_normal((5, 1, 4, 4)), np.array([0, 1, 2, 1, 0])
    losses = []
    for _ in range(2):
        loss = og.nn.functional.cross_entropy(model(g.constant(xs)), g.constant(ys))
        grads = g.backward(loss)
        grads.clip_norm_(1.0)
        opt.step(grads)
        losses.append(loss.item())
    model.eval()
    with g.no_grad():
        out = model(g.constant(xs)).numpy()
    for name, t in model.named_parameters():
        assert device_of(t._data) == device, f"{name} moved off {device}: {type(t._data).__name__}"
    opt.load_state_dict(opt.state_dict())
    return losses, out, model.state_dict()


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
