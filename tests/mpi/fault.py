"""Run under ``mpiexec -n 2``: rank 1 raises mid-step; both ranks must stop with a clear error."""

from __future__ import annotations

import numpy as np

import owngrad as og
from owngrad.distributed import DataParallel, init

world = init()
g = og.Graph()
model = og.nn.Linear(g, 4, 3, rng=0)
dp = DataParallel(model, world)
x = g.constant(np.ones((2, 4), dtype=np.float32))
out = dp(x)
if world.rank == 1:
    raise ValueError("deliberate failure in the loss on rank 1")
grads = dp.backward(out.sum())
grads.wait()
print("rank 0 should never get here")
