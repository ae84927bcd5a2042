"""Plugin cases across functions and containers: summaries, zip loops, detach cuts, new flow checks."""

from __future__ import annotations

import numpy as np

import owngrad as og


def two_losses(g: og.Graph, actor: og.nn.Module, critic: og.nn.Module,
               x: og.Tensor) -> tuple[og.Tensor[og.Mut], og.Tensor[og.Mut]]:
    values = critic(x)
    return (actor(x) * values.detach()).mean(), (values * values).mean()


def clip(g: og.Graph, loss: og.Tensor) -> og.Grads:
    grads = g.backward(loss)
    grads.clip_norm_(1.0)
    return grads


def summaries(g: og.Graph, x: og.Tensor[og.Mut]) -> None:
    actor, critic = og.nn.Linear(g, 4, 1), og.nn.Linear(g, 4, 1)
    opt_a, opt_c = og.optim.SGD(actor.parameters(), lr=0.1), og.optim.SGD(critic.parameters(), lr=0.1)
    actor_loss, critic_loss = two_losses(g, actor, critic, x)
    opt_c.step(g.backward(critic_loss))  # actor_loss reads critic's output only through detach()
    opt_a.step(clip(g, actor_loss))  # clip consumed actor_loss
    again = (actor(x) * 2).sum()
    opt_a.step(clip(g, (critic(x) * 2).sum()))  # E: "opt_a.step(...)" updates "actor" in place while "again" (line 28) depends on it and still waits for g.backward(...); call g.backward(again) first, or g.free(again)
    g.free(again)


def rows_without_a_name(g: og.Graph) -> None:
    w = g.param(np.zeros((4, 4)))
    loss = (w[0:2] * w[0:2]).sum()
    w[2:4] = 0.0
    w[1:3] = 0.0  # E: in-place write to "w" while "loss" (line 35) depends on it and still waits for g.backward(...); call g.backward(loss) first, or g.free(loss)
    g.backward(loss)


def ema_loop(g: og.Graph, model: og.nn.Module, ema: og.nn.Module, x: og.Tensor) -> None:
    pending = model(x).sum()
    with g.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.mul_(0.9).add_(0.1 * p)
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(0.9).add_(0.1 * p)  # E: in-place write into "e" (a param) of a value with gradient history outside `with g.no_grad():`: the write would drop that history (a GraphError at run time); write under `with g.no_grad():`, or detach the value
    g.backward(pending)


def through_a_dict(g: og.Graph, model: og.nn.Linear, x: og.Tensor[og.Mut]) -> None:
    out = model(x).sum()
    params = dict(model.named_parameters())
    params["weight"][0] = 0.0  # E: in-place write to "params" while "out" (line 52) depends on it and still waits for g.backward(...); call g.backward(out) first, or g.free(out)
    for name, p in model.named_parameters():
        print(name)
        p.zero_()  # E: in-place write to "p" while "out" (line 52) depends on it and still waits for g.backward(...); call g.backward(out) first, or g.free(out)
    g.backward(out)


def kept_in_a_list(g: og.Graph, model: og.nn.Linear, xs: list[og.Tensor[og.Mut]]) -> None:
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    losses: list[og.Tensor] = []
    for x in xs:
        losses.append(model(x).sum())
    opt.step(g.backward(model(xs[0]).sum()))  # E: "opt.step(...)" updates "model" in place while "losses" (line 65) depends on it and still waits for g.backward(...); call g.backward(losses) first, or g.free(losses)
    g.backward(og.stack(losses).sum())


def second_backward(g: og.Graph, w: og.Tensor[og.Mut]) -> None:
    loss = (w * w).sum()
    g.backward(loss, retain=True)
    g.backward(loss)
    g.backward(loss)  # E: g.backward(loss): "loss" (line 71) was already consumed by the backward or free at line 73; pass retain=True there to walk it twice, or recompute the forward


def foreign_grads(g: og.Graph) -> None:
    x = g.constant(np.ones((2, 4)))
    actor, critic = og.nn.Linear(g, 4, 1), og.nn.Linear(g, 4, 1)
    opt_c = og.optim.SGD(critic.parameters(), lr=0.1)
    grads_actor = g.backward(actor(x).sum())
    opt_c.step(grads_actor)  # E: "opt_c.step(grads_actor)" gets the gradients of the loss at line 81, which depends on none of the params "opt_c" updates (a GradError at run time); step it with the Grads of a loss computed from its params
    loss = critic(x).sum() + actor(x).sum()
    opt_c.step(g.backward(loss))


class Encoder(og.nn.Module):
    def __init__(self, g: og.Graph) -> None:
        super().__init__(g)
        self.gru = og.nn.GRU(g, 3, 4)

    def forward(self, x: og.Tensor) -> tuple[og.Tensor, og.Tensor]:
        out, h = self.gru(x)
        return out, h


def split_results(g: og.Graph, x: og.Tensor) -> None:
    gru = og.nn.GRU(g, 3, 4)
    enc = Encoder(g)
    opt = og.optim.SGD(gru.parameters(), lr=0.1)
    opt_e = og.optim.SGD(enc.parameters(), lr=0.1)
    out, h = gru(x)  # h is part of out's graph: one backward consumes both
    opt.step(g.backward(out.sum()))
    seq, last = enc.forward(x)
    opt_e.step(g.backward(seq.sum()))
    again = enc.forward(x)[0].sum()
    opt_e.step(g.backward(enc.forward(x)[1].sum()))  # E: "opt_e.step(...)" updates "enc" in place while "again" (line 106) depends on it and still waits for g.backward(...); call g.backward(again) first, or g.free(again)
    g.free(again)


class ActorCritic(og.nn.Module):
    def __init__(self, g: og.Graph) -> None:
        super().__init__(g)
        self.actor = og.nn.Linear(g, 4, 2)
        self.critic = og.nn.Linear(g, 4, 1)

    def losses(self, x: og.Tensor) -> tuple[og.Tensor[og.Mut], og.Tensor[og.Mut]]:
        values = self.critic(x)
        return (self.actor(x).sum(axis=1) * values.detach()).mean(), (values * values).mean()


def parts_of_a_module(g: og.Graph, x: og.Tensor[og.Mut]) -> None:
    ac = ActorCritic(g)
    opt_a = og.optim.SGD(ac.actor.parameters(), lr=0.1)
    opt_c = og.optim.SGD(ac.critic.parameters(), lr=0.1)
    opt_all = og.optim.SGD(ac.parameters(), lr=0.1)
    actor_loss, critic_loss = ac.losses(x)
    opt_c.step(g.backward(critic_loss))  # actor_loss needs only the actor's weights
    opt_a.step(g.backward(actor_loss))
    pending = ac.actor(x).sum()
    opt_c.step(g.backward(ac.critic(x).sum()))
    opt_all.step(g.backward(ac.critic(x).sum()))  # E: "opt_all.step(...)" updates "ac" in place while "pending" (line 130) depends on it and still waits for g.backward(...); call g.backward(pending) first, or g.free(pending)
    g.free(pending)


def branches(g: og.Graph, w: og.Tensor[og.Mut], flag: bool) -> None:
    loss = (w * w).sum()
    if flag:
        g.backward(loss)
    else:
        g.free(loss)
    w.add_(1.0)  # consumed on both paths
    loss2 = (w * w).sum()
    if flag:
        g.free(loss2)
        return
    w.add_(1.0)  # E: in-place write to "w" while "loss2" (line 143) depends on it and still waits for g.backward(...); call g.backward(loss2) first, or g.free(loss2)
    grads = g.backward(loss2) if flag else g.backward(loss2, retain=True)
    print(grads)
