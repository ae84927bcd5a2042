"""The layers, losses, inits and distributions a PyTorch port reaches for, on the fake device of
tests/backend_double.py (which refuses every hidden host round trip): values and gradients equal the
CPU's, so the same code runs on cupy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import backend_double
import owngrad as og
from device_runs import compare

FAKE = backend_double.DEVICE
R = np.random.default_rng(8)
W = np.array([0.5, 2.0, 1.0, 1.5])


def _init_then_use(w: og.Tensor) -> og.Tensor:
    og.nn.init.orthogonal_(w, rng=0)
    out: og.Tensor = w * 2.0
    og.nn.init.xavier_uniform_(w, rng=1)  # after its last read: the write is allowed
    og.nn.init.zeros_(w[0])
    return out


def _losses(x: og.Tensor) -> og.Tensor:
    labels = np.array([0, 3, -100, 2])
    ce = og.nn.CrossEntropyLoss(weight=W, label_smoothing=0.1)(x, labels)
    soft = og.nn.CrossEntropyLoss(weight=W)(x, np.full((4, 4), 0.25))
    bce = og.nn.BCEWithLogitsLoss(pos_weight=W, weight=W)(x, np.full((4, 4), 0.3))
    out: og.Tensor = ce + soft + bce + og.nn.KLDivLoss("batchmean")(x.log_softmax(axis=-1), np.full((4, 4), 0.25))
    return out


def _distributions(loc: og.Tensor, m: og.Tensor) -> og.Tensor:
    value = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    mvn = og.distributions.MultivariateNormal(loc, covariance_matrix=m)
    cat = og.distributions.Categorical(logits=loc)
    nrm = og.distributions.Normal(loc, 1.5)
    out: og.Tensor = (mvn.log_prob(value) + mvn.rsample().sum(axis=-1) + mvn.entropy() + cat.entropy()
                      + cat.log_prob(cat.sample()) + nrm.log_prob(nrm.rsample()).sum(axis=-1))
    return out


def _transformer(x: og.Tensor) -> og.Tensor:
    layer = og.nn.TransformerDecoderLayer(x.graph, 4, 2, 8, dropout=0.0, norm_first=True, rng=0,
                                          dtype=np.float64)
    mask = og.nn.Transformer.generate_square_subsequent_mask(3, np.float64)
    return layer(x, x[:, ::-1], tgt_mask=mask, tgt_is_causal=True)


def _double(x: og.Tensor) -> og.Tensor:
    model = og.nn.Sequential(og.nn.Linear(x.graph, 4, 3, rng=0), og.nn.LayerNorm(x.graph, 3)).double()
    return model(x)


CASES: list[tuple[str, Callable[..., og.Tensor], list[np.ndarray]]] = [
    ("init", _init_then_use, [R.standard_normal((3, 4))]),
    ("loss modules", _losses, [R.standard_normal((4, 4))]),
    ("distributions", _distributions, [R.standard_normal((3, 4)), np.diag(R.uniform(0.5, 2.0, 4))]),
    ("transformer", _transformer, [R.standard_normal((3, 2, 4))]),
    ("module.double", _double, [R.standard_normal((5, 4))]),
]


@pytest.mark.parametrize("name,fn,arrays", CASES, ids=[c[0] for c in CASES])
def test_on_the_fake_device(name: str, fn: Any, arrays: list[np.ndarray]) -> None:
    compare(FAKE, name, fn, arrays)
