"""WGAN-GP on a 2-d toy distribution: the gradient penalty is a gradient of a gradient.

The critic is trained to keep the norm of its gradient (with respect to its *input*) near 1 at
points between real and generated samples: ``g.grad(critic(x_hat).sum(), x_hat, create_graph=True)``
gives that gradient with history, the penalty ``(|grad| - 1)^2`` enters the critic's loss, and one
``g.backward`` differentiates through it. That backward also consumes the graph the gradient was
computed from (the critic's forward at ``x_hat``), so the critic's optimizer step that follows takes
its exclusive borrows without a conflict; stepping before it would be refused at the step.

    python examples/wgan_gp.py [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np

import owngrad as og


def real_batch(rng: np.random.Generator, n: int) -> np.ndarray:
    """Eight Gaussians on a circle of radius 2."""
    k = rng.integers(0, 8, n)
    centers = 2.0 * np.stack([np.cos(k * np.pi / 4), np.sin(k * np.pi / 4)], axis=1)
    return centers + 0.05 * rng.standard_normal((n, 2))


def penalty(g: og.Graph, critic: og.nn.MLP, real: np.ndarray, fake: np.ndarray,
            rng: np.random.Generator) -> tuple[og.Tensor, float]:
    """The gradient penalty ``mean((|d critic / d x_hat| - 1)^2)`` and the mean gradient norm."""
    eps = rng.uniform(0.0, 1.0, (real.shape[0], 1))
    x_hat = g.param(eps * real + (1 - eps) * fake, name="x_hat")   # a param: g.grad differentiates at it
    grad = g.grad(critic(x_hat).sum(), x_hat, create_graph=True)    # read-only, with history
    norm = (grad * grad).sum(axis=1).sqrt()
    return ((norm - 1.0) ** 2).mean(), float(norm.numpy().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps (for tests)")
    args = ap.parse_args()
    steps, n_critic, batch, lam = (60 if args.quick else 1000), 5, 64, 10.0

    rng = np.random.default_rng(0)
    g = og.Graph()
    gen = og.nn.MLP(g, [2, 64, 64, 2], activation="relu", rng=1, dtype=np.float64)
    critic = og.nn.MLP(g, [2, 64, 64, 1], activation="tanh", rng=2, dtype=np.float64)
    opt_g = og.optim.Adam(gen.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_c = og.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.9))

    norms: list[float] = []
    for step in range(1, steps + 1):
        for _ in range(n_critic):
            real = real_batch(rng, batch)
            with g.no_grad():
                fake = gen(g.constant(rng.standard_normal((batch, 2)))).numpy()
            gp, norm = penalty(g, critic, real, fake, rng)
            w_dist = critic(g.constant(real)).mean() - critic(g.constant(fake)).mean()
            opt_c.step(g.backward(-w_dist + lam * gp))     # the penalty's backward is second order
            norms.append(norm)
        loss_g = -critic(gen(g.constant(rng.standard_normal((batch, 2))))).mean()
        opt_g.step(g.backward(loss_g))                    # its Grads hold the critic's params too: skipped
        if step == 1 or step % (steps // 5) == 0:
            print(f"step {step:5d}: wasserstein estimate {w_dist.item():.4f}  penalty {gp.item():.4f}  "
                  f"critic gradient norm {norm:.3f}")
    recent = float(np.mean(norms[-5 * n_critic:]))
    print(f"critic gradient norm at interpolates, last {5 * n_critic} critic steps: {recent:.3f} (goal: near 1)")
    with g.no_grad():
        sample = gen(g.constant(rng.standard_normal((2000, 2)))).numpy()
    print(f"mean radius of generated points: {float(np.sqrt((sample ** 2).sum(axis=1)).mean()):.3f} (real: 2.0)")
    print(f"pending nodes left: {len(g.pending())}")


if __name__ == "__main__":
    main()
