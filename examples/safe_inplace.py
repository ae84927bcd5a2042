"""A tour of in-place updates that owngrad checks like Rust's borrow checker.

Every write to a tensor takes an exclusive borrow of the region it writes. A pending node
(recorded, not yet walked by backward) holds a shared borrow on exactly what it saved, so a
write that would change a value some gradient still needs fails -- at the line that writes,
before anything changes. Everything else is allowed:

1. an optimizer step (after backward), with gradient clipping first;
2. a weight EMA (exponential moving average) kept as constants;
3. a masked update through a slice, disjoint from what a pending node saved;
4. BatchNorm's running statistics, updated during the forward pass;
5. and the write owngrad refuses, with the error it prints.

    python examples/safe_inplace.py [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np

import owngrad as og
import owngrad.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps (for tests)")
    args = ap.parse_args()
    steps = 3 if args.quick else 20

    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((32, 8)).astype(np.float32)
    y_np = (x_np[:, 0] > 0).astype(np.int64)

    g = og.Graph()
    model = og.nn.Sequential(og.nn.Linear(g, 8, 16, rng=0), og.nn.BatchNorm1d(g, 16), og.nn.ReLU(),
                             og.nn.Linear(g, 16, 2, rng=1))
    opt = og.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = g.constant(x_np), g.constant(y_np)

    # 2. the EMA copies are constants of the same graph, updated in place under no_grad
    ema = [g.constant(p.numpy()) for p in model.parameters()]
    ema_ref = [p.numpy() for p in model.parameters()]   # the same average in plain numpy, to check against

    print("1. optimizer steps with gradient clipping, 2. a weight EMA")
    for step in range(1, steps + 1):
        loss = F.cross_entropy(model(x), y)
        grads = g.backward(loss)            # consumes the nodes: their borrows are released
        norm = grads.clip_norm_(1.0)        # in place on the gradients (returns the norm before)
        opt.step(grads)                     # in place on the params, each under an exclusive borrow
        with g.no_grad():
            for e, p in zip(ema, model.parameters()):
                e.mul_(0.9).add_(p * 0.1)
        ema_ref = [0.9 * r + 0.1 * p.numpy() for r, p in zip(ema_ref, model.parameters())]
        if step == 1 or step == steps:
            print(f"   step {step:2d}: loss {loss.item():.4f}, gradient norm before clipping {norm:.4f}")
    exact = all(np.allclose(e.numpy(), r, rtol=1e-5, atol=1e-6) for e, r in zip(ema, ema_ref))
    lag = max(float(np.abs(e.numpy() - p.numpy()).max()) for e, p in zip(ema, model.parameters()))
    print(f"   EMA equals 0.9 * EMA + 0.1 * weights after every step: {exact} "
          f"(it lags the weights by at most {lag:.4f})")

    print("3. a masked update through a slice, disjoint from what a pending node saved")
    w = g.param(rng.standard_normal((4, 3)), name="w")
    head = w[0:2]
    pending = (head * head).sum()           # saves w[0:2]: a shared borrow on rows 0-1 only
    with g.no_grad():
        tail = w[2:4]
        # rows 2-3: no overlap, allowed at run time (PyTorch would refuse at backward). The mypy
        # plugin tracks tensors, not regions, so it cannot see the rows are disjoint: silenced here.
        tail[tail < 0] = 0.0  # type: ignore[owngrad-borrow, unused-ignore]
    gw = g.backward(pending)[w].numpy()
    ok = np.allclose(gw[0:2], 2 * w.numpy()[0:2]) and not gw[2:4].any()
    print(f"   rows 2-3 clipped at 0 while rows 0-1 were borrowed; gradient exact: {ok}")

    print("4. BatchNorm running statistics, updated in place during the forward pass")
    bn = model[1]
    assert isinstance(bn, og.nn.BatchNorm1d)
    before = bn.running_mean.numpy().copy()
    out = model(x)                          # pending nodes now hold the layers' weights...
    after = bn.running_mean.numpy()         # ...but never the running statistics, so that write was fine
    print(f"   running_mean moved by {float(np.abs(after - before).max()):.4f} while {len(g.pending())} nodes "
          "are pending")

    print("5. the write owngrad refuses: a step while a pending result still needs the old weights")
    loss = F.cross_entropy(out, y)
    grads_old = g.backward(F.cross_entropy(model(x), y))   # another forward: its nodes are consumed here
    try:
        # `loss` (pending) saved the weights of `out`'s forward. The mypy plugin reports this line
        # statically ([owngrad-borrow]); silenced so the example can show the run-time error.
        opt.step(grads_old)  # type: ignore[owngrad-borrow, unused-ignore]
    except og.BorrowError as e:
        print(f"   refused, nothing changed:\n{type(e).__name__}: {e}")
    g.backward(loss)                        # consume `loss` first ...
    opt.step(grads_old)                     # ... and the same step goes through
    print("   after g.backward(loss) the step went through")
    print("done")


if __name__ == "__main__":
    main()
