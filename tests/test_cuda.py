"""The device-dispatch seam on a real GPU: the op-and-gradient tables of tests/op_cases.py on cupy,
compared with the CPU.

Skips (with the reason) when cupy is not installed or no GPU is usable; the CPU proof of the
dispatch seam is test_dispatch.py, which always runs. On a GPU machine:
``pip install -e '.[cuda,dev]' && pytest tests/test_cuda.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

try:
    import cupy  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    pytest.skip("cupy not installed (pip install -e '.[cuda]')", allow_module_level=True)
except Exception as e:  # a broken CUDA install can fail at import
    pytest.skip(f"cupy does not import: {type(e).__name__}: {e}", allow_module_level=True)

try:
    _N_GPUS = int(cupy.cuda.runtime.getDeviceCount())
except Exception as e:
    pytest.skip(f"no GPU: cupy cannot reach a CUDA device ({type(e).__name__}: {e})", allow_module_level=True)
if _N_GPUS < 1:
    pytest.skip("no GPU: cupy sees no CUDA device", allow_module_level=True)

import owngrad as og
from device_runs import case_run, compare, train_steps
from op_cases import CASES, EXTRA, EXTRA_IDS, IDS, POS, A
from owngrad.backend import device_of

CUDA = "cuda"
# cuBLAS / CUDA math differ from numpy in the last bits; float32 cases get 1e-5 in assert_same
RTOL, ATOL = 1e-7, 1e-9


@pytest.mark.parametrize("case", EXTRA, ids=EXTRA_IDS)
def test_extra_table_on_cuda(case: tuple[str, Callable[..., og.Tensor], list[np.ndarray]]) -> None:
    name, fn, arrays = case
    compare(CUDA, name, fn, arrays, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_example_on_cuda(case: Any) -> None:
    shapes, kw = case.example
    case_run(case, shapes, kw, 1, CUDA, rtol=RTOL, atol=ATOL)


def test_arrays_are_cupy_arrays() -> None:
    g = og.Graph(device=CUDA)
    x = g.param(A)
    assert isinstance(x._data, cupy.ndarray) and device_of(x._data) == CUDA
    grads = g.backward((x * x).sum())
    assert isinstance(grads[x]._data, cupy.ndarray)
    assert type(grads[x].numpy()) is np.ndarray


def test_saved_region_blocks_a_write_on_cuda() -> None:
    g = og.Graph(device=CUDA)
    x = g.param(POS, name="x")
    x[0:2].log()
    before = x.numpy()
    with pytest.raises(og.BorrowError):
        with g.no_grad():
            x[1] += 1.0
    np.testing.assert_array_equal(x.numpy(), before)
    with g.no_grad():
        x[2] += 1.0


def test_borrow_mut_hands_out_a_cupy_view() -> None:
    g = og.Graph(device=CUDA)
    x = g.param(A)
    with x[0:2].borrow_mut() as a:
        assert isinstance(a, cupy.ndarray)
        a[...] = 5.0
        with pytest.raises(og.BorrowError):
            x += 1.0
    np.testing.assert_array_equal(x.numpy()[0:2], 5.0)
    x += 1.0  # the borrow ended (the array itself stays writable: docs/devices.md)


def test_mixing_cuda_and_cpu_raises() -> None:
    g = og.Graph(device=CUDA)
    x = g.param(A)
    with g.no_grad():
        y = x.to("cpu")
    with pytest.raises(og.DeviceError):
        x + y
    with pytest.raises(og.DeviceError):
        x + np.ones(4)
    with pytest.raises(og.DeviceError):
        og.Graph().param(A) + cupy.ones(4)


def test_to_cuda_and_back_gradient() -> None:
    g = og.Graph()
    x = g.param(A)
    loss = (x.to(CUDA) * x.to(CUDA).exp()).sum().to("cpu")
    grads = g.backward(loss)
    assert type(grads[x]._data) is np.ndarray
    np.testing.assert_allclose(grads[x].numpy(), np.exp(A) * (1 + A), rtol=1e-10)


@pytest.mark.parametrize("optname", ["sgd", "adam", "adamw"])
def test_training_steps_match_cpu_on_cuda(optname: str) -> None:
    ref, got = train_steps("cpu", optname), train_steps(CUDA, optname)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-6, atol=1e-8)

