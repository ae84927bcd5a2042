"""Run under ``mpiexec -n 2``: a graph on a device (the repository's cupy test double, which refuses any
silent host round-trip) is reduced with bucket buffers on that device, staged through the host by
explicit copies only, and trains to the same params as the host graph."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

import owngrad as og
import owngrad.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import backend_double  # noqa: E402

backend_double.register()
world = dist.init(timeout=20)
sys.stdout.reconfigure(line_buffering=True)  # whole lines: the launcher interleaves the ranks
seen: list[str] = []
plain = dist._allreduce


def spy(w: Any, send: Any, recv: Any) -> Any:
    seen.append(f"{type(send).__name__}/{type(recv).__name__}")
    return plain(w, send, recv)


dist._allreduce = spy
rng = np.random.default_rng(0)
x, y = rng.standard_normal((22, 5)), rng.integers(0, 3, 22)
got = {}
for device in ("cpu", backend_double.DEVICE):
    g = og.Graph(device=device)
    model = og.nn.MLP(g, [5, 8, 3], rng=0, dtype=np.float64)
    dp = dist.DataParallel(model, world, bucket_mb=0.0001)
    opt = og.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    seen.clear()
    for xb, yb in og.data.batches(x, y, 11, rng=1, world=world):
        opt.step(dp.backward(og.nn.functional.cross_entropy(dp(g.constant(xb)), yb)))
    got[device] = model.state_dict()
    print(f"rank {world.rank}: {device} buckets {sorted(set(seen))}")
same = all(np.array_equal(got["cpu"][k], got[backend_double.DEVICE][k]) for k in got["cpu"])
print(f"rank {world.rank}: device equals host: {same}")
