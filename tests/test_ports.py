"""Small ports of PyTorch's official examples, with torch's initial weights loaded: the losses agree with
torch's over several steps in float64 (the word language model's LSTM and Transformer variants, the
sine-wave predictor with two LSTMCells and L-BFGS). Nothing in them is hand-written around owngrad."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import owngrad as og

V, E, H, T, B = 20, 8, 12, 6, 3


def _load(m: og.nn.Module, tm: Any) -> None:
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


def _batches(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    r = np.random.default_rng(0)
    data = r.integers(0, V, (n, T + 1, B))
    return [(d[:-1], d[1:]) for d in data]


def test_word_language_model_lstm_matches_torch() -> None:
    torch = pytest.importorskip("torch")

    class RNNModel(og.nn.Module):
        def __init__(self, g: og.Graph) -> None:
            super().__init__(g)
            self.encoder = og.nn.Embedding(g, V, E)
            self.rnn = og.nn.LSTM(g, E, H, num_layers=2, dropout=0.5)
            self.decoder = og.nn.Linear(g, H, V)

        def forward(self, x: Any, hidden: Any) -> Any:
            out, hidden = self.rnn(self.encoder(x), hidden)
            return self.decoder(out).reshape(-1, V), hidden

    class TRNNModel(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, H, num_layers=2, dropout=0.5)
            self.decoder = torch.nn.Linear(H, V)

        def forward(self, x: Any, hidden: Any) -> Any:
            out, hidden = self.rnn(self.encoder(x), hidden)
            return self.decoder(out).reshape(-1, V), hidden

    torch.manual_seed(0)
    g = og.Graph()
    model, tmodel = RNNModel(g).double().eval(), TRNNModel().double().eval()  # eval: dropout off in both
    _load(model, tmodel)
    criterion, tcriterion = og.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    opt = og.optim.SGD(model.parameters(), lr=0.5)
    hidden = (g.zeros((2, B, H), dtype=np.float64), g.zeros((2, B, H), dtype=np.float64))
    thidden = (torch.zeros(2, B, H, dtype=torch.float64), torch.zeros(2, B, H, dtype=torch.float64))
    for x, y in _batches(4):
        hidden = tuple(h.detach() for h in hidden)  # repackage_hidden
        thidden = tuple(h.detach() for h in thidden)
        out, hidden = model(x, hidden)
        loss = criterion(out, y.reshape(-1))
        grads = g.backward(loss)
        grads.clip_norm_(0.25)
        opt.step(grads)
        tmodel.zero_grad()
        tout, thidden = tmodel(torch.tensor(x), thidden)
        tloss = tcriterion(tout, torch.tensor(y.reshape(-1)))
        tloss.backward()
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 0.25)
        with torch.no_grad():
            for p in tmodel.parameters():
                p -= 0.5 * p.grad
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-12)


def test_word_language_model_transformer_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    g = og.Graph()
    enc = og.nn.TransformerEncoder(og.nn.TransformerEncoderLayer(g, E, 2, 16, dropout=0.0, dtype=np.float64), 2)
    emb, dec = og.nn.Embedding(g, V, E, dtype=np.float64), og.nn.Linear(g, E, V, dtype=np.float64)
    tenc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(E, 2, 16, dropout=0.0), 2,
                                       enable_nested_tensor=False).double()
    temb, tdec = torch.nn.Embedding(V, E).double(), torch.nn.Linear(E, V).double()
    for m, tm in ((enc, tenc), (emb, temb), (dec, tdec)):
        _load(m, tm)
    params = enc.parameters() + emb.parameters() + dec.parameters()
    opt = og.optim.Adam(params, lr=1e-2)
    topt = torch.optim.Adam(list(tenc.parameters()) + list(temb.parameters()) + list(tdec.parameters()), lr=1e-2)
    mask = og.nn.Transformer.generate_square_subsequent_mask(T, np.float64)
    for x, y in _batches(3):
        out = dec(enc(emb(x) * np.sqrt(E), mask=mask, is_causal=True))
        loss = og.nn.functional.cross_entropy(out.reshape(-1, V), y.reshape(-1))
        opt.step(g.backward(loss))
        topt.zero_grad()
        tout = tdec(tenc(temb(torch.tensor(x)) * np.sqrt(E), mask=torch.tensor(mask), is_causal=True))
        tloss = torch.nn.functional.cross_entropy(tout.reshape(-1, V), torch.tensor(y.reshape(-1)))
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-11)


def test_sine_wave_predictor_with_lbfgs_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(2)
    xs = np.sin(np.arange(24)[None, :] / 3.0 + r.uniform(0, 3, (4, 1)))
    inp, target = xs[:, :-1], xs[:, 1:]

    class Sequence(og.nn.Module):
        def __init__(self, g: og.Graph) -> None:
            super().__init__(g)
            self.lstm1 = og.nn.LSTMCell(g, 1, 10)
            self.lstm2 = og.nn.LSTMCell(g, 10, 10)
            self.linear = og.nn.Linear(g, 10, 1)

        def forward(self, x: og.Tensor) -> og.Tensor:
            s1 = s2 = None
            outs = []
            for t in range(x.shape[1]):
                s1 = self.lstm1(x[:, t:t + 1], s1)
                s2 = self.lstm2(s1[0], s2)
                outs.append(self.linear(s2[0]))
            return og.concatenate(outs, axis=1)

    class TSequence(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.lstm1, self.lstm2 = torch.nn.LSTMCell(1, 10), torch.nn.LSTMCell(10, 10)
            self.linear = torch.nn.Linear(10, 1)

        def forward(self, x: Any) -> Any:
            s1 = s2 = None
            outs = []
            for t in range(x.shape[1]):
                s1 = self.lstm1(x[:, t:t + 1], s1)
                s2 = self.lstm2(s1[0], s2)
                outs.append(self.linear(s2[0]))
            return torch.cat(outs, dim=1)

    torch.manual_seed(3)
    g = og.Graph()
    seq, tseq = Sequence(g).double(), TSequence().double()
    _load(seq, tseq)
    x, y = g.constant(inp), g.constant(target)
    opt = og.optim.LBFGS(seq.parameters(), lr=0.8, max_iter=5)
    topt = torch.optim.LBFGS(tseq.parameters(), lr=0.8, max_iter=5)
    criterion, tcriterion = og.nn.MSELoss(), torch.nn.MSELoss()

    def tclosure() -> Any:
        topt.zero_grad()
        loss = tcriterion(tseq(torch.tensor(inp)), torch.tensor(target))
        loss.backward()
        return loss

    for _ in range(2):
        ours = opt.step(lambda: criterion(seq(x), y))
        theirs = topt.step(tclosure)
        np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-10)
    np.testing.assert_allclose(criterion(seq(x), y).item(), tcriterion(tseq(torch.tensor(inp)),
                                                                        torch.tensor(target)).item(), rtol=1e-9)


def test_vae_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    D, Z = 12, 3

    class VAE(og.nn.Module):
        def __init__(self, g: og.Graph) -> None:
            super().__init__(g)
            self.fc1, self.fc21, self.fc22 = og.nn.Linear(g, D, 8), og.nn.Linear(g, 8, Z), og.nn.Linear(g, 8, Z)
            self.fc3, self.fc4 = og.nn.Linear(g, Z, 8), og.nn.Linear(g, 8, D)

        def forward(self, x: og.Tensor) -> tuple[og.Tensor, og.Tensor, og.Tensor, og.Tensor]:
            h1 = self.fc1(x).relu()
            mu, logvar = self.fc21(h1), self.fc22(h1)
            std = (logvar * 0.5).exp()
            eps = x.graph.randn_like(std)  # torch.randn_like(std)
            z = mu + eps * std
            return self.fc4(self.fc3(z).relu()).sigmoid(), mu, logvar, eps

    class TVAE(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc21, self.fc22 = torch.nn.Linear(D, 8), torch.nn.Linear(8, Z), torch.nn.Linear(8, Z)
            self.fc3, self.fc4 = torch.nn.Linear(Z, 8), torch.nn.Linear(8, D)

        def forward(self, x: Any, eps: Any) -> Any:
            h1 = torch.relu(self.fc1(x))
            mu, logvar = self.fc21(h1), self.fc22(h1)
            z = mu + eps * torch.exp(0.5 * logvar)  # the same draws as owngrad's
            return torch.sigmoid(self.fc4(torch.relu(self.fc3(z)))), mu, logvar

    torch.manual_seed(4)
    g = og.Graph()
    vae, tvae = VAE(g).double(), TVAE().double()
    _load(vae, tvae)
    opt, topt = og.optim.Adam(vae.parameters(), lr=1e-2), torch.optim.Adam(tvae.parameters(), lr=1e-2)
    data = np.random.default_rng(5).uniform(0, 1, (4, 6, D))
    for x in data:
        recon, mu, logvar, eps = vae(g.constant(x))
        bce = og.nn.functional.binary_cross_entropy(recon, x, reduction="sum")
        loss = bce - 0.5 * (1.0 + logvar - mu * mu - logvar.exp()).sum()
        opt.step(g.backward(loss))
        topt.zero_grad()
        trecon, tmu, tlogvar = tvae(torch.tensor(x), torch.tensor(eps.numpy()))
        tloss = torch.nn.functional.binary_cross_entropy(trecon, torch.tensor(x), reduction="sum") \
            - 0.5 * torch.sum(1 + tlogvar - tmu.pow(2) - tlogvar.exp())
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-11)


def test_actor_critic_matches_torch() -> None:
    torch = pytest.importorskip("torch")

    class Policy(og.nn.Module):
        def __init__(self, g: og.Graph) -> None:
            super().__init__(g)
            self.affine1, self.action_head, self.value_head = (og.nn.Linear(g, 4, 16), og.nn.Linear(g, 16, 2),
                                                               og.nn.Linear(g, 16, 1))

        def forward(self, x: og.Tensor) -> tuple[og.Tensor, og.Tensor]:
            h = self.affine1(x).relu()
            return self.action_head(h).softmax(axis=-1), self.value_head(h)

    class TPolicy(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.affine1, self.action_head, self.value_head = (torch.nn.Linear(4, 16), torch.nn.Linear(16, 2),
                                                               torch.nn.Linear(16, 1))

        def forward(self, x: Any) -> Any:
            h = torch.relu(self.affine1(x))
            return torch.softmax(self.action_head(h), dim=-1), self.value_head(h)

    torch.manual_seed(6)
    g = og.Graph()
    policy, tpolicy = Policy(g).double(), TPolicy().double()
    _load(policy, tpolicy)
    opt, topt = og.optim.Adam(policy.parameters(), lr=3e-2), torch.optim.Adam(tpolicy.parameters(), lr=3e-2)
    r = np.random.default_rng(7)
    for _ in range(4):  # one "episode" of 5 states per update, rewards drawn at random
        states, returns = r.standard_normal((5, 4)), r.standard_normal(5).cumsum()[::-1].copy()
        probs, values = policy(g.constant(states))
        m = og.distributions.Categorical(probs=probs)
        actions = m.sample()
        advantage = returns - values.numpy()[:, 0]
        loss = -(m.log_prob(actions) * advantage).sum() + og.nn.functional.smooth_l1_loss(
            values[:, 0], returns, reduction="sum")
        opt.step(g.backward(loss))
        topt.zero_grad()
        tprobs, tvalues = tpolicy(torch.tensor(states))
        tm = torch.distributions.Categorical(probs=tprobs)
        tadv = torch.tensor(returns) - tvalues.detach()[:, 0]
        tloss = -(tm.log_prob(torch.tensor(actions.numpy())) * tadv).sum() + torch.nn.functional.smooth_l1_loss(
            tvalues[:, 0], torch.tensor(returns), reduction="sum")
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-11)
