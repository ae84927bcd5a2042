"""Whole-model training steps beside PyTorch: the MNIST CNN, an LSTM language model and a transformer
encoder language model (the models of PyTorch's ``examples`` repository, scaled to run in seconds),
float32, one thread each.

    python benchmarks/models.py                # the three models, 5 interleaved repeats, memory (~2.5 minutes)
    python benchmarks/models.py --repeats 3 --models cnn,lstm --no-memory
    python benchmarks/models.py --quick        # tiny sizes, one repeat, no memory: checks that everything runs

Per model, in one interleaved run (every repeat times one block of steps of each implementation in
turn, so machine noise hits them alike): owngrad eager, owngrad captured (the same step through
``g.capture``: recorded at the first call, replayed after), torch, and a hand-written numpy
forward + backward (the floor: the same array kernels owngrad calls, with no graph) where one is
written. A step is forward, cross-entropy, backward, gradient-norm clipping and an SGD update.
Every implementation starts from the same weights; before anything is timed their losses (dropout
off) are checked against torch's on the first batch and after two large unclipped training steps, so
a wrong gradient anywhere shows as a line starting with ``!!``.

The clock is the process's CPU time (``time.process_time``), which other jobs on a shared machine
disturb far less than wall time; BLAS and OpenMP run one thread (the environment is set before
numpy is imported; ``torch.set_num_threads(1)``). The table gives the median time per step over the
repeats with its spread ((max - min) / median) and each ratio against torch. A second table gives
each step's peak memory above the built model (:func:`probe_memory`, one fresh process per
implementation). Then each goal: captured within 1.5x of torch's time, eager within 2x, memory
within torch's + 20 %.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import owngrad as og  # noqa: E402
import owngrad.nn.functional as F  # noqa: E402
from model_floors import cnn_floor, lstm_floor, transformer_floor  # noqa: E402

LR, CLIP = 0.05, 0.25
GOALS = {"captured": 1.5, "eager": 2.0}  # at most this many times torch's CPU time
MEMORY_GOAL = 1.2  # peak memory a step adds: at most torch's + 20 %


@dataclass
class Sizes:
    batch: int
    image: int  # CNN: square input side
    vocab: int
    d: int  # embedding / hidden / model width
    seq: int
    heads: int
    hidden: int  # transformer feed-forward width
    cell: int = 51  # sine-wave predictor: LSTMCell width (PyTorch's example)
    wave: int = 100  # sine-wave predictor: steps per sequence
    pixels: int = 784  # VAE: input width, hidden 400, latent 20 (PyTorch's example)
    vae_hidden: int = 400
    latent: int = 20


FULL = Sizes(batch=32, image=28, vocab=2000, d=200, seq=35, heads=2, hidden=200)
QUICK = Sizes(batch=2, image=10, vocab=30, d=8, seq=4, heads=2, hidden=8, cell=4, wave=5, pixels=12, vae_hidden=6,
              latent=3)
KINDS = ("cnn", "lstm", "transformer", "sine", "vae")


@dataclass
class Impl:
    """One implementation of a model's training step: ``step()`` trains once, ``loss()`` is the first
    batch's loss with dropout off (for the agreement check)."""

    step: Callable[[], None]
    loss: Callable[[], float]


# --------------------------------------------------------------------------------------------
# the models in owngrad

class OgCNN(og.nn.Module):
    """PyTorch's MNIST example: two 3x3 convolutions, max-pool, dropout, two linear layers."""

    def __init__(self, g: og.Graph, image: int, rng: np.random.Generator) -> None:
        super().__init__(g)
        side = (image - 4) // 2
        self.conv1 = og.nn.Conv2d(g, 1, 32, 3, rng=rng)
        self.conv2 = og.nn.Conv2d(g, 32, 64, 3, rng=rng)
        self.fc1 = og.nn.Linear(g, 64 * side * side, 128, rng=rng)
        self.fc2 = og.nn.Linear(g, 128, 10, rng=rng)
        self.dropout1, self.dropout2 = og.nn.Dropout(0.25), og.nn.Dropout(0.5)

    def forward(self, x: og.Tensor) -> og.Tensor:
        x = F.max_pool2d(self.conv2(self.conv1(x).relu()).relu(), 2)
        x = self.dropout1(x).reshape(x.shape[0], -1)
        return self.fc2(self.dropout2(self.fc1(x).relu()))


class OgLSTMLM(og.nn.Module):
    """PyTorch's word language model with a 2-layer LSTM: embedding, dropout, LSTM, dropout, decoder."""

    def __init__(self, g: og.Graph, s: Sizes, rng: np.random.Generator) -> None:
        super().__init__(g)
        self.encoder = og.nn.Embedding(g, s.vocab, s.d, rng=rng)
        self.rnn0 = og.nn.LSTM(g, s.d, s.d, rng=rng)
        self.rnn1 = og.nn.LSTM(g, s.d, s.d, rng=rng)
        self.decoder = og.nn.Linear(g, s.d, s.vocab, rng=rng)
        self.drop = og.nn.Dropout(0.2)

    def forward(self, src: np.ndarray) -> og.Tensor:
        out, _ = self.rnn0(self.drop(self.encoder(src)))
        out, _ = self.rnn1(self.drop(out))
        return self.decoder(self.drop(out))


class OgEncoderLayer(og.nn.Module):
    """``torch.nn.TransformerEncoderLayer`` (post-norm, ReLU), with its parameter names."""

    def __init__(self, g: og.Graph, s: Sizes, rng: np.random.Generator) -> None:
        super().__init__(g)
        self.self_attn = og.nn.MultiheadAttention(g, s.d, s.heads, dropout=0.2, rng=rng)
        self.linear1 = og.nn.Linear(g, s.d, s.hidden, rng=rng)
        self.linear2 = og.nn.Linear(g, s.hidden, s.d, rng=rng)
        self.norm1, self.norm2 = og.nn.LayerNorm(g, s.d), og.nn.LayerNorm(g, s.d)
        self.dropout, self.dropout1, self.dropout2 = og.nn.Dropout(0.2), og.nn.Dropout(0.2), og.nn.Dropout(0.2)

    def forward(self, x: og.Tensor, mask: np.ndarray) -> og.Tensor:  # type: ignore[override]
        a, _ = self.self_attn(x, x, x, attn_mask=mask, need_weights=False)
        x = self.norm1(x + self.dropout1(a))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(self.linear1(x).relu()))))


class OgTransformerLM(og.nn.Module):
    """PyTorch's word language model with a transformer encoder: embedding * sqrt(d) + sinusoidal
    positions, dropout, two encoder layers under a causal mask, decoder."""

    def __init__(self, g: og.Graph, s: Sizes, rng: np.random.Generator) -> None:
        super().__init__(g)
        self.d = s.d
        self.encoder = og.nn.Embedding(g, s.vocab, s.d, rng=rng)
        self.layer0, self.layer1 = OgEncoderLayer(g, s, rng), OgEncoderLayer(g, s, rng)
        self.decoder = og.nn.Linear(g, s.d, s.vocab, rng=rng)
        self.drop = og.nn.Dropout(0.2)
        self.pe = positions(s.seq, s.d)
        self.mask = np.triu(np.ones((s.seq, s.seq), dtype=bool), 1)  # True: may not attend

    def forward(self, src: np.ndarray) -> og.Tensor:
        x = self.drop(self.encoder(src) * math.sqrt(self.d) + self.pe)
        return self.decoder(self.layer1(self.layer0(x, self.mask), self.mask))


class OgSine(og.nn.Module):
    """PyTorch's time-sequence-prediction example: two LSTMCells stepped in Python, then a linear read-out."""

    def __init__(self, g: og.Graph, s: Sizes, rng: np.random.Generator) -> None:
        super().__init__(g)
        self.lstm1 = og.nn.LSTMCell(g, 1, s.cell, rng=rng)
        self.lstm2 = og.nn.LSTMCell(g, s.cell, s.cell, rng=rng)
        self.linear = og.nn.Linear(g, s.cell, 1, rng=rng)
        self.width = s.cell

    def forward(self, wave: og.Tensor) -> og.Tensor:
        g, (b, steps) = self.graph, wave.shape
        h1 = c1 = h2 = c2 = g.zeros((b, self.width))
        outs = []
        for t in range(steps):
            h1, c1 = self.lstm1(wave[:, t:t + 1], (h1, c1))
            h2, c2 = self.lstm2(h1, (h2, c2))
            outs.append(self.linear(h2))
        return og.concatenate(outs, axis=1)


class OgVAE(og.nn.Module):
    """PyTorch's VAE example: 784-400-(20, 20) encoder, 20-400-784 decoder, reparameterised."""

    def __init__(self, g: og.Graph, s: Sizes, rng: np.random.Generator) -> None:
        super().__init__(g)
        self.fc1 = og.nn.Linear(g, s.pixels, s.vae_hidden, rng=rng)
        self.fc21 = og.nn.Linear(g, s.vae_hidden, s.latent, rng=rng)
        self.fc22 = og.nn.Linear(g, s.vae_hidden, s.latent, rng=rng)
        self.fc3 = og.nn.Linear(g, s.latent, s.vae_hidden, rng=rng)
        self.fc4 = og.nn.Linear(g, s.vae_hidden, s.pixels, rng=rng)

    def forward(self, x: og.Tensor, eps: og.Tensor) -> og.Tensor:  # type: ignore[override]
        """The example's loss: summed binary cross-entropy of the reconstruction plus the KL term."""
        h = self.fc1(x).relu()
        mu, logvar = self.fc21(h), self.fc22(h)
        recon = self.fc4(self.fc3(mu + eps * (logvar * 0.5).exp()).relu()).sigmoid()
        kld = -0.5 * (1.0 + logvar - mu * mu - logvar.exp()).sum()
        out: og.Tensor = F.binary_cross_entropy(recon, x, reduction="sum") + kld
        return out


def positions(n: int, d: int) -> np.ndarray:
    """The sinusoidal position encoding (n, 1, d) of PyTorch's example."""
    pos = np.arange(n, dtype=np.float64)[:, None]
    div = np.exp(np.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe = np.zeros((n, 1, d))
    pe[:, 0, 0::2], pe[:, 0, 1::2] = np.sin(pos * div), np.cos(pos * div)
    return pe.astype(np.float32)


# --------------------------------------------------------------------------------------------
# the same models in torch (same parameter names, weights copied from owngrad's)

def torch_models(s: Sizes) -> dict[str, Any]:
    import torch
    from torch import nn

    class CNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            side = (s.image - 4) // 2
            self.conv1, self.conv2 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3)
            self.fc1, self.fc2 = nn.Linear(64 * side * side, 128), nn.Linear(128, 10)
            self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)

        def forward(self, x: Any) -> Any:
            x = torch.nn.functional.max_pool2d(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 2)
            x = torch.flatten(self.dropout1(x), 1)
            return self.fc2(self.dropout2(torch.relu(self.fc1(x))))

    class LSTMLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.rnn = nn.Embedding(s.vocab, s.d), nn.LSTM(s.d, s.d, 2, dropout=0.2)
            self.decoder, self.drop = nn.Linear(s.d, s.vocab), nn.Dropout(0.2)

        def forward(self, src: Any) -> Any:
            out, _ = self.rnn(self.drop(self.encoder(src)))
            return self.decoder(self.drop(out))

    class TransformerLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.decoder, self.drop = nn.Embedding(s.vocab, s.d), nn.Linear(s.d, s.vocab), nn.Dropout(0.2)
            self.layer0, self.layer1 = (nn.TransformerEncoderLayer(s.d, s.heads, s.hidden, 0.2) for _ in range(2))
            self.pe = torch.from_numpy(positions(s.seq, s.d))
            self.mask = torch.from_numpy(np.triu(np.ones((s.seq, s.seq), dtype=bool), 1))

        def forward(self, src: Any) -> Any:
            x = self.drop(self.encoder(src) * math.sqrt(s.d) + self.pe)
            return self.decoder(self.layer1(self.layer0(x, self.mask), self.mask))

    class Sine(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm1, self.lstm2 = nn.LSTMCell(1, s.cell), nn.LSTMCell(s.cell, s.cell)
            self.linear = nn.Linear(s.cell, 1)

        def forward(self, wave: Any) -> Any:
            b = wave.shape[0]
            h1, c1, h2, c2 = (torch.zeros(b, s.cell) for _ in range(4))
            outs = []
            for t in range(wave.shape[1]):
                h1, c1 = self.lstm1(wave[:, t:t + 1], (h1, c1))
                h2, c2 = self.lstm2(h1, (h2, c2))
                outs.append(self.linear(h2))
            return torch.cat(outs, dim=1)

    class VAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc21 = nn.Linear(s.pixels, s.vae_hidden), nn.Linear(s.vae_hidden, s.latent)
            self.fc22, self.fc3 = nn.Linear(s.vae_hidden, s.latent), nn.Linear(s.latent, s.vae_hidden)
            self.fc4 = nn.Linear(s.vae_hidden, s.pixels)

        def forward(self, x: Any, eps: Any) -> Any:
            h = torch.relu(self.fc1(x))
            mu, logvar = self.fc21(h), self.fc22(h)
            recon = torch.sigmoid(self.fc4(torch.relu(self.fc3(mu + eps * torch.exp(0.5 * logvar)))))
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            return torch.nn.functional.binary_cross_entropy(recon, x, reduction="sum") + kld

    return {"cnn": CNN, "lstm": LSTMLM, "transformer": TransformerLM, "sine": Sine, "vae": VAE}


def torch_name(kind: str, name: str) -> str:
    """owngrad's parameter name -> torch's (the LSTM layers are one module there)."""
    if kind == "lstm" and name.startswith("rnn"):
        layer, rest = name[3], name.split(".", 1)[1]
        return "rnn." + rest.replace("_l0", f"_l{layer}")
    return name


# --------------------------------------------------------------------------------------------
# problems and steps

def problem(kind: str, s: Sizes, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "cnn":
        return rng.standard_normal((s.batch, 1, s.image, s.image)).astype(np.float32), rng.integers(0, 10, s.batch)
    if kind == "sine":  # the example's waves: sin(t / 20) with a random shift per sequence; predict the next value
        t = np.arange(s.wave + 1) + rng.integers(-80, 80, (s.batch, 1))
        wave = np.sin(t / 20.0).astype(np.float32)
        return wave[:, :-1], wave[:, 1:]
    if kind == "vae":  # pixels in [0, 1] and the reparameterisation's noise (drawn once: the same in both)
        return rng.random((s.batch, s.pixels), dtype=np.float32), rng.standard_normal((s.batch, s.latent)).astype(
            np.float32)
    return rng.integers(0, s.vocab, (s.seq, s.batch)), rng.integers(0, s.vocab, s.seq * s.batch)


def build_og(kind: str, s: Sizes) -> tuple[og.Graph, og.nn.Module]:
    g = og.Graph()
    rng = np.random.default_rng(1)
    model = {"cnn": lambda: OgCNN(g, s.image, rng), "lstm": lambda: OgLSTMLM(g, s, rng),
             "transformer": lambda: OgTransformerLM(g, s, rng), "sine": lambda: OgSine(g, s, rng),
             "vae": lambda: OgVAE(g, s, rng)}[kind]()
    return g, model


def og_impl(kind: str, s: Sizes, captured: bool, dropout: bool = True, lr: float = LR, clip: float = CLIP) -> Impl:
    g, model = build_og(kind, s)
    opt = og.optim.SGD(model.parameters(), lr=lr)
    x, y = problem(kind, s)
    n_out = 10 if kind == "cnn" else s.vocab

    def objective(xb: np.ndarray, yb: np.ndarray) -> og.Tensor:
        if kind == "vae":
            out: og.Tensor = model(g.constant(xb), g.constant(yb))
            return out
        if kind == "sine":
            return F.mse_loss(model(g.constant(xb)), g.constant(yb))
        return F.cross_entropy(model(g.constant(xb) if kind == "cnn" else xb).reshape(-1, n_out), yb)

    def train_step(xb: np.ndarray, yb: np.ndarray) -> og.Tensor:
        loss = objective(xb, yb)
        grads = g.backward(loss)
        grads.clip_norm_(clip)
        opt.step(grads)
        return loss

    run = g.capture(train_step) if captured else train_step

    def loss() -> float:
        model.eval()
        with g.no_grad():
            val = objective(x, y).item()
        model.train(dropout)
        return float(val)

    model.train(dropout)

    return Impl(lambda: run(x, y) and None, loss)


def torch_impl(kind: str, s: Sizes, dropout: bool = True, lr: float = LR, clip: float = CLIP) -> Impl:
    import torch

    torch.set_num_threads(1)
    model = torch_models(s)[kind]()
    _, src = build_og(kind, s)
    state = model.state_dict()
    with torch.no_grad():
        for name, p in src.named_parameters():
            state[torch_name(kind, name)].copy_(torch.from_numpy(p.numpy()))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = (torch.from_numpy(a) for a in problem(kind, s))
    n_out = 10 if kind == "cnn" else s.vocab

    def objective() -> Any:
        if kind == "vae":
            return model(x, y)
        if kind == "sine":
            return torch.nn.functional.mse_loss(model(x), y)
        return torch.nn.functional.cross_entropy(model(x).reshape(-1, n_out), y)

    def step() -> None:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            val = objective().item()
        model.train(dropout)
        return float(val)

    model.train(dropout)

    return Impl(step, loss)


FLOORS: dict[str, Callable[..., Any]] = {"cnn": cnn_floor, "lstm": lstm_floor, "transformer": transformer_floor}


def floor_impl(kind: str, s: Sizes, dropout: bool = True, lr: float = LR, clip: float = CLIP) -> Impl | None:
    make = FLOORS.get(kind)
    if make is None:
        return None
    _, src = build_og(kind, s)
    params = {name: p.numpy() for name, p in src.named_parameters()}
    x, y = problem(kind, s)
    step = make(params, s, lr, clip, dropout)
    return Impl(lambda: step(x, y, True) and None, lambda: float(step(x, y, False)))


# --------------------------------------------------------------------------------------------
# timing

def time_interleaved(impls: dict[str, Impl], repeats: int, block_s: float) -> dict[str, list[float]]:
    """Seconds of CPU time per step: warm up, size a block of steps to about ``block_s``, then ``repeats``
    rounds that each time one block of every implementation in turn."""
    clock = time.process_time
    sizes: dict[str, int] = {}
    for name, impl in impls.items():
        impl.step()
        impl.step()  # a captured step records at the first call and replays from the second
        t0 = clock()
        impl.step()
        sizes[name] = max(1, round(block_s / max(clock() - t0, 1e-6)))
    times: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(repeats):
        for name, impl in impls.items():
            t0 = clock()
            for _ in range(sizes[name]):
                impl.step()
            times[name].append((clock() - t0) / sizes[name])
    return times


def make_impl(name: str, kind: str, s: Sizes, dropout: bool = True, lr: float = LR, clip: float = CLIP) -> Impl | None:
    """Implementation ``name`` (torch, eager, captured, floor) of model ``kind``; None for a missing floor."""
    if name == "torch":
        return torch_impl(kind, s, dropout, lr, clip)
    if name == "floor":
        return floor_impl(kind, s, dropout, lr, clip)
    return og_impl(kind, s, name == "captured", dropout, lr, clip)


IMPLS = ("torch", "eager", "captured", "floor")


def implementations(kind: str, s: Sizes, dropout: bool = True, lr: float = LR, clip: float = CLIP) -> dict[str, Impl]:
    impls = {name: make_impl(name, kind, s, dropout, lr, clip) for name in IMPLS}
    return {name: impl for name, impl in impls.items() if impl is not None}


# --------------------------------------------------------------------------------------------
# memory: the peak resident memory a training step adds, each implementation in a fresh process

def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def probe_memory(kind: str, name: str, s: Sizes) -> int:
    """Bytes above the resident set of the built model (weights, data) at which the fourth training step
    peaks: what the step needs, held between steps (gradients, optimizer state, a captured plan's
    buffers, the libraries' own workspaces) or not (activations, temporaries). Linux: the peak (VmHWM)
    is reset through /proc/self/clear_refs. Run in a process of its own with glibc's mmap threshold
    fixed, so that every large array is mapped when allocated and unmapped when freed."""
    impl = make_impl(name, kind, s)
    assert impl is not None
    built = _proc_status_bytes("VmRSS")
    for _ in range(3):
        impl.step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    impl.step()
    return _proc_status_bytes("VmHWM") - built


def step_memory(kind: str, name: str, quick: bool) -> float | None:
    """:func:`probe_memory` in a fresh process, MiB; None where the platform cannot tell."""
    import subprocess

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, os.path.abspath(__file__), "--probe-memory", f"{kind}:{name}"]
    cmd += ["--quick"] if quick else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        return None
    return int(proc.stdout.strip()) / 2**20


def memory_rows(kinds: list[str], s: Sizes, quick: bool) -> tuple[list[str], list[str]]:
    rows = ["| model | torch MiB | eager MiB | eager / torch | captured MiB | captured / torch | numpy floor MiB "
            "| floor / torch |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts: list[str] = []
    for kind in kinds:
        mib = {name: step_memory(kind, name, quick) for name in IMPLS if name != "floor" or kind in FLOORS}
        ref = mib["torch"]
        if ref is None or not ref > 0:
            verdicts.append(f"{kind}: peak memory per step not measurable here (needs Linux /proc)")
            continue
        cells = [f"{mib[n]:.1f} | {mib[n] / ref:.2f}x" if mib.get(n) is not None else "- | -"  # type: ignore[operator]
                 for n in ("eager", "captured", "floor")]
        rows.append(f"| {describe(kind, s)} | {ref:.1f} | " + " | ".join(cells) + " |")
        for name in ("eager", "captured"):
            m = mib[name]
            if m is not None:
                ok = m <= MEMORY_GOAL * ref
                verdicts.append(f"[{'MET ' if ok else 'MISS'}] {kind}: {name} peak memory per step {m / ref:.2f}x "
                                f"torch's (goal <= {MEMORY_GOAL}x)")
    return rows, verdicts


def check_losses(kind: str, impls: dict[str, Impl], when: str) -> list[str]:
    """The first batch's loss, dropout off, of every implementation against torch's (float32: 2e-5)."""
    losses = {name: impl.loss() for name, impl in impls.items()}
    ref = losses["torch"]
    return [f"!! {kind}: {name}'s loss {when} {v:.6f} differs from torch's {ref:.6f}"
            for name, v in losses.items() if not abs(v - ref) <= 2e-5 * max(1.0, abs(ref))]


def check_training(kind: str, s: Sizes) -> list[str]:
    """Every implementation's loss after two training steps without dropout and with large unclipped
    updates against torch's: the backward passes (and the captured replay) compute the same gradients."""
    lr = 1e-3 if kind == "vae" else 1.0  # the VAE's loss is a sum over every pixel: its gradients are large
    impls = implementations(kind, s, dropout=False, lr=lr, clip=1e9)
    for impl in impls.values():
        impl.step()
        impl.step()
    return check_losses(kind, impls, "after two steps")


def cell(ts: list[float], ref: float) -> tuple[str, str]:
    m = statistics.median(ts)
    spread = (max(ts) - min(ts)) / m * 100
    return f"{m * 1e3:.1f} ±{spread:.0f}%", f"{m / ref:.2f}x"


def describe(kind: str, s: Sizes) -> str:
    if kind == "cnn":
        return f"MNIST CNN (batch {s.batch}, {s.image}x{s.image})"
    if kind == "lstm":
        return f"LSTM LM (2x{s.d}, vocab {s.vocab}, {s.seq}x{s.batch})"
    if kind == "sine":
        return f"sine-wave LSTMCell predictor (2x{s.cell}, {s.batch} waves of {s.wave} steps)"
    if kind == "vae":
        return f"VAE ({s.pixels}-{s.vae_hidden}-{s.latent}, batch {s.batch})"
    return f"transformer LM (2 layers, d {s.d}, {s.heads} heads, vocab {s.vocab}, {s.seq}x{s.batch})"


def run(kinds: list[str], s: Sizes, repeats: int, block_s: float) -> tuple[list[str], list[str]]:
    rows = ["| model | torch ms | eager ms | eager / torch | captured ms | captured / torch | numpy floor ms "
            "| floor / torch |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts: list[str] = []
    for kind in kinds:
        impls = implementations(kind, s)
        verdicts += check_losses(kind, impls, "before training") + check_training(kind, s)
        times = time_interleaved(impls, repeats, block_s)
        ref = statistics.median(times["torch"])
        tt, _ = cell(times["torch"], ref)
        (em, er), (cm, cr) = cell(times["eager"], ref), cell(times["captured"], ref)
        fm, fr = cell(times["floor"], ref) if "floor" in times else ("-", "-")
        rows.append(f"| {describe(kind, s)} | {tt} | {em} | {er} | {cm} | {cr} | {fm} | {fr} |")
        for name, limit in GOALS.items():
            r = statistics.median(times[name]) / ref
            verdicts.append(f"[{'MET ' if r <= limit else 'MISS'}] {kind}: {name} {r:.2f}x torch (goal <= {limit}x)")
    return rows, verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(KINDS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--block-s", type=float, default=0.4, help="CPU seconds per timed block")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat, one step per block")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                    help="also measure each step's peak memory, one fresh process per implementation "
                         "(default: on, off with --quick)")
    ap.add_argument("--probe-memory", metavar="MODEL:IMPL", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe_memory:
        kind, name = args.probe_memory.split(":")
        print(probe_memory(kind, name, QUICK if args.quick else FULL))
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: nothing to compare with")
        return 1
    s = QUICK if args.quick else FULL
    repeats, block = (1, 0.0) if args.quick else (args.repeats, args.block_s)
    print(f"numpy {np.__version__}, torch {torch.__version__}; float32; one thread; clock: process CPU time; "
          f"median of {repeats} interleaved repeats (spread: (max - min) / median)")
    kinds = args.models.split(",")
    rows, verdicts = run(kinds, s, repeats, block)
    print("\n".join(rows))
    if args.memory if args.memory is not None else not args.quick:
        mem_rows, mem_verdicts = memory_rows(kinds, s, args.quick)
        print("\npeak memory of a training step (MiB above the built model's resident set; a fresh process each)")
        print("\n".join(mem_rows))
        verdicts += mem_verdicts
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
