"""MISUSE TWIN of rl_actor_critic.py: every line marked MISUSE must be reported.

Advantage actor-critic on a toy bandit: one helper returns both losses (the actor's uses only
``values.detach()``), each optimizer steps with its own loss's gradients, rollouts run under
``no_grad`` and go through a list."""

from __future__ import annotations

import numpy as np

import owngrad as og


class Agent:
    def __init__(self, g: og.Graph, obs: int, actions: int) -> None:
        self.actor = og.nn.Sequential(og.nn.Linear(g, obs, 16), og.nn.Tanh(), og.nn.Linear(g, 16, actions))
        self.critic = og.nn.Sequential(og.nn.Linear(g, obs, 16), og.nn.Tanh(), og.nn.Linear(g, 16, 1))


def losses(g: og.Graph, actor: og.nn.Module, critic: og.nn.Module, obs: og.Tensor, actions: np.ndarray,
           returns: np.ndarray) -> tuple[og.Tensor[og.Mut], og.Tensor[og.Mut]]:
    logits = actor(obs)
    logp = og.nn.functional.cross_entropy(logits, actions, reduction="none")
    values = critic(obs).reshape(-1)
    advantage = g.constant(returns) - values.detach()
    actor_loss = (logp * advantage).mean()
    critic_loss = ((values - g.constant(returns)) ** 2).mean()
    return actor_loss, critic_loss


def rollout(g: og.Graph, agent: Agent, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    probs: list[np.ndarray] = []
    with g.no_grad():
        for row in obs:
            logits = agent.actor(g.constant(row[None, :]))
            probs.append(logits.softmax(axis=-1).numpy()[0])
    return np.array([rng.choice(len(p), p=p / p.sum()) for p in probs])


def train(steps: int) -> float:
    g = og.Graph()
    rng = np.random.default_rng(0)
    agent = Agent(g, 4, 3)
    opt_actor = og.optim.Adam(agent.actor.parameters(), lr=1e-2)
    opt_critic = og.optim.Adam(agent.critic.parameters(), lr=1e-2)
    history: list[float] = []
    for _ in range(steps):
        obs_np = rng.normal(size=(32, 4))
        actions = rollout(g, agent, obs_np, rng)
        returns = (actions == 1).astype(np.float64)
        obs = g.constant(obs_np)
        actor_loss, critic_loss = losses(g, agent.actor, agent.critic, obs, actions, returns)
        preview = agent.actor(obs).softmax(axis=-1)  # a rollout's forward outside no_grad
        grads_actor = g.backward(actor_loss)
        opt_critic.step(grads_actor)  # MISUSE: the actor's gradients, and critic_loss still waits
        opt_actor.step(grads_actor)  # MISUSE: preview still needs the actor's weights
        g.backward(critic_loss)
        g.backward(critic_loss)  # MISUSE: consumed by the line above
        g.free(preview)
        history.append(float(critic_loss.item()))
    return history[-1]


if __name__ == "__main__":
    print(f"critic loss {train(20):.4f}")
