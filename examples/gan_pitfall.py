"""The alternating-update pitfall of GAN training, caught at the step that causes it.

A generator's loss is computed *through* the discriminator, so it saves the discriminator's
weights for its backward. Stepping the discriminator before that backward has run changes
weights a pending gradient still needs. PyTorch notices only later, inside ``backward``
("one of the variables needed for gradient computation has been modified by an inplace
operation") -- or never, when the optimizer's update is done on ``.data``. owngrad refuses the
optimizer step itself, names the line that recorded the borrowing node, and changes nothing.

    python examples/gan_pitfall.py [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np

import owngrad as og
import owngrad.nn.functional as F


def real_batch(rng: np.random.Generator, n: int) -> np.ndarray:
    """Points on a noisy ring of radius 2: the data the generator should learn to imitate."""
    angle = rng.uniform(0, 2 * np.pi, n)
    r = 2.0 + 0.1 * rng.standard_normal(n)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few training steps (for tests)")
    args = ap.parse_args()
    steps = 5 if args.quick else 300
    batch = 64

    rng = np.random.default_rng(0)
    g = og.Graph()
    gen = og.nn.MLP(g, [4, 32, 2], rng=1)               # generator: noise -> point
    disc = og.nn.MLP(g, [2, 32, 1], rng=2)              # discriminator: point -> logit
    opt_g = og.optim.Adam(gen.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = og.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.999))

    print("the wrong order: step the discriminator while the generator's loss is pending")
    fake = gen(g.constant(rng.standard_normal((batch, 4)).astype(np.float32)))
    loss_g = F.binary_cross_entropy_with_logits(disc(fake), 1.0)    # saves disc's weights
    loss_d = (F.binary_cross_entropy_with_logits(disc(g.constant(real_batch(rng, batch))), 1.0)
              + F.binary_cross_entropy_with_logits(disc(fake.detach()), 0.0))
    grads_d = g.backward(loss_d)
    before = [p.numpy() for p in disc.parameters()]
    try:
        # refused: loss_g still needs the old weights. The mypy plugin flags this line statically
        # ([owngrad-borrow]); silenced so the example can show the run-time error.
        opt_d.step(grads_d)  # type: ignore[owngrad-borrow, unused-ignore]
    except og.BorrowError as e:
        print(f"{type(e).__name__}: {e}")
    unchanged = all(np.array_equal(b, p.numpy()) for b, p in zip(before, disc.parameters()))
    print(f"discriminator unchanged after the refused step: {unchanged}")
    g.clear()                                           # drop the pending generator loss

    print("the right order: finish each loss's backward before stepping the weights it used")
    for step in range(1, steps + 1):
        fake = gen(g.constant(rng.standard_normal((batch, 4)).astype(np.float32)))
        # 1. discriminator: the fake points are detached, so this loss does not reach the generator
        loss_d = (F.binary_cross_entropy_with_logits(disc(g.constant(real_batch(rng, batch))), 1.0)
                  + F.binary_cross_entropy_with_logits(disc(fake.detach()), 0.0))
        opt_d.step(g.backward(loss_d))
        # 2. generator: computed through the *updated* discriminator, backward, then step
        loss_g = F.binary_cross_entropy_with_logits(disc(fake), 1.0)
        opt_g.step(g.backward(loss_g))                  # its Grads hold disc's params too: opt_g skips them
        if step == 1 or step == steps or step % 100 == 0:
            print(f"step {step:4d}: loss_d {loss_d.item():.4f}  loss_g {loss_g.item():.4f}")
    with g.no_grad():
        sample = gen(g.constant(rng.standard_normal((1000, 4)).astype(np.float32))).numpy()
    radius = float(np.sqrt((sample ** 2).sum(axis=1)).mean())
    print(f"mean radius of generated points: {radius:.3f} (real data: 2.0)")
    print(f"pending nodes left: {len(g.pending())}")


if __name__ == "__main__":
    main()
