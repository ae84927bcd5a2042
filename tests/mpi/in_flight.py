"""Run under ``mpiexec -n 2``: reading or clipping gradients in flight raises BorrowError naming the
line that started the reduction; opt.step waits; an interrupted wait leaves them refused until a later
wait completes it; models that differ are refused in either order (broadcast first, or DataParallel
first), naming both ranks' shapes, rank 0's first."""

from __future__ import annotations

import gc
import signal
import sys

import numpy as np

import owngrad as og
from owngrad.distributed import DataParallel, broadcast_parameters, init
from owngrad.grads import raw_gradients

world = init(timeout=20)
sys.stdout.reconfigure(line_buffering=True)  # whole lines: the launcher interleaves the ranks
g = og.Graph()
model = og.nn.Linear(g, 4, 3, rng=0, dtype=np.float64)
dp = DataParallel(model, world)
x = g.constant(np.ones((2, 4)) * (world.rank + 1))
grads = dp.backward(dp(x).sum())  # START_LINE
for attempt in (lambda: grads[model.weight], lambda: grads.clip_norm_(0.001)):
    try:
        attempt()
        print(f"rank {world.rank}: NOT REFUSED")
    except og.BorrowError as e:
        print(f"rank {world.rank}: refused: {str(e).splitlines()[1].strip()}")
print(f"rank {world.rank}: shown in flight: {grads!r}")
opt = og.optim.SGD(model.parameters(), lr=1.0)
opt.step(grads)  # waits for the reduction
print(f"rank {world.rank}: averaged bias gradient {grads[model.bias].numpy().tolist()}")


def interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if world.rank == 1:
    world.comm.recv(source=0, tag=7)  # rank 0's wait is interrupted before rank 1 takes part
grads = dp.backward(dp(x).sum())
if world.rank == 0:
    signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        grads.wait()
        print("rank 0: wait NOT INTERRUPTED")
    except KeyboardInterrupt:
        for what, attempt in (("read", lambda: grads[model.bias]), ("raw", lambda: raw_gradients(grads, [model.bias]))):
            try:
                attempt()
                print(f"rank 0: interrupted {what} NOT REFUSED")
            except (og.BorrowError, og.GradError) as e:
                print(f"rank 0: interrupted {what} refused: {type(e).__name__}")
    world.comm.send("go on", dest=1, tag=7)
opt.step(grads)  # waits again: the step uses the averaged gradients
print(f"rank {world.rank}: after the interrupted wait, bias gradient {grads[model.bias].numpy().tolist()}")
dropped = dp.backward(dp(x).sum())  # dropped in flight: the reduction keeps its buffers until it completes
del dropped
gc.collect()
grads = dp.backward(dp(x).sum())
grads.wait()
print(f"rank {world.rank}: after a dropped step, bias gradient {grads[model.bias].numpy().tolist()}")
seeded = og.nn.Linear(g, 4, 3, rng=world.rank, dtype=np.float64)  # different weights on each rank
DataParallel(seeded, world)  # rank 0's are copied everywhere
print(f"rank {world.rank}: weights after DataParallel(...): {seeded.weight.numpy().sum():.12f}")
for first in ("broadcast", "DataParallel"):
    other = og.nn.Linear(g, 4, 3 + world.rank, rng=0)
    try:
        broadcast_parameters(other, world) if first == "broadcast" else DataParallel(other, world)
        print(f"rank {world.rank}: mismatch NOT REFUSED")
    except og.ShapeError as e:
        print(f"rank {world.rank}: {first} mismatch refused: {e}")
