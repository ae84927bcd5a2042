"""Run under ``mpiexec -n 2``: og.save is a step every rank takes (rank 0 writes, every rank returns
once the file is complete, so rank 1 can read it at once); an optimizer's state loaded on rank 0 is
broadcast to every rank."""

from __future__ import annotations

import sys

import numpy as np

import owngrad as og
from owngrad.distributed import DataParallel, broadcast_optimizer_state, init

world = init(timeout=20)
sys.stdout.reconfigure(line_buffering=True)  # whole lines: the launcher interleaves the ranks
path = sys.argv[1]
g = og.Graph()
model = og.nn.Linear(g, 4, 3, rng=0, dtype=np.float64)
dp = DataParallel(model, world)
opt = og.optim.Adam(model.parameters(), lr=0.1)
rng = np.random.default_rng(world.rank)
for _ in range(2):
    opt.step(dp.backward(dp(g.constant(rng.standard_normal((3, 4)))).sum()))
og.save(path, model)
on_disk = og.load(path)  # complete on every rank once save returned
complete = all(np.array_equal(on_disk[k], v) for k, v in model.state_dict().items())
print(f"rank {world.rank}: checkpoint complete: {complete}")
fresh = og.optim.Adam(model.parameters(), lr=0.1)
if world.rank == 0:
    fresh.load_state_dict(opt.state_dict())  # as after reading a checkpoint of the optimizer on rank 0
broadcast_optimizer_state(fresh, world)
mine, ref = fresh.state_dict()["state"], opt.state_dict()["state"]
same = all(np.array_equal(a[k], b[k]) for a, b in zip(mine, ref) for k in b)
print(f"rank {world.rank}: optimizer state equals rank 0's: {same and len(mine[0]) > 0}")
