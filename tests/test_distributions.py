"""og.distributions against torch.distributions in float64: log_prob and entropy values and gradients,
sample shapes, dtypes and frequencies (drawn from g.rng, reproducibly), rsample's gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og

D = og.distributions
R = np.random.default_rng(2)


def _check(build: Callable[[Any, Any], Any], params: list[np.ndarray], value: np.ndarray,
           methods: tuple[str, ...] = ("log_prob", "entropy")) -> None:
    torch = pytest.importorskip("torch")
    for method in methods:
        g = og.Graph()
        ps = [g.param(a) for a in params]
        tps = [torch.tensor(a, requires_grad=True) for a in params]
        d, td = build(D, ps), build(torch.distributions, tps)
        out = d.log_prob(value) if method == "log_prob" else d.entropy()
        tout = td.log_prob(torch.tensor(value)) if method == "log_prob" else td.entropy()
        seed = np.cos(np.arange(out.size) + 1.0).reshape(out.shape)
        grads = g.backward(out, seed=seed)
        tout.backward(torch.tensor(seed))
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=method)
        for p, tp in zip(ps, tps):
            if tp.grad is None:  # (a Normal's entropy does not depend on its loc)
                assert p not in grads
                continue
            np.testing.assert_allclose(grads[p].numpy(), tp.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=method)


LOGITS = R.standard_normal((3, 4))
PROBS = R.uniform(0.1, 1.0, (3, 4))


def test_categorical_from_logits_and_probs_matches_torch() -> None:
    value = np.array([[0, 3, 1], [2, 2, 0]])
    _check(lambda m, ps: m.Categorical(logits=ps[0]), [LOGITS], value)
    _check(lambda m, ps: m.Categorical(probs=ps[0]), [PROBS], value)
    _check(lambda m, ps: m.Categorical(probs=ps[0]), [np.array([0.0, 0.3, 0.7])], np.array(2), ("entropy",))


def test_bernoulli_matches_torch() -> None:
    value = R.integers(0, 2, (3, 4)).astype(np.float64)
    _check(lambda m, ps: m.Bernoulli(logits=ps[0]), [LOGITS], value)
    _check(lambda m, ps: m.Bernoulli(probs=ps[0]), [PROBS * 0.9], value)


def test_normal_matches_torch() -> None:
    _check(lambda m, ps: m.Normal(ps[0], ps[1]), [LOGITS, PROBS], R.standard_normal((2, 3, 4)))


@pytest.mark.parametrize("kind", ["covariance_matrix", "scale_tril", "precision_matrix"])
def test_multivariate_normal_with_a_diagonal_matrix_matches_torch(kind: str) -> None:
    m = np.diag(R.uniform(0.5, 2.0, 4))
    _check(lambda mod, ps: mod.MultivariateNormal(ps[0], **{kind: ps[1]}), [LOGITS, m], R.standard_normal((2, 3, 4)))


@pytest.mark.parametrize("kind", ["covariance_matrix", "scale_tril", "precision_matrix"])
def test_multivariate_rsample_gradients_match_torch(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    import torch.distributions.multivariate_normal as tmvn

    g = og.Graph()
    loc0, m0 = R.standard_normal((3, 4)), np.diag(R.uniform(0.5, 2.0, 4))
    loc, m = g.param(loc0), g.param(m0)
    d = D.MultivariateNormal(loc, **{kind: m})
    x = d.rsample((2,))
    sd = d.stddev.numpy()
    eps = (x.numpy() - loc0) / sd
    seed = np.cos(np.arange(x.size)).reshape(x.shape)
    grads = g.backward(x, seed=seed)
    monkeypatch.setattr(tmvn, "_standard_normal", lambda *a, **k: torch.tensor(eps))
    tloc, tm = torch.tensor(loc0, requires_grad=True), torch.tensor(m0, requires_grad=True)
    tx = torch.distributions.MultivariateNormal(tloc, **{kind: tm}).rsample((2,))
    tx.backward(torch.tensor(seed))
    np.testing.assert_allclose(x.numpy(), tx.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads[loc].numpy(), tloc.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads[m].numpy(), tm.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_multivariate_normal_with_a_full_constant_covariance_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    a = R.standard_normal((3, 3))
    cov = a @ a.T + np.eye(3)
    value = R.standard_normal((5, 3))
    g = og.Graph()
    loc = g.param(np.array([0.5, -1.0, 2.0]))
    d = D.MultivariateNormal(loc, covariance_matrix=g.constant(cov))
    tloc = torch.tensor(loc.numpy(), requires_grad=True)
    td = torch.distributions.MultivariateNormal(tloc, covariance_matrix=torch.tensor(cov))
    lp, tlp = d.log_prob(value), td.log_prob(torch.tensor(value))
    np.testing.assert_allclose(lp.numpy(), tlp.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(d.entropy().numpy(), td.entropy().detach().numpy(), rtol=1e-12)
    grads = g.backward(lp.sum())
    tlp.sum().backward()
    np.testing.assert_allclose(grads[loc].numpy(), tloc.grad.numpy(), rtol=1e-10)
    draws = d.sample((20000,)).numpy()
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.15 * np.abs(cov).max())
    with pytest.raises(ValueError, match="diagonal"):
        D.MultivariateNormal(loc, covariance_matrix=g.param(cov))


def test_samples_have_torchs_shapes_and_frequencies_and_repeat_with_the_graph_seed() -> None:
    def draws(seed: int) -> tuple[np.ndarray, np.ndarray]:
        g = og.Graph()
        g.rng = np.random.default_rng(seed)
        c = D.Categorical(probs=g.constant(np.array([[0.1, 0.6, 0.3], [0.5, 0.0, 0.5]])))
        b = D.Bernoulli(probs=g.constant(np.array([0.2, 0.9])))
        return c.sample((20000,)).numpy(), b.sample((20000,)).numpy()

    cs, bs = draws(0)
    assert cs.shape == (20000, 2) and cs.dtype == np.int64 and bs.shape == (20000, 2) and bs.dtype == np.float64
    np.testing.assert_allclose([np.mean(cs[:, 0] == k) for k in range(3)], [0.1, 0.6, 0.3], atol=0.02)
    assert not (cs[:, 1] == 1).any()  # a zero-probability category is never drawn
    np.testing.assert_allclose(bs.mean(axis=0), [0.2, 0.9], atol=0.02)
    again = draws(0)
    assert np.array_equal(cs, again[0]) and np.array_equal(bs, again[1])


def test_rsample_is_differentiable_and_sample_is_not() -> None:
    g = og.Graph()
    loc, scale = g.param(np.array([1.0, -2.0])), g.param(np.array([0.5, 2.0]))
    d = D.Normal(loc, scale)
    x = d.rsample((50000,))
    assert x.shape == (50000, 2)
    np.testing.assert_allclose(x.numpy().mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(x.numpy().std(0), [0.5, 2.0], rtol=0.03)
    grads = g.backward(x.sum())
    np.testing.assert_allclose(grads[loc].numpy(), [50000.0, 50000.0])
    eps = (x.numpy() - loc.numpy()) / scale.numpy()
    np.testing.assert_allclose(grads[scale].numpy(), eps.sum(0), rtol=1e-9)
    assert not d.sample().requires_grad
    with pytest.raises(TypeError, match="tensors of a graph"):
        D.Normal(0.0, 1.0)
    with pytest.raises(ValueError, match="exactly one"):
        D.Categorical(probs=loc, logits=loc)


def test_policy_gradient_through_categorical_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    w0 = R.standard_normal((4, 3))
    obs = R.standard_normal((6, 4))
    w = g.param(w0)
    d = D.Categorical(logits=g.constant(obs) @ w)
    actions = d.sample()
    rewards = R.standard_normal(6)
    loss = -(d.log_prob(actions) * rewards).mean() - 0.01 * d.entropy().mean()
    grads = g.backward(loss)
    tw = torch.tensor(w0, requires_grad=True)
    td = torch.distributions.Categorical(logits=torch.tensor(obs) @ tw)
    tl = -(td.log_prob(torch.tensor(actions.numpy())) * torch.tensor(rewards)).mean() - 0.01 * td.entropy().mean()
    tl.backward()
    np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-12)
    np.testing.assert_allclose(grads[w].numpy(), tw.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_a_captured_policy_step_with_sampling_equals_the_eager_one() -> None:
    def make() -> Any:
        g = og.Graph()
        pi = og.nn.Linear(g, 4, 3, rng=0, dtype=np.float64)
        opt = og.optim.Adam(pi.parameters(), lr=0.01)

        def step(obs: og.Tensor) -> og.Tensor:
            z = pi(obs)
            d = D.Categorical(logits=z)  # only log_prob, entropy and sample used: nothing left pending
            x = D.Normal(z, 1.0).rsample()
            b = D.Bernoulli(logits=z).sample()
            loss = -d.log_prob(d.sample()).mean() - 0.01 * d.entropy().mean() + (x * x).mean() + (b * z).mean()
            opt.step(g.backward(loss))
            return loss
        return g, step

    (ge, eager), (gc, step) = make(), make()
    captured = gc.capture(step)
    for i in range(4):  # each replay draws afresh from g.rng, exactly as the eager step does
        obs = np.random.default_rng(i).standard_normal((5, 4))
        assert eager(ge.constant(obs)).item() == captured(gc.constant(obs)).item()
