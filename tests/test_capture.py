"""Captured steps (g.capture): bitwise the eager step's numbers, refusals at capture, borrows at replay.

Each model is built twice from the same seeds; one copy trains eagerly, the other through
``g.capture``. Losses and params must be bitwise equal after every step (dropout draws fresh
masks from ``g.rng`` at each replay, as eager does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og
from owngrad.nn import functional as F

STEPS = 6


class TinyTransformer(og.nn.Module):
    def __init__(self, g: og.Graph, vocab: int = 11, d: int = 16, heads: int = 2) -> None:
        super().__init__(g)
        self.emb = og.nn.Embedding(g, vocab, d, rng=0)
        self.attn = og.nn.MultiheadAttention(g, d, heads, dropout=0.1, batch_first=True, rng=1)
        self.norm1 = og.nn.LayerNorm(g, d)
        self.mlp = og.nn.Sequential(og.nn.Linear(g, d, 32, rng=2), og.nn.GELU(), og.nn.Dropout(0.1),
                                    og.nn.Linear(g, 32, d, rng=3))
        self.norm2 = og.nn.LayerNorm(g, d)
        self.head = og.nn.Linear(g, d, vocab, rng=4)

    def forward(self, idx: Any) -> og.Tensor:
        x = self.emb(idx)
        h = self.norm1(x)
        a, _ = self.attn(h, h, h, need_weights=False, is_causal=True)
        x = x + a
        x = x + self.mlp(self.norm2(x))
        out: og.Tensor = self.head(x)
        return out


class TinyGRU(og.nn.Module):
    def __init__(self, g: og.Graph) -> None:
        super().__init__(g)
        self.gru = og.nn.GRU(g, 3, 8, batch_first=True, rng=0)
        self.head = og.nn.Linear(g, 8, 4, rng=1)

    def forward(self, x: og.Tensor) -> og.Tensor:
        out, _ = self.gru(x)
        y: og.Tensor = self.head(out[:, -1])
        return y


class TinyCNN(og.nn.Module):
    def __init__(self, g: og.Graph) -> None:
        super().__init__(g)
        self.conv = og.nn.Conv2d(g, 1, 4, 3, padding=1, rng=0)
        self.pool = og.nn.MaxPool2d(2)
        self.flat = og.nn.Flatten()
        self.bn = og.nn.BatchNorm1d(g, 64)
        self.fc = og.nn.Linear(g, 64, 3, rng=1)

    def forward(self, x: og.Tensor) -> og.Tensor:
        y: og.Tensor = self.fc(self.bn(self.flat(self.pool(self.conv(x).relu()))))
        return y


def _mlp(g: og.Graph) -> og.nn.Module:
    return og.nn.Sequential(og.nn.Linear(g, 6, 16, rng=0), og.nn.ReLU(), og.nn.Dropout(0.3),
                            og.nn.Linear(g, 16, 3, rng=1))


def _data(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "mlp":
        return rng.normal(size=(16, 6)).astype(np.float32), rng.integers(0, 3, 16)
    if kind == "cnn":
        return rng.normal(size=(8, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 8)
    if kind == "gru":
        return rng.normal(size=(4, 5, 3)).astype(np.float32), rng.integers(0, 4, 4)
    idx = rng.integers(0, 11, (4, 7))
    return idx, np.roll(idx, -1, axis=1).reshape(-1)  # flat targets: numpy work on inputs stays outside


MODELS: dict[str, tuple[Callable[[og.Graph], og.nn.Module], Callable[..., Any]]] = {
    "mlp": (_mlp, lambda m: og.optim.Adam(m.parameters(), lr=1e-2)),
    "cnn": (TinyCNN, lambda m: og.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)),
    "gru": (TinyGRU, lambda m: og.optim.AdamW(m.parameters(), lr=1e-2)),
    "transformer": (TinyTransformer, lambda m: og.optim.Adam(m.parameters(), lr=1e-2)),
}


def _build(kind: str) -> tuple[og.Graph, og.nn.Module, Callable[[Any, Any], og.Tensor]]:
    g = og.Graph()
    make, make_opt = MODELS[kind]
    model = make(g)
    opt = make_opt(model)

    def step(x: Any, y: Any) -> og.Tensor:
        inp = x if kind == "transformer" else g.constant(x)
        logits = model(inp)
        if kind == "transformer":
            logits = logits.reshape(-1, logits.shape[-1])
        loss = F.cross_entropy(logits, y)
        grads = g.backward(loss)
        grads.clip_norm_(1.0)
        opt.step(grads)
        return loss

    return g, model, step


@pytest.mark.parametrize("kind", list(MODELS))
def test_replay_is_bitwise_the_eager_step(kind: str) -> None:
    rng = np.random.default_rng(0)
    batches = [_data(kind, rng) for _ in range(STEPS)]
    _, eager_model, eager = _build(kind)
    g, cap_model, inner = _build(kind)
    step = g.capture(inner)
    for x, y in batches:
        a, b = eager(x, y), step(x, y)
        assert a.numpy().tobytes() == b.numpy().tobytes(), (kind, a.item(), b.item())
        for (name, p), q in zip(eager_model.named_parameters(), cap_model.parameters()):
            assert p.numpy().tobytes() == q.numpy().tobytes(), name
        for (name, p), q in zip(eager_model.named_buffers(), (b for _, b in cap_model.named_buffers())):
            assert p.numpy().tobytes() == q.numpy().tobytes(), name
    assert step.replays == STEPS - 1 and step.eager_calls == 1
    assert not g.pending()


def test_dropout_draws_fresh_masks_at_each_replay() -> None:
    g = og.Graph()
    x = g.constant(np.ones((4, 50)))
    step = g.capture(lambda: F.dropout(x, 0.5).sum())
    seen = {step().item() for _ in range(5)}
    assert len(seen) > 1 and step.replays == 4


def test_a_new_signature_captures_a_new_plan_and_the_cache_is_bounded() -> None:
    g, _, inner = _build("mlp")
    step = g.capture(inner, max_plans=2)
    rng = np.random.default_rng(1)
    for n in (16, 8, 16, 4, 4, 8):  # 4 evicts 8 (least recently used): 8 is captured again
        x, y = rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, n)
        step(x, y)
    assert step.plans == 2 and step.eager_calls == 4 and step.replays == 2


def test_train_and_eval_mode_are_part_of_the_signature() -> None:
    g = og.Graph()
    model = _mlp(g)

    def forward(x: np.ndarray) -> og.Tensor:
        with g.no_grad():
            return model(g.constant(x))

    step = g.capture(forward)
    x = np.ones((2, 6), np.float32)
    step(x)
    model.eval()
    a = step(x)
    b = step(x)
    assert step.eager_calls == 2 and step.replays == 1
    assert np.array_equal(a.numpy(), b.numpy())  # eval: no dropout, the same output


@pytest.mark.parametrize("convert", ["float", "item", "bool", "numpy"])
def test_converting_a_traced_value_is_refused_at_capture_naming_the_line(convert: str) -> None:
    g, model, _ = _build("mlp")
    opt = og.optim.SGD(model.parameters(), lr=0.1)

    def step(x: np.ndarray, y: np.ndarray) -> og.Tensor:
        loss = F.cross_entropy(model(g.constant(x)), y)
        if convert == "float":
            print(float(loss))  # the refused line
        elif convert == "item":
            print(loss.item())  # the refused line
        elif convert == "bool":
            if loss > 1.0:  # the refused line
                loss = loss * 2.0
        else:
            print(loss.numpy())  # the refused line
        opt.step(g.backward(loss))
        return loss

    x, y = _data("mlp", np.random.default_rng(2))
    with pytest.raises(og.GraphError, match=r"g\.capture: .* at .*test_capture\.py:\d+.* cannot be captured") as e:
        g.capture(step)(x, y)
    line = int(str(e.value).split("test_capture.py:")[1].split()[0].rstrip(","))
    with open(__file__) as fh:
        src = fh.read().splitlines()[line - 1]
    assert "the refused line" in src
    assert "fallback=True" in str(e.value)


def test_fallback_runs_the_step_eagerly_with_eager_numbers() -> None:
    rng = np.random.default_rng(3)
    batches = [_data("mlp", rng) for _ in range(4)]
    _, m1, eager = _build("mlp")
    g, m2, inner = _build("mlp")
    printed: list[float] = []

    def logging_step(x: np.ndarray, y: np.ndarray) -> og.Tensor:
        loss = inner(x, y)
        printed.append(float(loss))
        return loss

    step = g.capture(logging_step, fallback=True)
    with pytest.warns(RuntimeWarning, match="fallback=True: this signature runs eagerly"):
        for x, y in batches:
            assert eager(x, y).item() == step(x, y).item()
    assert step.replays == 0 and step.eager_calls == 4 and len(printed) == 4
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert np.array_equal(p.numpy(), q.numpy())


def test_numpy_work_on_an_input_inside_the_step_is_refused() -> None:
    g, model, _ = _build("mlp")
    opt = og.optim.SGD(model.parameters(), lr=0.1)

    def step(x: np.ndarray, y: np.ndarray) -> og.Tensor:
        loss = F.cross_entropy(model(g.constant(x)), y.reshape(-1))  # a numpy view made outside owngrad's calls
        opt.step(g.backward(loss))
        return loss

    x, y = _data("mlp", np.random.default_rng(6))
    with pytest.raises(og.GraphError, match=r"(?s)\.reshape on the step.s input #1 .*prepare the array before"):
        g.capture(step)(x, y[:, None])


def test_in_place_writes_and_pending_results_are_refused() -> None:
    g = og.Graph()
    w = g.param(np.ones(3))
    c = g.constant(np.zeros(3))

    def writes() -> og.Tensor:
        loss = (w * w).sum()
        g.backward(loss)
        c[np.array([0, 2])] = 1.0
        return loss

    with pytest.raises(og.GraphError, match=r"in-place write setitem into constant with an integer-array"):
        g.capture(writes)()

    def leaves_pending() -> og.Tensor:
        return (w * w).sum()

    with pytest.raises(og.GraphError, match=r"leaving 2 result\(s\) pending \(#\d+ mul"):
        g.capture(leaves_pending)()
    g.clear()


def test_a_borrow_error_at_capture_is_the_eager_one() -> None:
    def gan(capture: bool) -> str:
        g = og.Graph()
        gen, disc = og.nn.Linear(g, 2, 2, rng=0), og.nn.Linear(g, 2, 1, rng=1)
        opt_d = og.optim.SGD(disc.parameters(), lr=0.1)

        def step(z: np.ndarray) -> og.Tensor:
            fake = gen(g.constant(z))
            loss_g = -disc(fake).mean()
            loss_d = disc(fake.detach()).mean()
            opt_d.step(g.backward(loss_d))  # loss_g still needs disc's weights
            return loss_g

        with pytest.raises(og.BorrowError) as e:
            (g.capture(step) if capture else step)(np.ones((3, 2)))
        return str(e.value)

    assert gan(True) == gan(False)


def test_a_step_whose_borrows_conflict_runs_eagerly_and_fails_where_eager_fails() -> None:
    g, model, inner = _build("mlp")
    step = g.capture(inner)
    x, y = _data("mlp", np.random.default_rng(4))
    step(x, y)
    step(x, y)
    pending = model(g.constant(x)).sum()  # an eager result that saved the first layer's weight
    with pytest.raises(og.BorrowError, match=r"exclusive borrow for Adam\.step\) at test_capture\.py") as e:
        step(x, y)  # not replayed: run eagerly, it is refused at the optimizer's step, as the eager step is
    assert "saved for backward" in str(e.value)
    before = [p.numpy() for p in model.parameters()]
    g.backward(pending)
    after = [p.numpy() for p in model.parameters()]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # the refused replay changed nothing
    step(x, y)
    assert step.replays == 2


def test_fit_captures_each_batch_shape_and_matches_eager() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    results = []
    for capture in (False, True):
        g = og.Graph()
        model = _mlp(g)
        opt = og.optim.Adam(model.parameters(), lr=1e-2)
        hist = og.fit(model, og.data.batches(x, y, batch_size=16), F.cross_entropy, opt, epochs=3,
                      metrics={"acc": og.nn.functional.accuracy} if hasattr(og.nn.functional, "accuracy") else None,
                      progress=False, capture=capture)
        results.append((hist, [p.numpy() for p in model.parameters()]))
    (h1, p1), (h2, p2) = results
    assert h1 == h2
    assert all(a.tobytes() == b.tobytes() for a, b in zip(p1, p2))


def test_inputs_are_data_and_a_returned_param_is_the_live_tensor() -> None:
    g = og.Graph()
    w = g.param(np.ones(3))
    opt = og.optim.SGD([w], lr=0.5)

    def step(x: np.ndarray) -> tuple[og.Tensor, og.Tensor]:
        loss = (w * g.constant(x)).sum()
        opt.step(g.backward(loss))
        return loss, w

    run = g.capture(step)
    for _ in range(3):
        loss, same = run(np.arange(3.0))
        assert same is w
    assert np.allclose(w.numpy(), 1 - 1.5 * np.arange(3.0)) and run.replays == 2
    with pytest.raises(og.GraphError,
                       match=r"input #0 \(.*, a param\): the inputs of a captured step are data .* at "
                             r"test_capture\.py:\d+"):
        g.capture(lambda t: (t * 2).sum())(w)
    loss, same = run(x=np.arange(3.0))  # a keyword input is an input like the others
    assert same is w and run.plans == 2


def test_a_gan_step_with_two_optimizers_and_a_schedule_replays_bitwise() -> None:
    def build() -> tuple[og.Graph, list[og.Tensor], Callable[[np.ndarray, np.ndarray], tuple[og.Tensor, og.Tensor]],
                         Any]:
        g = og.Graph()
        gen = og.nn.Sequential(og.nn.Linear(g, 2, 8, rng=0), og.nn.ReLU(), og.nn.Linear(g, 8, 2, rng=1))
        disc = og.nn.Sequential(og.nn.Linear(g, 2, 8, rng=2), og.nn.Tanh(), og.nn.Linear(g, 8, 1, rng=3))
        opt_g = og.optim.Adam(gen.parameters(), lr=1e-2)
        opt_d = og.optim.SGD(disc.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        sched = og.optim.lr_scheduler.StepLR(opt_d, 2, gamma=0.5)
        bce = F.binary_cross_entropy_with_logits

        def step(z: np.ndarray, real: np.ndarray) -> tuple[og.Tensor, og.Tensor]:
            fake = gen(g.constant(z))
            loss_d = bce(disc(g.constant(real)), np.ones((8, 1))) + bce(disc(fake.detach()), np.zeros((8, 1)))
            opt_d.step(g.backward(loss_d))
            loss_g = bce(disc(fake), np.ones((8, 1)))
            opt_g.step(g.backward(loss_g))
            return loss_d, loss_g

        return g, [*gen.parameters(), *disc.parameters()], step, sched

    rng = np.random.default_rng(7)
    data = [(rng.normal(size=(8, 2)), rng.normal(loc=2.0, size=(8, 2))) for _ in range(6)]
    _, p1, eager, s1 = build()
    g, p2, inner, s2 = build()
    step = g.capture(inner)
    for z, real in data:
        a, b = eager(z, real), step(z, real)
        assert [t.numpy().tobytes() for t in a] == [t.numpy().tobytes() for t in b]
        s1.step()
        s2.step()  # the schedule changes lr between replays: the replay reads it
    assert all(x.numpy().tobytes() == y.numpy().tobytes() for x, y in zip(p1, p2))
    assert step.replays == 5


def test_an_unhashable_input_runs_eagerly() -> None:
    g = og.Graph()
    w = g.param(np.ones(2))

    def step(xs: list[float]) -> og.Tensor:
        loss = (w * g.constant(np.array(xs))).sum()
        g.backward(loss)
        return loss

    run = g.capture(step)
    assert run([1.0, 2.0]).item() == 3.0 and run([2.0, 2.0]).item() == 4.0
    assert run.eager_calls == 2 and run.replays == 0 and run.plans == 0


def test_masks_and_padding_indices_given_as_inputs_replay_bitwise() -> None:
    def build() -> tuple[og.Graph, Callable[[np.ndarray, np.ndarray, np.ndarray], og.Tensor], list[og.Tensor]]:
        g = og.Graph()
        emb = og.nn.Embedding(g, 9, 8, padding_idx=0, rng=0)
        attn = og.nn.MultiheadAttention(g, 8, 2, batch_first=True, rng=1)
        opt = og.optim.SGD([*emb.parameters(), *attn.parameters()], lr=0.1)

        def step(idx: np.ndarray, pad: np.ndarray, target: np.ndarray) -> og.Tensor:
            x = emb(idx)
            out, _ = attn(x, x, x, key_padding_mask=pad, need_weights=False)
            loss = F.mse_loss(out, target)
            opt.step(g.backward(loss))
            return loss

        return g, step, [*emb.parameters(), *attn.parameters()]

    rng = np.random.default_rng(8)
    batches = []
    for _ in range(5):
        idx = rng.integers(0, 9, (3, 5))
        batches.append((idx, idx == 0, rng.normal(size=(3, 5, 8)).astype(np.float32)))
    _, eager, p1 = build()
    g, inner, p2 = build()
    step = g.capture(inner)
    for idx, pad, target in batches:
        assert eager(idx, pad, target).numpy().tobytes() == step(idx, pad, target).numpy().tobytes()
    assert all(a.numpy().tobytes() == b.numpy().tobytes() for a, b in zip(p1, p2)) and step.replays == 4


def test_nll_loss_with_ignored_targets_replays_bitwise() -> None:
    def build() -> tuple[og.Graph, Callable[[np.ndarray, np.ndarray], og.Tensor], og.nn.Module]:
        g = og.Graph()
        model = og.nn.Linear(g, 4, 3, rng=0)
        opt = og.optim.SGD(model.parameters(), lr=0.5)

        def step(x: np.ndarray, y: np.ndarray) -> og.Tensor:
            loss = F.nll_loss(model(g.constant(x)).log_softmax(axis=-1), y, ignore_index=-100)
            opt.step(g.backward(loss))
            return loss

        return g, step, model

    rng = np.random.default_rng(9)
    batches = []
    for i in range(5):
        y = rng.integers(0, 3, 6)
        y[: i + 1] = -100  # a different number of ignored samples per batch
        batches.append((rng.normal(size=(6, 4)).astype(np.float32), y))
    _, eager, m1 = build()
    g, inner, m2 = build()
    step = g.capture(inner)
    for x, y in batches:
        assert eager(x, y).numpy().tobytes() == step(x, y).numpy().tobytes()
    assert all(a.numpy().tobytes() == b.numpy().tobytes() for a, b in zip(m1.parameters(), m2.parameters()))
    assert step.replays == 4


def test_masks_from_comparisons_and_argmax_follow_the_data_at_each_replay() -> None:
    def build() -> tuple[og.Graph, Callable[..., tuple[og.Tensor, og.Tensor]], og.nn.Module]:
        g = og.Graph()
        model = og.nn.Linear(g, 3, 2, rng=0)
        opt = og.optim.SGD(model.parameters(), lr=0.3)

        def step(x: np.ndarray, y: np.ndarray, labels: np.ndarray) -> tuple[og.Tensor, og.Tensor]:
            out = model(g.constant(x))
            loss = F.huber_loss(out, y, delta=0.5) + og.where(out > 0, out, 0.0).mean()
            opt.step(g.backward(loss))
            hits = (out.argmax(axis=1) == labels).astype(np.float32).mean()  # labels: numpy work stays outside
            return loss, hits

        return g, step, model

    rng = np.random.default_rng(10)
    batches = [(rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32) * 2)
               for _ in range(5)]
    _, eager, m1 = build()
    g, inner, m2 = build()
    step = g.capture(inner)
    for x, y in batches:
        (a, ha), (b, hb) = eager(x, y, y.argmax(axis=1)), step(x, y, y.argmax(axis=1))
        assert a.numpy().tobytes() == b.numpy().tobytes() and ha.item() == hb.item()
    assert all(p.numpy().tobytes() == q.numpy().tobytes() for p, q in zip(m1.parameters(), m2.parameters()))
    assert step.replays == 4


def test_take_along_axis_with_input_indices_replays_bitwise() -> None:
    def build() -> tuple[og.Tensor, Callable[[np.ndarray], og.Tensor]]:
        g = og.Graph()
        w = g.param(np.arange(6.0).reshape(2, 3))
        opt = og.optim.SGD([w], lr=0.1)

        def step(idx: np.ndarray) -> og.Tensor:
            loss = (og.take_along_axis(w, idx, 1) ** 2).sum()
            opt.step(g.backward(loss))
            return loss

        return w, step

    w1, eager = build()
    w2, inner = build()
    step = w2.graph.capture(inner)
    for i in range(4):
        idx = np.array([[i % 3], [(i + 1) % 3]])
        assert eager(idx).item() == step(idx).item()
    assert np.array_equal(w1.numpy(), w2.numpy()) and step.replays == 3


def test_a_param_equal_to_an_input_is_not_mistaken_for_numpy_work_on_it() -> None:
    g = og.Graph()
    w = g.param(np.zeros((2, 3)))  # the same values as the input below
    opt = og.optim.SGD([w], lr=0.1)

    def step(x: np.ndarray) -> og.Tensor:
        loss = (w * g.constant(x)).sum() + (w * w).sum()
        opt.step(g.backward(loss))
        return loss

    run = g.capture(step)
    for _ in range(3):
        run(np.zeros((2, 3)))
    assert run.replays == 2
