"""Finite-difference gradient checks for owngrad, in the style of HIPS autograd's ``check_grads``.

The reverse-mode result is compared with a numerical directional derivative: for a random output
cotangent ``v`` and a random input direction ``u``,

    <vjp(v), u>   must equal   (<f(x + eps u), v> - <f(x - eps u), v>) / (2 eps)

Central differences in float64 have an error of O(eps^2) from truncation and O(1e-16 / eps) from
rounding, so ``eps = 1e-6`` leaves about 1e-9 of slack: a wrong rule is off by O(1).

Usage::

    from gradcheck import check_grads
    check_grads(lambda x, y: (x * y).exp(), x_array, y_array)

``fn`` receives one owngrad tensor per array (floating arrays become params, the others -- integer
labels, boolean masks -- constants) and returns a tensor of any shape. Each call runs in a fresh
:class:`owngrad.Graph`, so tests never share state.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import owngrad as og

__all__ = ["check_grads", "check_grad_grads", "evaluate", "gradients", "recorded_ops", "second_order"]

Fn = Callable[..., og.Tensor]


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def _leaves(g: og.Graph, arrays: Sequence[np.ndarray], params: bool) -> list[og.Tensor]:
    return [g.param(a) if params and _is_float(a) else g.constant(a) for a in arrays]


def evaluate(fn: Fn, *arrays: np.ndarray) -> np.ndarray:
    """``fn``'s value on constants in a fresh graph (nothing recorded)."""
    g = og.Graph()
    out = fn(*_leaves(g, arrays, params=False))
    assert isinstance(out, og.Tensor), f"fn must return an owngrad Tensor, got {type(out).__name__}"
    return out.numpy()


def gradients(fn: Fn, *arrays: np.ndarray, seed: np.ndarray | None = None,
              ops: set[str] | None = None) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """``fn``'s value and the gradient of ``<fn(x), seed>`` for each floating array (None for the others).

    When ``ops`` is given, the names of the ops recorded before backward are added to it."""
    g = og.Graph()
    leaves = _leaves(g, arrays, params=True)
    out = fn(*leaves)
    assert isinstance(out, og.Tensor), f"fn must return an owngrad Tensor, got {type(out).__name__}"
    value = out.numpy()
    if ops is not None:  # to_dot walks the whole graph behind ``out``, views included
        ops.update(re.findall(r'label="#\d+ (\w+)', g.to_dot(out)))
    if seed is None:
        seed = np.ones(value.shape)
    grads = g.backward(out, seed=seed)
    result: list[np.ndarray | None] = []
    for leaf, a in zip(leaves, arrays):
        if not _is_float(a):
            result.append(None)
        elif leaf in grads:
            gr = grads[leaf]
            assert gr.shape == a.shape, f"gradient shape {gr.shape} != param shape {a.shape}"
            assert gr.dtype == a.dtype, f"gradient dtype {gr.dtype} != param dtype {a.dtype}"
            result.append(gr.numpy())
        else:  # the output does not depend on this input at all
            result.append(np.zeros_like(a))
    assert g.pending() == [], f"backward left nodes pending: {g.pending()}"
    return value, result


def recorded_ops(fn: Fn, *arrays: np.ndarray) -> set[str]:
    """The op names of the nodes ``fn`` records (views and in-place writes included)."""
    ops: set[str] = set()
    gradients(fn, *arrays, ops=ops)
    return ops


def check_grads(fn: Fn, *arrays: Any, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-6,
                n_dirs: int = 2, rng: int | np.random.Generator = 0) -> set[str]:
    """Check reverse-mode gradients of ``fn`` against central differences along random directions.

    Every floating array must be float64. Each input is checked on its own (so two wrong
    gradients cannot cancel) and all inputs together. Returns the recorded op names."""
    arrays = tuple(np.asarray(a) for a in arrays)
    for a in arrays:
        if _is_float(a):
            assert a.dtype == np.float64, f"finite differences need float64 inputs, got {a.dtype}"
    r = np.random.default_rng(rng)
    ops: set[str] = set()
    value0 = evaluate(fn, *arrays)
    v = r.standard_normal(value0.shape)
    value, grads = gradients(fn, *arrays, seed=v, ops=ops)
    np.testing.assert_allclose(value, value0, rtol=1e-12, atol=1e-12,
                               err_msg="recording changed the forward value")
    floats = [i for i, a in enumerate(arrays) if _is_float(a)]
    assert floats, "check_grads needs at least one floating input"
    groups = [[i] for i in floats] + ([floats] if len(floats) > 1 else [])
    for group in groups:
        for _ in range(n_dirs):
            us = {i: r.standard_normal(arrays[i].shape) for i in group}
            analytic = sum(float(np.sum(grads[i] * us[i])) for i in group)  # type: ignore[operator]
            plus = [a + eps * us[i] if i in us else a for i, a in enumerate(arrays)]
            minus = [a - eps * us[i] if i in us else a for i, a in enumerate(arrays)]
            numeric = float(np.sum((evaluate(fn, *plus) - evaluate(fn, *minus)) * v)) / (2 * eps)
            scale = max(abs(numeric), abs(analytic))
            assert abs(analytic - numeric) <= atol + rtol * scale, (
                f"gradient mismatch for inputs {group} (shapes {[arrays[i].shape for i in group]}): "
                f"vjp gives {analytic!r}, central differences {numeric!r}")
    return ops


# --- second order ---------------------------------------------------------------------------------
#
# For a cotangent ``v`` of the output and a weight ``w_i`` per input, ``S(x) = sum_i <grad_i(x), w_i>``
# (``grad = vjp of <fn(x), v>``) is a scalar function of the first-order gradients. Its gradient, computed
# by differentiating the gradients (``g.grad(..., create_graph=True)`` then ``g.grad(S, ...)``), must match
# central differences of ``S`` evaluated with plain first-order gradients -- which the first-order checks
# above already tie to the function itself.

def _floats(arrays: Sequence[np.ndarray]) -> list[int]:
    return [i for i, a in enumerate(arrays) if _is_float(a)]


def second_order(fn: Fn, *arrays: np.ndarray, v: np.ndarray, ws: Sequence[np.ndarray],
                 ops: set[str] | None = None) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """``S`` (from the create_graph gradients), those gradients, and ``dS/dx_i`` for each floating input."""
    g = og.Graph()
    leaves = _leaves(g, arrays, params=True)
    out = fn(*leaves)
    idx = _floats(arrays)
    xs = [leaves[i] for i in idx]
    grads = g.grad(out, xs, grad_outputs=g.constant(v), create_graph=True, allow_unused=True)
    firsts = [np.zeros_like(arrays[i]) if gr is None else gr.numpy() for i, gr in zip(idx, grads)]
    terms = [(gr * w).sum() for gr, w in zip(grads, ws) if gr is not None]
    if ops is not None:
        for t in terms:
            ops.update(re.findall(r'label="#\d+ (\w+)', g.to_dot(t)))
    s_val = float(sum(float(t.numpy()) for t in terms))
    live = [t for t in terms if t.requires_grad]
    if not live:
        g.clear()
        return s_val, firsts, [np.zeros_like(arrays[i]) for i in idx]
    s = live[0]
    for t in live[1:]:
        s = s + t
    hh = g.grad(s, xs, allow_unused=True)
    seconds = [np.zeros_like(arrays[i]) if h is None else h.numpy() for i, h in zip(idx, hh)]
    g.clear()
    return s_val, firsts, seconds


def check_grad_grads(fn: Fn, *arrays: Any, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-6,
                     n_dirs: int = 2, rng: int | np.random.Generator = 0) -> set[str]:
    """Check second derivatives of ``fn`` (float64) against central differences of first-order gradients;
    returns the ops recorded by the first gradients' history."""
    arrays = tuple(np.asarray(a) for a in arrays)
    r = np.random.default_rng(rng)
    idx = _floats(arrays)
    assert idx, "check_grad_grads needs at least one floating input"
    v = r.standard_normal(evaluate(fn, *arrays).shape)
    ws = [r.standard_normal(arrays[i].shape) for i in idx]
    ops: set[str] = set()
    s_val, firsts, seconds = second_order(fn, *arrays, v=v, ws=ws, ops=ops)
    _, plain = gradients(fn, *arrays, seed=v)
    for i, f in zip(idx, firsts):
        np.testing.assert_allclose(f, plain[i], rtol=1e-12, atol=1e-12,  # type: ignore[arg-type]
                                   err_msg="create_graph changed the first-order gradient")

    def s_of(xs: list[np.ndarray]) -> float:
        _, gr = gradients(fn, *xs, seed=v)
        return float(sum(float(np.sum(gr[i] * w)) for i, w in zip(idx, ws)))  # type: ignore[operator]

    for _ in range(n_dirs):
        us = {i: r.standard_normal(arrays[i].shape) for i in idx}
        analytic = sum(float(np.sum(h * us[i])) for i, h in zip(idx, seconds))
        plus = [a + eps * us[i] if i in us else a for i, a in enumerate(arrays)]
        minus = [a - eps * us[i] if i in us else a for i, a in enumerate(arrays)]
        numeric = (s_of(plus) - s_of(minus)) / (2 * eps)
        scale = max(abs(numeric), abs(analytic))
        assert abs(analytic - numeric) <= atol + rtol * scale, (
            f"second-order mismatch (shapes {[arrays[i].shape for i in idx]}): double backward gives "
            f"{analytic!r}, central differences of the gradient {numeric!r}")
    return ops
