"""Running one op case on a device and comparing it with the CPU (tests/test_dispatch.py runs
these on the array-backend double, tests/test_cuda.py on cupy).

A run records the value, the gradient of ``<fn(x), v>`` for a random ``v`` for each float input,
and the ops recorded; every array the graph keeps (outputs, saved operands, gradients) must live
on the run's device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import owngrad as og
from owngrad.backend import device_of

#: kw entries of op cases that are *operands* (host arrays): made constants of the case's graph
OPERAND_KW: dict[str, tuple[str, ...]] = {"where": ("cond",)}
#: op cases that pass a raw numpy array as an operand: a host array meeting device data must raise
HOST_OPERAND_CASES = {"concatenate_constant"}


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
        for a in _arrays_on(device, list(node.saved) + [node.attrs.get("aux")]):
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


def case_run(case: Any, shapes: Any, kw: dict[str, Any], seed: int, device: str, rtol: float = 1e-10,
             atol: float = 1e-12) -> None:
    """One draw of an op case (op_cases.CASES) on ``device``, compared with the CPU."""
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


def train_steps(device: str, optname: str) -> tuple[list[float], np.ndarray, dict[str, np.ndarray]]:
    """Two training steps of a small conv net with ``optname`` on ``device``: (losses, eval output, state_dict)."""
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
