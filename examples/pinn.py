"""A physics-informed fit: a network u(t) trained so that u' = -u with u(0) = 1, no data besides that.

The loss reads the network's derivative with respect to its *input*: ``du/dt`` comes from
``g.grad(u.sum(), t, create_graph=True)`` -- a gradient that carries history -- and the loss
``mean((du/dt + u)^2) + (u(0) - 1)^2`` is differentiated again with respect to the weights. One
``g.backward`` consumes both graphs (the network's forward and the derivative's), so the optimizer
step that follows holds its exclusive borrows on the weights without a conflict. The solution is
``exp(-t)``; the fit is compared with it at the end.

    python examples/pinn.py [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np

import owngrad as og


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps (for tests)")
    args = ap.parse_args()
    steps = 200 if args.quick else 3000

    g = og.Graph()
    net = og.nn.MLP(g, [1, 24, 24, 1], activation="tanh", rng=0, dtype=np.float64)
    opt = og.optim.Adam(net.parameters(), lr=1e-2)
    t = g.param(np.linspace(0.0, 2.0, 41).reshape(-1, 1), name="t")   # collocation points (a param: g.grad reads it)
    t0 = g.constant(np.zeros((1, 1)), name="t0")

    residual = float("nan")
    for step in range(1, steps + 1):
        u = net(t)
        du = g.grad(u.sum(), t, create_graph=True)                  # du/dt at every point, with history
        ode = ((du + u) ** 2).mean()                                # the equation's residual
        init = ((net(t0) - 1.0) ** 2).sum()                         # the initial condition
        grads = g.backward(ode + init)                               # through du/dt: second order
        opt.step(grads)                                              # (grads also holds t's: opt skips it)
        residual = float(ode.item())
        if step == 1 or step % (steps // 6) == 0:
            print(f"step {step:5d}: ode residual {residual:.2e}  initial condition {init.item():.2e}")
    with g.no_grad():
        fit = net(g.constant(np.linspace(0.0, 2.0, 9).reshape(-1, 1))).numpy().ravel()
    err = float(np.abs(fit - np.exp(-np.linspace(0.0, 2.0, 9))).max())
    print(f"final ode residual: {residual:.2e} (goal < 1e-3)")
    print(f"max |u(t) - exp(-t)| on [0, 2]: {err:.2e}")
    print(f"pending nodes left: {len(g.pending())}")


if __name__ == "__main__":
    main()
