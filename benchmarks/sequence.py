"""Sequence models beside PyTorch at the same sizes: one training step (forward, backward, Adam update)
of the char transformer of ``examples/char_transformer.py`` and of a GRU classifier, float64.

    python benchmarks/sequence.py --rounds 9

Each library runs one BLAS thread; rounds are interleaved and the median of each is printed with the
owngrad / torch ratio (process CPU time: robust on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import owngrad as og  # noqa: E402
import owngrad.nn.functional as F  # noqa: E402
from step import time_all  # noqa: E402

VOCAB, D, HEADS, LAYERS, T, B = 96, 64, 4, 2, 64, 16
GRU_I, GRU_H, GRU_T, GRU_B = 8, 64, 8, 32


def og_transformer() -> Callable[[bool], float | None]:
    from char_transformer import CharTransformer

    g = og.Graph()
    model = CharTransformer(g, VOCAB, D, HEADS, LAYERS, T, seed=0)
    opt = og.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, VOCAB, (B, T)), rng.integers(0, VOCAB, (B, T))

    def step(_: bool) -> float | None:
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        opt.step(g.backward(loss))
        return None

    return step


def torch_transformer() -> Callable[[bool], float | None]:
    import torch

    torch.set_num_threads(1)
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
            self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
            self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))

        def forward(self, x: Any) -> Any:
            b, n, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
            q, k, v = (t.reshape(b, n, HEADS, D // HEADS).transpose(1, 2) for t in (q, k, v))
            att = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(att.transpose(1, 2).reshape(b, n, D))
            return x + self.mlp(self.ln2(x))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(T, D)
            self.blocks = nn.Sequential(*[Block() for _ in range(LAYERS)])
            self.ln, self.head = nn.LayerNorm(D), nn.Linear(D, VOCAB)

        def forward(self, idx: Any) -> Any:
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
            return self.head(self.ln(self.blocks(x)))

    model = Model().double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x, y = torch.tensor(rng.integers(0, VOCAB, (B, T))), torch.tensor(rng.integers(0, VOCAB, (B, T)))

    def step(_: bool) -> float | None:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        opt.step()
        return None

    return step


def og_gru() -> Callable[[bool], float | None]:
    g = og.Graph()
    gru = og.nn.GRU(g, GRU_I, GRU_H, batch_first=True, rng=0, dtype=np.float64)
    head = og.nn.Linear(g, GRU_H, 10, rng=1, dtype=np.float64)
    opt = og.optim.Adam(gru.parameters() + head.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x, y = g.constant(rng.standard_normal((GRU_B, GRU_T, GRU_I))), rng.integers(0, 10, GRU_B)

    def step(_: bool) -> float | None:
        _, h = gru(x)
        opt.step(g.backward(F.cross_entropy(head(h[0]), y)))
        return None

    return step


def torch_gru() -> Callable[[bool], float | None]:
    import torch

    torch.set_num_threads(1)
    gru = torch.nn.GRU(GRU_I, GRU_H, batch_first=True).double()
    head = torch.nn.Linear(GRU_H, 10).double()
    opt = torch.optim.Adam(list(gru.parameters()) + list(head.parameters()), lr=1e-3)
    rng = np.random.default_rng(0)
    x, y = torch.tensor(rng.standard_normal((GRU_B, GRU_T, GRU_I))), torch.tensor(rng.integers(0, 10, GRU_B))

    def step(_: bool) -> float | None:
        opt.zero_grad()
        _, h = gru(x)
        torch.nn.functional.cross_entropy(head(h[0]), y).backward()
        opt.step()
        return None

    return step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: nothing to compare with")
        return 1
    cases = {
        f"transformer step (B={B}, T={T}, d={D}, {LAYERS} layers)": (og_transformer(), torch_transformer()),
        f"GRU step (B={GRU_B}, T={GRU_T}, H={GRU_H})": (og_gru(), torch_gru()),
    }
    print("clock: process CPU time; median of interleaved rounds; float64; one BLAS thread")
    for name, (ours, theirs) in cases.items():
        times = time_all({"owngrad": ours, "torch": theirs}, args.rounds, 2, 0.2, lambda: None, time.process_time)
        o, t = statistics.median(times["owngrad"]), statistics.median(times["torch"])
        print(f"{name}: owngrad {o * 1e3:.2f} ms, torch {t * 1e3:.2f} ms, owngrad / torch {o / t:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
