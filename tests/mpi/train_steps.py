"""Run under ``mpiexec -n 2``: N data-parallel steps on a global batch; rank 0 saves the params."""

from __future__ import annotations

import sys

import numpy as np

import owngrad as og
from owngrad.distributed import DataParallel, broadcast_parameters, init


def model_and_data(g: og.Graph) -> tuple[og.nn.Module, np.ndarray, np.ndarray]:
    model = og.nn.MLP(g, [6, 16, 16, 3], rng=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    return model, rng.standard_normal((40, 6)), rng.integers(0, 3, 40)


def main() -> None:
    out, steps, bucket_mb = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    world = init()
    g = og.Graph()
    model, x, y = model_and_data(g)
    if world.rank == 1:  # start from different weights: the broadcast must fix that
        with g.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    broadcast_parameters(model, world)
    dp = DataParallel(model, world, bucket_mb=bucket_mb)
    opt = og.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = og.data.batches(x, y, batch_size=8, shuffle=True, rng=3, world=world)
    done = 0
    while done < steps:
        for xb, yb in data:
            loss = og.nn.functional.cross_entropy(dp(g.constant(xb)), yb)
            opt.step(dp.backward(loss))
            done += 1
            if done == steps:
                break
    og.save(out, model)  # rank 0 only


if __name__ == "__main__":
    main()
