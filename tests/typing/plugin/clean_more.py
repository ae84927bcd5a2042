"""Plugin cases: everyday training code (trainer classes, DQN target networks, ensembles, accumulation,
validation, GANs) must raise no owngrad-borrow error."""

import numpy as np

import owngrad as og
from owngrad.nn import functional as F


class Trainer:
    def __init__(self, g: og.Graph) -> None:
        self.g = g
        self.model = og.nn.Sequential(og.nn.Linear(g, 4, 8), og.nn.ReLU(), og.nn.Linear(g, 8, 2))
        self.target = self.model.clone()
        self.opt = og.optim.Adam(self.model.parameters(), lr=1e-3)
        self.sched = og.optim.lr_scheduler.StepLR(self.opt, 10)

    def loss(self, x: np.ndarray, y: np.ndarray) -> og.Tensor:
        return F.cross_entropy(self.model(self.g.constant(x)), y)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = self.loss(x, y)
        grads = self.g.backward(loss)
        grads.clip_norm_(1.0)
        self.opt.step(grads)
        return loss.item()

    def soft_update(self, tau: float) -> None:
        with self.g.no_grad():
            for t, p in zip(self.target.parameters(), self.model.parameters()):
                t.mul_(1 - tau).add_(tau * p)


def soft_update(g: og.Graph, target: og.nn.Module, online: og.nn.Module, tau: float) -> None:
    with g.no_grad():
        for t, p in zip(target.parameters(), online.parameters()):
            t.mul_(1 - tau).add_(tau * p)


def dqn(g: og.Graph, obs: np.ndarray, nxt: np.ndarray, r: np.ndarray) -> None:
    online = og.nn.Linear(g, 4, 2)
    target = online.clone()
    opt = og.optim.SGD(online.parameters(), lr=0.1)
    for _ in range(3):
        q = online(g.constant(obs)).max(axis=1)
        with g.no_grad():
            q_next = target(g.constant(nxt)).max(axis=1)
        loss = ((q - (g.constant(r) + 0.9 * q_next)) ** 2).mean()
        opt.step(g.backward(loss))
        soft_update(g, target, online, 0.01)


def accumulate(g: og.Graph, model: og.nn.Module, xs: list[np.ndarray], ys: list[np.ndarray],
               opt: og.optim.SGD) -> None:
    grads: og.Grads | None = None
    for x, y in zip(xs, ys):
        loss = F.cross_entropy(model(g.constant(x)), y) / len(xs)
        grads = g.backward(loss) if grads is None else g.backward(loss, into=grads)
    if grads is not None:
        opt.step(grads)


def ensembles(g: og.Graph, x: og.Tensor) -> None:
    models = [og.nn.Linear(g, 4, 1) for _ in range(3)]
    opts = [og.optim.SGD(m.parameters(), lr=0.1) for m in models]
    for m, o in zip(models, opts):
        o.step(g.backward(m(x).sum()))
    preds = [m(x) for m in models]
    total = preds[0] + preds[1] + preds[2]
    g.backward(total.sum())
    for o in opts:
        o.step(g.backward(models[0](x).sum()))


def validation(g: og.Graph, model: og.nn.Module, x: np.ndarray, y: np.ndarray, opt: og.optim.Adam) -> list[float]:
    hist: list[float] = []
    for epoch in range(2):
        for xb, yb in og.data.batches(x, y, 8):
            loss = F.cross_entropy(model(g.constant(xb)), yb)
            opt.step(g.backward(loss))
        with g.no_grad():
            val = F.cross_entropy(model(g.constant(x)), y)
        hist.append(val.item())
        if epoch == 0:
            model.eval()
    return hist


def bn_and_dropout(g: og.Graph, x: og.Tensor) -> None:
    net = og.nn.Sequential(og.nn.Linear(g, 4, 4), og.nn.BatchNorm1d(g, 4), og.nn.Dropout(0.5))
    opt = og.optim.SGD(net.parameters(), lr=0.1)
    out = net(x)
    loss = out.mean()
    grads = g.backward(loss)
    opt.step(grads)
    net.eval()
    with g.no_grad():
        print(net(x).numpy())


def gan_alternating(g: og.Graph, z: og.Tensor, real: og.Tensor) -> None:
    gen, disc = og.nn.Linear(g, 2, 2), og.nn.Linear(g, 2, 1)
    opt_g, opt_d = og.optim.Adam(gen.parameters()), og.optim.Adam(disc.parameters())
    for _ in range(2):
        fake = gen(z)
        d_loss = (disc(fake.detach()) - disc(real)).mean()
        opt_d.step(g.backward(d_loss))
        g_loss = -disc(fake).mean()
        opt_g.step(g.backward(g_loss))
