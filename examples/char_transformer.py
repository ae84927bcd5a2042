"""A small decoder-only transformer trained on characters of real text that needs no download: the
source of a few Python standard-library modules, read from the running interpreter.

    python examples/char_transformer.py           # a couple of minutes on 2 cores
    python examples/char_transformer.py --quick   # a few seconds (for tests)

It prints the held-out bits per character of the transformer beside a bigram count model computed
in the same run, then generates text twice: with a key/value cache preallocated once and written
in place through slices, token by token, under ``g.no_grad()`` (each write takes its exclusive
borrow), and by recomputing the whole prefix at every step. The two must produce the same tokens.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # small matrices: one BLAS thread is fastest

import numpy as np  # noqa: E402

import owngrad as og  # noqa: E402
import owngrad.nn.functional as F  # noqa: E402

MODULES = ("textwrap", "string", "bisect", "heapq", "fnmatch", "shlex", "difflib", "glob", "calendar")


def load_text(max_chars: int) -> str:
    """The source of a few standard-library modules, concatenated."""
    parts = [inspect.getsource(importlib.import_module(name)) for name in MODULES]
    return "\n".join(parts)[:max_chars]


def bigram_bits_per_char(train: np.ndarray, test: np.ndarray, vocab: int, alpha: float = 0.1) -> float:
    """Held-out bits per character of add-alpha smoothed bigram counts."""
    counts = np.full((vocab, vocab), alpha)
    np.add.at(counts, (train[:-1], train[1:]), 1.0)
    probs = counts / counts.sum(axis=1, keepdims=True)
    return float(-np.log2(probs[test[:-1], test[1:]]).mean())


class Block(og.nn.Module):
    """Pre-norm transformer block: causal self-attention and an MLP, each with a residual."""

    def __init__(self, g: og.Graph, d: int, heads: int, rng: np.random.Generator) -> None:
        super().__init__(g)
        self.heads = heads
        self.ln1 = og.nn.LayerNorm(g, d, dtype=np.float64)
        self.qkv = og.nn.Linear(g, d, 3 * d, rng=rng, dtype=np.float64)
        self.proj = og.nn.Linear(g, d, d, rng=rng, dtype=np.float64)
        self.ln2 = og.nn.LayerNorm(g, d, dtype=np.float64)
        self.mlp = og.nn.Sequential(og.nn.Linear(g, d, 4 * d, rng=rng, dtype=np.float64), og.nn.GELU(),
                                    og.nn.Linear(g, 4 * d, d, rng=rng, dtype=np.float64))

    def split_heads(self, t: og.Tensor) -> og.Tensor:
        """(B, T, d) -> (B, heads, T, d / heads)."""
        b, n, d = t.shape
        return t.reshape(b, n, self.heads, d // self.heads).transpose(0, 2, 1, 3)

    def qkv_heads(self, x: og.Tensor) -> tuple[og.Tensor, og.Tensor, og.Tensor]:
        q, k, v = og.split(self.qkv(self.ln1(x)), 3, axis=-1)
        return self.split_heads(q), self.split_heads(k), self.split_heads(v)

    def finish(self, x: og.Tensor, att: og.Tensor) -> og.Tensor:
        """The residual after attention (heads merged, projected), then the MLP's."""
        b, _, n, _ = att.shape
        x = x + self.proj(att.transpose(0, 2, 1, 3).reshape(b, n, -1))
        out: og.Tensor = x + self.mlp(self.ln2(x))
        return out

    def forward(self, x: og.Tensor) -> og.Tensor:
        q, k, v = self.qkv_heads(x)
        return self.finish(x, F.scaled_dot_product_attention(q, k, v, is_causal=True))


class CharTransformer(og.nn.Module):
    def __init__(self, g: og.Graph, vocab: int, d: int, heads: int, layers: int, context: int, seed: int) -> None:
        super().__init__(g)
        rng = np.random.default_rng(seed)
        self.context = context
        self.tok = og.nn.Embedding(g, vocab, d, rng=rng, dtype=np.float64)
        self.pos = og.nn.Embedding(g, context, d, rng=rng, dtype=np.float64)
        self.blocks = og.nn.Sequential(*[Block(g, d, heads, rng) for _ in range(layers)])
        self.ln = og.nn.LayerNorm(g, d, dtype=np.float64)
        self.head = og.nn.Linear(g, d, vocab, rng=rng, dtype=np.float64)
        with g.no_grad():  # small initial embeddings, as GPT-style models use
            self.tok.weight.mul_(0.1)
            self.pos.weight.mul_(0.1)

    def forward(self, idx: np.ndarray) -> og.Tensor:
        """Logits (B, T, vocab) for token ids (B, T)."""
        n = idx.shape[1]
        x = self.tok(idx) + self.pos(np.arange(n))
        return self.head(self.ln(self.blocks(x)))

    def generate_recompute(self, prompt: list[int], steps: int) -> list[int]:
        """Greedy decoding that runs the whole prefix through the model at every step."""
        g = self.graph
        out = list(prompt)
        with g.no_grad():
            while len(out) < min(len(prompt) + steps, self.context):
                logits = self(np.array([out]))
                out.append(int(logits.numpy()[0, -1].argmax()))
        return out

    def generate_cached(self, prompt: list[int], steps: int) -> list[int]:
        """Greedy decoding with a key/value cache preallocated once and written in place, one position
        at a time: each write ``cache[layer, 0, :, :, t] = k`` takes an exclusive borrow of that slice."""
        g = self.graph
        blocks: list[Block] = list(self.blocks.children())  # type: ignore[arg-type]
        heads, dh = blocks[0].heads, self.head.in_features // blocks[0].heads
        target = min(len(prompt) + steps, self.context)
        cache = g.zeros((len(blocks), 2, 1, heads, target, dh), dtype=np.float64)
        out = list(prompt)
        t = 0
        with g.no_grad():
            while t < len(out):  # every known token is fed once; the last one's logits give the next
                x: og.Tensor = self.tok(np.array([[out[t]]])) + self.pos(np.array([t]))
                for i, blk in enumerate(blocks):
                    q, k, v = blk.qkv_heads(x)
                    cache[i, 0, :, :, t:t + 1] = k  # in place: the cache was allocated once
                    cache[i, 1, :, :, t:t + 1] = v
                    att = F.scaled_dot_product_attention(q, cache[i, 0, :, :, :t + 1], cache[i, 1, :, :, :t + 1])
                    x = blk.finish(x, att)
                if t == len(out) - 1 and len(out) < target:
                    out.append(int(self.head(self.ln(x)).numpy()[0, -1].argmax()))
                t += 1
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tiny run (for tests)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 600; 15 with --quick)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    steps = args.steps if args.steps is not None else (15 if args.quick else 600)
    d, heads, layers, context, batch = (32, 2, 1, 32, 16) if args.quick else (64, 4, 2, 64, 32)

    text = load_text(40_000 if args.quick else 300_000)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    cut = int(0.9 * len(data))
    train, test = data[:cut], data[cut:]
    vocab = len(chars)
    print(f"text: {len(text)} characters of {', '.join(MODULES)}; vocab {vocab}; "
          f"model d={d} heads={heads} layers={layers} context={context}")

    g = og.Graph()
    model = CharTransformer(g, vocab, d, heads, layers, context, args.seed)
    opt = og.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = og.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, cycle_momentum=False)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    for step in range(steps):
        starts = rng.integers(0, len(train) - context - 1, batch)
        xb = np.stack([train[s:s + context] for s in starts])
        yb = np.stack([train[s + 1:s + context + 1] for s in starts])
        loss = F.cross_entropy(model(xb).reshape(-1, vocab), yb.reshape(-1))
        grads = g.backward(loss)
        grads.clip_norm_(1.0)
        opt.step(grads)
        sched.step()
        if not args.quick and (step + 1) % 100 == 0:
            print(f"step {step + 1:4d}  loss {float(loss):.3f}  ({time.perf_counter() - t0:.0f} s)")
    train_s = time.perf_counter() - t0

    model.eval()
    n_eval = 8 if args.quick else 64
    starts = np.linspace(0, len(test) - context - 1, n_eval).astype(int)
    with g.no_grad():
        xb = np.stack([test[s:s + context] for s in starts])
        yb = np.stack([test[s + 1:s + context + 1] for s in starts])
        nats = float(F.cross_entropy(model(xb).reshape(-1, vocab), yb.reshape(-1)))
    bpc = nats / math.log(2)
    print(f"held-out bits per character: transformer {bpc:.3f}, bigram baseline "
          f"{bigram_bits_per_char(train, test, vocab):.3f} ({steps} steps, {train_s:.1f} s)")

    prompt = [stoi[c] for c in "def "]
    n_new = 20 if args.quick else 120
    cached = model.generate_cached(prompt, n_new)
    recomputed = model.generate_recompute(prompt, n_new)
    print("generated (cached):", repr("".join(chars[i] for i in cached)))
    print(f"cached generation equals recomputed generation: {cached == recomputed}")


if __name__ == "__main__":
    main()
