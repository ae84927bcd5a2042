"""Data-parallel training over MPI, run through ``mpiexec -n 2``: the same parameters as single-process
training on the same global batches (uneven and empty shares, unused params, BatchNorm, accumulation,
uneven numbers of batches), in-flight gradients under exclusive borrows, every fault ending every rank
with a clear message within a bound, device buffers, checkpoints, and the data sharding."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import owngrad as og
from owngrad.collective import Header, Phase, disagreement

MPI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi")
# buffered output (no PYTHONUNBUFFERED): each rank then writes whole lines, which the launcher does not split
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, "OMP_NUM_THREADS": "1",
       "OPENBLAS_NUM_THREADS": "1"}


def _mpiexec() -> str:
    pytest.importorskip("mpi4py")
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpiexec is not installed (pip install -e '.[mpi]')")
    return found


def _run(script: str, *args: str, expect_ok: bool = True, ranks: int = 2) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([_mpiexec(), "-n", str(ranks), sys.executable, os.path.join(MPI_DIR, script), *args],
                          capture_output=True, text=True, timeout=120, env=ENV)
    if expect_ok:
        assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _line_of(script: str, mark: str) -> int:
    with open(os.path.join(MPI_DIR, script)) as f:
        return next(i for i, ln in enumerate(f, 1) if mark in ln)


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


@pytest.mark.parametrize("case", ["shares", "fit", "join", "unused", "batchnorm", "accumulate", "dtypes"])
def test_any_split_equals_single_process_training(tmp_path: object, case: str) -> None:
    """Uneven shares (6/5) and empty ones (1/0) with SGD and Adam, og.fit's params and history, ranks
    with different numbers of batches (join), a head one rank does not use, BatchNorm (statistics
    broadcast from rank 0: every rank holds the same), micro-batches accumulated under no_sync, and
    float32 and float64 params (float64 gradients never rounded through float32)."""
    sys.path.insert(0, MPI_DIR)
    import equivalence

    proc = _run("equivalence.py", case, str(tmp_path))
    assert "NOT REFUSED" not in proc.stdout
    ref = getattr(equivalence, f"single_{case}")()
    ranks = [np.load(os.path.join(str(tmp_path), f"rank{r}.npz")) for r in (0, 1)]
    assert set(ranks[0]) == set(ref)
    for k, v in ref.items():
        np.testing.assert_array_equal(ranks[1][k], ranks[0][k], err_msg=f"{k}: the ranks differ")
        tol = 1e-12 if v.dtype != np.float32 else 1e-5
        np.testing.assert_allclose(ranks[0][k], v, rtol=tol, atol=tol * 1e-3, err_msg=k)
    if case == "fit":
        assert np.all(np.isfinite(ranks[0]["loss"]))
    if case == "unused":  # first without the opt-in: the same error on both ranks, naming params and ranks
        line = _line_of("equivalence.py", "strict.backward(")
        for r in (0, 1):
            assert (f"rank {r}: unused refused: DataParallel: at the gradient reduction started at "
                    f"equivalence.py:{line}") in proc.stdout
        assert proc.stdout.count("  b.weight: no gradient on rank(s) [1] (rank(s) [0] produced one)") == 2
        assert "find_unused_parameters=True" in proc.stdout


@pytest.mark.parametrize("case", ["shares", "join"])
def test_three_ranks_equal_single_process_training(tmp_path: object, case: str) -> None:
    """Shares of 4/4/3 and 1/0/0, and ranks with 3, 2 and 1 batches (join), on three ranks."""
    sys.path.insert(0, MPI_DIR)
    import equivalence

    _run("equivalence.py", case, str(tmp_path), ranks=3)
    ref = equivalence.single_join(3) if case == "join" else equivalence.single_shares()
    ranks = [np.load(os.path.join(str(tmp_path), f"rank{r}.npz")) for r in range(3)]
    for k, v in ref.items():
        for r in (1, 2):
            np.testing.assert_array_equal(ranks[r][k], ranks[0][k], err_msg=f"{k}: rank {r} differs")
        np.testing.assert_allclose(ranks[0][k], v, rtol=1e-12, atol=1e-15, err_msg=k)


def test_gradients_in_flight_are_borrowed_and_the_step_waits() -> None:
    proc = _run("in_flight.py")
    lines = proc.stdout.splitlines()
    start = _line_of("in_flight.py", "START_LINE")
    for rank in (0, 1):
        refused = [ln for ln in lines if ln.startswith(f"rank {rank}: refused")]
        assert len(refused) == 2, proc.stdout
        assert all(f"all-reduce started at in_flight.py:{start}" in ln for ln in refused), proc.stdout
        assert f"rank {rank}: averaged bias gradient [2.0, 2.0, 2.0]" in proc.stdout  # (2 * 1 + 2 * 2) / 2
        assert f"rank {rank}: shown in flight: Grads(weight: (3, 4), bias: (3,), in flight)" in proc.stdout
        assert f"rank {rank}: after the interrupted wait, bias gradient [2.0, 2.0, 2.0]" in proc.stdout
        assert f"rank {rank}: after a dropped step, bias gradient [2.0, 2.0, 2.0]" in proc.stdout
        for first, what in (("broadcast", "broadcast_parameters"),
                            ("DataParallel", "DataParallel(...) (the model check)")):
            assert (f"rank {rank}: {first} mismatch refused: {what}: the ranks do not match: weight of shape (3, 4) "
                    "float32 vs weight of shape (4, 4) float32 (rank 0's first, then rank 1's)") in proc.stdout
    weights = sorted(ln.split(": ")[-1] for ln in lines if "weights after DataParallel" in ln)
    assert len(weights) == 2 and weights[0] == weights[1], proc.stdout
    # an interrupted wait leaves the gradients refused (a read, the optimizers' raw access) until completed
    assert "rank 0: interrupted read refused: BorrowError" in proc.stdout
    assert "rank 0: interrupted raw refused: GradError" in proc.stdout
    assert "NOT" not in proc.stdout


TIMEOUT = 3.0  # short, so that the silent-rank case ends quickly; long enough for a loaded machine
STEP = "faults.py:{line} in main, called from faults.py:{call} (batch 3 of epoch 1)"
AT_EXIT = ["RankFailed", "the ranks are at different steps:", "rank 0 is at the gradient reduction at " + STEP,
           "rank 1 is at the end of the program (it returned or called sys.exit)"]
SKIPPED = ["RankFailed", "a rank skipped a step", "rank 0 is at the gradient reduction at " + STEP,
           "rank 1 is at the gradient reduction at " + STEP.replace("batch 3", "batch 4")]
#: case -> (rank 0's exit code, what rank 0 prints; rank 1's exit code, what rank 1 prints)
FAULTS: dict[str, tuple[int, list[str], int, list[str]]] = {
    "raise": (1, ["RankFailed: rank 1 stopped: ValueError: deliberate failure on rank 1"],
              1, ["rank 1 failed:", "ValueError: deliberate failure on rank 1"]),
    "sigkill": (1, [f"rank 0 waited {TIMEOUT:g} s at the gradient reduction at {STEP} and rank(s) 1 sent nothing"],
                137, []),
    "sigint": (1, ["RankFailed: rank 1 stopped: KeyboardInterrupt"], 1, ["rank 1 failed:", "KeyboardInterrupt"]),
    "return": (1, AT_EXIT, 1, AT_EXIT),
    "exit": (1, AT_EXIT, 1, AT_EXIT),
    "uneven": (1, AT_EXIT, 1, AT_EXIT),
    "skip": (1, SKIPPED, 1, SKIPPED),
    "none": (0, ["rank 0: trained to the end"], 0, ["rank 1: trained to the end"]),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_every_fault_stops_every_rank_with_a_clear_message(tmp_path: object, case: str) -> None:
    """Each rank is run by a shell that records its own exit code; the launcher does not clean up
    (-disable-auto-cleanup), so every rank must end by itself: no hang, each with its message."""
    out = str(tmp_path)
    script = os.path.join(MPI_DIR, "faults.py")
    shell = (f"trap '' USR1; {sys.executable} {script} {case} {TIMEOUT} > {out}/out.$PMI_RANK 2>&1; "
             f"echo $? > {out}/rc.$PMI_RANK")
    start = time.monotonic()
    subprocess.run([_mpiexec(), "-n", "2", "-disable-auto-cleanup", "sh", "-c", shell], capture_output=True,
                   text=True, timeout=60, env=ENV)
    elapsed = time.monotonic() - start
    line, call = _line_of("faults.py", "STEP_LINE"), _line_of("faults.py", "MAIN_CALL")
    rc0, says0, rc1, says1 = FAULTS[case]
    for r, (rc, says) in enumerate(((rc0, says0), (rc1, says1))):
        with open(f"{out}/rc.{r}") as f:
            assert int(f.read()) == rc, f"rank {r}"
        with open(f"{out}/out.{r}") as f:
            text = f.read()
        for s in says:
            assert s.format(line=line, call=call) in text, f"rank {r}:\n{text}"
    assert elapsed < 3 * TIMEOUT + 6, f"{case} took {elapsed:.1f} s to end"


def test_under_the_default_launcher_every_rank_still_prints_why_it_stops() -> None:
    """MPICH's launcher kills the other ranks as soon as one exits non-zero: a rank that fails waits
    for the others' notices first, so each has printed its message by then."""
    start = time.monotonic()
    proc = _run("faults.py", "raise", str(TIMEOUT), expect_ok=False)
    assert proc.returncode == 1
    assert "rank 1 failed:" in proc.stderr and "ValueError: deliberate failure on rank 1" in proc.stderr
    assert "rank 0: RankFailed: rank 1 stopped: ValueError: deliberate failure on rank 1" in proc.stderr
    assert "trained to the end" not in proc.stdout
    assert time.monotonic() - start < 3 * TIMEOUT + 6


def test_device_graphs_reduce_device_buffers() -> None:
    proc = _run("device.py")
    for r in (0, 1):
        assert f"rank {r}: cpu buckets ['ndarray/ndarray']" in proc.stdout
        assert f"rank {r}: fake buckets ['DArray/DArray']" in proc.stdout
        assert f"rank {r}: device equals host: True" in proc.stdout


def test_checkpoints_are_complete_and_optimizer_state_is_broadcast(tmp_path: object) -> None:
    proc = _run("checkpoint.py", os.path.join(str(tmp_path), "ck.npz"))
    for r in (0, 1):
        assert f"rank {r}: checkpoint complete: True" in proc.stdout
        assert f"rank {r}: optimizer state equals rank 0's: True" in proc.stdout


def test_buckets_hold_one_dtype_each_in_a_fixed_order() -> None:
    from owngrad.distributed import _plan

    g = og.Graph()
    ps = [g.param(np.zeros(3, dt)) for dt in (np.float32, np.float64, np.float32, np.float64)]
    for mb in (1.0, 1e-6):
        plan = _plan(ps, int(mb * 2 ** 20))
        assert all(len({ps[i].dtype for i in b}) == 1 for b in plan)
        assert sorted(i for b in plan for i in b) == [0, 1, 2, 3]
    assert _plan(ps, 2 ** 20) == [[3, 1], [2, 0]]  # the last registered first, one bucket per dtype


def test_round_disagreements_name_every_rank_rank_0_first() -> None:
    grad = Header(Phase.GRADIENTS, "train.py:9", (0, 2), ("w", (3,), "float64"), 4)
    assert disagreement({0: grad, 1: grad}) is None
    join = Header(Phase.JOIN, "train.py:3", None, ("w", (3,), "float64"))
    assert disagreement({1: join, 0: grad}) is None  # a rank out of data shadows the others' steps
    exit_ = Header(Phase.EXIT, "")
    step, why = disagreement({1: exit_, 0: grad}) or (False, "")
    assert step and re.search(r"rank 0 is at the gradient reduction at train.py:9 \(batch 3 of epoch 1\)\n  "
                              r"rank 1 is at the end of the program", why)
    skipped = Header(Phase.GRADIENTS, "train.py:9", (0, 3), ("w", (3,), "float64"), 4)
    assert "skipped a step" in (disagreement({0: grad, 1: skipped}) or (False, ""))[1]
    shapes = Header(Phase.GRADIENTS, "train.py:9", (0, 2), (("w", (4,), "float64"),), 4)
    mine = Header(Phase.GRADIENTS, "train.py:9", (0, 2), (("w", (3,), "float64"),), 4)
    assert disagreement({1: shapes, 0: mine}) == (
        False, "w of shape (3,) float64 vs w of shape (4,) float64 (rank 0's first, then rank 1's)")


def test_an_interrupted_wait_keeps_gradients_refused_until_it_completes() -> None:
    from owngrad.grads import raw_gradients

    g = og.Graph()
    w = g.param(np.ones(3))
    grads = g.backward((w * 2).sum())
    calls = []

    def completion() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    grads.on_wait(completion)
    with pytest.raises(KeyboardInterrupt):
        grads.wait()
    with pytest.raises(og.GradError, match="still in flight"):
        raw_gradients(grads, [w])
    grads.wait()
    assert raw_gradients(grads, [w])[0] is not None and len(calls) == 2
    import owngrad.grads

    assert "raw_gradient" not in owngrad.grads.__all__


def test_batches_shard_one_global_shuffle() -> None:
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    single = [yb for _, yb in og.data.batches(x, y, 4, rng=5)]
    parts = [[yb for _, yb in og.data.batches(x, y, 4, rng=5, rank=r, world=2)] for r in (0, 1)]
    for whole, a, b in zip(single, *parts):
        np.testing.assert_array_equal(np.concatenate([a, b]), whole)
    with pytest.raises(ValueError, match="rank 2"):
        og.data.batches(x, y, 4, rank=2, world=2)
