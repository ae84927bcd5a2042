"""Indexing inside the graph: embeddings, slices and masked writes, all with exact gradients.

- An embedding lookup is integer-array indexing: a gather whose gradient scatter-adds, so a
  token that appears twice gets its row's gradient twice.
- Basic indexing (ints, slices) gives views that share storage; the gradient of a slice flows
  back into that slice only, and disjoint slices never conflict in the borrow ledger.
- A masked write into a result (``h[mask] = 0``) is recorded: later ops see the new values and
  the gradient of the overwritten elements is zero, as if the write were an op.

    python examples/indexing.py [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np

import owngrad as og
import owngrad.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer training steps (for tests)")
    args = ap.parse_args()
    steps = 20 if args.quick else 200

    g = og.Graph()
    rng = np.random.default_rng(0)

    print("1. embeddings: repeated tokens add up their gradients")
    emb = og.nn.Embedding(g, 6, 3, rng=0)
    tokens = np.array([[1, 2, 2], [4, 2, 0]])           # token 2 appears three times
    vectors = emb(tokens)                               # shape (2, 3, 3)
    grads = g.backward(vectors.sum())
    counts = grads[emb.weight].numpy()[:, 0]
    print(f"   lookup shape {vectors.shape}; gradient per row = occurrences: {counts.astype(int).tolist()}")

    print("2. slices are views: the gradient flows into the slice only")
    w = g.param(rng.standard_normal((4, 5)), name="w")
    left, right = w[:, :2], w[:, 2:]
    loss = (left * left).sum() + right.tanh().sum()     # saves both halves: disjoint borrows
    gw = g.backward(loss)[w].numpy()
    exact = np.allclose(gw[:, :2], 2 * w.numpy()[:, :2]) and np.allclose(gw[:, 2:], 1 - np.tanh(w.numpy()[:, 2:]) ** 2)
    print(f"   gradient of w: left part 2*w, right part 1-tanh^2: {exact}")

    print("3. a masked write inside the graph is recorded")
    x = g.param(rng.standard_normal(6), name="x")
    h = x * 3.0
    mask = h < 0
    h[mask] = 0.0                                       # a recorded in-place write into a result
    gx = g.backward((h * h).sum())[x].numpy()
    expected = np.where(x.numpy() * 3 < 0, 0.0, 18 * x.numpy())
    print(f"   masked elements get zero gradient, the rest 18*x: {np.allclose(gx, expected)}")

    print("4. a bag-of-embeddings classifier trained through a gather and a write through a slice")
    vocab, dim, n = 20, 8, 64
    words = rng.integers(0, vocab, size=(n, 5))
    labels = (words < vocab // 2).sum(axis=1) >= 3      # mostly-low-token sentences are class 1
    table = og.nn.Embedding(g, vocab, dim, rng=1)
    head = og.nn.Linear(g, dim, 2, rng=2)
    opt = og.optim.Adam(table.parameters() + head.parameters(), lr=0.05)

    def features(words: np.ndarray) -> og.Tensor[og.Mut]:
        bag = table(words)                              # (n, 5, dim): a gather
        feats = bag.mean(axis=1)
        feats[:, 0:1] = 0.0                             # a recorded write through a slice: channel 0 unused
        return feats

    losses = []
    for _ in range(steps):
        step_loss = F.cross_entropy(head(features(words)), labels.astype(np.int64))
        opt.step(g.backward(step_loss))
        losses.append(step_loss.item())
    with g.no_grad():                                   # the same function as in training, channel 0 zeroed
        pred = head(features(words)).numpy().argmax(axis=1)
    print(f"   loss {losses[0]:.4f} -> {losses[-1]:.4f}; training accuracy {float((pred == labels).mean()):.4f}")
    print(f"   pending nodes left: {len(g.pending())}")


if __name__ == "__main__":
    main()
