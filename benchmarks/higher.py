"""A Hessian-vector product on the small MLP against a gradient, owngrad and torch in one run, float64.

The MLP is benchmarks/step.py's "small" size (batch 64, widths 64-128-128-10) with tanh activations
(so the second derivative is not trivially zero) and a cross-entropy loss. Four measurements:

* ``grad``: forward + gradients of every param (owngrad ``g.backward``; torch ``autograd.grad``);
* ``hvp``: forward + gradients with history + the gradient of ``<grads, v>`` (reverse over reverse:
  owngrad ``g.backward(create_graph=True)`` then ``g.grad``; torch ``autograd.grad(create_graph=True)``
  then ``autograd.grad``).

Both libraries compute the same HVP (checked before timing). The clock is the process's CPU time,
median of interleaved rounds (the machine is shared), one BLAS thread everywhere.

    python benchmarks/higher.py [--rounds 15] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402 - after the thread settings

import owngrad as og  # noqa: E402

WIDTHS = (64, 128, 128, 10)
BATCH = 64


def problem(seed: int = 0) -> dict[str, Any]:
    r = np.random.default_rng(seed)
    ws = [r.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(WIDTHS[:-1], WIDTHS[1:])]
    bs = [r.standard_normal(b) * 0.1 for b in WIDTHS[1:]]
    v = [r.standard_normal(w.shape) for w in ws] + [r.standard_normal(b.shape) for b in bs]
    return {"x": r.standard_normal((BATCH, WIDTHS[0])), "y": r.integers(0, WIDTHS[-1], BATCH), "ws": ws, "bs": bs,
            "v": v}


def owngrad_steps(p: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    g = og.Graph()
    ws = [g.param(w) for w in p["ws"]]
    bs = [g.param(b) for b in p["bs"]]
    params = ws + bs
    x = g.constant(p["x"])
    y = p["y"]
    v = [g.constant(a) for a in p["v"]]  # tensors, as torch's (a raw array operand is copied when saved)

    def loss() -> og.Tensor:
        h = x
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = h @ w + b
            if i < len(ws) - 1:
                h = h.tanh()
        return og.nn.functional.cross_entropy(h, y)

    def grad() -> list[np.ndarray]:
        grads = g.backward(loss())
        return [grads[q].numpy() for q in params]

    def hvp() -> list[np.ndarray]:
        grads = g.backward(loss(), create_graph=True)
        dot = (grads[params[0]] * v[0]).sum()
        for q, vi in zip(params[1:], v[1:]):
            dot = dot + (grads[q] * vi).sum()
        return [t.numpy() for t in g.grad(dot, params)]

    return grad, hvp


def torch_steps(p: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[], Any]] | None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(1)
    ws = [torch.tensor(w, requires_grad=True) for w in p["ws"]]
    bs = [torch.tensor(b, requires_grad=True) for b in p["bs"]]
    params = ws + bs
    x = torch.tensor(p["x"])
    y = torch.tensor(p["y"])
    v = [torch.tensor(a) for a in p["v"]]

    def loss() -> Any:
        h = x
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = h @ w + b
            if i < len(ws) - 1:
                h = h.tanh()
        return F.cross_entropy(h, y)

    def grad() -> list[np.ndarray]:
        return [t.numpy() for t in torch.autograd.grad(loss(), params)]

    def hvp() -> list[np.ndarray]:
        gs = torch.autograd.grad(loss(), params, create_graph=True)
        dot = sum((gi * vi).sum() for gi, vi in zip(gs, v))
        return [t.detach().numpy() for t in torch.autograd.grad(dot, params)]

    return grad, hvp


def median_us(fns: dict[str, Callable[[], Any]], rounds: int, reps: int) -> dict[str, float]:
    """Median CPU microseconds per call, the functions interleaved round by round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.process_time()
            for _ in range(reps):
                f()
            times[k].append((time.process_time() - t0) / reps * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="a few rounds (a smoke test)")
    a = ap.parse_args(argv)
    rounds, reps = (2, 2) if a.quick else (a.rounds, a.reps)
    p = problem()
    fns: dict[str, Callable[[], Any]] = {}
    og_grad, og_hvp = owngrad_steps(p)
    fns["owngrad grad"], fns["owngrad hvp"] = og_grad, og_hvp
    th = torch_steps(p)
    if th is not None:
        fns["torch grad"], fns["torch hvp"] = th
        for mine, theirs in zip(og_hvp(), th[1]()):
            np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)
        for mine, theirs in zip(og_grad(), th[0]()):
            np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)
    res = median_us(fns, rounds, reps)
    print(f"small MLP (batch {BATCH}, widths {'-'.join(map(str, WIDTHS))}, tanh, cross-entropy), float64, "
          f"CPU us per call, median of {rounds} rounds x {reps}")
    for k, t in res.items():
        print(f"  {k:14s} {t:9.0f}")
    print(f"  owngrad hvp / grad: {res['owngrad hvp'] / res['owngrad grad']:.2f}x")
    if th is not None:
        print(f"  torch   hvp / grad: {res['torch hvp'] / res['torch grad']:.2f}x")
        print(f"  owngrad hvp / torch hvp: {res['owngrad hvp'] / res['torch hvp']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
