"""Adversarial captured programs: a captured call equals the eager call bitwise, or it refuses.

Each program is a training step written the way training code is written -- helpers, methods, closures,
dataclasses, partials, decorators, numpy work on the inputs, recurrent and attention models, optimizers
and schedules driven from outside. It is built twice from the same seeds: one world calls the step
eagerly, the other through ``g.capture``, over several calls with the same outside changes made to
both between calls. After every call the outputs, the inputs, the params, the buffers and the
optimizer state must be bitwise equal; or both calls raise the same error type; or the captured call
refused with a ``GraphError`` naming a line of this file, having changed nothing.

Programs are grouped by what they try to slip past the capture; ``EQ`` programs must replay (the plan
is reused), ``REFUSE`` ones must be refused, ``EITHER`` ones may do either.
"""

from __future__ import annotations

import copy
import functools
import itertools
import random
import threading
import types
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np
import pytest

import owngrad as og
from owngrad.nn import functional as F

EQ, REFUSE, EITHER = "eq", "refuse", "either"
F32, F64 = np.float32, np.float64
THIS = "test_capture_adversarial.py:"

SETTINGS = {"w": 1.0, "smooth": 0.0}  # module globals some programs read, changed between calls
LAYER_SCALES = [1.0, 1.0]
TEMPERATURE = 1.0


# --- worlds ---------------------------------------------------------------------------------------

@dataclass
class World:
    """One copy of a program: its graph, its step, what it keeps (``ns``) and what is compared."""

    g: og.Graph
    ns: dict[str, Any] = field(default_factory=dict)
    step: Callable[..., Any] = lambda *a: None
    track: list[Any] = field(default_factory=list)
    change: Callable[[int], None] = lambda i: None

    def state(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for t in self.track:
            t = t() if callable(t) and not isinstance(t, (og.nn.Module, og.Tensor)) else t
            if isinstance(t, og.nn.Module):
                out += [p.numpy() for p in t.parameters()] + [b.numpy() for _, b in t.named_buffers()]
            elif isinstance(t, og.Tensor):
                out.append(t.numpy())
            elif isinstance(t, og.optim.EMA):
                out += [p.numpy() for p in t.module.parameters()]
            elif hasattr(t, "state_dict"):
                sd = t.state_dict()
                out += [np.asarray(v) for st in sd.get("state", []) for v in st.values()]
                out += [np.asarray(gr.get("lr", 0.0)) for gr in sd.get("param_groups", [])]
            else:
                out.append(np.asarray(t))
        return out


Data = Callable[[World, int], tuple[tuple[Any, ...], dict[str, Any]]]


@dataclass
class Program:
    name: str
    build: Callable[[World], None]
    data: Data
    expect: str
    steps: int


PROGRAMS: list[Program] = []


def xy(n: int | Callable[[int], int] = 6, d: int = 4, c: int = 3, dtype: Any = F32) -> Data:
    """``(x, y)``: x of shape (n, d) and labels in [0, c); the same for both worlds (seeded by the call)."""
    def make(w: World, i: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        rng = np.random.default_rng(100 + i)
        k = n(i) if callable(n) else n
        return (rng.normal(size=(k, d)).astype(dtype), rng.integers(0, c, k)), {}
    return make


def with_extra(base: Data, *extra: Callable[[np.random.Generator, int], Any],
               **kw: Callable[[np.random.Generator, int], Any]) -> Data:
    """``base``'s inputs and more, positional and keyword (each made from its own seeded generator)."""
    def make(w: World, i: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args, kwargs = base(w, i)
        rng = np.random.default_rng(500 + i)
        return (*args, *(f(rng, i) for f in extra)), {**kwargs, **{k: f(rng, i) for k, f in kw.items()}}
    return make


def program(expect: str = EQ, data: Data | None = None, steps: int = 5,
            name: str | None = None) -> Callable[[Callable[[World], None]], Callable[[World], None]]:
    def register(build: Callable[[World], None]) -> Callable[[World], None]:
        PROGRAMS.append(Program(name or build.__name__, build, data or xy(), expect, steps))
        return build
    return register


def mlp(g: og.Graph, d_in: int = 4, d_out: int = 3, drop: float = 0.0, bn: bool = False,
        dtype: Any = F32) -> og.nn.Sequential:
    layers: list[og.nn.Module] = [og.nn.Linear(g, d_in, 8, rng=0, dtype=dtype)]
    if bn:
        layers.append(og.nn.BatchNorm1d(g, 8))
    layers.append(og.nn.ReLU())
    if drop:
        layers.append(og.nn.Dropout(drop))
    layers.append(og.nn.Linear(g, 8, d_out, rng=1, dtype=dtype))
    return og.nn.Sequential(*layers)


def standard(w: World, drop: float = 0.0, bn: bool = False, opt: str = "sgd", dtype: Any = F32,
             d_in: int = 4) -> tuple[og.nn.Sequential, Any]:
    """A model and an optimizer, kept in ``w.ns`` and compared after every call."""
    model = mlp(w.g, d_in=d_in, drop=drop, bn=bn, dtype=dtype)
    params = model.parameters()
    o = {"sgd": lambda: og.optim.SGD(params, lr=0.1, momentum=0.9),
         "adam": lambda: og.optim.Adam(params, lr=1e-2),
         "adamw": lambda: og.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
         "rmsprop": lambda: og.optim.RMSprop(params, lr=1e-2),
         "adagrad": lambda: og.optim.Adagrad(params, lr=1e-1),
         "nadam": lambda: og.optim.NAdam(params, lr=1e-2),
         "radam": lambda: og.optim.RAdam(params, lr=1e-2),
         "adamax": lambda: og.optim.Adamax(params, lr=1e-2),
         "adadelta": lambda: og.optim.Adadelta(params, lr=1.0)}[opt]()
    w.ns.update(model=model, opt=o)
    w.track += [model, lambda: w.ns["opt"]]
    return model, o


def fit_step(w: World, loss: og.Tensor) -> og.Tensor:
    w.ns["opt"].step(w.g.backward(loss))
    return loss


def plain(w: World) -> Callable[..., Any]:
    """The plain classifier step over ``w.ns["model"]``."""
    def step(x: Any, y: Any) -> Any:
        return fit_step(w, F.cross_entropy(w.ns["model"](w.g.constant(x)), y))
    return step


def preprocess(a: Any) -> Any:
    """A helper of the user's data pipeline, called inside the step (numpy work on the input)."""
    return (a - 0.5) / 2.0


# === numpy work on a raw input inside the step ======================================================

def _numpy_on_input(transform: Callable[[Any], Any]) -> Callable[[World], None]:
    def build(w: World) -> None:
        model, _ = standard(w)
        w.step = lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(transform(x))), y))
    return build


for _name, _fn in {
    "np_clip_input": lambda x: np.clip(x, -1.0, 1.0),
    "transpose_attr_twice": lambda x: x.T.T,
    "helper_preprocess": preprocess,
    "closure_mean_minus_input": lambda x: np.full((1, 4), 0.5, F32) - x,
    "np_concatenate_halves": lambda x: np.concatenate([x[:, :2], x[:, 2:]], axis=1),
    "log1p_abs": lambda x: np.log1p(np.abs(x)),
    "scale_by_max": lambda x: x / abs(x).max(),
    "np_asarray": lambda x: np.asarray(x, dtype=F32),
    "matmul_numpy_weights": lambda x: x @ np.eye(4, dtype=F32),
    "rows_iterated": lambda x: np.stack([r for r in x]),
    "copy_copy": lambda x: copy.copy(x),
    "copy_deepcopy": lambda x: copy.deepcopy(x),
    "ndarray_view": lambda x: x.view(np.float32),
    "reversed_columns": lambda x: x[:, ::-1],
    "astype_same": lambda x: x.astype(F32, copy=False),
}.items():
    program(REFUSE, name=_name)(_numpy_on_input(_fn))


@program(REFUSE)
def label_smoothing_by_numpy(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        t = np.full((len(y), 3), 0.1 / 3, F32)
        t[np.arange(len(y)), y] += 0.9
        return fit_step(w, F.cross_entropy(model(w.g.constant(x)), t))
    w.step = step


@program(REFUSE)
def label_as_python_int(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        first = int(y[0])  # a Python value of the data
        return fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * (1.0 + first))
    w.step = step


@program(REFUSE)
def labels_summed_in_python(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * (1.0 + sum(y) / 10.0))


@program(REFUSE)
def labels_tolist(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y.tolist()))


@program(REFUSE, data=xy(n=1))
def batch1_ravel_labels(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y.ravel()))


@program(REFUSE, data=xy(n=1))
def batch1_squeeze_unsqueeze(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(x.squeeze(0)[None])), y))


@program(REFUSE, data=xy(n=1))
def batch1_first_row(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(x[0:1])), y))


@program(EQ)
def shape_and_dtype_reads(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        n, d = x.shape
        scale = 1.0 / (n * d) if x.dtype == np.float32 and x.ndim == 2 else 1.0
        return fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * scale * len(y))
    w.step = step


@program(EQ)
def one_hot_through_the_library(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        t = F.one_hot(w.g.constant(y), 3).astype(F32)
        return fit_step(w, F.mse_loss(model(w.g.constant(x)).softmax(axis=-1), t))
    w.step = step


@program(EQ)
def raw_array_operand_of_a_tensor_op(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any, noise: Any) -> Any:
        out = model(w.g.constant(x) + noise)  # an input array as the operand of a tensor op
        return fit_step(w, F.cross_entropy(out, y))
    w.step = step


PROGRAMS[-1].data = with_extra(xy(), lambda r, i: r.normal(size=(6, 4)).astype(F32))


# === writes into an input ===========================================================================

def _write_input(write: Callable[[Any], None]) -> Callable[[World], None]:
    def build(w: World) -> None:
        model, _ = standard(w)

        def step(x: Any, y: Any) -> Any:
            write(x)
            return fit_step(w, F.cross_entropy(model(w.g.constant(x)), y))
        w.step = step
    return build


def _imul(x: Any) -> None:
    x *= 2.0


def _setitem(x: Any) -> None:
    x[:, 0] = 0.0


def _ufunc_out(x: Any) -> None:
    np.multiply(x, 0.5, out=x)


def _fill(x: Any) -> None:
    x.fill(0.25)


def _clip_out(x: Any) -> None:
    np.clip(x, -1.0, 1.0, out=x)


def _sort(x: Any) -> None:
    x.sort(axis=1)


for _name, _fn in {"input_imul": _imul, "input_setitem_column": _setitem, "input_ufunc_out": _ufunc_out,
                   "input_fill": _fill, "input_clip_out": _clip_out, "input_sorted_in_place": _sort}.items():
    program(REFUSE, name=_name)(_write_input(_fn))


@program(EQ)
def write_into_constant_of_input(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        xt = w.g.constant(x)  # a copy: writing into it leaves the caller's array alone
        with w.g.no_grad():
            xt *= 0.5
            xt[:, 0] = 1.0
        return fit_step(w, F.cross_entropy(model(xt), y))
    w.step = step


# === values read from outside the step, changed between calls ========================================

@dataclass(frozen=True)
class LossConfig:
    weight: float = 1.0
    smooth: float = 0.0


@program(EQ)
def frozen_dataclass_config_replaced(w: World) -> None:
    model, _ = standard(w)
    w.ns["cfg"] = LossConfig()

    def step(x: Any, y: Any) -> Any:
        cfg = w.ns["cfg"]
        return fit_step(w, F.cross_entropy(model(w.g.constant(x)), y, label_smoothing=cfg.smooth) * cfg.weight)
    w.step = step
    w.change = lambda i: w.ns.update(cfg=LossConfig(1.0 + i, 0.1 * (i % 3)))


@program(EQ)
def namespace_attribute(w: World) -> None:
    model, _ = standard(w)
    hp = types.SimpleNamespace(scale=1.0, l2=0.0)

    def step(x: Any, y: Any) -> Any:
        out = model(w.g.constant(x))
        return fit_step(w, F.cross_entropy(out, y) * hp.scale + (out * out).mean() * hp.l2)
    w.step = step

    def change(i: int) -> None:
        hp.scale, hp.l2 = 1.0 + 0.25 * i, 0.01 * (i % 2)
    w.change = change


@program(EQ)
def nested_dict_config(w: World) -> None:
    model, _ = standard(w)
    cfg: dict[str, Any] = {"loss": {"w": 1.0, "terms": ["ce"]}}

    def step(x: Any, y: Any) -> Any:
        out = model(w.g.constant(x))
        loss = F.cross_entropy(out, y) * cfg["loss"]["w"]
        if "l2" in cfg["loss"]["terms"]:
            loss = loss + (out * out).mean()
        return fit_step(w, loss)
    w.step = step

    def change(i: int) -> None:
        cfg["loss"]["w"] = 1.0 + i
        if i == 2:
            cfg["loss"]["terms"].append("l2")
    w.change = change


@program(EQ)
def global_dict_entry(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y,
                                                      label_smoothing=SETTINGS["smooth"]) * SETTINGS["w"])

    def change(i: int) -> None:
        SETTINGS["w"], SETTINGS["smooth"] = 1.0 + i, 0.05 * i
    w.change = change


@program(EQ)
def global_list_per_layer_scales(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        h = model[0](w.g.constant(x)) * LAYER_SCALES[0]
        return fit_step(w, F.cross_entropy(model[2](model[1](h)) * LAYER_SCALES[1], y))
    w.step = step

    def change(i: int) -> None:
        LAYER_SCALES[:] = [1.0 + 0.5 * i, 1.0 - 0.1 * i]
    w.change = change


class TemperedNet(og.nn.Module):
    """A user module whose forward reads a class attribute, a module global and an attribute function."""

    bias_on = True

    def __init__(self, g: og.Graph) -> None:
        super().__init__(g)
        self.body = mlp(g)
        self.act: Callable[[og.Tensor], og.Tensor] = F.gelu

    def forward(self, x: og.Tensor) -> og.Tensor:
        out: og.Tensor = self.act(self.body(x)) / TEMPERATURE
        return out + 0.1 if TemperedNet.bias_on else out


@program(EQ)
def module_class_attr_global_and_activation(w: World) -> None:
    net = TemperedNet(w.g)
    w.ns.update(model=net, opt=og.optim.SGD(net.parameters(), lr=0.1))
    w.track += [net]
    w.step = plain(w)

    def change(i: int) -> None:
        global TEMPERATURE
        TEMPERATURE = 1.0 + i
        TemperedNet.bias_on = i % 2 == 0
        net.act = [F.gelu, F.silu, og.tanh, F.gelu, F.softplus][i % 5]
    w.change = change


@program(EQ)
def module_swapped_in_sequential(w: World) -> None:
    model, _ = standard(w)
    w.step = plain(w)
    acts = [og.nn.ReLU(), og.nn.Tanh(), og.nn.GELU(), og.nn.Sigmoid(), og.nn.LeakyReLU(0.2)]

    def change(i: int) -> None:
        setattr(model, "1", acts[i % 5])
    w.change = change


@program(EQ)
def module_swapped_in_module_list(w: World) -> None:
    g = w.g
    blocks = og.nn.ModuleList([og.nn.Linear(g, 4, 4, rng=k) for k in range(3)])
    head = og.nn.Linear(g, 4, 3, rng=9)
    spare = og.nn.Linear(g, 4, 4, rng=11)
    params = blocks.parameters() + head.parameters() + spare.parameters()
    opt = og.optim.SGD(params, lr=0.05)
    w.track += [blocks, head, spare, opt]

    def step(x: Any, y: Any) -> Any:
        h = g.constant(x)
        for b in blocks:
            h = og.tanh(b(h))
        loss = F.cross_entropy(head(h), y)
        grads = g.backward(loss)
        opt.step(grads)
        return loss
    w.step = step
    original = blocks[1]

    def change(i: int) -> None:
        blocks[1] = spare if i % 2 else original
    w.change = change


@program(EQ)
def loss_function_chosen_by_variable(w: World) -> None:
    model, _ = standard(w)
    losses = {"ce": F.cross_entropy, "nll": lambda o, y: F.nll_loss(o.log_softmax(axis=-1), y),
              "smooth": functools.partial(F.cross_entropy, label_smoothing=0.2)}
    w.ns["which"] = "ce"
    w.step = lambda x, y: fit_step(w, losses[w.ns["which"]](model(w.g.constant(x)), y))
    w.change = lambda i: w.ns.update(which=["ce", "nll", "smooth", "ce", "smooth"][i])


@program(EQ)
def function_default_rebound(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any, scale: float = 1.0) -> Any:
        return fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * scale)
    w.step = step

    def change(i: int) -> None:
        step.__defaults__ = (1.0 + i,)
    w.change = change


@program(EQ)
def keyword_default_rebound(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any, *, scale: float = 1.0) -> Any:
        return fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * scale)
    w.step = step

    def change(i: int) -> None:
        step.__kwdefaults__ = {"scale": 1.0 + i}
    w.change = change


@program(EQ)
def partial_rebound_in_dict(w: World) -> None:
    model, _ = standard(w)

    def weighted(out: og.Tensor, y: Any, weight: float) -> og.Tensor:
        return F.cross_entropy(out, y) * weight
    w.ns["loss"] = functools.partial(weighted, weight=1.0)
    w.step = lambda x, y: fit_step(w, w.ns["loss"](model(w.g.constant(x)), y))
    w.change = lambda i: w.ns.update(loss=functools.partial(weighted, weight=1.0 + i))


@program(EQ)
def whole_model_train_eval_toggled(w: World) -> None:
    model, _ = standard(w, drop=0.4, bn=True)
    w.step = plain(w)
    w.change = lambda i: model.train(i % 2 == 0)


@program(EQ)
def training_flag_set_on_one_submodule(w: World) -> None:
    model, _ = standard(w, drop=0.4, bn=True)
    w.step = plain(w)

    def change(i: int) -> None:
        model[1].training = i % 3 != 1  # BatchNorm alone
        model[3].training = i % 2 == 0  # Dropout alone
    w.change = change


@program(EQ)
def params_frozen_by_leaving_the_optimizer(w: World) -> None:
    model, _ = standard(w)
    first = og.optim.SGD(model.parameters(), lr=0.1)
    head_only = og.optim.SGD(model[2].parameters(), lr=0.1)
    w.ns["opt"] = first
    w.track += [first, head_only]
    w.step = plain(w)
    w.change = lambda i: w.ns.update(opt=head_only if i in (1, 2) else first)


@program(EQ)
def optimizer_hyper_parameters_changed(w: World) -> None:
    model, opt = standard(w, opt="adam")
    w.step = plain(w)

    def change(i: int) -> None:
        opt.lr = [1e-2, 3e-2, 1e-3, 5e-2, 1e-2][i]
        opt.param_groups[0]["betas"] = [(0.9, 0.999), (0.5, 0.9), (0.0, 0.99), (0.9, 0.9), (0.8, 0.999)][i]
        opt.param_groups[0]["eps"] = [1e-8, 1e-3, 1e-8, 1e-1, 1e-6][i]
    w.change = change


@program(EQ)
def sgd_momentum_and_weight_decay_changed(w: World) -> None:
    model, opt = standard(w)
    w.step = plain(w)

    def change(i: int) -> None:
        opt.momentum = [0.9, 0.0, 0.5, 0.99, 0.9][i]
        opt.weight_decay = [0.0, 0.1, 0.0, 0.01, 0.5][i]
    w.change = change


@program(EQ)
def scheduler_stepped_outside_cosine(w: World) -> None:
    model, opt = standard(w, opt="adamw")
    sched = og.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    w.step = plain(w)
    w.change = lambda i: sched.step() if i else None


@program(EQ)
def graph_rng_reseeded_in_place(w: World) -> None:
    model, _ = standard(w, drop=0.5)
    w.step = plain(w)

    def change(i: int) -> None:
        if i % 2:
            w.g.rng.bit_generator.state = np.random.default_rng(i).bit_generator.state
    w.change = change


@program(EQ)
def numpy_global_seed_between_calls(w: World) -> None:
    model, _ = standard(w, drop=0.5)
    w.step = plain(w)
    w.change = lambda i: np.random.seed(i)


@program(EQ)
def closure_generator_replaced_for_dropout(w: World) -> None:
    model, _ = standard(w)
    w.ns["gen"] = np.random.default_rng(3)

    def step(x: Any, y: Any) -> Any:
        return fit_step(w, F.cross_entropy(F.dropout(model(w.g.constant(x)), 0.3, rng=w.ns["gen"]), y))
    w.step = step
    w.change = lambda i: w.ns.update(gen=np.random.default_rng(10 + i)) if i == 2 else None


@program(EQ)
def zero_d_array_in_closure_edited(w: World) -> None:
    model, _ = standard(w)
    scale = np.array(1.0, F32)

    def step(x: Any, y: Any) -> Any:
        return fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * float(scale))
    w.step = step

    def change(i: int) -> None:
        scale[()] = 1.0 + i
    w.change = change


@program(EQ)
def numpy_scalar_in_closure_rebound(w: World) -> None:
    model, _ = standard(w)
    w.ns["s"] = np.float32(1.0)
    w.step = lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * w.ns["s"])
    w.change = lambda i: w.ns.update(s=np.float32(0.5 * (i + 1)))


# === Python state consumed inside the step ===========================================================

def _consumes(make: Callable[[], Any], take: Callable[[Any], float]) -> Callable[[World], None]:
    def build(w: World) -> None:
        model, _ = standard(w)
        w.ns["src"] = make()
        w.step = lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * take(w.ns["src"]))
    return build


def _lr_gen() -> Iterator[float]:
    lr = 1.0
    while True:
        yield lr
        lr *= 0.5


for _name, (_mk, _tk) in {
    "itertools_count_consumed": (lambda: itertools.count(1), lambda c: 1.0 / next(c)),
    "python_generator_consumed": (_lr_gen, next),
    "list_iterator_consumed": (lambda: iter([1.0, 0.5, 2.0, 0.25, 3.0, 1.5]), next),
    "deque_popped": (lambda: deque([1.0, 0.5, 2.0, 0.25, 3.0, 1.5]), lambda d: d.popleft()),
    "random_instance_drawn": (lambda: random.Random(0), lambda r: r.random()),
    "numpy_generator_draw_scalar": (lambda: np.random.default_rng(0), lambda r: float(r.random())),
}.items():
    program(EITHER, name=_name)(_consumes(_mk, _tk))


@program(EITHER)
def step_counter_attribute_of_trainer(w: World) -> None:
    model, _ = standard(w)

    class Trainer:
        def __init__(self) -> None:
            self.steps = 0

        def __call__(self, x: Any, y: Any) -> Any:
            self.steps += 1
            warm = min(1.0, self.steps / 3)
            return fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * warm)
    w.step = Trainer()


# === numpy scalars, Python values and aliasing among the inputs ===================================

@program(EQ, data=with_extra(xy(), lambda r, i: np.int64(2 + i % 3)))
def numpy_int_slice_bound(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any, k: Any) -> Any:
        out = model(w.g.constant(x))
        return fit_step(w, F.cross_entropy(out, y) + out[:k].mean() + out[k].sum())
    w.step = step


@program(EQ, data=with_extra(xy(), lambda r, i: np.bool_(i % 2 == 0)))
def numpy_bool_flag(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any, flag: Any) -> Any:
        out = model(w.g.constant(x))
        loss = F.cross_entropy(out, y)
        if flag:
            loss = loss + (out ** 2).mean()
        return fit_step(w, loss)
    w.step = step


@program(EQ, data=with_extra(xy(), lambda r, i: np.float32([0.0, 0.3, 0.6, 0.3, 0.0][i])))
def numpy_float_dropout_p(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y, p: fit_step(w, F.cross_entropy(F.dropout(model(w.g.constant(x)), p), y))


@program(EQ, data=with_extra(xy(), lambda r, i: np.float64([0.01, 10.0, 0.1, 0.01, 1.0][i])))
def numpy_float_clip_threshold(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any, c: Any) -> Any:
        loss = F.cross_entropy(model(w.g.constant(x)), y)
        grads = w.g.backward(loss)
        grads.clip_norm_(c)
        w.ns["opt"].step(grads)
        return loss
    w.step = step


@program(EQ, data=with_extra(xy(), lambda r, i: np.array(0.5 + i, F32)))
def zero_d_array_input_as_scale(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y, s: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * w.g.constant(s))


@program(REFUSE, data=with_extra(xy(), lambda r, i: np.array(0.5 + i, F32)))
def zero_d_array_input_to_float(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y, s: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * float(s))


def _view_pairs(kind: str) -> Data:
    def make(w: World, i: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        rng = np.random.default_rng(200 + i)
        big = rng.normal(size=(6, 8)).astype(F32)
        other = rng.normal(size=(6, 8)).astype(F32)
        a = big[:, :4]
        b = {"view": big[:, 4:], "overlap": big[:, 2:6], "same": big[:, :4]}[kind]
        if i % 2:  # then unrelated arrays of the same shapes
            b = other[:, 4:]
        return (a, b, rng.integers(0, 3, 6)), {}
    return make


def _two_inputs(w: World) -> None:
    model, _ = standard(w)

    def step(a: Any, b: Any, y: Any) -> Any:
        out = model(w.g.constant(a)) + model(w.g.constant(b))
        return fit_step(w, F.cross_entropy(out, y))
    w.step = step


for _kind in ("view", "overlap", "same"):
    program(EQ, data=_view_pairs(_kind), name=f"inputs_{_kind}_of_one_array")(_two_inputs)


@program(EQ, data=lambda w, i: ((np.asfortranarray(np.random.default_rng(i).normal(size=(6, 4)).astype(F32))
                                 if i % 2 else np.random.default_rng(i).normal(size=(4, 6)).astype(F32).T,
                                 np.random.default_rng(i).integers(0, 3, 6)), {}))
def non_contiguous_and_fortran_inputs(w: World) -> None:
    standard(w)
    w.step = plain(w)


@program(EQ, data=lambda w, i: ((np.random.default_rng(i).normal(size=(12, 4)).astype(F32)[::2],
                                 np.random.default_rng(i).integers(0, 3, 12)[1::2]), {}))
def strided_inputs(w: World) -> None:
    standard(w)
    w.step = plain(w)


@program(EQ, data=xy(n=lambda i: [6, 3, 6, 1, 3][i]))
def batch_size_changes(w: World) -> None:
    standard(w, bn=False, drop=0.2)
    w.step = plain(w)


@program(EQ, data=lambda w, i: xy(dtype=[F32, F64, F32, F64, F32][i])(w, i))
def dtype_alternates(w: World) -> None:
    model, _ = standard(w)
    w.step = plain(w)


@program(EQ, data=with_extra(xy(), kw_scale=lambda r, i: [1.0, 2.0, 1.0, 0.5, 2.0][i]))
def keyword_input_changes_value(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y, kw_scale=1.0: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * kw_scale)


@program(EQ, data=lambda w, i: (xy()(w, i)[0], {"scale": 2.0} if i % 2 else {}))
def keyword_input_sometimes_omitted(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y, scale=1.0: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y) * scale)


class Batch:
    """A batch holder reused by a data loader: its arrays are replaced at every batch."""

    def __init__(self) -> None:
        self.x: Any = None
        self.y: Any = None


@program(EITHER)
def reused_batch_object_as_input(w: World) -> None:
    model, _ = standard(w)
    holder = Batch()

    def step(b: Batch) -> Any:
        return fit_step(w, F.cross_entropy(model(w.g.constant(b.x)), b.y))

    def call(x: Any, y: Any, _step: Any = None) -> Any:
        holder.x, holder.y = x, y
        return (_step or step)(holder)
    w.step = step
    w.ns["holder"] = holder
    w.ns["call"] = call


class XY(NamedTuple):
    x: Any
    y: Any


@program(EQ, data=lambda w, i: ((XY(*xy()(w, i)[0]),), {}))
def named_tuple_batch_input(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda b: fit_step(w, F.cross_entropy(model(w.g.constant(b.x)), b.y))


@program(EQ, data=lambda w, i: (({"x": xy()(w, i)[0][0], "y": xy()(w, i)[0][1]},), {}))
def dict_batch_input(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda b: fit_step(w, F.cross_entropy(model(w.g.constant(b["x"])), b["y"]))


@program(EQ)
def callable_input_reads_a_closure(w: World) -> None:
    model, _ = standard(w)
    cfg = {"w": 1.0}

    def weighted(out: og.Tensor, y: Any) -> og.Tensor:
        return F.cross_entropy(out, y) * cfg["w"]
    w.ns["loss_fn"] = weighted
    w.step = lambda x, y, loss_fn: fit_step(w, loss_fn(model(w.g.constant(x)), y))

    def change(i: int) -> None:
        cfg["w"] = 1.0 + i
    w.change = change


PROGRAMS[-1].data = lambda w, i: ((*xy()(w, i)[0], w.ns["loss_fn"]), {})


@program(EQ)
def model_and_optimizer_as_inputs(w: World) -> None:
    model, opt = standard(w, drop=0.5)

    def step(m: og.nn.Module, o: Any, x: Any, y: Any) -> Any:
        loss = F.cross_entropy(m(w.g.constant(x)), y)
        o.step(w.g.backward(loss))
        return loss
    w.step = step

    def change(i: int) -> None:
        model[3].p = [0.5, 0.1, 0.9, 0.0, 0.5][i]
        opt.lr = [0.1, 0.01, 0.3, 0.1, 0.05][i]
    w.change = change


PROGRAMS[-1].data = lambda w, i: ((w.ns["model"], w.ns["opt"], *xy()(w, i)[0]), {})


# === data-dependent values and shapes =================================================================

@program(REFUSE)
def rows_selected_by_label_mask(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        out = model(w.g.constant(x))
        yt = w.g.constant(y)
        return fit_step(w, F.cross_entropy(out, y) + out[yt == 1].sum())
    w.step = step


@program(EITHER)
def pseudo_labels_from_argmax(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        out = model(w.g.constant(x))
        with w.g.no_grad():
            pseudo = out.argmax(axis=1)
        return fit_step(w, F.cross_entropy(out, y) + F.cross_entropy(out, pseudo) * 0.1)
    w.step = step


@program(EQ)
def gather_by_label_tensor(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        out = model(w.g.constant(x)).log_softmax(axis=-1)
        picked = og.take_along_axis(out, w.g.constant(y)[:, None], axis=1)
        return fit_step(w, -picked.mean())
    w.step = step


# === grad mode and inputs with history ==================================================================

@program(EQ)
def eval_step_with_and_without_outer_no_grad(w: World) -> None:
    model, _ = standard(w, drop=0.3, bn=True)

    def step(x: Any, y: Any) -> Any:
        model.eval()
        with w.g.no_grad():
            out = model(w.g.constant(x))
            loss = F.cross_entropy(out, y)
        model.train()
        return loss, out
    w.step = step
    w.ns["outer_no_grad"] = [False, True, False, True, True]


@program(EQ)
def no_grad_inside_chosen_by_flag(w: World) -> None:
    model, _ = standard(w)
    cfg = {"freeze_first": False}

    def step(x: Any, y: Any) -> Any:
        g = w.g
        if cfg["freeze_first"]:
            with g.no_grad():
                h = model[0](g.constant(x))
        else:
            h = model[0](g.constant(x))
        return fit_step(w, F.cross_entropy(model[2](model[1](h)), y))
    w.step = step

    def change(i: int) -> None:
        cfg["freeze_first"] = i % 2 == 1
    w.change = change


# === library value work on inputs ======================================================================

@program(EQ, data=lambda w, i: (xy()(w, i)[0][:1] + (np.where(np.arange(6) == i, -100,
                                                                  xy()(w, i)[0][1]),), {}))
def nll_ignore_index_moves(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y: fit_step(w, F.nll_loss(model(w.g.constant(x)).log_softmax(axis=-1), y))


@program(EQ)
def cross_entropy_weight_and_smoothing(w: World) -> None:
    model, _ = standard(w)
    cw = w.g.constant(np.array([1.0, 2.0, 0.5], F32))
    w.step = lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y, weight=cw, label_smoothing=0.1))


@program(EQ, data=with_extra(lambda w, i: ((xy()(w, i)[0][0],), {}),
                             lambda r, i: r.dirichlet(np.ones(3), 6).astype(F32)))
def soft_targets_input(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, t: fit_step(w, F.cross_entropy(model(w.g.constant(x)), t))


@program(EQ, data=with_extra(lambda w, i: ((xy()(w, i)[0][0],), {}),
                             lambda r, i: (r.random((6, 3)) > 0.5).astype(F32),
                             lambda r, i: (r.random(3) + 0.5).astype(F32)))
def bce_with_logits_pos_weight_inputs(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, t, pw: fit_step(w, F.binary_cross_entropy_with_logits(model(w.g.constant(x)), t,
                                                                             pos_weight=pw))


@program(EQ, data=with_extra(lambda w, i: ((xy()(w, i)[0][0],), {}),
                             lambda r, i: (r.random((6, 3)) * (1.5 if i == 3 else 1.0)).astype(F32)))
def bce_target_out_of_range_later(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, t: fit_step(w, F.binary_cross_entropy(model(w.g.constant(x)).sigmoid(), t))


@program(EQ, data=with_extra(lambda w, i: ((xy()(w, i)[0][0],), {}), lambda r, i: r.normal(size=(6, 3)).astype(F32)))
def regression_losses_array_target(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, t: Any) -> Any:
        out = model(w.g.constant(x))
        loss = F.smooth_l1_loss(out, t) + F.huber_loss(out, t, delta=0.5) + F.l1_loss(out, t) + F.mse_loss(out, t)
        return fit_step(w, loss)
    w.step = step


@program(EQ, data=with_extra(xy(), lambda r, i: (r.random((6, 3)) > 0.3)))
def where_with_input_condition(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any, keep: Any) -> Any:
        out = model(w.g.constant(x))
        return fit_step(w, F.cross_entropy(og.where(keep, out, out * 0.0), y))
    w.step = step


@program(EQ, data=with_extra(xy(), lambda r, i: r.integers(0, 3 if i != 3 else 4, (6, 1))))
def take_along_axis_input_index(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any, idx: Any) -> Any:
        out = model(w.g.constant(x))
        return fit_step(w, F.cross_entropy(out, y) + og.take_along_axis(out, idx, axis=1).mean())
    w.step = step


@program(EQ, data=with_extra(xy(), lambda r, i: float([-1.0, -0.5, -2.0, -1.0, 0.0][i]),
                             lambda r, i: float([1.0, 0.5, 2.0, 0.1, 1.0][i])))
def clip_bounds_as_python_inputs(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y, lo, hi: fit_step(w, F.cross_entropy(og.clip(model(w.g.constant(x)), lo, hi), y))


@program(EQ, data=lambda w, i: ((np.random.default_rng(i).normal(size=(6, 4)).astype(F32),
                                 np.random.default_rng(i).normal(size=(6, 3)).astype(F32)), {}))
def cosine_and_normalize_with_tensor_target(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, t: Any) -> Any:
        out = F.normalize(model(w.g.constant(x)))
        return fit_step(w, (1.0 - F.cosine_similarity(out, w.g.constant(t))).mean())
    w.step = step


@program(EITHER)
def micro_batches_accumulated_with_into(w: World) -> None:
    model, _ = standard(w, opt="adam")

    def step(x: Any, y: Any) -> Any:
        g = w.g
        xt, yt = g.constant(x), g.constant(y)
        grads = None
        total = None
        for k in range(0, len(y), 2):
            loss = F.cross_entropy(model(xt[k:k + 2]), yt[k:k + 2]) / 3.0
            grads = g.backward(loss) if grads is None else g.backward(loss, into=grads)
            total = loss if total is None else total + loss
        w.ns["opt"].step(grads)
        return total.detach()  # the sum's history is dropped: nothing is left pending
    w.step = step


@program(REFUSE)
def micro_batches_sliced_from_raw_input(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        g = w.g
        grads = g.backward(F.cross_entropy(model(g.constant(x[:3])), y[:3]))
        g.backward(F.cross_entropy(model(g.constant(x[3:])), y[3:]), into=grads)
        w.ns["opt"].step(grads)
        return grads
    w.step = step


@program(EQ)
def grads_scaled_by_hand_then_stepped(w: World) -> None:
    model, _ = standard(w)
    cfg = {"scale": 1.0}

    def step(x: Any, y: Any) -> Any:
        g = w.g
        loss = F.cross_entropy(model(g.constant(x)), y)
        grads = g.backward(loss)
        with g.no_grad():
            for p in model.parameters():
                p -= grads[p] * (0.1 * cfg["scale"])
        return loss
    w.step = step
    w.change = lambda i: cfg.update(scale=[1.0, 0.5, 2.0, 0.0, 1.0][i])


@program(EITHER)
def clip_norm_used_as_a_tensor_scale(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        g = w.g
        loss = F.cross_entropy(model(g.constant(x)), y)
        grads = g.backward(loss)
        norm = grads.clip_norm_(0.5)
        w.ns["opt"].step(grads)
        return loss * norm
    w.step = step


@program(EQ, data=with_extra(xy(), lambda r, i: int([7, 8, 7, 9, 8][i])))
def dropout_seed_input(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y, seed: fit_step(w, F.cross_entropy(F.dropout(model(w.g.constant(x)), 0.5, rng=seed), y))


@program(EQ)
def random_noise_from_graph_factories(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        g = w.g
        xt = g.constant(x) + g.randn(*x.shape) * 0.1 + (g.rand(*x.shape) - 0.5) * 0.1
        return fit_step(w, F.cross_entropy(model(xt), y))
    w.step = step


# === value checks made by library code =================================================================

def _bad_at(i_bad: int, fix: Callable[[Any], Any]) -> Data:
    def make(w: World, i: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        (x, y), kw = xy()(w, i)
        return ((x, fix(y.copy())) if i == i_bad else (x, y)), kw
    return make


def _set(at: int, value: int) -> Callable[[Any], Any]:
    def f(y: Any) -> Any:
        y[at] = value
        return y
    return f


@program(EQ, data=_bad_at(2, _set(0, 3)))
def nll_label_too_big_later(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y: fit_step(w, F.nll_loss(model(w.g.constant(x)).log_softmax(axis=-1), y))


@program(EQ, data=_bad_at(3, _set(2, 3)))
def one_hot_label_too_big_later(w: World) -> None:
    model, _ = standard(w)
    w.step = lambda x, y: fit_step(w, F.mse_loss(model(w.g.constant(x)), F.one_hot(w.g.constant(y), 3).astype(F32)))


@program(EQ, data=_bad_at(2, _set(1, -2)))
def weighted_ce_negative_label_later(w: World) -> None:
    model, _ = standard(w)
    cw = w.g.constant(np.array([1.0, 0.5, 2.0], F32))
    w.step = lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y, weight=cw, ignore_index=-1))


@program(EQ, data=lambda w, i: ((np.random.default_rng(i).integers(0, 10, (6, 3)) - (11 if i == 2 else 0),
                                 np.random.default_rng(i).integers(0, 3, 6)), {}))
def embedding_negative_index_later(w: World) -> None:
    emb = og.nn.Embedding(w.g, 10, 4, rng=2)
    model, _ = standard(w)
    eopt = og.optim.Adam(emb.parameters(), lr=1e-2)
    w.track += [emb, eopt]

    def step(idx: Any, y: Any) -> Any:
        loss = F.cross_entropy(model(emb(idx).mean(axis=1)), y)
        grads = w.g.backward(loss)
        w.ns["opt"].step(grads)
        eopt.step(grads)
        return loss
    w.step = step


@program(EQ, data=lambda w, i: ((np.abs(np.random.default_rng(i).normal(size=(6, 4)).astype(F32))
                                 * (-1.0 if i == 3 else 1.0), np.random.default_rng(i).integers(0, 3, 6)), {}))
def check_finite_nan_from_log_later(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        xt = og.log(w.g.constant(x) + 1e-3)  # nan for a negative batch
        loss = F.cross_entropy(model(xt), y)
        w.ns["opt"].step(w.g.backward(loss, check_finite=True))
        return loss
    w.step = step


# === random numbers and schedules inside the step ======================================================

@program(REFUSE)
def numpy_permutation_inside(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        order = np.random.permutation(6)
        return fit_step(w, F.cross_entropy(model(w.g.constant(x))[order], y))
    w.step = step


@program(REFUSE)
def closure_generator_noise_inside(w: World) -> None:
    model, _ = standard(w)
    gen = np.random.default_rng(4)

    def step(x: Any, y: Any) -> Any:
        noise = w.g.constant(gen.standard_normal((6, 4)).astype(F32))
        return fit_step(w, F.cross_entropy(model(w.g.constant(x) + noise), y))
    w.step = step


@program(EITHER)
def onecycle_scheduler_inside(w: World) -> None:
    model, opt = standard(w, opt="adam")
    sched = og.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)

    def step(x: Any, y: Any) -> Any:
        loss = fit_step(w, F.cross_entropy(model(w.g.constant(x)), y))
        sched.step()
        return loss
    w.step = step


# === models ============================================================================================

def _seq_data(t: int = 5, d: int = 4) -> Data:
    def make(w: World, i: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        rng = np.random.default_rng(300 + i)
        return (rng.normal(size=(3, t, d)).astype(F32), rng.integers(0, 3, 3)), {}
    return make


@program(EQ, data=_seq_data())
def lstm_classifier_with_clipping(w: World) -> None:
    g = w.g
    rnn = og.nn.LSTM(g, 4, 6, batch_first=True, rng=0)
    head = og.nn.Linear(g, 6, 3, rng=1)
    opt = og.optim.Adam(rnn.parameters() + head.parameters(), lr=1e-2)
    w.track += [rnn, head, opt]
    cfg = {"clip": 1.0}

    def step(x: Any, y: Any) -> Any:
        out, _ = rnn(g.constant(x))
        loss = F.cross_entropy(head(out[:, -1]), y)
        grads = g.backward(loss)
        grads.clip_norm_(cfg["clip"])
        opt.step(grads)
        return loss
    w.step = step
    w.change = lambda i: cfg.update(clip=[1.0, 0.01, 5.0, 0.1, 1.0][i])


@program(EQ, data=_seq_data())
def gru_hidden_state_carried_detached(w: World) -> None:
    g = w.g
    rnn = og.nn.GRU(g, 4, 6, batch_first=True, rng=0)
    head = og.nn.Linear(g, 6, 3, rng=1)
    opt = og.optim.SGD(rnn.parameters() + head.parameters(), lr=0.1)
    w.track += [rnn, head, opt]
    w.ns["h"] = None

    def step(x: Any, y: Any, h0: Any) -> Any:
        out, h = rnn(g.constant(x), g.constant(h0))
        loss = F.cross_entropy(head(out[:, -1]), y)
        opt.step(g.backward(loss))
        return loss, h.detach()
    w.step = step


PROGRAMS[-1].data = lambda w, i: (_seq_data()(w, i)[0] + (w.ns.get("h0") if w.ns.get("h0") is not None
                                                         else np.zeros((1, 3, 6), F32),), {})


@program(EQ, data=lambda w, i: ((np.random.default_rng(i).normal(size=(2, 1, 6, 6)).astype(F32),
                                 np.random.default_rng(i).integers(0, 3, 2)), {}))
def conv_pool_bn_dropout(w: World) -> None:
    g = w.g
    net = og.nn.Sequential(og.nn.Conv2d(g, 1, 2, 3, padding=1, rng=0), og.nn.ReLU(), og.nn.MaxPool2d(2),
                           og.nn.Flatten(), og.nn.Dropout(0.2), og.nn.Linear(g, 18, 8, rng=1),
                           og.nn.BatchNorm1d(g, 8), og.nn.Linear(g, 8, 3, rng=2))
    opt = og.optim.RMSprop(net.parameters(), lr=1e-2)
    w.ns.update(model=net, opt=opt)
    w.track += [net, opt]
    w.step = plain(w)
    w.change = lambda i: net[6].__setattr__("momentum", [0.1, 0.5, 0.1, 0.9, 0.3][i])


@program(EQ, data=lambda w, i: ((np.random.default_rng(i).normal(size=(2, 4, 8)).astype(F32),
                                 np.random.default_rng(i).random((2, 4)) < [0.0, 0.0, 0.0, 0.5]), {}))
def attention_with_padding_mask_input(w: World) -> None:
    g = w.g
    mha = og.nn.MultiheadAttention(g, 8, 2, batch_first=True, rng=0)
    opt = og.optim.Adam(mha.parameters(), lr=1e-2)
    w.track += [mha, opt]

    def step(x: Any, pad: Any) -> Any:
        xt = g.constant(x)
        out, _ = mha(xt, xt, xt, key_padding_mask=pad)
        loss = (out * out).mean()
        opt.step(g.backward(loss))
        return loss
    w.step = step


@program(EQ, data=lambda w, i: ((np.random.default_rng(i).normal(size=(2, 4, 8)).astype(F32),), {}))
def transformer_encoder_eval_toggled(w: World) -> None:
    g = w.g
    enc = og.nn.TransformerEncoder(og.nn.TransformerEncoderLayer(g, 8, 2, 16, dropout=0.1, batch_first=True,
                                                                 rng=0), 2)
    opt = og.optim.AdamW(enc.parameters(), lr=1e-2)
    w.track += [enc, opt]

    def step(x: Any) -> Any:
        out = enc(g.constant(x))
        loss = (out * out).mean()
        opt.step(g.backward(loss))
        return loss
    w.step = step
    w.change = lambda i: enc.train(i != 2)


@program(EITHER)
def ema_of_a_batchnorm_model_decay_from_dict(w: World) -> None:
    model, _ = standard(w, bn=True, opt="nadam")
    ema = og.optim.EMA(model, decay=0.9)
    w.track += [ema]
    cfg = {"decay": 0.9}

    def step(x: Any, y: Any) -> Any:
        loss = fit_step(w, F.cross_entropy(model(w.g.constant(x)), y))
        ema.decay = cfg["decay"]
        ema.update()
        return loss
    w.step = step
    w.change = lambda i: cfg.update(decay=[0.9, 0.5, 0.99, 0.9, 0.0][i])


def _other_optimizer(kind: str) -> Callable[[World], None]:
    def build(w: World) -> None:
        model, opt = standard(w, opt=kind, drop=0.2)
        w.step = plain(w)
        w.change = lambda i: setattr(opt, "lr", opt.lr * 0.5) if i == 3 else None
    return build


for _opt in ("rmsprop", "adagrad", "nadam", "radam", "adamax", "adadelta"):
    program(EQ, name=f"optimizer_{_opt}_lr_halved")(_other_optimizer(_opt))


# === control flow: Protocols, decorators, methods, exceptions =========================================

class LossFn(Protocol):
    def __call__(self, out: og.Tensor, y: Any) -> og.Tensor: ...


@dataclass
class FocalLoss:
    """A loss object satisfying the LossFn protocol, with a setting the user tunes between calls."""

    gamma: float = 2.0

    def __call__(self, out: og.Tensor, y: Any) -> og.Tensor:
        logp = out.log_softmax(axis=-1)
        p = og.exp(logp)
        return F.nll_loss(((1.0 - p) ** self.gamma) * logp, y)


@program(EQ)
def protocol_loss_object_attribute(w: World) -> None:
    model, _ = standard(w)
    loss_fn: LossFn = FocalLoss()
    w.step = lambda x, y: fit_step(w, loss_fn(model(w.g.constant(x)), y))

    def change(i: int) -> None:
        loss_fn.gamma = [2.0, 0.0, 1.0, 3.0, 2.0][i]  # type: ignore[attr-defined]
    w.change = change


def scaled(factor_of: Callable[[], float]) -> Callable[[Callable[..., og.Tensor]], Callable[..., og.Tensor]]:
    """A decorator that scales a loss function's result by a factor read at call time."""
    def deco(fn: Callable[..., og.Tensor]) -> Callable[..., og.Tensor]:
        @functools.wraps(fn)
        def wrapper(*a: Any) -> og.Tensor:
            return fn(*a) * factor_of()
        return wrapper
    return deco


@program(EQ)
def decorated_loss_reads_a_closure(w: World) -> None:
    model, _ = standard(w)
    box = [1.0]

    @scaled(lambda: box[0])
    def loss_of(x: Any, y: Any) -> og.Tensor:
        return F.cross_entropy(model(w.g.constant(x)), y)
    w.step = lambda x, y: fit_step(w, loss_of(x, y))

    def change(i: int) -> None:
        box[0] = 1.0 + i
    w.change = change


class Learner:
    """A training-loop object: the step is its bound method, its settings are attributes."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.model, self.opt = standard(w, drop=0.3)
        self.mixup = 0.0

    def loss(self, x: Any, y: Any) -> og.Tensor:
        out = self.model(self.w.g.constant(x))
        loss = F.cross_entropy(out, y)
        return loss * (1.0 - self.mixup) + (out ** 2).mean() * self.mixup

    def step(self, x: Any, y: Any) -> og.Tensor:
        return fit_step(self.w, self.loss(x, y))


@program(EQ)
def bound_method_of_a_learner(w: World) -> None:
    learner = Learner(w)
    w.step = learner.step

    def change(i: int) -> None:
        learner.mixup = 0.1 * i
        if i == 3:
            learner.model = mlp(w.g, drop=0.3)  # a fresh model the optimizer does not hold: refused or eager
            learner.opt = og.optim.SGD(learner.model.parameters(), lr=0.1)
            w.ns["opt"] = learner.opt
            w.track += [learner.model]
    w.change = change


@program(EQ)
def user_exception_after_the_update(w: World) -> None:
    model, _ = standard(w)
    cfg = {"fail": False}

    def step(x: Any, y: Any) -> Any:
        loss = fit_step(w, F.cross_entropy(model(w.g.constant(x)), y))
        if cfg["fail"]:
            raise ValueError("the user's own check failed after the update")
        return loss
    w.step = step
    w.change = lambda i: cfg.update(fail=i in (0, 2))


@program(EQ, data=_bad_at(0, _set(0, 5)))
def first_call_raises_then_retried(w: World) -> None:
    standard(w, bn=True)
    w.step = plain(w)


@program(EQ)
def returns_param_views_and_grads(w: World) -> None:
    model, _ = standard(w)

    def step(x: Any, y: Any) -> Any:
        loss = F.cross_entropy(model(w.g.constant(x)), y)
        grads = w.g.backward(loss)
        gw = grads[model[0].weight]
        w.ns["opt"].step(grads)
        return {"loss": loss, "w_rows": model[0].weight[:2], "gw": gw, "bias": model[2].bias}
    w.step = step


@program(REFUSE)
def another_graph_updated_inside_the_step(w: World) -> None:
    model, _ = standard(w)
    other = og.Graph()
    teacher = mlp(other)
    topt = og.optim.SGD(teacher.parameters(), lr=0.1)
    w.track += [teacher]
    probe = np.ones((2, 4), F32)

    def step(x: Any, y: Any) -> Any:
        tl = (teacher(other.constant(probe)) ** 2).mean()  # a separate graph: not part of this step
        topt.step(other.backward(tl))
        return fit_step(w, F.cross_entropy(model(w.g.constant(x)), y))
    w.step = step


@program(REFUSE)
def teacher_on_another_graph_read_by_value(w: World) -> None:
    model, _ = standard(w)
    other = og.Graph()
    teacher = mlp(other)
    w.track += [teacher]
    probe = np.ones((6, 4), F32)

    def step(x: Any, y: Any) -> Any:
        target = teacher(other.constant(probe)).numpy()  # a value of another graph, taken inside the step
        out = model(w.g.constant(x))
        return fit_step(w, F.cross_entropy(out, y) + F.mse_loss(out, target))
    w.step = step

    def change(i: int) -> None:
        with other.no_grad():
            for p in teacher.parameters():
                p *= 0.5  # the teacher moves between calls
    w.change = change


@program(REFUSE)
def hand_update_of_another_graph_inside(w: World) -> None:
    model, _ = standard(w)
    other = og.Graph()
    bias = other.param(np.zeros(3, F32))
    w.track += [bias]
    w.ns["bias"] = bias

    def step(x: Any, y: Any) -> Any:
        b = w.ns["bias"]
        with other.no_grad():
            b += 0.1  # a counter kept as a tensor of another graph
        return fit_step(w, F.cross_entropy(model(w.g.constant(x)), y))
    w.step = step


def _inner_step(w: World) -> Callable[..., Any]:
    model = w.ns["model"]
    return lambda x, y: fit_step(w, F.cross_entropy(model(w.g.constant(x)), y))


@program(REFUSE)
def step_calls_an_already_captured_step(w: World) -> None:
    standard(w)
    inner = w.g.capture(_inner_step(w)) if w.ns.get("captured", True) else _inner_step(w)
    warm = xy()(w, 9)[0]
    inner(*warm)  # captured (or run) once before

    def step(x: Any, y: Any) -> Any:
        loss = inner(x, y)
        return fit_step(w, F.cross_entropy(w.ns["model"](w.g.constant(x)), y) * 0.5) + loss * 0.0
    w.step = step


@program(REFUSE)
def step_calls_a_captured_step_of_another_graph(w: World) -> None:
    standard(w)
    other = og.Graph()
    twin = World(other)
    standard(twin)
    inner = other.capture(_inner_step(twin))
    w.track += [twin.ns["model"]]

    def step(x: Any, y: Any) -> Any:
        inner(x, y)  # the other graph's model trains on the same batch
        return fit_step(w, F.cross_entropy(w.ns["model"](w.g.constant(x)), y))
    w.step = step


# --- the runner -------------------------------------------------------------------------------------

def _arrays(out: Any) -> list[Any]:
    if isinstance(out, og.Tensor):
        return [out.numpy()]
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _arrays(o)]
    if isinstance(out, dict):
        return [a for k in sorted(out) for a in _arrays(out[k])]
    if isinstance(out, (XY, Batch)):
        return _arrays(list(vars(out).values()) if isinstance(out, Batch) else list(out))
    if isinstance(out, (og.nn.Module, og.optim.optimizer.Optimizer)) or callable(out):
        return []
    return [np.asarray(out)]


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b))


def _call(w: World, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
          i: int) -> tuple[str, Any]:
    if "call" in w.ns:
        f = functools.partial(w.ns["call"], _step=f)
    outer = w.ns.get("outer_no_grad")
    try:
        if outer is not None and outer[i]:
            with w.g.no_grad():
                return "ok", f(*args, **kwargs)
        return "ok", f(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the outcome is compared, whatever it is
        return "err", e


@dataclass
class Outcome:
    result: str  # "eq", "refused", or what went wrong: "differs", "missed-raise", "bad-refusal", ...
    detail: str = ""


def run(p: Program, verify: bool = False) -> Outcome:
    """The program eagerly and captured, call by call; the first broken promise, or how it ended."""
    eager, cap = World(og.Graph()), World(og.Graph())
    p.build(eager)
    p.build(cap)
    step = cap.g.capture(cap.step, verify=verify)
    ran = 0
    for i in range(p.steps):
        eager.change(i)
        cap.change(i)
        (ea, ek), (ca, ck) = p.data(eager, i), p.data(cap, i)
        before = cap.state()
        e = c = ("", None)
        e = _call(eager, eager.step, ea, ek, i)
        c = _call(cap, step, ca, ck, i)
        if c[0] == "err" and isinstance(c[1], og.GraphError) and "g.capture" in str(c[1]):
            msg = str(c[1])
            if THIS not in msg:
                return Outcome("bad-refusal", f"call {i}: the refusal names no line of the program: {msg}")
            if not _same(before, cap.state()) or cap.g.pending():
                return Outcome("bad-refusal", f"call {i}: the refusal changed the state or left results pending")
            return Outcome("refused", msg.splitlines()[0])
        if e[0] == "err":
            if c[0] != "err":
                return Outcome("missed-raise", f"call {i}: eager raised {e[1]!r}, the captured call did not")
            if not isinstance(c[1], type(e[1])):
                return Outcome("other-raise", f"call {i}: eager raised {e[1]!r}, captured {c[1]!r}")
        elif c[0] == "err":
            return Outcome("spurious-raise", f"call {i}: the captured call raised {c[1]!r}, eager did not")
        elif not _same(_arrays(e[1]), _arrays(c[1])):
            return Outcome("differs", f"call {i}: different results")
        else:
            ran += 1
        if not _same(eager.state(), cap.state()):
            return Outcome("differs", f"call {i}: different params, buffers or optimizer state")
        if not _same(_arrays(list(ea)), _arrays(list(ca))):
            return Outcome("differs", f"call {i}: the inputs were left different")
        if isinstance(e[1], tuple) and len(e[1]) == 2 and isinstance(e[1][1], og.Tensor):
            eager.ns["h0"], cap.ns["h0"] = e[1][1].numpy(), c[1][1].numpy()  # a carried state, as data
    if not ran:
        return Outcome("never-ran", f"every call raised, eagerly too: {e[1]!r}")
    return Outcome("eq", f"{step.replays} replays")


@pytest.mark.parametrize("p", PROGRAMS, ids=lambda p: p.name)
def test_captured_program_equals_eager_or_refuses(p: Program) -> None:
    out = run(p)
    assert out.result in ("eq", "refused"), f"{p.name}: {out.result}: {out.detail}"
    assert out.result == "refused" or p.expect != REFUSE, f"{p.name}: expected a refusal, got {out.detail}"
    assert out.result == "eq" or p.expect != EQ, f"{p.name}: refused: {out.detail}"


def test_replays_from_another_thread_equal_eager() -> None:
    p = next(q for q in PROGRAMS if q.name == "whole_model_train_eval_toggled")
    eager, cap = World(og.Graph()), World(og.Graph())
    p.build(eager)
    p.build(cap)
    step = cap.g.capture(cap.step)
    for i in range(p.steps):
        eager.change(i)
        cap.change(i)
        (ea, _), (ca, _) = p.data(eager, i), p.data(cap, i)
        out: list[Any] = []
        t = threading.Thread(target=functools.partial(_into, out, step, ca))  # replayed in other threads
        t.start()
        t.join()
        assert _same(_arrays(eager.step(*ea)), _arrays(out[0])) and _same(eager.state(), cap.state())
    assert step.replays >= 2


def _into(out: list[Any], step: Callable[..., Any], args: tuple[Any, ...]) -> None:
    out.append(step(*args))


def _fit_history(capture: bool, loss_fn: Callable[[og.Tensor, Any], og.Tensor]) -> tuple[Any, list[np.ndarray]]:
    g = og.Graph()
    model = mlp(g, drop=0.3, bn=True)
    opt = og.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(2)
    xs, ys = rng.normal(size=(40, 4)).astype(F32), rng.integers(0, 3, 40)
    seen: list[float] = []

    def metric(out: og.Tensor, y: og.Tensor) -> float:  # a callback with Python state, outside the step
        seen.append(1.0)
        return float(len(seen))

    hist = og.fit(model, og.data.batches(xs, ys, 8, rng=0), loss_fn, opt, epochs=2, progress=False,
                  capture=capture, metrics={"calls": metric})
    w = World(g, track=[model, opt])
    return hist, w.state()


@pytest.mark.parametrize("loss", ["plain", "numpy_on_labels"])
def test_fit_captured_equals_fit_eager_with_a_callback(loss: str) -> None:
    def numpy_loss(out: og.Tensor, y: og.Tensor) -> og.Tensor:
        return F.cross_entropy(out, y) * (1.0 + float(np.asarray(y.numpy()).mean()) * 0.0)  # refused: fit goes eager
    fn = F.cross_entropy if loss == "plain" else numpy_loss
    a, sa = _fit_history(False, fn)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        b, sb = _fit_history(True, fn)
    assert a == b and _same(sa, sb)
