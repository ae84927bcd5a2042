"""Run under ``mpiexec -n 2``: rank 1 misbehaves at its third batch in the way ``argv[1]`` names; every
rank must stop by itself with a clear message (none may hang). ``argv[2]`` is the timeout in seconds.

raise: an uncaught exception; sigkill: killed; sigint: interrupted (Ctrl-C); return: main() returns
early; exit: sys.exit(0); uneven: the loop ends early (fewer batches, no join); skip: an exception is
caught and the step skipped; none: every rank trains to the end."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import owngrad as og
from owngrad.distributed import DataParallel, init

CASE = sys.argv[1]
world = init(timeout=float(sys.argv[2]))
sys.stdout.reconfigure(line_buffering=True)  # whole lines: the launcher interleaves the ranks
g = og.Graph()
model = og.nn.Linear(g, 4, 3, rng=0, dtype=np.float64)
dp = DataParallel(model, world)
opt = og.optim.SGD(model.parameters(), lr=0.1)
rng = np.random.default_rng(0)
data = og.data.batches(rng.standard_normal((24, 4)), rng.integers(0, 3, 24), 4, world=world)


def misbehave() -> bool:
    """Rank 1's fault at its third batch; True when the step is to be skipped."""
    if CASE == "raise":
        raise ValueError("deliberate failure on rank 1")
    if CASE == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if CASE == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # KeyboardInterrupt is raised here
    if CASE == "exit":
        sys.exit(0)
    if CASE == "skip":
        try:
            raise ValueError("a bad batch")
        except ValueError:
            return True
    return False


def main() -> None:
    for i, (xb, yb) in enumerate(data):
        if world.rank == 1 and i == 2:
            if CASE in ("return", "uneven"):
                return
            if misbehave():
                continue
        loss = og.nn.functional.cross_entropy(dp(g.constant(xb)), yb)
        opt.step(dp.backward(loss))  # STEP_LINE
    print(f"rank {world.rank}: trained to the end")


main()  # MAIN_CALL
