"""A training step captured with ``g.capture``: the same numbers as eager, less overhead, and the
refusals that keep the replay honest.

    python examples/captured_step.py            # 300 steps of an MLP on the digits, eager and captured
    python examples/captured_step.py --quick    # 40 steps

It trains two identical models (same seeds, same batches), one eagerly and one through a captured
step, checks that their losses and weights are bitwise equal after every step, and prints the time
per step of each. Then it shows two refusals: converting the loss to a Python float inside the
captured function (refused at capture, naming the line, with everything the step did undone), and
calling the step while an eager result still holds a borrow on a weight the step updates (it is not
replayed: it runs eagerly and raises the eager step's BorrowError, at the optimizer's line).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

import owngrad as og
from owngrad.nn import functional as F


def load() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped, unused-ignore]

        d = load_digits()
        return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    except ImportError:  # a stand-in with the digits' shapes when scikit-learn is absent
        rng = np.random.default_rng(0)
        return rng.random((1797, 64), dtype=np.float32), rng.integers(0, 10, 1797)


def build() -> tuple[og.Graph, og.nn.Module, Callable[[np.ndarray, np.ndarray], og.Tensor]]:
    g = og.Graph()
    model = og.nn.Sequential(og.nn.Linear(g, 64, 128, rng=0), og.nn.ReLU(), og.nn.Dropout(0.1),
                             og.nn.Linear(g, 128, 10, rng=1))
    opt = og.optim.Adam(model.parameters(), lr=3e-3)

    def train_step(x: np.ndarray, y: np.ndarray) -> og.Tensor:
        loss = F.cross_entropy(model(g.constant(x)), y)
        grads = g.backward(loss)
        grads.clip_norm_(5.0)
        opt.step(grads)
        return loss

    return g, model, train_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    steps = 40 if args.quick else 300
    x, y = load()
    rng = np.random.default_rng(0)
    batches = [(x[i], y[i]) for i in (rng.choice(len(x), 32, replace=False) for _ in range(steps))]

    _, eager_model, eager = build()
    g, model, train_step = build()
    step = g.capture(train_step)
    same = True
    t_eager = t_captured = 0.0
    for xb, yb in batches:
        t0 = time.perf_counter()
        a = eager(xb, yb)
        t1 = time.perf_counter()
        b = step(xb, yb)
        t2 = time.perf_counter()
        t_eager += t1 - t0
        t_captured += t2 - t1
        same &= a.numpy().tobytes() == b.numpy().tobytes()
    same &= all(p.numpy().tobytes() == q.numpy().tobytes()
                for p, q in zip(eager_model.parameters(), model.parameters()))
    print(f"{steps} steps, final loss {b.item():.4f}")
    print(f"losses and weights bitwise equal to eager after every step: {same}")
    print(f"eager {t_eager / steps * 1e6:.0f} us/step, captured {t_captured / steps * 1e6:.0f} us/step "
          f"({step.replays} replays of {step.plans} plan)")

    def logging_step(xb: np.ndarray, yb: np.ndarray) -> og.Tensor:
        loss = train_step(xb, yb)
        print(f"loss {float(loss):.4f}")  # a Python float of a traced value: fixed at capture
        return loss

    try:
        g.capture(logging_step)(*batches[0])
    except og.GraphError as e:
        print(f"GraphError: {str(e).splitlines()[0]}")

    pending = model(g.constant(batches[0][0])).sum()  # an eager forward: it saved the last layer's weight
    try:
        step(*batches[1])
    except og.BorrowError as e:
        first, second = str(e).splitlines()[:2]
        print(f"BorrowError: {first}\n  {second.strip()}")
    g.free(pending)
    step(*batches[1])
    print("after g.free(pending) the replay went through")


if __name__ == "__main__":
    main()
