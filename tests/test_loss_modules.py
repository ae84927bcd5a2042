"""Loss modules against torch's in float64: values and gradients, with weights, ignored samples,
label smoothing and pos_weight, for every reduction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import owngrad as og

R = np.random.default_rng(0)
X = R.standard_normal((6, 4))
LABELS = np.array([0, 3, 1, -100, 2, 3])
CLEAN = np.array([0, 3, 1, 1, 2, 3])
W = np.array([0.5, 2.0, 1.0, 1.5])
P = 1 / (1 + np.exp(-R.standard_normal((6, 4))))
T = R.uniform(0, 1, (6, 4))
Y = R.standard_normal((6, 4))

# (id, build(module namespace, tensor maker), input, target maker)
CASES: list[tuple[str, Callable[[Any, Any], Any], np.ndarray, Callable[[Any], Any], str]] = [
    ("nll", lambda nn, t: nn.NLLLoss(), X, lambda t: t(CLEAN), "logp"),
    ("nll weight ignore", lambda nn, t: nn.NLLLoss(weight=t(W)), X, lambda t: t(LABELS), "logp"),
    ("ce", lambda nn, t: nn.CrossEntropyLoss(), X, lambda t: t(CLEAN), ""),
    ("ce weight", lambda nn, t: nn.CrossEntropyLoss(weight=t(W)), X, lambda t: t(CLEAN), ""),
    ("ce ignore", lambda nn, t: nn.CrossEntropyLoss(), X, lambda t: t(LABELS), ""),
    ("ce ignore smoothing", lambda nn, t: nn.CrossEntropyLoss(label_smoothing=0.2), X, lambda t: t(LABELS), ""),
    ("ce weight ignore smoothing", lambda nn, t: nn.CrossEntropyLoss(weight=t(W), ignore_index=2,
                                                                     label_smoothing=0.1), X, lambda t: t(CLEAN), ""),
    ("ce probabilities", lambda nn, t: nn.CrossEntropyLoss(label_smoothing=0.1), X,
     lambda t: t(T / T.sum(1, keepdims=True)), ""),
    ("ce probabilities weight", lambda nn, t: nn.CrossEntropyLoss(weight=t(W), label_smoothing=0.1), X,
     lambda t: t(T / T.sum(1, keepdims=True)), ""),
    ("mse", lambda nn, t: nn.MSELoss(), X, lambda t: t(Y), ""),
    ("l1", lambda nn, t: nn.L1Loss(), X, lambda t: t(Y), ""),
    ("smooth l1", lambda nn, t: nn.SmoothL1Loss(beta=0.5), X, lambda t: t(Y), ""),
    ("huber", lambda nn, t: nn.HuberLoss(delta=0.7), X, lambda t: t(Y), ""),
    ("bce", lambda nn, t: nn.BCELoss(), P, lambda t: t(T), ""),
    ("bce weight", lambda nn, t: nn.BCELoss(weight=t(W)), P, lambda t: t(T), ""),
    ("bce logits", lambda nn, t: nn.BCEWithLogitsLoss(), X, lambda t: t(T), ""),
    ("bce logits weights", lambda nn, t: nn.BCEWithLogitsLoss(weight=t(W), pos_weight=t(W[::-1].copy())), X,
     lambda t: t(T), ""),
    ("kl", lambda nn, t: nn.KLDivLoss(), X, lambda t: t(T), "logp"),
    ("kl log target", lambda nn, t: nn.KLDivLoss(log_target=True), X, lambda t: t(np.log(T)), "logp"),
]
REDUCTIONS = ["mean", "sum", "none"]
pytestmark = pytest.mark.filterwarnings("ignore:reduction. .mean. divides the total loss")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,build,x,target,kind", CASES, ids=[c[0] for c in CASES])
def test_loss_module_matches_torch(name: str, build: Any, x: np.ndarray, target: Any, kind: str,
                                   reduction: str) -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    p = g.param(x)
    inp = p.log_softmax(axis=-1) if kind == "logp" else p
    ours = build(og.nn, np.asarray)
    ours.reduction = reduction
    out = ours(inp, target(np.asarray))
    grads = g.backward(out, seed=np.cos(np.arange(out.size)).reshape(out.shape))
    tp = torch.tensor(x, requires_grad=True)
    tinp = tp.log_softmax(-1) if kind == "logp" else tp
    theirs = build(torch.nn, torch.tensor)
    theirs.reduction = reduction
    tout = theirs(tinp, target(torch.tensor))
    tout.backward(torch.tensor(np.cos(np.arange(out.size)).reshape(out.shape)))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grads[p].numpy(), tp.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_kl_div_batchmean_and_default_reduction_are_torchs() -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    logp = g.param(np.log(T / T.sum(1, keepdims=True)))
    for red in ("batchmean", "mean"):
        ours = og.nn.KLDivLoss(red) if red != "mean" else og.nn.KLDivLoss()
        theirs = torch.nn.KLDivLoss(reduction=red)
        np.testing.assert_allclose(ours(logp, P).numpy(),
                                   theirs(torch.tensor(logp.numpy()), torch.tensor(P)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(og.nn.functional.kl_div(logp, P).numpy(),
                               torch.nn.functional.kl_div(torch.tensor(logp.numpy()), torch.tensor(P)).numpy(),
                               rtol=1e-12)


def test_loss_modules_check_their_reduction() -> None:
    with pytest.raises(ValueError, match="MSELoss: reduction must be one of"):
        og.nn.MSELoss("avg")
    with pytest.raises(ValueError, match="batchmean"):
        og.nn.L1Loss("batchmean")
    assert og.nn.KLDivLoss("batchmean").reduction == "batchmean"
    assert repr(og.nn.HuberLoss()) == "HuberLoss(reduction='mean')"


def test_class_weights_given_as_tensors_are_buffers_under_torchs_keys() -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    for name, kw in [("CrossEntropyLoss", ["weight"]), ("NLLLoss", ["weight"]), ("BCELoss", ["weight"]),
                     ("BCEWithLogitsLoss", ["weight", "pos_weight"])]:
        ours = getattr(og.nn, name)(**{k: g.constant(W) for k in kw})
        theirs = getattr(torch.nn, name)(**{k: torch.tensor(W) for k in kw})
        assert list(ours.state_dict()) == list(theirs.state_dict()), name
    assert list(og.nn.CrossEntropyLoss(weight=W).state_dict()) == []  # an array stays a plain attribute
