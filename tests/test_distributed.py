"""Data-parallel training over MPI, run through ``mpiexec -n 2``: the same parameters as single-process
training on the same global batches, in-flight gradients under exclusive borrows, a failing rank that
stops every rank, and the data sharding."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import owngrad as og

MPI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi")


def _mpiexec() -> str:
    pytest.importorskip("mpi4py")
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpiexec is not installed (pip install -e '.[mpi]')")
    return found


def _run(script: str, *args: str, expect_ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([_mpiexec(), "-n", "2", sys.executable, os.path.join(MPI_DIR, script), *args],
                          capture_output=True, text=True, timeout=120, env=env)
    if expect_ok:
        assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.parametrize("bucket_mb", [25.0, 0.0005])  # one bucket, and one per param (overlapping backward)
def test_two_ranks_give_the_parameters_of_single_process_training(tmp_path: object, bucket_mb: float) -> None:
    sys.path.insert(0, MPI_DIR)
    from train_steps import model_and_data

    out = os.path.join(str(tmp_path), "dp.npz")
    _run("train_steps.py", out, "7", str(bucket_mb))
    got = og.load(out)
    g = og.Graph()
    model, x, y = model_and_data(g)
    opt = og.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = og.data.batches(x, y, batch_size=8, shuffle=True, rng=3)
    done = 0
    while done < 7:
        for xb, yb in data:
            opt.step(g.backward(og.nn.functional.cross_entropy(model(g.constant(xb)), yb)))
            done += 1
            if done == 7:
                break
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(got[k], v, rtol=1e-12, atol=1e-14, err_msg=k)


def test_gradients_in_flight_are_borrowed_and_the_step_waits() -> None:
    proc = _run("in_flight.py")
    lines = proc.stdout.replace("in flightrank", "in flight\nrank").splitlines()
    with open(os.path.join(MPI_DIR, "in_flight.py")) as f:
        start = next(i for i, ln in enumerate(f, 1) if "START_LINE" in ln)
    for rank in (0, 1):
        refused = [ln for ln in lines if ln.startswith(f"rank {rank}: refused")]
        assert len(refused) == 2, proc.stdout
        assert all(f"all-reduce started at in_flight.py:{start}" in ln for ln in refused), proc.stdout
        assert f"rank {rank}: averaged bias gradient [2.0, 2.0, 2.0]" in proc.stdout  # (2 * 1 + 2 * 2) / 2
        assert (f"rank {rank}: mismatch refused: DataParallel(...) (the model check): the ranks do not match: weight of "
                "shape (3, 4) float32 vs weight of shape (4, 4) float32 (rank 0's first, then rank 1's)") in proc.stdout
    assert "NOT REFUSED" not in proc.stdout


def test_a_failing_rank_stops_every_rank_with_a_clear_error() -> None:
    proc = _run("fault.py", expect_ok=False)  # a hang would hit the subprocess timeout
    assert proc.returncode != 0
    assert "ValueError: deliberate failure in the loss on rank 1" in proc.stderr
    assert "RankFailed: rank 1 failed: ValueError: deliberate failure in the loss on rank 1" in proc.stderr
    assert "should never get here" not in proc.stdout


def test_batches_shard_one_global_shuffle() -> None:
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    single = [yb for _, yb in og.data.batches(x, y, 4, rng=5)]
    parts = [[yb for _, yb in og.data.batches(x, y, 4, rng=5, rank=r, world=2)] for r in (0, 1)]
    for whole, a, b in zip(single, *parts):
        np.testing.assert_array_equal(np.concatenate([a, b]), whole)
    with pytest.raises(ValueError, match="rank 2"):
        og.data.batches(x, y, 4, rank=2, world=2)
