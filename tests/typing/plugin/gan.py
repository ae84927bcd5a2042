"""Plugin cases: `# E: message` at the end of a line is the exact owngrad-borrow error expected there."""

from __future__ import annotations

import numpy as np

import owngrad as og


def alternating_update_bug(g: og.Graph, z: og.Tensor, real: og.Tensor) -> None:
    gen = og.nn.Linear(g, 4, 4)
    disc = og.nn.Linear(g, 4, 1)
    opt_g = og.optim.SGD(gen.parameters(), lr=0.1)
    opt_d = og.optim.SGD(disc.parameters(), lr=0.1)
    fake = gen(z)
    g_loss = -disc(fake).mean()
    d_loss = (disc(fake.detach()) - disc(real)).mean()
    opt_d.step(g.backward(d_loss))  # E: "opt_d.step(...)" updates "disc" in place while "g_loss" (line 16) depends on it and still waits for g.backward(...); call g.backward(g_loss) first, or g.free(g_loss)
    opt_g.step(g.backward(g_loss))


def alternating_update_fixed(g: og.Graph, z: og.Tensor, real: og.Tensor) -> None:
    gen = og.nn.Linear(g, 4, 4)
    disc = og.nn.Linear(g, 4, 1)
    opt_g = og.optim.SGD(gen.parameters(), lr=0.1)
    opt_d = og.optim.SGD(disc.parameters(), lr=0.1)
    fake = gen(z)
    g_loss = -disc(fake).mean()
    grads_g = g.backward(g_loss)
    d_loss = (disc(fake.detach()) - disc(real)).mean()
    opt_d.step(g.backward(d_loss))
    opt_g.step(grads_g)


def write_while_pending(g: og.Graph) -> None:
    w = g.param(np.zeros((3, 2)))
    x = g.param(np.ones((4, 3)))
    h = x @ w
    loss = h.relu().sum()
    w -= 0.1  # E: in-place write to "w" while "loss" (line 39) depends on it and still waits for g.backward(...); call g.backward(loss) first, or g.free(loss)
    w[0:2] = 0.0  # E: in-place write to "w" while "loss" (line 39) depends on it and still waits for g.backward(...); call g.backward(loss) first, or g.free(loss)
    w.T[0].zero_()  # E: in-place write to "w" while "loss" (line 39) depends on it and still waits for g.backward(...); call g.backward(loss) first, or g.free(loss)
    grads = g.backward(loss)
    with g.no_grad():
        w -= 0.1 * grads[w]


def training_loop(g: og.Graph, xs: list[np.ndarray], ys: list[np.ndarray]) -> None:
    model = og.nn.MLP(g, [4, 8, 2])
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    for x, y in zip(xs, ys):
        logits = model(g.constant(x))
        loss = og.nn.functional.cross_entropy(logits, y)
        acc = float((logits.argmax(axis=1) == g.constant(y)).numpy().mean())
        opt.step(g.backward(loss))
        print(acc, loss.item())


def monitor_without_no_grad(g: og.Graph, x: og.Tensor, xv: og.Tensor) -> None:
    model = og.nn.Sequential(og.nn.Linear(g, 4, 8), og.nn.Tanh(), og.nn.Linear(g, 8, 1))
    opt = og.optim.Adam(model.parameters())
    val = model(xv).mean()
    loss = model(x).mean()
    opt.step(g.backward(loss))  # E: "opt.step(...)" updates "model" in place while "val" (line 62) depends on it and still waits for g.backward(...); call g.backward(val) first, or g.free(val)


def monitor_under_no_grad(g: og.Graph, x: og.Tensor, xv: og.Tensor) -> None:
    model = og.nn.Linear(g, 4, 1)
    opt = og.optim.Adam(model.parameters())
    with g.no_grad():
        val2 = model(xv).mean()
    loss2 = model(x).mean()
    opt.step(g.backward(loss2))
    print(val2.item())


def unrelated_and_freed(g: og.Graph) -> None:
    w = g.param(np.zeros(3))
    v = g.param(np.zeros(3))
    loss_v = (v * v).sum()
    w += 1  # loss_v does not depend on w
    loss_w = (w * w).sum()
    g.free(loss_w)
    w += 1
    tmp = (w * 2).exp()
    g.clear()
    w.fill_(0.0)
    opt = og.optim.SGD([w], lr=0.1)
    out = (w * w).sum()
    opt.step(g.backward((loss_v * w).sum()))  # E: "opt.step(...)" updates "w" in place while "out" (line 89) depends on it and still waits for g.backward(...); call g.backward(out) first, or g.free(out)
    print(tmp)


def retain_keeps_pending(g: og.Graph) -> None:
    w = g.param(np.zeros(3))
    loss = (w * w).sum()
    g.backward(loss, retain=True)
    w.add_(1.0)  # E: in-place write to "w" while "loss" (line 96) depends on it and still waits for g.backward(...); call g.backward(loss) first, or g.free(loss)
    g.backward(loss)
    w.add_(1.0)


def carried_into_next_iteration(g: og.Graph, n: int) -> None:
    w = g.param(np.zeros(3))
    for _ in range(n):
        w.mul_(0.5)  # E: in-place write to "w" while "y" (line 107) depends on it and still waits for g.backward(...); call g.backward(y) first, or g.free(y)
        y = (w * w).sum()
    print(y.item())


def views_alias_their_base(g: og.Graph) -> None:
    w = g.param(np.zeros((4, 4)))
    top = w[0:2]
    loss = (top * top).sum()
    w[3] = 1.0  # rows 0-1 only: disjoint from what loss depends on
    w[1] = 1.0  # E: in-place write to "w" while "loss" (line 114) depends on it and still waits for g.backward(...); call g.backward(loss) first, or g.free(loss)
    g.backward(loss)
    top.zero_()
    loss2 = (w * w).sum()
    top.zero_()  # E: in-place write to "top" while "loss2" (line 119) depends on it and still waits for g.backward(...); call g.backward(loss2) first, or g.free(loss2)
    g.backward(loss2)


def constants_only(g: og.Graph) -> None:
    x = g.constant(np.ones(3))
    y = x * 2
    x += 1
    print(y)


with og.Graph() as g0:
    w0 = g0.param(np.zeros(3))
    out0 = (w0 * w0).sum()
    w0 -= 1  # E: in-place write to "w0" while "out0" (line 133) depends on it and still waits for g.backward(...); call g.backward(out0) first, or g.free(out0)
w0 -= 1
