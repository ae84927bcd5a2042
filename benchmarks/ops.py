"""Per-op costs of owngrad's safety machinery, and memory over a long training run.

    python benchmarks/ops.py                # everything (about a minute on 2 cores)
    python benchmarks/ops.py --part ops     # one of: ops, ledger, site, memory

1. ops:    microseconds per recorded op, forward plus backward, on tiny (4, 4) float64 arrays:
           the marginal cost of one op in ``op(p).sum()`` + backward over ``p.sum()`` + backward,
           next to torch's (1 thread) when installed.
2. ledger: the cost of a borrow check against the number of live shared borrows on one
           storage: N pending ``log`` nodes each hold a shared borrow on one row of a param;
           then time (a) an exclusive-write check of a disjoint row (the ledger alone), (b) a whole
           in-place write of that row under ``g.no_grad()``, (c) acquiring and releasing one
           more shared borrow (what every saving op does).
3. site:   the cost of capturing the user's line (``owngrad.sites.user_site``) per op, directly
           and as a share of a recorded op.
4. memory: tracemalloc over 3,000 training steps of the tiny MLP of step.py (cross-entropy or
           MSE, og.optim.SGD): traced memory every 300 steps; flat after warm-up?
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import owngrad as og  # noqa: E402
from owngrad.ledger import EXCLUSIVE, SHARED, BlockHolder  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import step as stepbench  # noqa: E402


def bench(fn: Callable[[], Any], target_s: float = 0.005, rounds: int = 21) -> float:
    """Median CPU seconds (process time: robust on a shared machine) per call over ``rounds`` blocks of
    calls, each about ``target_s`` long."""
    for _ in range(20):
        fn()
    n = 1
    while True:
        t0 = time.process_time()
        for _ in range(n):
            fn()
        dt = time.process_time() - t0
        if dt >= target_s or n >= 1 << 18:
            break
        n *= 2
    out = []
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        out.append((time.process_time() - t0) / n)
    return statistics.median(out)


# --------------------------------------------------------------------------------------------

OPS: dict[str, Callable[[Any, Any], Any]] = {
    "add (p + c)": lambda p, c: p + c,
    "add (p + p)": lambda p, c: p + p,
    "mul (p * p)": lambda p, c: p * p,
    "div (p / c)": lambda p, c: p / c,
    "matmul (p @ p)": lambda p, c: p @ p,
    "exp": lambda p, c: p.exp(),
    "tanh": lambda p, c: p.tanh(),
    "relu": lambda p, c: p.relu(),
    "sum(axis=0)": lambda p, c: p.sum(axis=0),
    "mean": lambda p, c: p.mean(),
    "view p[1:3]": lambda p, c: p[1:3],
    "transpose p.T": lambda p, c: p.T,
    "reshape": lambda p, c: p.reshape(16),
}


def part_ops() -> None:
    print("1. microseconds per recorded op, forward + backward, on (4, 4) float64 "
          "(marginal: op(p).sum() + backward minus p.sum() + backward)")
    rng = np.random.default_rng(0)
    a = rng.random((4, 4)) + 0.5
    g = og.Graph()
    p = g.param(a)
    c = g.constant(a)

    def og_run(op: Callable[[Any, Any], Any] | None) -> Callable[[], Any]:
        if op is None:
            return lambda: g.backward(p.sum())
        return lambda: g.backward(op(p, c).sum())

    torch_run: Callable[[Callable[[Any, Any], Any] | None], Callable[[], Any]] | None = None
    try:
        import torch

        torch.set_num_threads(1)
        tp = torch.tensor(a, requires_grad=True)
        tc = torch.tensor(a)
        tops = {"exp": lambda p, c: p.exp(), "tanh": lambda p, c: p.tanh(), "relu": lambda p, c: p.relu(),
                "sum(axis=0)": lambda p, c: p.sum(dim=0), "mean": lambda p, c: p.mean(),
                "reshape": lambda p, c: p.reshape(16)}

        def torch_run(op: Callable[[Any, Any], Any] | None) -> Callable[[], Any]:  # noqa: F811
            def run() -> None:
                y = tp.sum() if op is None else op(tp, tc).sum()
                y.backward()
                tp.grad = None
            return run
    except ImportError:
        tops = {}
    base_og = bench(og_run(None))
    base_t = bench(torch_run(None)) if torch_run else 0.0
    print(f"  baseline p.sum() + backward: owngrad {base_og * 1e6:.1f} us"
          + (f", torch {base_t * 1e6:.1f} us" if torch_run else ""))
    print(f"  {'op':<18}{'owngrad us':>12}{'torch us':>10}")
    for name, op in OPS.items():
        t_og = bench(og_run(op)) - base_og
        t_t = "-"
        if torch_run:
            top = tops.get(name, op)
            t_t = f"{(bench(torch_run(top)) - base_t) * 1e6:.1f}"
        print(f"  {name:<18}{t_og * 1e6:>12.1f}{t_t:>10}")
    # forward only, no backward: the cost of recording
    t_rec = bench(lambda: (p * c, g.clear()))
    with g.no_grad():
        t_nog = bench(lambda: p * c)
    t_np = bench(lambda: a * a)
    print(f"  forward only: p * c recorded (+ g.clear) {t_rec * 1e6:.1f} us; under no_grad {t_nog * 1e6:.1f} us; "
          f"numpy a * a {t_np * 1e6:.2f} us")


def part_ledger() -> None:
    print("2. ledger: cost against N live shared borrows on disjoint rows of one (N+2, 4) param")
    print(f"  {'N live':>7}{'check excl us':>15}{'write row us':>14}{'acquire shared us':>19}{'live':>7}")
    for n in (0, 10, 100, 1000):
        t_check, t_write, t_rec, live = _ledger_costs(n)
        print(f"  {n:>7}{t_check * 1e6:>15.2f}{t_write * 1e6:>14.1f}{t_rec * 1e6:>19.2f}{live:>7}")


def _ledger_costs(n: int) -> tuple[float, float, float, int]:
    """(exclusive check, row write, shared acquire+release) seconds and the live count, with n live borrows."""
    g = og.Graph()
    p = g.param(np.ones((n + 2, 4)))
    held = [p[i].log() for i in range(n)]  # log saves its input: a shared borrow on row i each
    ledger = p._storage.ledger
    live = len(ledger)
    region = p[n + 1]._region
    t_check = bench(lambda: ledger.check(region, EXCLUSIVE))
    row = p[n + 1]

    def write() -> None:
        with g.no_grad():
            row.add_(1.0)
    t_write = bench(write)
    other = p[n]._region
    holder = BlockHolder("bench", ("<bench>", 0), "")

    def shared() -> None:
        ledger.release(ledger.acquire(other, SHARED, holder, "bench"))
    t_rec = bench(shared)
    del held
    g.clear()
    return t_check, t_write, t_rec, live


def part_site() -> None:
    print("3. capturing the user's line (owngrad.sites.user_site)")
    from owngrad import graph as graph_mod
    from owngrad import sites

    t_site = bench(sites.user_site)
    g = og.Graph()
    p = g.param(np.ones((4, 4)))
    c = g.constant(np.ones((4, 4)))
    t_op = bench(lambda: (p * c, g.clear()))
    real = graph_mod.user_site
    graph_mod.user_site = lambda: (("<bench>", 0, ""),)  # type: ignore[assignment]
    try:
        t_op_nosite = bench(lambda: (p * c, g.clear()))
    finally:
        graph_mod.user_site = real
    print(f"  user_site() called directly: {t_site * 1e6:.2f} us")
    print(f"  recorded p * c (+ g.clear): {t_op * 1e6:.1f} us with the site, {t_op_nosite * 1e6:.1f} us with a "
          f"constant site: {(t_op - t_op_nosite) / t_op * 100:.0f}% of a recorded op")


def part_memory(steps: int = 3000, every: int = 300) -> None:
    print(f"4. memory over {steps} training steps of the tiny MLP (tracemalloc, traced bytes after gc)")
    ce = stepbench._og_cross_entropy() is not None
    step = stepbench.setup_owngrad(stepbench.make_problem("tiny"), "ce" if ce else "mse")
    for _ in range(50):
        step(False)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    marks = []
    for i in range(1, steps + 1):
        step(False)
        if i % every == 0:
            gc.collect()
            marks.append((i, tracemalloc.get_traced_memory()[0] - base))
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    print("  " + "  ".join(f"{i}:{b / 1024:+.1f}KiB" for i, b in marks))
    after_warm = [b for i, b in marks[1:]]
    growth = after_warm[-1] - after_warm[0]
    flat = abs(growth) < 16 * 1024
    print(f"  peak {peak / 1024:.1f} KiB above start; from step {marks[1][0]} to {marks[-1][0]}: "
          f"{growth / 1024:+.1f} KiB -> {'flat' if flat else 'GROWING'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("all", "ops", "ledger", "site", "memory"), default="all")
    args = ap.parse_args(argv)
    print(f"machine: {stepbench.machine()}")
    parts = {"ops": part_ops, "ledger": part_ledger, "site": part_site, "memory": part_memory}
    for name, fn in parts.items():
        if args.part in ("all", name):
            fn()
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
