"""The captured-step contract, adversarially: a captured call equals the eager call bitwise, or it refuses.

Each program below is a training step written the way training code is written. It is built twice
from the same seeds; one copy runs eagerly, the other through ``g.capture``, over several batches,
with the same outside changes made to both between calls (a closed-over value, a module's
hyper-parameter, a rebound optimizer, ...). After every call the outputs, the params, the buffers
and the optimizer state must be bitwise equal -- or the captured call must have refused with a
``GraphError`` that names a line of this file, having changed nothing. Where the eager call raises,
the captured one must raise too.
"""

from __future__ import annotations

import itertools
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import owngrad as og
from owngrad.nn import functional as F

EQ, REFUSE, EITHER = "eq", "refuse", "either"
F32 = np.float32
GLOBAL_SCALE = 1.0  # read by one program as a module global


@dataclass
class World:
    g: og.Graph
    fn: Callable[..., Any]
    state: Callable[[], list[Any]]
    change: Callable[[int], None] = lambda i: None
    call: Callable[[Callable[..., Any], tuple[Any, ...]], Any] = lambda f, a: f(*a)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    name: str
    build: Callable[[], World]
    batches: Callable[[np.random.Generator, int], tuple[Any, ...]]
    expect: str = EQ
    steps: int = 4


# --- building blocks ------------------------------------------------------------------------------

def mlp(g: og.Graph, d_in: int = 4, d_out: int = 3, drop: float = 0.0, bn: bool = False) -> og.nn.Module:
    layers: list[og.nn.Module] = [og.nn.Linear(g, d_in, 8, rng=0)]
    if bn:
        layers.append(og.nn.BatchNorm1d(g, 8))
    layers.append(og.nn.ReLU())
    if drop:
        layers.append(og.nn.Dropout(drop))
    layers.append(og.nn.Linear(g, 8, d_out, rng=1))
    return og.nn.Sequential(*layers)


def state_of(*things: Any) -> Callable[[], list[Any]]:
    """Params, buffers and optimizer state of the modules and optimizers given, as host arrays."""
    def read() -> list[Any]:
        out: list[Any] = []
        for t in things:
            if isinstance(t, og.nn.Module):
                out += [p.numpy() for p in t.parameters()]
                out += [b.numpy() for _, b in t.named_buffers()]
            elif isinstance(t, og.Tensor):
                out.append(t.numpy())
            elif callable(t):
                out += read_opt(t())
            else:
                out += read_opt(t)
        return out
    return read


def read_opt(opt: Any) -> list[Any]:
    if hasattr(opt, "state_dict") and not isinstance(opt, og.nn.Module):
        sd = opt.state_dict()
        if "state" in sd:
            return [np.asarray(v) for st in sd["state"] for v in st.values()]
        return [np.asarray(v) for v in _flat(sd)]
    return []


def _flat(d: Any) -> list[Any]:
    if isinstance(d, dict):
        return [x for v in d.values() for x in _flat(v)]
    return [d]


def xy(n: int = 6, d: int = 4, c: int = 3) -> Callable[[np.random.Generator, int], tuple[Any, ...]]:
    def make(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
        return rng.normal(size=(n, d)).astype(F32), rng.integers(0, c, n)
    return make


def classifier(step_body: Callable[..., Any], *, drop: float = 0.0, bn: bool = False, adam: bool = False,
               extra: Callable[[og.Graph, og.nn.Module, Any], dict[str, Any]] | None = None,
               change: Callable[[dict[str, Any], int], None] | None = None) -> Callable[[], World]:
    """A world around ``step_body(ns, x, y)``: ``ns`` holds the graph, the model, the optimizer and
    whatever ``extra`` adds; ``change(ns, i)`` runs before call ``i`` in both worlds."""
    def build() -> World:
        g = og.Graph()
        model = mlp(g, drop=drop, bn=bn)
        opt = og.optim.Adam(model.parameters(), lr=1e-2) if adam else \
            og.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        ns: dict[str, Any] = {"g": g, "model": model, "opt": opt}
        if extra is not None:
            ns.update(extra(g, model, opt))

        def fn(*args: Any, **kwargs: Any) -> Any:
            return step_body(ns, *args, **kwargs)

        things: list[Any] = [model, lambda: ns["opt"]]
        things += [v for k, v in ns.items() if k.startswith("keep_")]
        return World(g, fn, state_of(*things), (lambda i: change(ns, i)) if change else (lambda i: None),
                     extra=ns)
    return build


def train(ns: dict[str, Any], loss: og.Tensor) -> og.Tensor:
    ns["opt"].step(ns["g"].backward(loss))
    return loss


def ce(ns: dict[str, Any], x: Any, y: Any) -> og.Tensor:
    return F.cross_entropy(ns["model"](ns["g"].constant(x)), y)


# --- the programs ---------------------------------------------------------------------------------

def _onehot(ns: dict[str, Any], x: Any, y: Any) -> Any:
    t = ns["g"].constant(np.eye(3, dtype=F32)[y])
    return train(ns, F.mse_loss(ns["model"](ns["g"].constant(x)).softmax(axis=-1), t))


def _standardize(ns: dict[str, Any], x: Any, y: Any) -> Any:
    xn = (x - x.mean()) / x.std()
    return train(ns, ce(ns, xn, y))


def _labels_minus_one(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ce(ns, x, y - 1))


def _constant_times_two(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ce(ns, x * 2.0, y))


def _np_where(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ce(ns, np.where(x > 0, x, 0.0).astype(F32), y))


def _length_mask(ns: dict[str, Any], x: Any, lengths: Any) -> Any:
    g = ns["g"]
    mask = (np.arange(4)[None, :] < lengths[:, None]).astype(F32)
    h = ns["model"](g.constant(x))
    return train(ns, (h[:, :3] * g.constant(mask[:, :3])).sum())


def _reshape_labels(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ce(ns, x, y.reshape(-1)))


def _copy_labels(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ce(ns, x, y.copy()))


def _inplace_input(ns: dict[str, Any], x: Any, y: Any) -> Any:
    x /= 4.0
    return train(ns, ce(ns, x, y))


def _closure_scale(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ce(ns, x, y) * ns["scale"])


def _set_scale(ns: dict[str, Any], i: int) -> None:
    ns["scale"] = 1.0 + 0.5 * i


def _dict_kl_weight(ns: dict[str, Any], x: Any, y: Any) -> Any:
    out = ns["model"](ns["g"].constant(x))
    loss = F.cross_entropy(out, y) + (out * out).mean() * ns["cfg"]["kl"]
    return train(ns, loss)


def _set_kl(ns: dict[str, Any], i: int) -> None:
    ns["cfg"]["kl"] = 0.1 * i


def _clip_threshold(ns: dict[str, Any], x: Any, y: Any) -> Any:
    loss = ce(ns, x, y)
    grads = ns["g"].backward(loss)
    grads.clip_norm_(ns["cfg"]["clip"])
    ns["opt"].step(grads)
    return loss


def _set_clip(ns: dict[str, Any], i: int) -> None:
    ns["cfg"]["clip"] = [0.01, 5.0, 0.05, 1e-3][i % 4]


def _hand_sgd(ns: dict[str, Any], x: Any, y: Any) -> Any:
    g = ns["g"]
    loss = ce(ns, x, y)
    grads = g.backward(loss)
    with g.no_grad():
        for p in ns["model"].parameters():
            p -= grads[p] * ns["cfg"]["lr"]
    return loss


def _set_lr(ns: dict[str, Any], i: int) -> None:
    ns["cfg"]["lr"] = [0.1, 0.01, 0.5, 0.2][i % 4]


def _global_scale(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ce(ns, x, y) * GLOBAL_SCALE)


def _set_global(ns: dict[str, Any], i: int) -> None:
    global GLOBAL_SCALE
    GLOBAL_SCALE = 1.0 + i


def _model_by_name(ns: dict[str, Any], x: Any, y: Any) -> Any:
    model = ns["models"][ns["which"]]
    loss = F.cross_entropy(model(ns["g"].constant(x)), y)
    ns["opts"][ns["which"]].step(ns["g"].backward(loss))
    return loss


def _two_models(g: og.Graph, model: og.nn.Module, opt: Any) -> dict[str, Any]:
    other = og.nn.Linear(g, 4, 3, rng=7)
    return {"models": [model, other], "opts": [opt, og.optim.SGD(other.parameters(), lr=0.1)],
            "which": 0, "keep_other": other}


def _set_which(ns: dict[str, Any], i: int) -> None:
    ns["which"] = i % 2


def _rebound_param(ns: dict[str, Any], x: Any, y: Any) -> Any:
    g = ns["g"]
    loss = F.cross_entropy(g.constant(x) @ ns["w"], y)
    grads = g.backward(loss)
    with g.no_grad():
        ns["w"] -= grads[ns["w"]] * 0.1
    return loss


def _two_params(g: og.Graph, model: og.nn.Module, opt: Any) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    a, b = g.param(rng.normal(size=(4, 3)).astype(F32)), g.param(rng.normal(size=(4, 3)).astype(F32))
    return {"ws": [a, b], "w": a, "keep_a": a, "keep_b": b}


def _set_w(ns: dict[str, Any], i: int) -> None:
    ns["w"] = ns["ws"][i % 2]


def _rebind_opt(ns: dict[str, Any], i: int) -> None:
    if i == 2:
        ns["opt"] = og.optim.SGD(ns["model"].parameters(), lr=0.5)


def _replace_rng(ns: dict[str, Any], i: int) -> None:
    if i == 2:
        ns["g"].rng = np.random.default_rng(123)


def _dropout_p(ns: dict[str, Any], i: int) -> None:
    ns["model"][3].p = [0.5, 0.1, 0.9, 0.3][i % 4]


def _bn_hyper(ns: dict[str, Any], i: int) -> None:
    ns["model"][1].momentum = [0.1, 0.5, 0.9, 0.2][i % 4]
    ns["model"][1].eps = [1e-5, 1e-1, 1.0, 1e-3][i % 4]


def _ema_step(ns: dict[str, Any], x: Any, y: Any) -> Any:
    loss = train(ns, ce(ns, x, y))
    ns["ema"].update()
    return loss


def _with_ema(g: og.Graph, model: og.nn.Module, opt: Any) -> dict[str, Any]:
    ema = og.optim.EMA(model, decay=0.9)
    return {"ema": ema, "keep_ema": ema.module}


def _ema_decay(ns: dict[str, Any], i: int) -> None:
    ns["ema"].decay = [0.9, 0.5, 0.99, 0.0][i % 4]


def _forward_direct(ns: dict[str, Any], x: Any, y: Any) -> Any:
    out = ns["model"].forward(ns["g"].constant(x))  # submodules called through .forward(): no __call__
    return train(ns, F.cross_entropy(out, y))


def _toggle_mode(ns: dict[str, Any], i: int) -> None:
    ns["model"][3].train(i % 2 == 0)


def _counter(ns: dict[str, Any], x: Any, y: Any) -> Any:
    ns["count"] = ns.get("count", 0) + 1
    return train(ns, ce(ns, x, y) * float(ns["count"]))


def _append_history(ns: dict[str, Any], x: Any, y: Any) -> Any:
    loss = train(ns, ce(ns, x, y))
    ns.setdefault("history", []).append(loss)
    return loss


def _np_scalar_scale(ns: dict[str, Any], x: Any, y: Any, s: Any) -> Any:
    return train(ns, ce(ns, x, y) * s)


def _np_scalar_index(ns: dict[str, Any], x: Any, y: Any, k: Any) -> Any:
    out = ns["model"](ns["g"].constant(x))
    return train(ns, F.cross_entropy(out, y) + out[:k].sum() * 0.1 + out[k].sum())


def _np_scalar_lr(ns: dict[str, Any], x: Any, y: Any, lr: Any) -> Any:
    ns["opt"].lr = lr
    return train(ns, ce(ns, x, y))


def _scalar_batches(kind: str) -> Callable[[np.random.Generator, int], tuple[Any, ...]]:
    def make(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
        x, y = xy()(rng, i)
        s = {"f": np.float32(0.5 + i), "i": np.int64(3 + i % 3), "lr": np.float64(0.1 / (i + 1))}[kind]
        return x, y, s
    return make


def _aliased(ns: dict[str, Any], a: Any, b: Any) -> Any:
    g = ns["g"]
    out = ns["model"](g.constant(a))
    return train(ns, ((out - g.constant(b)[:, :3]) ** 2).mean())


def _alias_batches(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
    a = rng.normal(size=(6, 4)).astype(F32)
    return (a, a) if i == 0 else (a, rng.normal(size=(6, 4)).astype(F32))


def _data_dependent(ns: dict[str, Any], x: Any, y: Any) -> Any:
    g = ns["g"]
    xt = g.constant(x)
    h = ns["model"](xt)
    return train(ns, h[xt[:, 0] > 0].mean() + F.cross_entropy(h, y))


def _dd_batches(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
    x, y = xy()(rng, i)
    x[:, 0] = -1.0
    x[: 1 + i, 0] = 1.0  # the selection grows: one row at capture
    return x, y


def _history_input(ns: dict[str, Any], h: Any, y: Any) -> Any:
    return train(ns, F.cross_entropy(ns["model"](h), y))


def _kl_target(ns: dict[str, Any], x: Any, p: Any) -> Any:
    logp = ns["model"](ns["g"].constant(x)).log_softmax(axis=-1)
    return train(ns, F.kl_div(logp, p))


def _kl_batches(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
    x = rng.normal(size=(6, 4)).astype(F32)
    p = rng.random((6, 3)).astype(F32)
    p[rng.random((6, 3)) < 0.4] = 0.0
    p /= p.sum(axis=1, keepdims=True) + 1e-6
    return x, p


def _cosine(ns: dict[str, Any], x: Any, t: Any) -> Any:
    out = ns["model"](ns["g"].constant(x))
    return train(ns, (1.0 - F.cosine_similarity(out, t)).mean())


def _cos_batches(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
    return rng.normal(size=(6, 4)).astype(F32), rng.normal(size=(6, 3)).astype(F32)


def _into(ns: dict[str, Any], x: Any, y: Any) -> Any:
    g = ns["g"]
    l1 = ce(ns, x, y)
    grads = g.backward(l1)
    l2 = ce(ns, x, y) * 0.5
    g.backward(l2, into=grads)
    ns["opt"].step(grads)
    return l1


def _clip_value_used(ns: dict[str, Any], x: Any, y: Any) -> Any:
    loss = ce(ns, x, y)
    grads = ns["g"].backward(loss)
    norm = grads.clip_norm_(0.5)
    ns["opt"].lr = 0.1 / (1.0 + norm)
    ns["opt"].step(grads)
    return loss


def _clip_value_returned(ns: dict[str, Any], x: Any, y: Any) -> Any:
    loss = ce(ns, x, y)
    grads = ns["g"].backward(loss)
    norm = grads.clip_norm_(0.5)
    ns["opt"].step(grads)
    return loss, norm


def _dropout_seed(ns: dict[str, Any], x: Any, y: Any) -> Any:
    h = ns["model"](ns["g"].constant(x))
    return train(ns, F.cross_entropy(F.dropout(h, 0.5, rng=7), y))


def _bad_label_batches(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
    x, y = xy()(rng, i)
    if i == 2:
        y[1] = -1
    if i == 3:
        y[4] = 3
    return x, y


def _one_bad_label(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
    x, y = xy()(rng, i)
    if i == 1:
        y[0] = 7
    return x, y


def _isinstance_branch(ns: dict[str, Any], x: Any, y: Any) -> Any:
    if isinstance(x, np.ndarray) and x.dtype == np.float32:  # taken eagerly: so it is while capturing
        x = x.astype(np.float64)
    return train(ns, ce(ns, x, y))


def _embedding_step(ns: dict[str, Any], idx: Any, y: Any) -> Any:
    h = ns["emb"](idx).sum(axis=1)
    loss = F.cross_entropy(ns["model"](h), y)
    grads = ns["g"].backward(loss)
    ns["opt"].step(grads)
    ns["eopt"].step(grads)
    return loss


def _with_embedding(g: og.Graph, model: og.nn.Module, opt: Any) -> dict[str, Any]:
    emb = og.nn.Embedding(g, 10, 4, rng=3)
    return {"emb": emb, "eopt": og.optim.SGD(emb.parameters(), lr=0.1), "keep_emb": emb}


def _emb_batches(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
    idx = rng.integers(0, 10, (6, 2))
    if i == 2:
        idx[0, 1] = 10
    return idx, rng.integers(0, 3, 6)


def _finite(ns: dict[str, Any], x: Any, y: Any) -> Any:
    loss = ce(ns, x, y)
    ns["opt"].step(ns["g"].backward(loss, check_finite=True))
    return loss


def _inf_batches(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
    x, y = xy()(rng, i)
    if i == 2:
        x[0, 0] = np.inf
    return x, y


def _np_global_rng(ns: dict[str, Any], x: Any, y: Any) -> Any:
    noise = np.random.normal(size=(6, 4)).astype(F32)
    xt = ns["g"].constant(noise) + ns["g"].constant(x)
    return train(ns, F.cross_entropy(ns["model"](xt), y))


def _np_generator(ns: dict[str, Any], x: Any, y: Any) -> Any:
    noise = ns["rng"].normal(size=(6, 4)).astype(F32)
    xt = ns["g"].constant(x) + ns["g"].constant(noise)
    return train(ns, F.cross_entropy(ns["model"](xt), y))


def _with_rng(g: og.Graph, model: og.nn.Module, opt: Any) -> dict[str, Any]:
    return {"rng": np.random.default_rng(11)}


def _sched_inside(ns: dict[str, Any], x: Any, y: Any) -> Any:
    loss = train(ns, ce(ns, x, y))
    ns["sched"].step()
    return loss


def _with_sched(g: og.Graph, model: og.nn.Module, opt: Any) -> dict[str, Any]:
    return {"sched": og.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}


def _sched_outside(ns: dict[str, Any], i: int) -> None:
    if i:
        ns["sched"].step()


def _tensor_input(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, F.cross_entropy(ns["model"](x), y))


def _plain(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ce(ns, x, y))


def _batch_one(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
    return xy(n=1)(rng, i)


def _lengths_batches(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
    return rng.normal(size=(5, 4)).astype(F32), rng.integers(1, 5, 5)


class Scaled(og.nn.Module):
    """A user module whose forward reads a plain attribute and branches on its mode."""

    def __init__(self, g: og.Graph) -> None:
        super().__init__(g)
        self.inner = og.nn.Linear(g, 4, 3, rng=4)
        self.scale = 1.0

    def forward(self, x: og.Tensor) -> og.Tensor:
        out: og.Tensor = self.inner(x) * self.scale
        return out * 0.5 if self.training else out


def _user_module(ns: dict[str, Any], x: Any, y: Any) -> Any:
    loss = F.cross_entropy(ns["user"](ns["g"].constant(x)), y)
    ns["uopt"].step(ns["g"].backward(loss))
    return loss


def _with_user_module(g: og.Graph, model: og.nn.Module, opt: Any) -> dict[str, Any]:
    m = Scaled(g)
    return {"user": m, "uopt": og.optim.SGD(m.parameters(), lr=0.1), "keep_user": m}


def _user_attr(ns: dict[str, Any], i: int) -> None:
    ns["user"].scale = [1.0, 2.0, 0.5, 3.0][i % 4]
    ns["user"].train(i != 3)


def _randn_noise(ns: dict[str, Any], x: Any, y: Any) -> Any:
    g = ns["g"]
    xt = g.constant(x) + g.randn(6, 4) * 0.1
    return train(ns, F.cross_entropy(ns["model"](xt), y))


def _eval_inside(ns: dict[str, Any], x: Any, y: Any) -> Any:
    ns["model"].eval()
    loss = ce(ns, x, y)
    ns["model"].train()
    return train(ns, loss)


def _closure_array(ns: dict[str, Any], x: Any, y: Any) -> Any:
    g = ns["g"]
    return train(ns, F.cross_entropy(ns["model"](g.constant(x) * g.constant(ns["w_np"])), y))


def _with_array(g: og.Graph, model: og.nn.Module, opt: Any) -> dict[str, Any]:
    return {"w_np": np.ones(4, F32), "weights": [1.0, 1.0]}


def _edit_array(ns: dict[str, Any], i: int) -> None:
    ns["w_np"][i % 4] = 0.5 * i  # in place: the same array object
    ns["weights"][0] = 1.0 + i


def _list_weights(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ce(ns, x, y) * ns["weights"][0])


def _shape_scale(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ce(ns, x, y) * (1.0 / x.shape[0]) * float(len(y)))


def _int_loop(ns: dict[str, Any], x: Any, y: Any, k: int) -> Any:
    out = ns["model"](ns["g"].constant(x))
    for _ in range(k):
        out = out * 0.9
    return train(ns, F.cross_entropy(out, y))


def _int_batches(rng: np.random.Generator, i: int) -> tuple[Any, ...]:
    return (*xy()(rng, i), [1, 3, 1, 2][i % 4])


def _hand_adam(ns: dict[str, Any], x: Any, y: Any) -> Any:
    g = ns["g"]
    loss = ce(ns, x, y)
    grads = g.backward(loss)
    with g.no_grad():
        for p, m in zip(ns["model"].parameters(), ns["moments"]):
            m *= 0.9
            m += grads[p] * 0.1
            p -= m * 0.05
    return loss


def _with_moments(g: og.Graph, model: og.nn.Module, opt: Any) -> dict[str, Any]:
    ms = [g.zeros(p.shape) for p in model.parameters()]
    return {"moments": ms, **{f"keep_m{i}": m for i, m in enumerate(ms)}}


def _outside_update(ns: dict[str, Any], i: int) -> None:
    g = ns["g"]
    with g.no_grad():
        for p in ns["model"].parameters():
            p *= 0.99  # weight decay applied outside the step, in place
    if i == 2:
        ns["model"].load_state_dict({k: np.asarray(v) * 0.5 for k, v in ns["model"].state_dict().items()})


def _dict_return(ns: dict[str, Any], x: Any, y: Any) -> Any:
    out = ns["model"](ns["g"].constant(x))
    loss = train(ns, F.cross_entropy(out, y))
    return {"loss": loss, "out": out, "tag": "step"}


def _astype_input(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ce(ns, x.astype(np.float64), y))


def _dropout_from_dict(ns: dict[str, Any], x: Any, y: Any) -> Any:
    h = ns["model"](ns["g"].constant(x))
    return train(ns, F.cross_entropy(F.dropout(h, ns["cfg"]["p"]), y))


def _set_p(ns: dict[str, Any], i: int) -> None:
    ns["cfg"]["p"] = [0.5, 0.2, 0.0, 0.7][i % 4]


def _direct_graph_rng(ns: dict[str, Any], x: Any, y: Any) -> Any:
    g = ns["g"]
    noise = g.rng.normal(size=(6, 4)).astype(F32)  # beside dropout, which draws from g.rng too
    return train(ns, F.cross_entropy(ns["model"](g.constant(x) + g.constant(noise)), y))


def _python_random(ns: dict[str, Any], x: Any, y: Any) -> Any:
    import random

    return train(ns, ce(ns, x, y) * random.random())


def _index_add(ns: dict[str, Any], x: Any, y: Any) -> Any:
    g = ns["g"]
    h = ns["model"](g.constant(x))
    acc = g.zeros((3, 3))
    acc.index_add_(0, y, h)  # rows picked by the labels: converted and range-checked at every replay
    return train(ns, (acc * acc).sum())


def _load_inside(ns: dict[str, Any], x: Any, y: Any) -> Any:
    ns["model"].load_state_dict(ns["model"].state_dict())
    return train(ns, ce(ns, x, y))


def _nll_weighted(ns: dict[str, Any], x: Any, y: Any) -> Any:
    logp = ns["model"](ns["g"].constant(x)).log_softmax(axis=-1)
    return train(ns, F.nll_loss(logp, y, weight=ns["cw"]))


def _with_class_weights(g: og.Graph, model: og.nn.Module, opt: Any) -> dict[str, Any]:
    return {"cw": g.constant(np.array([1.0, 2.0, 0.5], F32))}


def _edit_class_weights(ns: dict[str, Any], i: int) -> None:
    with ns["g"].no_grad():
        ns["cw"][i % 3] = 1.0 + i  # in place, between calls


def _opt_inside(ns: dict[str, Any], x: Any, y: Any) -> Any:
    opt = og.optim.SGD(ns["model"].parameters(), lr=0.1, momentum=0.9)  # fresh momentum at every eager call
    loss = ce(ns, x, y)
    opt.step(ns["g"].backward(loss))
    return loss


def _gen_inside(ns: dict[str, Any], x: Any, y: Any) -> Any:
    gen = np.random.default_rng(5)  # the same mask at every eager call
    h = ns["model"](ns["g"].constant(x))
    return train(ns, F.cross_entropy(F.dropout(h, 0.5, rng=gen), y))


class Config:
    """A class used as a namespace of settings."""

    scale = 1.0
    skip: set[str] = set()


CFGMOD = types.ModuleType("capture_settings")  # a user module of settings (``import settings``)
CFGMOD.__file__ = __file__
CFGMOD.scale = 1.0  # type: ignore[attr-defined]


def _class_and_module_settings(ns: dict[str, Any], x: Any, y: Any) -> Any:
    loss = ce(ns, x, y) * Config.scale * CFGMOD.scale  # type: ignore[attr-defined]
    if "extra" not in Config.skip:
        loss = loss + (ns["model"](ns["g"].constant(x)) ** 2).mean() * 0.1
    return train(ns, loss)


def _set_settings(ns: dict[str, Any], i: int) -> None:
    Config.scale = 1.0 + i
    CFGMOD.scale = 2.0 - 0.25 * i  # type: ignore[attr-defined]
    if i == 2:
        Config.skip.add("extra")
    if i == 3:
        Config.skip.discard("extra")


class Trainer:
    """A user object whose method reads a module global."""

    def __init__(self, ns: dict[str, Any]) -> None:
        self.ns = ns

    def loss(self, x: Any, y: Any) -> og.Tensor:
        return ce(self.ns, x, y) * GLOBAL_SCALE


def _trainer_method(ns: dict[str, Any], x: Any, y: Any) -> Any:
    return train(ns, ns["trainer"].loss(x, y))


CASES = [
    Case("onehot_eye", classifier(_onehot), xy(), REFUSE),
    Case("standardize_input", classifier(_standardize), xy(), REFUSE),
    Case("labels_minus_one", classifier(_labels_minus_one), lambda r, i: (xy()(r, i)[0], r.integers(1, 4, 6)),
         REFUSE),
    Case("constant_of_input_times_two", classifier(_constant_times_two), xy(), REFUSE),
    Case("np_where_on_input", classifier(_np_where), xy(), REFUSE),
    Case("mask_from_lengths", classifier(_length_mask), _lengths_batches, REFUSE),
    Case("batch1_reshape_labels", classifier(_reshape_labels), _batch_one, REFUSE),
    Case("batch1_copy_labels", classifier(_copy_labels), _batch_one, REFUSE),
    Case("batch1_plain", classifier(_plain), _batch_one, EQ),
    Case("inplace_into_input", classifier(_inplace_input), xy(), REFUSE),
    Case("closure_loss_scale", classifier(_closure_scale, extra=lambda g, m, o: {"scale": 1.0},
                                          change=_set_scale), xy()),
    Case("dict_kl_weight", classifier(_dict_kl_weight, extra=lambda g, m, o: {"cfg": {"kl": 0.0}},
                                      change=_set_kl), xy()),
    Case("dict_clip_threshold", classifier(_clip_threshold, extra=lambda g, m, o: {"cfg": {"clip": 1.0}},
                                           change=_set_clip), xy()),
    Case("hand_written_sgd_lr", classifier(_hand_sgd, extra=lambda g, m, o: {"cfg": {"lr": 0.1}},
                                           change=_set_lr), xy()),
    Case("module_global", classifier(_global_scale, change=_set_global), xy()),
    Case("model_chosen_by_variable", classifier(_model_by_name, extra=_two_models, change=_set_which), xy()),
    Case("param_rebound", classifier(_rebound_param, extra=_two_params, change=_set_w), xy()),
    Case("optimizer_rebound", classifier(_plain, change=_rebind_opt), xy()),
    Case("graph_rng_replaced", classifier(_plain, drop=0.5, change=_replace_rng), xy()),
    Case("dropout_p_changed", classifier(_plain, drop=0.5, change=_dropout_p), xy()),
    Case("batchnorm_momentum_eps", classifier(_plain, bn=True, change=_bn_hyper), xy()),
    Case("ema_decay_changed", classifier(_ema_step, extra=_with_ema, change=_ema_decay), xy()),
    Case("ema_plain", classifier(_ema_step, extra=_with_ema), xy()),
    Case("submodule_mode_via_forward", classifier(_forward_direct, drop=0.5, change=_toggle_mode), xy()),
    Case("python_counter", classifier(_counter), xy(), EITHER),
    Case("history_append", classifier(_append_history), xy(), EITHER),
    Case("numpy_float32_scale", classifier(_np_scalar_scale), _scalar_batches("f")),
    Case("numpy_int64_index", classifier(_np_scalar_index), _scalar_batches("i")),
    Case("numpy_float_lr", classifier(_np_scalar_lr), _scalar_batches("lr"), EITHER),
    Case("aliased_inputs", classifier(_aliased), _alias_batches),
    Case("data_dependent_shape", classifier(_data_dependent), _dd_batches, REFUSE),
    Case("kl_div_array_target", classifier(_kl_target), _kl_batches),
    Case("cosine_array_operand", classifier(_cosine), _cos_batches),
    Case("backward_into", classifier(_into), xy()),
    Case("clip_norm_value_used", classifier(_clip_value_used), xy(), EITHER),
    Case("clip_norm_value_returned", classifier(_clip_value_returned), xy()),
    Case("dropout_seeded", classifier(_dropout_seed), xy()),
    Case("label_out_of_range", classifier(_plain), _bad_label_batches),
    Case("isinstance_branch_on_input", classifier(_isinstance_branch), xy(), REFUSE),
    # the eager step that raised leaves its forward pending: every later step is refused at opt.step
    Case("steps_after_a_raised_step", classifier(_plain, bn=True), _one_bad_label, steps=4),
    Case("embedding_index_out_of_range", classifier(_embedding_step, extra=_with_embedding), _emb_batches),
    Case("check_finite", classifier(_finite), _inf_batches),
    Case("numpy_global_rng", classifier(_np_global_rng), xy(), REFUSE),
    Case("numpy_generator", classifier(_np_generator, extra=_with_rng), xy(), REFUSE),
    Case("scheduler_inside", classifier(_sched_inside, extra=_with_sched), xy(), EITHER),
    Case("scheduler_outside", classifier(_plain, extra=_with_sched, change=_sched_outside), xy()),
    Case("adam_plain", classifier(_plain, adam=True, drop=0.3), xy()),
    Case("user_module_attribute_and_mode", classifier(_user_module, extra=_with_user_module, change=_user_attr),
         xy()),
    Case("graph_randn_noise", classifier(_randn_noise), xy()),
    Case("mode_switched_inside", classifier(_eval_inside, drop=0.5), xy(), EITHER),
    Case("closure_array_edited_in_place", classifier(_closure_array, extra=_with_array, change=_edit_array), xy()),
    Case("closure_list_edited_in_place", classifier(_list_weights, extra=_with_array, change=_edit_array), xy()),
    Case("shape_read_from_input", classifier(_shape_scale), xy()),
    Case("python_int_input_loop", classifier(_int_loop), _int_batches),
    Case("hand_written_adam_state", classifier(_hand_adam, extra=_with_moments), xy()),
    Case("params_updated_outside", classifier(_plain, adam=True, change=_outside_update), xy()),
    Case("dict_returned", classifier(_dict_return), xy()),
    Case("astype_on_input", classifier(_astype_input), xy(), REFUSE),
    Case("dropout_p_from_dict", classifier(_dropout_from_dict, extra=lambda g, m, o: {"cfg": {"p": 0.5}},
                                          change=_set_p), xy()),
    Case("direct_draw_from_graph_rng", classifier(_direct_graph_rng, drop=0.5), xy(), REFUSE),
    Case("python_random_module", classifier(_python_random), xy(), REFUSE),
    Case("index_add_by_labels", classifier(_index_add), _bad_label_batches),
    Case("load_state_dict_inside", classifier(_load_inside), xy(), REFUSE),
    Case("nll_class_weights_edited", classifier(_nll_weighted, extra=_with_class_weights,
                                                change=_edit_class_weights), xy()),
    Case("optimizer_made_inside", classifier(_opt_inside), xy(), EITHER),
    Case("generator_made_inside", classifier(_gen_inside), xy(), EITHER),
    Case("class_and_module_settings", classifier(_class_and_module_settings, change=_set_settings), xy()),
    Case("user_method_reads_global", classifier(_trainer_method, extra=lambda g, m, o: {"trainer": None},
                                                change=lambda ns, i: (ns.update(trainer=ns.get("trainer") or
                                                                                Trainer(ns)), _set_global(ns, i))),
         xy()),
    Case("adam_bn_dropout_small_last_batch", classifier(_plain, adam=True, drop=0.2, bn=True),
         lambda r, i: xy(n=6 if i < 3 else 3)(r, i), steps=5),
]


# --- the runner -----------------------------------------------------------------------------------

def _arrays(out: Any) -> list[Any]:
    if isinstance(out, og.Tensor):
        return [out.numpy()]
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _arrays(o)]
    if isinstance(out, dict):
        return [a for k in sorted(out) for a in _arrays(out[k])]
    return [np.asarray(out)]


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b))


def _attempt(world: World, f: Callable[..., Any], args: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return "ok", world.call(f, args)
    except Exception as e:  # noqa: BLE001 - the outcome is compared, whatever it is
        return "err", e


def _copy_args(batch: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in batch)


def run_case(case: Case, verify: bool = False, args_hook: Callable[[World, tuple[Any, ...]], tuple[Any, ...]]
             | None = None) -> str:
    """Eager and captured side by side; returns "eq" or "refused" (asserting the contract throughout)."""
    eager, cap = case.build(), case.build()
    step = cap.g.capture(cap.fn, verify=verify)
    rng = np.random.default_rng(0)
    for i in range(case.steps):
        batch = case.batches(rng, i)
        ea, ca = _copy_args(batch), _copy_args(batch)
        if args_hook is not None:
            ea, ca = args_hook(eager, ea), args_hook(cap, ca)
        eager.change(i)
        cap.change(i)
        before = cap.state()
        # the previous outcomes go first: a kept exception's traceback would keep that step's results alive
        # (and with them their borrows) in one world and not in the other
        e = c = ("", None)
        e = _attempt(eager, eager.fn, ea)
        c = _attempt(cap, step, ca)
        if c[0] == "err" and isinstance(c[1], og.GraphError) and "g.capture" in str(c[1]):
            msg = str(c[1])
            assert "test_capture_contract.py:" in msg, f"{case.name}: the refusal names no user line: {msg}"
            assert case.expect in (REFUSE, EITHER), f"{case.name}: call {i} refused: {msg}"
            assert _same(before, cap.state()), f"{case.name}: the refused call {i} changed the state"
            assert not cap.g.pending(), f"{case.name}: the refused call {i} left pending nodes"
            return "refused"
        if e[0] == "err":  # and the next calls go on (an eager step that raised leaves its results pending until
            # its traceback goes: then nothing reaches them and the next write releases them)
            assert c[0] == "err", f"{case.name}: call {i}: eager raised {e[1]!r}, the captured call did not"
            assert isinstance(c[1], type(e[1])), f"{case.name}: call {i}: eager {e[1]!r}, captured {c[1]!r}"
            assert _same(eager.state(), cap.state()), f"{case.name}: call {i} raised: different params or state"
            continue
        assert c[0] == "ok", f"{case.name}: call {i}: captured raised {c[1]!r}, eager did not"
        assert _same(_arrays(e[1]), _arrays(c[1])), f"{case.name}: call {i}: different outputs"
        assert _same(eager.state(), cap.state()), f"{case.name}: call {i}: different params or state"
    assert case.expect != REFUSE, f"{case.name}: expected a refusal, every call was replayed"
    return "eq"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_captured_equals_eager_or_refuses(case: Case) -> None:
    run_case(case)


def test_no_grad_around_the_call_raises_as_eager() -> None:
    eager, cap = classifier(_plain)(), classifier(_plain)()
    step = cap.g.capture(cap.fn)
    rng = np.random.default_rng(0)
    x, y = xy()(rng, 0)
    eager.fn(x.copy(), y.copy())
    step(x.copy(), y.copy())  # captured with grad enabled
    x, y = xy()(rng, 1)
    with eager.g.no_grad(), pytest.raises(og.GradError):
        eager.fn(x.copy(), y.copy())
    with cap.g.no_grad(), pytest.raises(og.GradError):
        step(x.copy(), y.copy())
    assert _same(eager.state(), cap.state())


def test_an_input_with_history_is_refused() -> None:
    case = Case("history", classifier(_history_input), xy())
    world = case.build()
    g = world.g
    pre = og.nn.Linear(g, 4, 4, rng=9)
    step = g.capture(world.fn)
    x, y = xy()(np.random.default_rng(0), 0)
    h = pre(g.constant(x))
    with pytest.raises(og.GraphError, match="history"):
        step(h, y)
    g.clear()


def test_a_constant_tensor_input_replays() -> None:
    case = Case("tensor_input", classifier(_tensor_input), xy())

    def hook(world: World, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (world.g.constant(args[0]), args[1])
    assert run_case(case, args_hook=hook) == "eq"


def test_a_refusal_after_the_optimizer_stepped_changes_nothing() -> None:
    world = classifier(_plain)()
    g, model = world.g, world.extra["model"]

    def step_fn(x: Any, y: Any) -> Any:
        loss = train(world.extra, ce(world.extra, x, y))
        print(float(loss))  # refused after the update
        return loss

    before = [p.numpy() for p in model.parameters()]
    x, y = xy()(np.random.default_rng(0), 0)
    step = g.capture(step_fn)
    with pytest.raises(og.GraphError, match="test_capture_contract.py"):
        step(x, y)
    assert _same(before, [p.numpy() for p in model.parameters()])
    assert not g.pending()
    # the retry does not apply the update twice: it refuses again, still changing nothing
    with pytest.raises(og.GraphError):
        step(x, y)
    assert _same(before, [p.numpy() for p in model.parameters()])


def test_a_refused_capture_leaves_no_pending_nodes_and_eager_steps_go_on() -> None:
    world = classifier(_standardize)()
    g = world.g
    x, y = xy()(np.random.default_rng(0), 0)
    with pytest.raises(og.GraphError):
        g.capture(world.fn)(x, y)
    assert not g.pending()
    train(world.extra, ce(world.extra, x, y))  # an eager step is not blocked by leftovers


def test_fallback_runs_a_refused_step_eagerly_with_eager_numbers() -> None:
    e, c = classifier(_standardize)(), classifier(_standardize)()
    step = c.g.capture(c.fn, fallback=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        x, y = xy()(rng, i)
        a = e.fn(x.copy(), y.copy())
        with pytest.warns(RuntimeWarning) if i == 0 else _nothing():
            b = step(x.copy(), y.copy())
        assert _same(_arrays(a), _arrays(b))
        assert _same(e.state(), c.state())
    assert step.replays == 0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def test_two_threads_making_the_first_call_are_serialised() -> None:
    world = classifier(_plain)()
    step = world.g.capture(world.fn)
    x, y = xy()(np.random.default_rng(0), 0)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            step(x.copy(), y.copy())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert step.eager_calls == 1 and step.replays == 1


def test_a_returned_view_of_a_param_is_a_view_of_the_param() -> None:
    world = classifier(_plain)()
    g, model = world.g, world.extra["model"]
    w = model[0].weight

    def fn(x: Any, y: Any) -> Any:
        loss = train(world.extra, ce(world.extra, x, y))
        return loss, w[0:2]

    step = g.capture(fn)
    rng = np.random.default_rng(0)
    for i in range(3):
        _, v = step(*xy()(rng, i))
        assert v.base is not None and np.array_equal(v.numpy(), w.numpy()[0:2])
    v[...] = 0.0  # a write through the returned view is a write into the param
    assert not w.numpy()[0:2].any()


def test_changing_a_guarded_value_every_call_warns_and_runs_eagerly() -> None:
    e = classifier(_closure_scale, extra=lambda g, m, o: {"scale": 1.0}, change=_set_scale)()
    c = classifier(_closure_scale, extra=lambda g, m, o: {"scale": 1.0}, change=_set_scale)()
    step = c.g.capture(c.fn, max_plans=2)
    rng = np.random.default_rng(0)
    with pytest.warns(RuntimeWarning, match="scale"):
        for i in range(6):
            x, y = xy()(rng, i)
            e.change(i)
            c.change(i)
            a, b = e.fn(x.copy(), y.copy()), step(x.copy(), y.copy())
            assert _same(_arrays(a), _arrays(b)) and _same(e.state(), c.state())


@pytest.mark.parametrize("case", [c for c in CASES if c.expect == EQ][:6], ids=lambda c: c.name)
def test_verified_capture_keeps_the_contract(case: Case) -> None:
    run_case(case, verify=True)


def test_verification_falls_back_to_eager_naming_the_first_differing_equation() -> None:
    world, eager = classifier(_plain)(), classifier(_plain)()
    step = world.g.capture(world.fn, verify=True)
    rng = np.random.default_rng(0)
    x, y = xy()(rng, 0)
    step(x.copy(), y.copy())
    eager.fn(x.copy(), y.copy())
    plan = step.plans_of()[0]
    k = next(i for i, e in enumerate(plan.eqns) if e.rule == "cross_entropy")
    wrong = plan.eqns[k].fn
    plan.eqns[k] = plan.eqns[k]._replace(fn=lambda *a, **kw: wrong(*a, **kw) * 2)  # a plan that is not the step
    x, y = xy()(rng, 1)
    with pytest.warns(RuntimeWarning, match=rf"differs from the eager step at equation {k}, cross_entropy at "
                                            r"test_capture_contract\.py:\d+"):
        out = step(x.copy(), y.copy())
    ref = eager.fn(x.copy(), y.copy())
    assert _same(_arrays(ref), _arrays(out)) and _same(eager.state(), world.state())
    x, y = xy()(rng, 2)
    assert _same(_arrays(eager.fn(x.copy(), y.copy())), _arrays(step(x.copy(), y.copy())))  # eager from now on
    assert _same(eager.state(), world.state()) and step.replays == 0


def _fit_once(capture: bool) -> tuple[dict[str, list[float]], list[Any]]:
    g = og.Graph()
    model = mlp(g, drop=0.3, bn=True)
    opt = og.optim.Adam(model.parameters(), lr=1e-2)
    sched = og.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    rng = np.random.default_rng(1)
    xs, ys = rng.normal(size=(44, 4)).astype(F32), rng.integers(0, 3, 44)
    hist: dict[str, list[float]] = {"loss": []}
    for _ in range(2):  # a schedule stepped between fits, outside the step
        h = og.fit(model, og.data.batches(xs, ys, 8, rng=0), F.cross_entropy, opt, epochs=3, progress=False,
                   capture=capture, metrics={"acc": og.training.accuracy})
        hist["loss"] += h["loss"]
        sched.step()
    return hist, state_of(model, opt)()


def test_fit_captured_equals_fit_eager_bitwise() -> None:
    with _nothing():
        a, sa = _fit_once(False)
        b, sb = _fit_once(True)
    assert a == b and _same(sa, sb)


@pytest.mark.parametrize("drop", [0.0, 0.5])
def test_verified_plans_replay_after_verification(drop: float) -> None:
    e, c = classifier(_plain, drop=drop, bn=True, adam=True)(), classifier(_plain, drop=drop, bn=True, adam=True)()
    step = c.g.capture(c.fn, verify=True)
    rng = np.random.default_rng(3)
    for i in range(5):
        x, y = xy()(rng, i)
        assert _same(_arrays(e.fn(x.copy(), y.copy())), _arrays(step(x.copy(), y.copy())))
        assert _same(e.state(), c.state())
    assert step.replays == 3 and step.eager_calls == 2  # the capture, then the verified first replay


def test_a_plan_prints_its_equations_with_rule_names_and_user_lines() -> None:
    world = classifier(_plain)()
    step = world.g.capture(world.fn)
    x, y = xy()(np.random.default_rng(0), 0)
    step(x, y)
    text = str(step.plans_of()[0])
    lines = text.splitlines()
    assert lines[0].startswith("plan of the step captured at test_capture_contract.py:")
    assert any(ln.lstrip().startswith("s") and " = linear(" in ln for ln in lines)
    assert any("cross_entropy.vjp[0](" in ln for ln in lines)
    assert any("_labels_without_ignore_index(s1, -100)" in ln for ln in lines)  # the path's decision, checked
    assert any("_check_labels(s1, 3)" in ln for ln in lines)  # the label range
    assert all("# test_capture_contract.py:" in ln for ln in lines[1:])


def test_keyword_inputs_are_inputs_too() -> None:
    def body(ns: dict[str, Any], x: Any, y: Any, scale: float = 1.0, mask: Any = None) -> Any:
        out = ns["model"](ns["g"].constant(x))
        if mask is not None:
            out = out * ns["g"].constant(mask)
        return train(ns, F.cross_entropy(out, y) * scale)

    e, c = classifier(body)(), classifier(body)()
    step = c.g.capture(c.fn)
    rng = np.random.default_rng(4)
    for i in range(5):
        x, y = xy()(rng, i)
        mask = (rng.random((6, 3)) > 0.3).astype(F32)
        kw = {"scale": 1.0 + (i % 2), "mask": mask}
        a = e.fn(x.copy(), y.copy(), **kw)
        b = step(x.copy(), y.copy(), **kw)
        assert _same(_arrays(a), _arrays(b)) and _same(e.state(), c.state())
    assert step.replays == 3  # two plans: scale 1.0 and 2.0, each captured once
    with pytest.raises(og.GraphError, match="test_capture_contract.py"):
        c.g.capture(lambda x, *, m: (m * 2.0))(np.ones(3), m=np.ones(3))  # a keyword input is traced too


def test_a_seed_given_as_an_input_is_each_call_s_seed() -> None:
    def body(ns: dict[str, Any], x: Any, seed: Any) -> Any:
        out = ns["model"](ns["g"].constant(x))
        ns["opt"].step(ns["g"].backward(out, seed=seed))
        return out

    e, c = classifier(body)(), classifier(body)()
    step = c.g.capture(c.fn)
    rng = np.random.default_rng(5)
    for _ in range(4):
        x, seed = rng.normal(size=(6, 4)).astype(F32), rng.normal(size=(6, 3)).astype(F32)
        assert _same(_arrays(e.fn(x.copy(), seed.copy())), _arrays(step(x.copy(), seed.copy())))
        assert _same(e.state(), c.state())
    assert step.replays == 3


def test_a_refused_capture_restores_the_python_state_it_changed() -> None:
    world = classifier(_plain)()
    hist: list[Any] = []
    seen: set[str] = set()

    def fn(x: Any, y: Any) -> Any:
        Config.scale = 7.0
        CFGMOD.scale = 9.0  # type: ignore[attr-defined]
        seen.add("called")
        hist.append(1)
        return train(world.extra, ce(world.extra, x, y))

    Config.scale, CFGMOD.scale = 1.0, 1.0  # type: ignore[attr-defined]
    x, y = xy()(np.random.default_rng(0), 0)
    before = world.state()
    with pytest.raises(og.GraphError, match="changing"):
        world.g.capture(fn)(x, y)
    assert Config.scale == 1.0 and CFGMOD.scale == 1.0 and not hist and not seen  # type: ignore[attr-defined]
    assert _same(before, world.state()) and not world.g.pending()


@dataclass(slots=True)
class SlottedSettings:
    scale: float = 1.0


def test_settings_in_slotted_objects_and_namespaces_are_guarded() -> None:
    import argparse

    def body(ns: dict[str, Any], x: Any, y: Any) -> Any:
        return train(ns, ce(ns, x, y) * ns["s"].scale * ns["args"].lr)

    worlds = [classifier(body, extra=lambda g, m, o: {"s": SlottedSettings(), "args": argparse.Namespace(lr=1.0)})()
              for _ in range(2)]
    e, c = worlds
    step = c.g.capture(c.fn)
    rng = np.random.default_rng(6)
    for i in range(4):
        for w in worlds:
            w.extra["s"].scale = 1.0 + i
            w.extra["args"].lr = 0.5 * (i % 2 + 1)
        x, y = xy()(rng, i)
        assert _same(_arrays(e.fn(x.copy(), y.copy())), _arrays(step(x.copy(), y.copy())))
        assert _same(e.state(), c.state())


FEATURES = ("dropout", "batchnorm", "adam", "clip", "accumulate", "scale", "toggle_eval")


def _combined(features: frozenset[str]) -> Case:
    """One program from a set of features, with the outside changes that go with them."""
    def body(ns: dict[str, Any], x: Any, y: Any) -> Any:
        g = ns["g"]
        loss = ce(ns, x, y) * (ns["cfg"]["scale"] if "scale" in features else 1.0)
        grads = g.backward(loss)
        if "accumulate" in features:
            g.backward(ce(ns, x, y) * 0.5, into=grads)
        if "clip" in features:
            grads.clip_norm_(ns["cfg"]["clip"])
        ns["opt"].step(grads)
        return loss

    def change(ns: dict[str, Any], i: int) -> None:
        ns["cfg"]["scale"] = 1.0 + 0.5 * i
        ns["cfg"]["clip"] = [0.05, 10.0, 0.2, 0.01][i % 4]
        if "toggle_eval" in features:
            ns["model"].train(i != 2)

    build = classifier(body, drop=0.3 if "dropout" in features else 0.0, bn="batchnorm" in features,
                       adam="adam" in features, extra=lambda g, m, o: {"cfg": {"scale": 1.0, "clip": 1.0}},
                       change=change)
    return Case("+".join(sorted(features)) or "plain", build, xy(), steps=5)


COMBOS = [frozenset(f for f, on in zip(FEATURES, bits) if on)
          for bits in itertools.product((False, True), repeat=len(FEATURES))][::5]


@pytest.mark.parametrize("features", COMBOS, ids=lambda f: "+".join(sorted(f)) or "plain")
def test_combined_programs_equal_eager(features: frozenset[str]) -> None:
    assert run_case(_combined(features)) == "eq"


def test_an_attribute_the_step_never_names_does_not_invalidate_the_plan() -> None:
    class Loop:
        def __init__(self, ns: dict[str, Any]) -> None:
            self.ns = ns
            self.iteration = 0  # counted outside the step, never read by it
            self.weight = 1.0

        def step(self, x: Any, y: Any) -> Any:
            return train(self.ns, ce(self.ns, x, y) * self.weight)

    e, c = classifier(_plain)(), classifier(_plain)()
    le, lc = Loop(e.extra), Loop(c.extra)
    step = c.g.capture(lc.step)
    rng = np.random.default_rng(7)
    for i in range(5):
        for lp in (le, lc):
            lp.iteration += 1
            lp.weight = 2.0 if i == 3 else 1.0  # read by the step: a new plan, then the first again
        x, y = xy()(rng, i)
        assert _same(_arrays(le.step(x.copy(), y.copy())), _arrays(step(x.copy(), y.copy())))
        assert _same(e.state(), c.state())
    assert step.replays == 3 and step.eager_calls == 2


def test_a_step_that_writes_into_its_input_tensor_borrows_each_call_s_input() -> None:
    def body(ns: dict[str, Any], xt: Any, y: Any) -> Any:
        with ns["g"].no_grad():
            xt *= 0.5  # in place, into the caller's tensor
        return train(ns, F.cross_entropy(ns["model"](xt), y))

    e, c = classifier(body)(), classifier(body)()
    step = c.g.capture(c.fn)
    rng = np.random.default_rng(8)
    for i in range(4):
        x, y = xy()(rng, i)
        xe, xc = e.g.constant(x), c.g.constant(x)
        if i == 2:  # a frozen input: the write is refused, eagerly and captured
            xe, xc = e.g.freeze(xe), c.g.freeze(xc)
        if i == 3:  # a pending result saved the input (matmul saves it for the weight's gradient)
            pe, pc = e.extra["model"](xe).sum(), c.extra["model"](xc).sum()
        oe, oc = _attempt(e, e.fn, (xe, y.copy())), _attempt(c, step, (xc, y.copy()))
        assert oe[0] == oc[0], (i, oe, oc)
        if oe[0] == "err":
            assert type(oe[1]) is type(oc[1]) is og.BorrowError
        else:
            assert _same(_arrays(oe[1]), _arrays(oc[1]))
        assert _same([xe.numpy()], [xc.numpy()]) and _same(e.state(), c.state())
    assert step.replays == 1  # the call with a frozen input, and the one with a borrowed input, ran eagerly
    e.g.free(pe)
    c.g.free(pc)


class Resisting:
    """An object that raises on any attribute it lacks (a proxy, a lazy client)."""

    __slots__ = ("scale",)

    def __init__(self) -> None:
        self.scale = 2.0

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


def test_an_object_that_resists_the_guard_walk_is_guarded_by_identity() -> None:
    def body(ns: dict[str, Any], x: Any, y: Any) -> Any:
        return train(ns, ce(ns, x, y) * ns["odd"].scale)

    e = classifier(body, extra=lambda g, m, o: {"odd": Resisting()})()
    c = classifier(body, extra=lambda g, m, o: {"odd": Resisting()})()
    step = c.g.capture(c.fn)
    rng = np.random.default_rng(9)
    for i in range(4):
        e.extra["odd"].scale = c.extra["odd"].scale = 1.0 + (i % 2)  # a slot the step reads: guarded
        x, y = xy()(rng, i)
        assert _same(_arrays(e.fn(x.copy(), y.copy())), _arrays(step(x.copy(), y.copy())))
        assert _same(e.state(), c.state())


def test_another_thread_draws_from_g_rng_while_a_step_is_captured() -> None:
    world = classifier(_plain)()
    g = world.g
    started, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_step(x: Any, y: Any) -> Any:
        started.set()
        release.wait(5)
        return train(world.extra, ce(world.extra, x, y))

    def other() -> None:
        started.wait(5)
        try:  # eager work of another thread on the same graph, during the capture
            g.rng.normal(size=3)
            F.dropout(g.constant(np.ones((2, 3), F32)), 0.5).sum()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            release.set()

    t = threading.Thread(target=other)
    t.start()
    g.capture(slow_step)(*xy()(np.random.default_rng(0), 0))
    t.join()
    assert not errors, errors


def test_a_partial_step_guards_what_its_function_reads() -> None:
    import functools

    def body(ns: dict[str, Any], x: Any, y: Any, cfg: dict[str, float]) -> Any:
        return train(ns, ce(ns, x, y) * cfg["w"])

    e, c = classifier(_plain)(), classifier(_plain)()
    cfg_e, cfg_c = {"w": 1.0}, {"w": 1.0}
    fe = functools.partial(body, e.extra, cfg=cfg_e)
    step = c.g.capture(functools.partial(body, c.extra, cfg=cfg_c))
    rng = np.random.default_rng(10)
    for i in range(4):
        cfg_e["w"] = cfg_c["w"] = 1.0 + i  # a bound dict, changed between calls
        x, y = xy()(rng, i)
        assert _same(_arrays(fe(x.copy(), y.copy())), _arrays(step(x.copy(), y.copy())))
        assert _same(e.state(), c.state())


def test_a_decorated_step_guards_what_the_wrapped_function_reads() -> None:
    import functools

    def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
        return functools.wraps(fn)(_Forward(fn))

    e, c = classifier(_closure_scale, extra=lambda g, m, o: {"scale": 1.0}, change=_set_scale)(), \
        classifier(_closure_scale, extra=lambda g, m, o: {"scale": 1.0}, change=_set_scale)()
    step = c.g.capture(logged(c.fn))
    rng = np.random.default_rng(11)
    for i in range(4):
        e.change(i)
        c.change(i)
        x, y = xy()(rng, i)
        assert _same(_arrays(e.fn(x.copy(), y.copy())), _arrays(step(x.copy(), y.copy())))
        assert _same(e.state(), c.state())


class _Forward:
    """A callable wrapper from a library (its module is numpy's): the walk follows ``__wrapped__``."""

    __module__ = "numpy.testing"

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


def test_an_input_given_to_another_graph_inside_the_step_is_refused() -> None:
    world = classifier(_plain)()
    other = og.Graph()

    def fn(x: Any, y: Any) -> Any:
        z = other.constant(x) * 2.0  # work on another graph is not part of the step
        return train(world.extra, ce(world.extra, z.numpy(), y))

    with pytest.raises(og.GraphError, match=r"g\.constant of another graph .* at test_capture_contract\.py:"):
        world.g.capture(fn)(*xy()(np.random.default_rng(0), 0))
