"""A GRU reads scikit-learn's 8x8 digits row by row (8 steps of 8 pixels) and classifies the last state.

    python examples/rnn_digits.py           # >= 0.95 test accuracy
    python examples/rnn_digits.py --quick   # a couple of epochs (for tests)

The GRU projects all 8 rows in one matmul, then runs its recurrence as one rule (one matmul per step),
and writes the states into a buffer preallocated once: owngrad records that write, so the gradients
are exactly those of stacking the states.
The last line printed is ``test accuracy: 0.XXXX``.
"""

from __future__ import annotations

import argparse
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # small matrices: one BLAS thread is fastest

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # type: ignore[import-untyped, unused-ignore]  # noqa: E402
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped, unused-ignore]  # noqa: E402

import owngrad as og  # noqa: E402
import owngrad.nn.functional as F  # noqa: E402


class RowReader(og.nn.Module):
    """GRU over the image rows, then a linear read-out of the last hidden state."""

    def __init__(self, g: og.Graph, hidden: int, seed: int) -> None:
        super().__init__(g)
        rng = np.random.default_rng(seed)
        self.gru = og.nn.GRU(g, 8, hidden, batch_first=True, rng=rng)
        self.head = og.nn.Linear(g, hidden, 10, rng=rng)

    def forward(self, x: og.Tensor) -> og.Tensor:
        _, h_n = self.gru(x.reshape(x.shape[0], 8, 8))  # (batch, 8 rows, 8 pixels)
        return self.head(h_n[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=None, help="default: 25 (2 with --quick)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a couple of epochs, no progress bar (for tests)")
    args = ap.parse_args()
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 25)

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.2, random_state=0)
    print(f"model: GRU({args.hidden}) over 8 rows; train {len(x_train)} / test {len(x_test)}")

    g = og.Graph()
    model = RowReader(g, args.hidden, args.seed)
    opt = og.optim.Adam(model.parameters(), lr=1e-2)
    batches = og.data.batches(x_train, y_train, batch_size=32, shuffle=True, rng=args.seed)
    sched = og.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(batches))
    t0 = time.perf_counter()
    for epoch in range(epochs):
        total = 0.0
        for xb, yb in batches:
            loss = F.cross_entropy(model(g.constant(xb)), yb)
            grads = g.backward(loss)
            grads.clip_norm_(5.0)
            opt.step(grads)
            sched.step()
            total += float(loss) * len(xb)
        if not args.quick:
            print(f"epoch {epoch + 1:2d}  loss {total / len(x_train):.4f}")
    print(f"training: {time.perf_counter() - t0:.1f} s")
    model.eval()
    with g.no_grad():
        logits = model(g.constant(x_test))
    print(f"test accuracy: {float((logits.numpy().argmax(axis=1) == y_test).mean()):.4f}")


if __name__ == "__main__":
    main()
