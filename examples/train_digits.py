"""Train a classifier on scikit-learn's bundled 8x8 digits (nothing is downloaded).

    python examples/train_digits.py                 # MLP, >= 0.97 test accuracy in a few seconds
    python examples/train_digits.py --model cnn     # a small CNN (conv2d + max_pool2d)
    python examples/train_digits.py --plot loss.png # loss curve (needs matplotlib)
    mpiexec -n 2 python examples/train_digits.py --distributed   # data parallel over 2 processes (MPI)

The data is split 80/20 with a fixed seed; the last line printed is ``test accuracy: 0.XXXX``.
"""

from __future__ import annotations

import argparse
import os
import time

# The matrices here are small (at most 1437 x 144): BLAS threads only add synchronisation, and
# on a busy machine a multi-threaded OpenBLAS is up to 50x slower for them. One thread, unless
# the user asked otherwise (set before numpy loads its BLAS).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # type: ignore[import-untyped, unused-ignore]  # noqa: E402
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped, unused-ignore]  # noqa: E402

import owngrad as og  # noqa: E402
import owngrad.nn.functional as F  # noqa: E402


def build(g: og.Graph, kind: str, seed: int) -> og.nn.Module:
    if kind == "mlp":
        return og.nn.MLP(g, [64, 128, 10], activation="relu", rng=seed)
    rng = np.random.default_rng(seed)
    return og.nn.Sequential(
        og.nn.Conv2d(g, 1, 16, 3, padding=1, rng=rng), og.nn.ReLU(), og.nn.MaxPool2d(2),   # 16 x 4 x 4
        og.nn.Conv2d(g, 16, 32, 3, padding=1, rng=rng), og.nn.ReLU(), og.nn.MaxPool2d(2),  # 32 x 2 x 2
        og.nn.Flatten(), og.nn.Linear(g, 32 * 2 * 2, 10, rng=rng),
    )


def evaluate(model: og.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    g = model.graph
    model.eval()
    with g.no_grad():
        logits = model(g.constant(x))
    return float((logits.numpy().argmax(axis=1) == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    ap.add_argument("--epochs", type=int, default=None, help="default: 30 (mlp), 20 (cnn); 2 with --quick")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=None, help="Adam's learning rate (default 3e-3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a couple of epochs, no progress bar (for tests)")
    ap.add_argument("--plot", metavar="PNG", default=None, help="save the loss curve (needs matplotlib)")
    ap.add_argument("--distributed", action="store_true",
                    help="data-parallel over the MPI ranks (run under mpiexec -n N; needs the [mpi] extra)")
    args = ap.parse_args()
    world = None
    if args.distributed:
        from owngrad.distributed import broadcast_parameters, init

        world = init()

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=args.seed, stratify=y)
    if args.model == "cnn":
        x_tr, x_te = x_tr.reshape(-1, 1, 8, 8), x_te.reshape(-1, 1, 8, 8)

    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 30 if args.model == "mlp" else 20)
    g = og.Graph()
    model = build(g, args.model, args.seed)
    opt = og.optim.Adam(model.parameters(), lr=args.lr if args.lr is not None else 3e-3)
    n_params = sum(p.size for p in model.parameters())
    if world is not None:
        broadcast_parameters(model, world)  # every rank starts from rank 0's weights
    talk = world is None or world.rank == 0
    if talk:
        ranks = f", {world.size} ranks" if world is not None else ""
        print(f"model: {args.model} ({n_params} params), train {len(x_tr)} / test {len(x_te)} samples, "
              f"{epochs} epochs{ranks}")

    start = time.perf_counter()
    history = og.fit(model, og.data.batches(x_tr, y_tr, args.batch_size, shuffle=True, rng=args.seed, world=world),
                     F.cross_entropy, opt, epochs=epochs, metrics={"accuracy": og.training.accuracy},
                     progress=not args.quick, world=world)
    elapsed = time.perf_counter() - start
    if not talk:
        return
    for i, (loss, acc) in enumerate(zip(history["loss"], history["accuracy"]), 1):
        if args.quick or i == 1 or i % 5 == 0 or i == epochs:
            print(f"epoch {i:3d}  loss {loss:.4f}  train accuracy {acc:.4f}")
    print(f"training time: {elapsed:.2f} s")

    if args.plot:
        try:
            import matplotlib  # type: ignore[import-not-found, unused-ignore]

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            print("--plot: matplotlib is not installed (pip install matplotlib); no plot written")
        else:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            ax.plot(range(1, len(history["loss"]) + 1), history["loss"], marker="o")
            ax.set_xlabel("epoch")
            ax.set_ylabel("training loss (cross-entropy)")
            ax.set_title(f"digits, {args.model}")
            fig.tight_layout()
            fig.savefig(args.plot)
            print(f"loss curve written to {args.plot}")

    print(f"test accuracy: {evaluate(model, x_te, y_te):.4f}")


if __name__ == "__main__":
    main()
