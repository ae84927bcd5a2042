"""Library-style helpers a user writes around owngrad, annotated with the access modes (Mut, Shared, Frozen).

Must pass mypy --strict (and pyright) with no error; tests/test_typing.py also runs it as a program.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, SupportsFloat, TypeVar

import numpy as np
from numpy.typing import NDArray
from typing_extensions import assert_type

import owngrad as og
import owngrad.nn.functional as F

M = TypeVar("M", bound=og.Shared)
T = TypeVar("T", bound=og.Tensor)

Metric = Callable[[og.Tensor[og.Frozen], og.Tensor[og.Mut]], SupportsFloat]


# --- readers: a plain og.Tensor accepts every mode -------------------------------------------------------
def l2(t: og.Tensor) -> float:
    # under no_grad: a helper that only looks must not leave pending nodes that borrow a param
    with t.graph.no_grad():
        return math.sqrt(float((t * t).sum().item()))


def summary(t: og.Tensor) -> dict[str, float]:
    with t.borrow() as a:
        return {"mean": float(a.mean()), "std": float(a.std()), "max": float(np.abs(a).max())}


def first_row(t: og.Tensor[M]) -> og.Tensor[M]:
    """Generic in the mode: a view keeps the caller's mode."""
    return t[0]


def same(t: T) -> T:
    return t


def as_tensor(g: og.Graph, x: og.Tensor | NDArray[Any] | float) -> og.Tensor:
    return x if isinstance(x, og.Tensor) else g.constant(x)


def to_numpy(t: og.Tensor) -> NDArray[np.float64]:
    return np.asarray(t, dtype=np.float64)


# --- writers: need Tensor[Mut] -----------------------------------------------------------------------
def ema_(avg: og.Tensor[og.Mut], new: og.Tensor, decay: float = 0.99) -> None:
    with avg.graph.no_grad():  # new may be a param: the running average must not keep its history
        avg *= decay
        avg += (1.0 - decay) * new


def sgd_step_(g: og.Graph, params: Iterable[og.Tensor[og.Mut]], grads: og.Grads, lr: float) -> None:
    with g.no_grad():
        for p in params:
            if p in grads:
                p -= lr * grads[p]


def init_normal_(t: og.Tensor[og.Mut], std: float, rng: np.random.Generator) -> og.Tensor[og.Mut]:
    with t.borrow_mut() as a:
        a[...] = rng.standard_normal(a.shape) * std
    return t


def soft_update_(target: og.nn.Module, source: og.nn.Module, tau: float) -> None:
    """Polyak averaging of a target network, as in DQN/DDPG."""
    with target.graph.no_grad():
        for tp, sp in zip(target.parameters(), source.parameters()):
            tp.copy_((1 - tau) * tp + tau * sp)


def clamp_rows_(w: og.Tensor[og.Mut], max_norm: float) -> None:
    with w.graph.no_grad():  # else the norm's nodes would save w, and the write below would be refused
        norms = (w * w).sum(axis=1, keepdims=True).sqrt().numpy()
        scale = np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
        w *= scale


def freeze_view(g: og.Graph, t: og.Tensor) -> og.Tensor[og.Frozen]:
    return g.freeze(t)


# --- functions of gradients --------------------------------------------------------------------------
def grad_norms(grads: og.Grads, named: Iterable[tuple[str, og.Tensor]]) -> dict[str, float]:
    return {name: l2(grads[p]) for name, p in named if p in grads}


def largest_grad(grads: og.Grads) -> tuple[og.Tensor[og.Mut], float]:
    p, gp = max(grads.items(), key=lambda kv: kv[1].abs().max().item())
    return p, gp.abs().max().item()


def global_norm(grads: og.Grads) -> float:
    return math.sqrt(sum(float((gv * gv).sum()) for gv in grads.values()))


def check_grads(grads: og.Grads, params: Sequence[og.Tensor]) -> None:
    for p in params:
        gp = grads[p]
        assert gp.shape == p.shape and gp.dtype == p.dtype
        assert bool(np.isfinite(gp.numpy()).all())
        assert np.allclose(gp, gp.numpy())


class GradLogger:
    """A callable object as on_grad; keeps norms by leaf name."""

    def __init__(self) -> None:
        self.norms: dict[str, float] = {}

    def __call__(self, leaf: og.Tensor[og.Frozen], grad: og.Tensor[og.Shared]) -> None:
        self.norms[leaf.name or f"leaf{len(self.norms)}"] = l2(grad)


# --- models, losses and metrics as values ------------------------------------------------------------
@dataclass
class Batch:
    x: og.Tensor
    y: og.Tensor
    weight: og.Tensor | None = None


@dataclass
class TrainState:
    model: og.nn.Module
    opt: og.optim.Optimizer
    history: dict[str, list[float]] = field(default_factory=dict)
    best: og.Tensor[og.Mut] | None = None


def weighted_loss(logits: og.Tensor, batch: Batch) -> og.Tensor[og.Mut]:
    per_sample = F.cross_entropy(logits, batch.y, reduction="none")
    if batch.weight is None:
        return per_sample.mean()
    return (per_sample * batch.weight).sum() / batch.weight.sum()


def accuracy(logits: og.Tensor, labels: og.Tensor) -> float:
    return float((logits.argmax(axis=-1) == labels).mean().item())


def mean_margin(logits: og.Tensor, labels: og.Tensor) -> og.Tensor[og.Mut]:
    """A metric that returns a scalar tensor (fit takes float() of it), as torch users often write."""
    top2 = logits.softmax(axis=-1).numpy()
    top2.sort(axis=-1)
    return logits.graph.constant(top2[:, -1] - top2[:, -2]).mean()


def top_k(logits: og.Tensor[og.Frozen], labels: og.Tensor[og.Mut], k: int = 2) -> float:
    scores = logits.numpy()
    best = np.argsort(-scores, axis=-1)[:, :k]
    return float((best == labels.numpy()[:, None]).any(axis=-1).mean())


def build(g: og.Graph, sizes: Sequence[int], dropout: float = 0.0) -> og.nn.Sequential:
    layers: list[og.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(og.nn.Linear(g, a, b, rng=i))
        if i < len(sizes) - 2:
            layers.append(og.nn.ReLU())
            if dropout:
                layers.append(og.nn.Dropout(dropout, rng=i))
    return og.nn.Sequential(*layers)


def make_optimizer(kind: str, params: list[og.Tensor[og.Mut]], lr: float) -> og.optim.Optimizer:
    if kind == "sgd":
        return og.optim.SGD(params, lr=lr, momentum=0.9)
    if kind == "adamw":
        return og.optim.AdamW(params, lr=lr)
    return og.optim.Adam(params, lr=lr)


def run() -> None:
    g = og.Graph(device="cpu")
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((64, 6)).astype(np.float32)
    y_np = (x_np[:, 0] > 0).astype(np.int64)

    model = build(g, [6, 12, 2], dropout=0.1)
    target = build(g, [6, 12, 2])
    state = TrainState(model, make_optimizer("adamw", model.parameters(), 1e-2))
    logger = GradLogger()
    named: list[tuple[str, og.Tensor[og.Mut]]] = list(model.named_parameters())
    for xb, yb in og.data.batches(x_np, y_np, 16, rng=0):
        batch = Batch(g.constant(xb), g.constant(yb), weight=g.constant(np.ones(len(xb), dtype=np.float32)))
        logits = model(batch.x)
        loss = weighted_loss(logits, batch)
        grads = g.backward(loss, on_grad=logger)
        check_grads(grads, model.parameters())
        norms = grad_norms(grads, named)
        assert set(norms) <= {n for n, _ in named}
        p, biggest = largest_grad(grads)
        assert biggest >= 0 and p.requires_grad and global_norm(grads) >= 0
        state.opt.step(grads)
        state.history.setdefault("loss", []).append(loss.item())
        soft_update_(target, model, tau=0.1)
    assert logger.norms

    ps = model.parameters()
    w0 = ps[0]
    assert_type(first_row(w0), og.Tensor[og.Mut])
    assert_type(first_row(g.freeze(w0)), og.Tensor[og.Frozen])
    assert_type(same(w0), og.Tensor[og.Mut])
    avg = g.constant(np.zeros(w0.shape, dtype=w0.dtype))
    for _ in range(3):
        ema_(avg, w0, decay=0.9)
    clamp_rows_(w0, 1.0)
    init_normal_(g.param(np.zeros((2, 2))), 0.02, rng)
    print(summary(avg), l2(w0), to_numpy(w0).shape)
    assert_type(freeze_view(g, w0), og.Tensor[og.Frozen])
    t = as_tensor(g, x_np)
    assert_type(t, og.Tensor[og.Shared])
    state.best = w0.detach()

    metrics: dict[str, Metric] = {"top2": top_k, "acc": accuracy, "k1": functools.partial(top_k, k=1),
                               "margin": mean_margin, "np": lambda out, y: np.mean(out.numpy())}
    loss_fn: Callable[[og.Tensor, og.Tensor], og.Tensor] = lambda out, y: F.cross_entropy(out, y)
    history = og.fit(state.model, og.data.batches(x_np, y_np, 32), loss_fn, state.opt, epochs=2, metrics=metrics,
                     progress=False)
    history2 = og.fit(state.model, og.data.batches(x_np, y_np, 32),
                      functools.partial(F.cross_entropy, label_smoothing=0.1), state.opt,
                      metrics={"acc": lambda out, y: accuracy(out, y)}, progress=False)
    state.history.update(history)
    print({k: round(v[-1], 3) for k, v in state.history.items()}, history2["acc"])

    # a manual step with a plain function, then hooks of each style
    w = g.param(rng.standard_normal((3, 3)), name="w")
    loss2 = ((w @ w.T) ** 2).mean()
    seen: list[tuple[str | None, float]] = []
    grads2 = g.backward(loss2, on_grad=lambda leaf, grad: seen.append((leaf.name, l2(grad))), retain=True)
    g.clear()  # retain=True kept the saved tensors (and their borrows on w): drop them before the step
    sgd_step_(g, [w], grads2, lr=0.01)
    loss3 = (w * 2).sum()
    sums: dict[str, float] = {}
    g.backward(loss3, on_grad=lambda leaf, grad: sums.update({leaf.name or "?": float(grad.sum())}))
    assert seen and sums
    firsts: dict[str, float] = {}
    g.backward((w * 3).sum(), on_grad=lambda leaf, grad: firsts.setdefault("w", grad.sum().item()))
    assert firsts == {"w": 27.0}


if __name__ == "__main__":
    run()
