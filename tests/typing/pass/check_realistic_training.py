"""A realistic training script with owngrad's training layer (nn, optim, data, fit, save/load), as a
PyTorch user would write it.

Must pass mypy --strict (and pyright) with no error; tests/test_typing.py also runs it as a program.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray
from typing_extensions import assert_type

import owngrad as og
import owngrad.nn.functional as F
from owngrad import nn


class Residual(og.nn.Module):
    """A custom module with sub-modules, an own param and a buffer; typed forward."""

    def __init__(self, g: og.Graph, dim: int, hidden: int, *, rng: int = 0) -> None:
        super().__init__(g)
        self.norm = og.nn.LayerNorm(g, dim)
        self.fc1 = og.nn.Linear(g, dim, hidden, rng=rng)
        self.fc2 = og.nn.Linear(g, hidden, dim, rng=rng + 1)
        self.gate = g.param(np.zeros(dim, dtype=np.float32), name="gate")
        self.drop = og.nn.Dropout(0.1, rng=rng)
        self.register_buffer("calls", g.constant(np.zeros(1)))

    def forward(self, x: og.Tensor) -> og.Tensor[og.Mut]:
        h = self.fc2(self.drop(self.fc1(self.norm(x)).relu()))
        return x + h * self.gate.sigmoid()


class Classifier(nn.Module):
    def __init__(self, g: og.Graph, n_in: int, n_classes: int) -> None:
        super().__init__(g)
        self.stem = nn.Sequential(nn.Linear(g, n_in, 32, rng=0), nn.BatchNorm1d(g, 32), nn.Tanh())
        self.blocks = nn.Sequential(Residual(g, 32, 64, rng=1), Residual(g, 32, 64, rng=3))
        self.head = nn.Linear(g, 32, n_classes, rng=5)

    def forward(self, x: og.Tensor) -> og.Tensor:  # a plain og.Tensor return annotation is fine too
        return self.head(self.blocks(self.stem(x)))

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.int64]:
        g = self.graph
        with g.no_grad():
            logits = self(g.constant(x))
            return np.asarray(logits.argmax(axis=-1), dtype=np.int64)


class ConvNet(nn.Module):
    def __init__(self, g: og.Graph) -> None:
        super().__init__(g)
        self.features = nn.Sequential(
            nn.Conv2d(g, 1, 4, kernel_size=3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(g, 4, 8, kernel_size=(3, 3), stride=1, padding=(1, 1), rng=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(g, 8 * 2 * 2, 10, rng=2)

    def forward(self, x: og.Tensor) -> og.Tensor[og.Mut]:
        return self.classifier(self.features(x))


def make_data(n: int, d: int, k: int, seed: int = 0) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, size=n)
    x = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y.astype(np.int64)


def manual_loop() -> float:
    x, y = make_data(128, 8, 3)
    g = og.Graph()
    model = Classifier(g, 8, 3)
    opt = og.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    data = og.data.batches(x, y, batch_size=32, shuffle=True, rng=0)
    assert len(data) == 4
    losses: list[float] = []
    for epoch in range(3):
        model.train()
        epoch_loss = 0.0
        for xb, yb in data:
            assert_type(xb, NDArray[Any])
            logits = model(g.constant(xb))
            loss = F.cross_entropy(logits, yb, label_smoothing=0.05)
            grads = g.backward(loss)
            norm = grads.clip_norm_(5.0)
            assert norm >= 0.0
            opt.step(grads)
            epoch_loss += loss.item() * len(xb)
        losses.append(epoch_loss / len(x))
        print(f"epoch {epoch}: loss {losses[-1]:.4f}")
    model.eval()
    acc = float((model.predict(x) == y).mean())
    print(f"train accuracy {acc:.3f}")
    return losses[-1]


def accumulate_and_schedule() -> None:
    x, y = make_data(64, 4, 2, seed=1)
    g = og.Graph()
    mlp = og.nn.MLP(g, [4, 16, 2], activation="tanh", rng=0)
    mlp2 = og.nn.MLP(g, (4, 8, 2), activation=og.nn.ReLU, rng=1)
    sgd = og.optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    adam = og.optim.Adam(mlp2.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-7)
    for step in range(4):
        grads: og.Grads | None = None
        for xb, yb in og.data.batches(x, y, 16, shuffle=False):
            loss = F.cross_entropy(mlp(g.constant(xb)), yb) / 4
            grads = g.backward(loss, into=grads)
        assert grads is not None
        sgd.lr = 0.1 * 0.5 ** step  # a learning-rate schedule
        sgd.step(grads)
        loss2 = F.mse_loss(mlp2(g.constant(x)), np.eye(2)[y])
        adam.step(g.backward(loss2))
    state: dict[str, Any] = sgd.state_dict()
    sgd2 = og.optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9)
    sgd2.load_state_dict(state)
    assert isinstance(adam.state_dict(), dict)


def modules_api() -> None:
    g = og.Graph()
    model = Classifier(g, 8, 3)
    n_params = sum(p.size for p in model.parameters())
    assert n_params > 0
    for name, p in model.named_parameters():
        assert_type(p, og.Tensor[og.Mut])
        assert isinstance(name, str) and p.requires_grad
    names = [n for n, _ in model.named_modules()]
    assert "" in names or names
    for child in model.children():
        assert isinstance(child, og.nn.Module)
    for bname, buf in model.named_buffers():
        assert not buf.requires_grad, bname
    sd = model.state_dict()
    assert_type(sd, dict[str, NDArray[Any]])
    for k, v in sd.items():
        sd[k] = v * 0.5
    res = model.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    missing, unexpected = model.load_state_dict({k: v for k, v in sd.items()}, strict=False)
    assert not missing and not unexpected
    assert model.train().training and not model.eval().training
    stem = model.stem
    assert len(stem) == 3
    first = stem[0]
    assert isinstance(first, og.nn.Linear)
    w = first.weight
    b = first.bias
    with g.no_grad():
        w *= 0.9  # weight decay by hand
        if b is not None:
            b.zero_()
    for layer in stem:
        if isinstance(layer, og.nn.BatchNorm1d):
            assert layer.running_mean.shape == (32,)
            rv = layer.running_var
            assert float(rv.min()) >= 0
    emb = og.nn.Embedding(g, 10, 4, rng=0)
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    e = emb(tokens) + F.embedding(emb.weight, tokens)
    assert e.shape == (2, 3, 4)
    h = F.linear(e, g.param(np.ones((5, 4))), g.param(np.zeros(5)))
    h = F.dropout(h, p=0.2, training=True, rng=np.random.default_rng(0))
    imgs = g.constant(np.random.default_rng(0).standard_normal((2, 1, 8, 8)))
    conv = ConvNet(g)
    out = conv(imgs)
    assert out.shape == (2, 10)
    c = F.conv2d(imgs, conv.features[0].parameters()[0], stride=1, padding=1)
    pooled = F.max_pool2d(c, 2)
    bce = F.binary_cross_entropy_with_logits(h.mean(axis=-1), np.ones((2, 3)))
    total = h.sum() + out.sum() + pooled.sum() + bce
    g.backward(total)
    print(model)


def with_fit_and_checkpoints() -> None:
    x, y = make_data(96, 8, 3, seed=2)
    g = og.Graph()
    model = og.nn.Sequential(og.nn.Linear(g, 8, 16, rng=0), og.nn.ReLU(), og.nn.Linear(g, 16, 3, rng=1))
    opt = og.optim.Adam(model.parameters(), lr=1e-2)

    def top1(logits: og.Tensor[og.Frozen], labels: og.Tensor) -> float:
        return float((logits.numpy().argmax(axis=-1) == labels.numpy()).mean())

    def mean_confidence(logits: og.Tensor, labels: og.Tensor) -> float:
        return logits.softmax(axis=-1).max(axis=-1).mean().item()

    def loss_fn(out: og.Tensor, target: og.Tensor) -> og.Tensor[og.Mut]:
        return F.cross_entropy(out, target)

    history = og.fit(model, og.data.batches(x, y, batch_size=32, rng=1), loss_fn, opt, epochs=3,
                     metrics={"acc": top1, "conf": mean_confidence, "acc2": og.training.accuracy}, progress=False)
    assert_type(history, dict[str, list[float]])
    assert len(history["loss"]) == 3 and history["acc"][-1] >= 0.0
    best = max(history["acc"])
    print(f"best accuracy {best:.3f}")
    h2 = og.fit(model, list(og.data.batches(x, y, 48)), F.cross_entropy, opt, progress=False)
    assert set(h2) == {"loss"}

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        og.save(path, model)
        state = og.load(path)
        assert_type(state, dict[str, NDArray[Any]])
        og.load(path, into=model)
        og.save(os.path.join(tmp, "state.npz"), model.state_dict())
        model.load_state_dict(og.load(os.path.join(tmp, "state.npz")))
        og.save(os.path.join(tmp, "opt.npz"), {"step": np.array(3), "lr": np.array(opt.lr)})
        try:
            with open(os.path.join(tmp, "bad.npz"), "wb") as fh:
                fh.write(b"not a zip file")
            og.load(os.path.join(tmp, "bad.npz"))
            raise AssertionError("corrupt file loaded")
        except (ValueError, OSError) as e:
            print(f"refused: {type(e).__name__}")


def gan_done_right() -> None:
    """The alternating update in the right order: the generator's backward before the critic's step."""
    g = og.Graph()
    rng = np.random.default_rng(0)
    gen = og.nn.MLP(g, [2, 8, 2], rng=0)
    disc = og.nn.MLP(g, [2, 8, 1], rng=1)
    opt_g = og.optim.Adam(gen.parameters(), lr=1e-3)
    opt_d = og.optim.Adam(disc.parameters(), lr=1e-3)
    for _ in range(3):
        z = g.constant(rng.standard_normal((16, 2)))
        real = g.constant(rng.standard_normal((16, 2)) + 3)
        fake = gen(z)
        loss_d = F.binary_cross_entropy_with_logits(disc(real), np.ones((16, 1))) + \
            F.binary_cross_entropy_with_logits(disc(fake.detach()), np.zeros((16, 1)))
        opt_d.step(g.backward(loss_d))
        loss_g = F.binary_cross_entropy_with_logits(disc(fake), np.ones((16, 1)))  # the critic after its step
        grads = g.backward(loss_g)  # consumes fake's nodes too: gen's weights are free again
        opt_g.step(grads)
        assert all(p in grads for p in disc.parameters())


def stream(x: NDArray[np.float32], y: NDArray[np.int64],
           bs: int) -> Iterator[tuple[NDArray[np.float32], NDArray[np.int64]]]:
    for i in range(0, len(x), bs):
        yield x[i:i + bs], y[i:i + bs]


def train_with(model: og.nn.Module, opt: og.optim.Optimizer, data: Iterable[tuple[Any, Any]],
               loss_fn: Callable[[og.Tensor[og.Mut], og.Tensor[og.Mut]], og.Tensor]) -> list[float]:
    """A library-style loop over any module / optimizer."""
    g = model.graph
    out: list[float] = []
    for xb, yb in data:
        loss = loss_fn(model(g.constant(xb)), g.constant(yb))
        opt.step(g.backward(loss))
        out.append(float(loss))
    return out


def main() -> None:
    manual_loop()
    accumulate_and_schedule()
    modules_api()
    with_fit_and_checkpoints()
    gan_done_right()
    x, y = make_data(64, 8, 3, seed=3)
    g = og.Graph()
    model = og.nn.MLP(g, [8, 8, 3], rng=0)
    losses = train_with(model, og.optim.SGD(model.parameters(), lr=0.1), stream(x, y, 16), F.cross_entropy)
    assert len(losses) == 4


if __name__ == "__main__":
    main()
