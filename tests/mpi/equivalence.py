"""Data-parallel training that must equal single-process training (the test runs both): under
``mpiexec -n 2``, ``python equivalence.py CASE OUT_DIR`` trains and every rank saves its params and
buffers (and fit's history) to ``OUT_DIR/rank{r}.npz``. The single-process references are the
``single_*`` functions here, run by the test in its own process.

Cases: ``shares`` (global batches of 11 and 32 out of 33 samples: shares of 6/5 and 1/0, SGD with
momentum and Adam), ``fit`` (og.fit with an empty share in the last batch, metrics), ``join``
(og.fit over per-rank lists of different lengths), ``unused`` (a head only some batches use,
find_unused_parameters), ``batchnorm`` (running statistics broadcast), ``accumulate`` (no_sync),
``dtypes`` (float32 and float64 params).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

import owngrad as og

F = og.nn.functional


def data(n: int = 33) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 5)), rng.integers(0, 3, n)


def mlp(g: og.Graph, batchnorm: bool = False) -> og.nn.Module:
    if batchnorm:
        return og.nn.Sequential(og.nn.Linear(g, 5, 8, rng=0, dtype=np.float64),
                                og.nn.BatchNorm1d(g, 8, dtype=np.float64), og.nn.ReLU(),
                                og.nn.Linear(g, 8, 3, rng=1, dtype=np.float64))
    return og.nn.MLP(g, [5, 8, 3], rng=0, dtype=np.float64)


class TwoHeads(og.nn.Module):
    """Samples with an even label go through head ``a``, odd ones through head ``b``: a batch without
    odd labels does not use ``b`` at all (as a branch or a task-specific head)."""

    def __init__(self, g: og.Graph) -> None:
        super().__init__(g)
        self.body = og.nn.Linear(g, 5, 8, rng=0, dtype=np.float64)
        self.a = og.nn.Linear(g, 8, 3, rng=1, dtype=np.float64)
        self.b = og.nn.Linear(g, 8, 3, rng=2, dtype=np.float64)

    def loss(self, x: og.Tensor, y: np.ndarray) -> og.Tensor:
        h = self.body(x).tanh()
        total: Any = 0.0
        for head, rows in ((self.a, np.flatnonzero(y % 2 == 0)), (self.b, np.flatnonzero(y % 2 == 1))):
            if len(rows):
                total = F.cross_entropy(head(h[rows]), y[rows], reduction="sum") + total
        return total / len(y)


def shares_schedule() -> list[tuple[int, str]]:
    """(global batch size, optimizer) of each run in the ``shares`` case."""
    return [(11, "sgd"), (32, "sgd"), (11, "adam"), (32, "adam")]


class Mixed(og.nn.Module):
    """A float32 head and a float64 head on the same inputs: their gradients never share a bucket, so
    the float64 ones are never rounded through float32."""

    def __init__(self, g: og.Graph) -> None:
        super().__init__(g)
        self.wide = og.nn.Linear(g, 5, 3, rng=0, dtype=np.float64)
        self.narrow = og.nn.Linear(g, 5, 3, rng=1, dtype=np.float32)

    def loss(self, x: np.ndarray, y: np.ndarray) -> og.Tensor:
        g = self.graph
        return (F.cross_entropy(self.wide(g.constant(x)), y)
                + F.cross_entropy(self.narrow(g.constant(x.astype(np.float32))), y))


def make_opt(model: og.nn.Module, kind: str) -> Any:
    if kind == "adam":
        return og.optim.Adam(model.parameters(), lr=0.05)
    return og.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def uneven_lists(rank: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rank r's own batches for the ``join`` case: 3 on rank 0, 2 on rank 1."""
    x, y = data()
    mine = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 24, 4)][rank::size]
    return mine[:3 - rank]


# --- the single-process references (the test runs them) ---

def single_shares() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    x, y = data()
    for bs, kind in shares_schedule():
        g = og.Graph()
        model = mlp(g)
        opt = make_opt(model, kind)
        for _ in range(2):
            for xb, yb in og.data.batches(x, y, bs, rng=3):
                opt.step(g.backward(F.cross_entropy(model(g.constant(xb)), yb)))
        out.update({f"{bs}{kind}.{k}": v for k, v in model.state_dict().items()})
    return out


def single_dtypes() -> dict[str, np.ndarray]:
    g = og.Graph()
    model = Mixed(g)
    opt = make_opt(model, "sgd")
    x, y = data()
    for xb, yb in og.data.batches(x, y, 11, rng=3):
        opt.step(g.backward(model.loss(xb, yb)))
    return model.state_dict()


def single_fit() -> dict[str, np.ndarray]:
    g = og.Graph()
    model = mlp(g)
    x, y = data()
    hist = og.fit(model, og.data.batches(x, y, 32, rng=3), F.cross_entropy, make_opt(model, "sgd"), epochs=2,
                  metrics={"acc": og.training.accuracy}, progress=False)
    return {**model.state_dict(), "loss": np.array(hist["loss"]), "acc": np.array(hist["acc"])}


def single_join(size: int = 2) -> dict[str, np.ndarray]:
    g = og.Graph()
    model = mlp(g)
    opt = make_opt(model, "sgd")
    shares = [uneven_lists(r, size) for r in range(size)]
    for k in range(max(len(s) for s in shares)):
        part = [s[k] for s in shares if k < len(s)]
        xb, yb = np.concatenate([p[0] for p in part]), np.concatenate([p[1] for p in part])
        opt.step(g.backward(F.cross_entropy(model(g.constant(xb)), yb)))
    state = model.state_dict()
    return {**state, **{f"manual.{k}": v for k, v in state.items()}}


def single_unused() -> dict[str, np.ndarray]:
    g = og.Graph()
    model = TwoHeads(g)
    opt = make_opt(model, "sgd")
    for xb, yb in unused_batches():
        opt.step(g.backward(model.loss(g.constant(xb), yb)))
    return model.state_dict()


def unused_batches() -> list[tuple[np.ndarray, np.ndarray]]:
    """Global batches of 4 whose second half (rank 1's share) sometimes has no odd label."""
    x, _ = data(16)
    y = np.array([1, 0, 2, 0, 0, 1, 1, 2, 2, 1, 0, 0, 1, 1, 2, 1])
    return [(x[i:i + 4], y[i:i + 4]) for i in range(0, 16, 4)]


def single_batchnorm(size: int = 2) -> dict[str, np.ndarray]:
    """Each step runs the ranks' shares one after the other (each normalised by its own statistics, as
    DataParallel does) and keeps the running statistics of the first share (broadcast from rank 0)."""
    g = og.Graph()
    model = mlp(g, batchnorm=True)
    opt = make_opt(model, "sgd")
    bn = model[1]  # type: ignore[index]
    x, y = data(30)
    for xb, yb in og.data.batches(x, y, 15, rng=3):
        parts = np.array_split(np.arange(len(xb)), size)
        total: Any = 0.0
        kept: list[np.ndarray] = []
        for r, rows in enumerate(parts):
            total = F.cross_entropy(model(g.constant(xb[rows])), yb[rows]) * (len(rows) / len(xb)) + total
            if r == 0:
                kept = [b.numpy() for b in (bn.running_mean, bn.running_var, bn.num_batches_tracked)]
        with g.no_grad():
            for b, v in zip((bn.running_mean, bn.running_var, bn.num_batches_tracked), kept):
                b.copy_(v)
        opt.step(g.backward(total))
    return model.state_dict()


def micro_batches(rank: int, size: int) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """Each step's micro-batches on ``rank``: uneven sizes (3 then 2 on rank 0, 4 then 1 on rank 1)."""
    x, y = data(40)
    cuts = [(0, 3, 5), (5, 9, 10)][rank] if size == 2 else [(0, 5, 10)]
    for s in range(0, 40, 10):
        a, b, c = cuts
        yield [(x[s + a:s + b], y[s + a:s + b]), (x[s + b:s + c], y[s + b:s + c])]


def single_accumulate() -> dict[str, np.ndarray]:
    g = og.Graph()
    model = mlp(g)
    opt = make_opt(model, "adam")
    x, y = data(40)
    for s in range(0, 40, 10):
        opt.step(g.backward(F.cross_entropy(model(g.constant(x[s:s + 10])), y[s:s + 10])))
    return model.state_dict()


# --- the distributed runs ---

def run_shares(world: Any) -> dict[str, np.ndarray]:
    from owngrad.distributed import DataParallel

    out: dict[str, np.ndarray] = {}
    x, y = data()
    for bs, kind in shares_schedule():
        g = og.Graph()
        model = mlp(g)
        dp = DataParallel(model, world, bucket_mb=0.0001)  # several buckets, started during backward
        opt = make_opt(model, kind)
        for _ in range(2):
            for xb, yb in og.data.batches(x, y, bs, rng=3, world=world):
                grads = dp.backward(F.cross_entropy(dp(g.constant(xb)), yb)) if len(xb) else dp.empty_backward()
                opt.step(grads)
        out.update({f"{bs}{kind}.{k}": v for k, v in model.state_dict().items()})
    return out


def run_dtypes(world: Any) -> dict[str, np.ndarray]:
    from owngrad.distributed import DataParallel

    g = og.Graph()
    model = Mixed(g)
    dp = DataParallel(model, world)  # one bucket would fit them all: one per dtype
    opt = make_opt(model, "sgd")
    x, y = data()
    for xb, yb in og.data.batches(x, y, 11, rng=3, world=world):
        opt.step(dp.backward(model.loss(xb, yb), samples=len(xb)))
    return model.state_dict()


def run_fit(world: Any) -> dict[str, np.ndarray]:
    g = og.Graph()
    model = mlp(g)
    x, y = data()
    hist = og.fit(model, og.data.batches(x, y, 32, rng=3, world=world), F.cross_entropy, make_opt(model, "sgd"),
                  epochs=2, metrics={"acc": og.training.accuracy}, progress=False, world=world)
    return {**model.state_dict(), "loss": np.array(hist["loss"]), "acc": np.array(hist["acc"])}


def run_join(world: Any) -> dict[str, np.ndarray]:
    from owngrad.distributed import DataParallel

    g = og.Graph()
    model = mlp(g)
    og.fit(model, uneven_lists(world.rank, world.size), F.cross_entropy, make_opt(model, "sgd"), progress=False,
           world=world)
    out = model.state_dict()
    g2 = og.Graph()
    manual = mlp(g2)  # a manual loop; join without the optimizer: the last rank's params are broadcast
    dp, opt = DataParallel(manual, world), make_opt(manual, "sgd")
    with dp.join():
        for xb, yb in uneven_lists(world.rank, world.size):
            opt.step(dp.backward(F.cross_entropy(dp(g2.constant(xb)), yb)))
    return {**out, **{f"manual.{k}": v for k, v in manual.state_dict().items()}}


def run_unused(world: Any) -> dict[str, np.ndarray]:
    from owngrad.distributed import DataParallel

    g = og.Graph()
    model = TwoHeads(g)
    try:  # without the opt-in, a param unused on one rank is an error on every rank
        strict = DataParallel(model, world)
        xb, yb = unused_batches()[0]
        mine = np.array_split(np.arange(4), world.size)[world.rank]
        strict.backward(model.loss(g.constant(xb[mine]), yb[mine]), samples=len(mine)).wait()
        print(f"rank {world.rank}: unused NOT REFUSED")
    except og.GradError as e:
        print(f"rank {world.rank}: unused refused: {e}")
    dp = DataParallel(model, world, find_unused_parameters=True)
    opt = make_opt(model, "sgd")
    for xb, yb in unused_batches():
        mine = np.array_split(np.arange(len(xb)), world.size)[world.rank]
        opt.step(dp.backward(model.loss(g.constant(xb[mine]), yb[mine]), samples=len(mine)))
    return model.state_dict()


def run_batchnorm(world: Any) -> dict[str, np.ndarray]:
    from owngrad.distributed import DataParallel, broadcast_parameters

    g = og.Graph()
    model = mlp(g, batchnorm=True)
    broadcast_parameters(model, world)  # a 0-d buffer (num_batches_tracked) among them
    dp = DataParallel(model, world)
    opt = make_opt(model, "sgd")
    x, y = data(30)
    for xb, yb in og.data.batches(x, y, 15, rng=3, world=world):  # the model called directly: the sample
        opt.step(dp.backward(F.cross_entropy(model(g.constant(xb)), yb)))  # count comes from the batches
    return model.state_dict()


def refused(rank: int, attempt: Any, refusal: type[Exception]) -> None:
    try:
        attempt()
        print(f"rank {rank}: accumulated gradient NOT REFUSED")
    except refusal:
        pass


def run_accumulate(world: Any) -> dict[str, np.ndarray]:
    from owngrad.distributed import DataParallel

    g = og.Graph()
    model = mlp(g)
    dp = DataParallel(model, world)
    opt = make_opt(model, "adam")
    for (x1, y1), (x2, y2) in micro_batches(world.rank, world.size):
        with dp.no_sync():
            acc = dp.backward(F.cross_entropy(dp(g.constant(x1)), y1))
        refused(world.rank, lambda a=acc: a[model.parameters()[0]], og.BorrowError)
        refused(world.rank, lambda a=acc: opt.step(a), og.GradError)
        opt.step(dp.backward(F.cross_entropy(dp(g.constant(x2)), y2), into=acc))
    return model.state_dict()


def main() -> None:
    from owngrad.distributed import init

    case, out_dir = sys.argv[1], sys.argv[2]
    world = init(timeout=20)
    sys.stdout.reconfigure(line_buffering=True)  # whole lines: the launcher interleaves the ranks
    got = globals()[f"run_{case}"](world)
    np.savez(os.path.join(out_dir, f"rank{world.rank}.npz"), **got)


if __name__ == "__main__":
    main()
