"""Data-parallel training steps per second on 1 and 2 MPI ranks at the medium size (global batch 256,
784-512-512-10 MLP, float64, SGD), and the time hidden by overlapping the all-reduce with backward.

    python benchmarks/distributed.py --steps 30

It launches itself under ``mpiexec -n 1`` and ``-n 2``. Each rank computes its part of the global
batch; "overlap" starts each 1 MB bucket's Iallreduce as soon as backward has made its gradients final,
"after" reduces everything once backward has returned. On one machine the 2 ranks share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
    rng = np.random.default_rng(world.rank)
    per_rank = 256 // world.size
    x = g.constant(rng.standard_normal((per_rank, 784)))
    y = rng.integers(0, 10, per_rank)
    result = {}
    for mode in ("overlap", "after", "overlap", "after"):
        dp = DataParallel(model, world, bucket_mb=1.0)
        for i in range(steps + 3):
            if i == 3:
                world.allreduce(np.zeros(1))  # start the clock together
                t0 = time.perf_counter()
            loss = og.nn.functional.cross_entropy(dp(x), y)
            opt.step(dp.backward(loss, overlap=mode == "overlap"))
        result[mode] = min(result.get(mode, 1e9), (time.perf_counter() - t0) / steps)
    if world.rank == 0:
        print(json.dumps(result))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
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
    print("global batch 256, MLP 784-512-512-10, float64, SGD; wall time per step (best of 2 blocks)")
    for n in (1, 2):
        out = subprocess.run([mpiexec, "-n", str(n), sys.executable, __file__, "--worker", "--steps", str(args.steps)],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        hidden = r["after"] - r["overlap"]
        print(f"{n} rank{'s' if n > 1 else ' '}: {1 / r['overlap']:6.1f} steps/s with overlap, "
              f"{1 / r['after']:6.1f} steps/s reducing after backward; overlap hides {hidden * 1e3:+.2f} ms per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
