"""Data-parallel training steps on 1 and 2 MPI ranks, interleaved (1, 2, 2, 1, 1, 2, ...) over several
rounds so that both see the same machine load; medians and spread over the rounds, and the measured
communication time per step.

    python benchmarks/distributed.py --rounds 5 --steps 20

Each launch (``mpiexec -n N``) trains the medium model (global batch 256, MLP 784-512-512-10, float64,
SGD; one BLAS thread per rank) and reports, per step: the wall time, the time ``grads.wait()`` blocks
after backward (communication not hidden behind backward, plus waiting for the slower rank), and the
time of the same all-reduce run alone with both ranks lined up (a barrier first): the cost of moving
the gradients themselves. On one machine the 2 ranks share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402


def worker(steps: int) -> None:
    import owngrad as og
    from owngrad.distributed import DataParallel, broadcast_parameters, init

    world = init()
    g = og.Graph()
    model = og.nn.MLP(g, [784, 512, 512, 10], rng=0, dtype=np.float64)
    broadcast_parameters(model, world)
    opt = og.optim.SGD(model.parameters(), lr=0.01)
    dp = DataParallel(model, world, bucket_mb=1.0)
    rng = np.random.default_rng(world.rank)
    per_rank = 256 // world.size
    x = g.constant(rng.standard_normal((per_rank, 784)))
    y = rng.integers(0, 10, per_rank)
    waits, walls = [], []
    for i in range(steps + 3):
        if i == 3:
            world.barrier()  # start the clock together
        t0 = time.perf_counter()
        grads = dp.backward(og.nn.functional.cross_entropy(dp(x), y))
        t1 = time.perf_counter()
        grads.wait()
        t2 = time.perf_counter()
        opt.step(grads)
        if i >= 3:
            waits.append(t2 - t1)
            walls.append(time.perf_counter() - t0)
    flat = np.zeros(sum(p.size for p in model.parameters()))
    alone = []
    for _ in range(5):
        world.barrier()
        t0 = time.perf_counter()
        world.allreduce(flat)
        alone.append(time.perf_counter() - t0)
    if world.rank == 0:
        print(json.dumps({"step": statistics.median(walls), "wait": statistics.median(waits),
                          "alone": statistics.median(alone), "mb": flat.nbytes / 2 ** 20}))


def launch(mpiexec: str, n: int, steps: int) -> dict[str, float]:
    out = subprocess.run([mpiexec, "-n", str(n), sys.executable, __file__, "--worker", "--steps", str(steps)],
                         capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def summary(values: list[float], scale: float = 1.0) -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):7.2f} [{min(v):.2f}, {max(v):.2f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.steps)
        return 0
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = here if os.path.exists(here) else shutil.which("mpiexec")
    if mpiexec is None:
        print("mpiexec is not installed: pip install -e '.[mpi]'")
        return 1
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for r in range(args.rounds):
        for n in ((1, 2) if r % 2 == 0 else (2, 1)):  # interleaved: neither always runs first
            runs[n].append(launch(mpiexec, n, args.steps))
    mb = runs[1][0]["mb"]
    print(f"global batch 256, MLP 784-512-512-10 ({mb:.1f} MB of float64 gradients), SGD; {args.rounds} rounds "
          f"of {args.steps} steps; median [min, max] over rounds")
    print("| ranks | steps/s | ms per step | wait in grads.wait() (ms) | all-reduce alone (ms) |")
    print("|---:|---:|---:|---:|---:|")
    for n, rs in runs.items():
        print(f"| {n} | {summary([1 / r['step'] for r in rs])} | {summary([r['step'] for r in rs], 1e3)} | "
              f"{summary([r['wait'] for r in rs], 1e3)} | {summary([r['alone'] for r in rs], 1e3)} |")
    speedups = [a["step"] / b["step"] for a, b in zip(runs[1], runs[2])]
    print(f"speed-up of 2 ranks over 1, per round: median {statistics.median(speedups):.2f}x "
          f"[{min(speedups):.2f}, {max(speedups):.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
