"""Run under ``mpiexec -n 2``: reading or clipping gradients in flight raises BorrowError naming the
line that started the reduction; opt.step waits; a model mismatch is refused at DataParallel."""

from __future__ import annotations

import numpy as np

import owngrad as og
from owngrad.distributed import DataParallel, init

world = init()
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
opt = og.optim.SGD(model.parameters(), lr=1.0)
opt.step(grads)  # waits for the reduction
print(f"rank {world.rank}: averaged bias gradient {grads[model.bias].numpy().tolist()}")
other = og.nn.Linear(g, 4, 3 + world.rank, rng=0)
try:
    DataParallel(other, world)
    print(f"rank {world.rank}: mismatch NOT REFUSED")
except og.ShapeError as e:
    print(f"rank {world.rank}: mismatch refused: {e}")
