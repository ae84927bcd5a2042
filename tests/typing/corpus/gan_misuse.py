"""MISUSE TWIN of gan.py: every line marked MISUSE must be reported.

A small GAN on 2-d points: the discriminator steps on a loss over ``fake.detach()``, the
generator's loss is built after that step, and a helper returns both losses."""

from __future__ import annotations

import numpy as np

import owngrad as og


def make_nets(g: og.Graph) -> tuple[og.nn.Sequential, og.nn.Sequential]:
    gen = og.nn.Sequential(og.nn.Linear(g, 2, 16), og.nn.ReLU(), og.nn.Linear(g, 16, 2))
    disc = og.nn.Sequential(og.nn.Linear(g, 2, 16), og.nn.ReLU(), og.nn.Linear(g, 16, 1))
    return gen, disc


def disc_loss(disc: og.nn.Module, real: og.Tensor, fake: og.Tensor) -> og.Tensor[og.Mut]:
    bce = og.nn.functional.binary_cross_entropy_with_logits
    ones = np.ones((real.shape[0], 1))
    zeros = np.zeros((fake.shape[0], 1))
    return bce(disc(real), ones) + bce(disc(fake), zeros)


def train(steps: int) -> float:
    g = og.Graph()
    rng = np.random.default_rng(1)
    gen, disc = make_nets(g)
    opt_g = og.optim.Adam(gen.parameters(), lr=2e-3)
    opt_d = og.optim.Adam(disc.parameters(), lr=2e-3)
    last = 0.0
    for _ in range(steps):
        real = g.constant(rng.normal(loc=2.0, size=(64, 2)))
        z = g.randn(64, 2)
        fake = gen(z)
        loss_g = og.nn.functional.binary_cross_entropy_with_logits(disc(fake), np.ones((64, 1)))
        loss_d = disc_loss(disc, real, fake.detach())
        opt_d.step(g.backward(loss_d))  # MISUSE: loss_g still needs disc's old weights
        opt_g.step(g.backward(loss_g))
        for p in disc.parameters():
            p.mul_(0.99)
        with g.no_grad():
            for p in gen.parameters():
                p.add_(0.01 * p.detach())
        pending = disc(fake.detach()).mean()
        for p in disc.parameters():
            p.mul_(0.99)  # MISUSE: pending depends on disc
        g.free(pending)
        last = loss_g.item()
    return last


if __name__ == "__main__":
    print(f"generator loss {train(30):.4f}")
