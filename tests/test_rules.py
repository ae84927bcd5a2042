"""Every differentiable op of SPEC 1, gradient-checked from ONE spec table.

Each :class:`Case` names the rules it exercises, draws operand shapes (and attributes such as
``axis``) with hypothesis, samples values from its domain (log and sqrt positive, kinks of relu,
abs, clip, max, maximum avoided) and is checked three ways:

* float64 central differences along random directions (tests/gradcheck.py), several shapes;
* against torch, values and gradients, where torch is importable;
* the union of ops the cases record covers every rule in ``owngrad.rules.RULES``, so adding a
  rule without a case here fails ``test_table_covers_every_rule``.

The last part of the file checks SPEC 2.1: a node saves (and so borrows) only what the gradients
of its inputs that need one require.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import owngrad as og
from gradcheck import check_grads, gradients, recorded_ops
from owngrad.rules import RULES

Shapes = tuple[tuple[int, ...], ...]
Sampler = Callable[[tuple[int, ...], np.random.Generator, dict[str, Any]], np.ndarray]


# --- input domains -------------------------------------------------------------------------

def real(shape: tuple[int, ...], r: np.random.Generator, kw: dict[str, Any]) -> np.ndarray:
    return r.uniform(-2.0, 2.0, shape)


def pos(shape: tuple[int, ...], r: np.random.Generator, kw: dict[str, Any]) -> np.ndarray:
    return r.uniform(0.5, 2.0, shape)


def away(shape: tuple[int, ...], r: np.random.Generator, kw: dict[str, Any]) -> np.ndarray:
    """Nonzero, at least 0.2 from the kink at 0 (relu, abs) and from a pole (division)."""
    return r.choice([-1.0, 1.0], shape) * r.uniform(0.2, 2.0, shape)


def distinct(shape: tuple[int, ...], r: np.random.Generator, kw: dict[str, Any]) -> np.ndarray:
    """All values at least 0.25 apart (no ties for max/min/maximum), shuffled."""
    n = int(np.prod(shape))
    return (r.permutation(n) * 0.3 - 0.15 * n + r.uniform(-0.02, 0.02, n)).reshape(shape)


def clip_domain(shape: tuple[int, ...], r: np.random.Generator, kw: dict[str, Any]) -> np.ndarray:
    """Away from the bounds -0.5 and 0.5 used by the clip cases."""
    return r.choice([-1.2, 0.0, 1.2], shape) + r.uniform(-0.3, 0.3, shape)


def labels(shape: tuple[int, ...], r: np.random.Generator, kw: dict[str, Any]) -> np.ndarray:
    return r.integers(0, kw["n_classes"], shape).astype(np.int64)


def maximum_pair(shape: tuple[int, ...], r: np.random.Generator, kw: dict[str, Any]) -> np.ndarray:
    """Values on a 0.5 grid plus 0.25 so they never tie with :func:`grid` values."""
    return r.integers(-4, 4, shape) * 0.5 + 0.25 + r.uniform(-0.05, 0.05, shape)


def grid(shape: tuple[int, ...], r: np.random.Generator, kw: dict[str, Any]) -> np.ndarray:
    return r.integers(-4, 4, shape) * 0.5 + r.uniform(-0.05, 0.05, shape)


# --- shape strategies -------------------------------------------------------------------------

def shape_st(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> st.SearchStrategy:
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def unary(min_dims: int = 0, max_dims: int = 3) -> st.SearchStrategy:
    return shape_st(min_dims, max_dims).map(lambda s: ((s,), {}))


def broadcast(n: int = 2, min_dims: int = 0) -> st.SearchStrategy:
    return hnp.mutually_broadcastable_shapes(num_shapes=n, min_dims=min_dims, max_dims=3, max_side=3).map(
        lambda b: (tuple(b.input_shapes), {}))


@st.composite
def reduction(draw: Any, min_dims: int = 0, ddof: bool = False) -> tuple[Shapes, dict[str, Any]]:
    shape = draw(shape_st(min_dims=min_dims))
    nd = len(shape)
    choices = [st.none()]
    if nd:
        choices.append(st.integers(-nd, nd - 1))
        choices.append(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True).map(tuple))
    axis = draw(st.one_of(*choices))
    kw: dict[str, Any] = {"axis": axis, "keepdims": draw(st.booleans())}
    if ddof:
        axes = range(nd) if axis is None else [axis] if isinstance(axis, int) else axis
        count = int(np.prod([shape[a] for a in axes]))
        kw["ddof"] = draw(st.integers(0, 1)) if count > 1 else 0
    return (shape,), kw


@st.composite
def along_axis(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    shape = draw(shape_st(min_dims=1))
    return (shape,), {"axis": draw(st.integers(-len(shape), len(shape) - 1))}


@st.composite
def matmul_shapes(draw: Any, left: str, right: str) -> tuple[Shapes, dict[str, Any]]:
    """``left``/``right``: "1" (1-D), "2" (2-D) or "b" (batched, broadcasting batch dims)."""
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    bl, br = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=2, max_side=3)).input_shapes
    a = {"1": (k,), "2": (n, k), "b": (*bl, n, k)}[left]
    b = {"1": (k,), "2": (k, m), "b": (*br, k, m)}[right]
    return (a, b), {}


@st.composite
def concat_shapes(draw: Any, stack: bool) -> tuple[Shapes, dict[str, Any]]:
    base = draw(shape_st(min_dims=1 if not stack else 0))
    nd = len(base)
    count = draw(st.integers(1, 3))
    if stack:
        return (base,) * count, {"axis": draw(st.integers(-(nd + 1), nd))}
    axis = draw(st.integers(-nd, nd - 1))
    shapes = []
    for _ in range(count):
        s = list(base)
        s[axis] = draw(st.integers(1, 3))
        shapes.append(tuple(s))
    return tuple(shapes), {"axis": axis}


@st.composite
def permutation(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    shape = draw(shape_st(min_dims=1))
    return (shape,), {"perm": tuple(draw(st.permutations(range(len(shape)))))}


@st.composite
def squeezable(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    shape = list(draw(shape_st(min_dims=0, max_dims=2)))
    pos_ = draw(st.integers(0, len(shape)))
    shape.insert(pos_, 1)
    return (tuple(shape),), {"axis": draw(st.sampled_from([pos_, pos_ - len(shape)]))}


@st.composite
def unsqueezable(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    shape = draw(shape_st(min_dims=0))
    nd = len(shape) + 1
    return (shape,), {"axis": draw(st.integers(-nd, nd - 1))}


@st.composite
def reshapeable(draw: Any, min_side: int = 1) -> tuple[Shapes, dict[str, Any]]:
    shape = draw(shape_st(min_dims=1 if min_side == 1 else 2, min_side=min_side))
    n = int(np.prod(shape))
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    d = draw(st.sampled_from(divisors))
    # with min_side 2 (no axis of size 1) the last two never equal the transposed shape: a real copy
    new = draw(st.sampled_from(([(d, n // d), (-1, d)] if min_side == 1 else []) + [(n,), (n // d, 1, d)]))
    return (shape,), {"new": new}


@st.composite
def expandable(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    b = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3))
    return (b.input_shapes[0],), {"to": b.result_shape}


@st.composite
def basic_index(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    shape = draw(shape_st(min_dims=1, max_dims=3, max_side=5))
    key = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    return (shape,), {"key": key}


@st.composite
def int_index(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    shape = draw(shape_st(min_dims=1, max_dims=3))
    key = draw(hnp.integer_array_indices(shape, result_shape=shape_st(min_dims=1, max_dims=2)))
    return (shape,), {"key": key}


@st.composite
def bool_index(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    shape = draw(shape_st(min_dims=1, max_dims=3))
    mask = draw(hnp.arrays(np.bool_, shape))
    return (shape,), {"mask": mask}


@st.composite
def mixed_index(draw: Any, negative: bool = True) -> tuple[Shapes, dict[str, Any]]:
    n, m = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    idx = np.array(draw(st.lists(st.integers(-n if negative else 0, n - 1), min_size=1, max_size=5)))
    return ((n, m),), {"idx": idx}


@st.composite
def where_shapes(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    b = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3))
    cshape, xshape, yshape = b.input_shapes
    return (xshape, yshape), {"cond": draw(hnp.arrays(np.bool_, cshape))}


@st.composite
def cross_entropy_shapes(draw: Any, batched: bool = True) -> tuple[Shapes, dict[str, Any]]:
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    if not batched:
        return ((c,), ()), {"n_classes": c, "reduction": "mean"}
    return ((n, c), (n,)), {"n_classes": c, "reduction": draw(st.sampled_from(["mean", "sum", "none"]))}


@st.composite
def conv_shapes(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, padding = draw(st.integers(1, 2)), draw(st.integers(0, 1))
    h, w = kh + draw(st.integers(0, 3)), kw + draw(st.integers(0, 3))
    return ((n, c, h, w), (o, c, kh, kw), (o,)), {"stride": stride, "padding": padding}


@st.composite
def pool_shapes(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    k = draw(st.integers(1, 3))
    stride = draw(st.sampled_from([None, 1, 2]))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), k + draw(st.integers(0, 3)), k + draw(st.integers(0, 3)))
    return (shape,), {"k": k, "stride": stride}


# --- the spec table -------------------------------------------------------------------------

def functional(name: str) -> Callable[..., og.Tensor] | None:
    """``og.nn.functional.<name>`` if it exists yet."""
    try:
        mod = importlib.import_module("owngrad.nn.functional")
    except ImportError:
        return None
    return getattr(mod, name, None)


def tdims(axis: Any, nd: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(nd))
    return (axis,) if isinstance(axis, int) else tuple(axis)


@dataclass
class Case:
    name: str
    rules: frozenset[str]  # the rules (or "view" nodes) this case must record
    fn: Callable[..., og.Tensor]  # fn(*tensors, **kw)
    shapes: st.SearchStrategy  # draws (operand shapes, kw)
    example: tuple[Shapes, dict[str, Any]]  # fixed draw for the coverage and torch tests
    domains: tuple[Sampler, ...] = (real,)
    tfn: Callable[..., Any] | None = None  # the same on torch tensors
    eps: float = 1e-6
    rtol: float = 1e-5
    needs: str | None = None  # an og.nn.functional name that must exist

    def arrays(self, shapes: Shapes, kw: dict[str, Any], seed: int) -> list[np.ndarray]:
        r = np.random.default_rng(seed)
        doms = self.domains if len(self.domains) == len(shapes) else self.domains * len(shapes)
        return [np.asarray(d(s, r, kw)) for d, s in zip(doms, shapes)]

    def call(self, kw: dict[str, Any]) -> Callable[..., og.Tensor]:
        if self.needs is not None and functional(self.needs) is None:
            pytest.skip(f"og.nn.functional.{self.needs} does not exist yet")
        return lambda *ts: self.fn(*ts, **kw)


def R(*names: str) -> frozenset[str]:
    return frozenset(names)


def _ce(logits: og.Tensor, lab: og.Tensor, n_classes: int, reduction: str) -> og.Tensor:
    f = functional("cross_entropy")
    assert f is not None
    return f(logits, lab) if reduction == "mean" else f(logits, lab, reduction=reduction)


def _fn(name: str) -> Callable[..., og.Tensor]:
    f = functional(name)
    assert f is not None
    return f


def _mse(x: og.Tensor, y: og.Tensor) -> og.Tensor:
    f = functional("mse_loss")
    assert f is not None
    return f(x, y)


def _tce(logits: Any, lab: Any, n_classes: int, reduction: str) -> Any:
    import torch.nn.functional as F

    return F.cross_entropy(logits, lab, reduction=reduction)


def _tmse(x: Any, y: Any) -> Any:
    import torch.nn.functional as F

    return F.mse_loss(x, y)


def _tindex(x: Any, key: Any) -> Any:
    import torch

    items = key if isinstance(key, tuple) else (key,)
    conv = tuple(torch.as_tensor(k) if isinstance(k, np.ndarray) else k for k in items)
    return x[conv if isinstance(key, tuple) else conv[0]]


def _tbasic(x: Any, index: Callable[[np.ndarray], np.ndarray]) -> Any:
    """numpy's indexing (negative steps too, which torch lacks) as a torch gather of element ids."""
    import torch

    ids = index(np.arange(x.numel()).reshape(tuple(x.shape)))
    return x.reshape(-1)[torch.as_tensor(np.array(ids, copy=True))]  # a fresh copy: no negative strides


U2 = ((2, 3),)
B2 = ((2, 3), (3,))

CASES: list[Case] = [
    # arithmetic, with numpy broadcasting
    Case("add", R("add"), lambda x, y: x + y, broadcast(), (B2, {}), tfn=lambda x, y: x + y),
    Case("sub", R("sub"), lambda x, y: x - y, broadcast(), (B2, {}), tfn=lambda x, y: x - y),
    Case("mul", R("mul"), lambda x, y: x * y, broadcast(), (B2, {}), tfn=lambda x, y: x * y),
    Case("div", R("div"), lambda x, y: x / y, broadcast(), (B2, {}), (real, away), tfn=lambda x, y: x / y),
    Case("pow", R("pow"), lambda x, y: x ** y, broadcast(), (B2, {}), (pos, real), tfn=lambda x, y: x ** y),
    Case("pow_scalar", R("pow"), lambda x: x ** 3 + x ** 0.5, unary(), (U2, {}), (pos,),
         tfn=lambda x: x ** 3 + x ** 0.5),
    Case("rpow_scalar", R("pow"), lambda x: 2.0 ** x, unary(), (U2, {}), tfn=lambda x: 2.0 ** x),
    Case("scalar_operands", R("add", "sub", "mul", "div"), lambda x: (3.0 - x) * 2 / (x + 5) - 1 / (x - 4),
         unary(), (U2, {}), tfn=lambda x: (3.0 - x) * 2 / (x + 5) - 1 / (x - 4)),
    Case("neg", R("neg"), lambda x: -x, unary(), (U2, {}), tfn=lambda x: -x),
    # matmul: 2-D, 1-D on either side, batched with broadcasting batch dims
    Case("matmul_2d", R("matmul"), lambda x, y: x @ y, matmul_shapes("2", "2"), (((2, 3), (3, 4)), {}),
         tfn=lambda x, y: x @ y),
    Case("matmul_1d_2d", R("matmul"), lambda x, y: x @ y, matmul_shapes("1", "2"), (((3,), (3, 4)), {}),
         tfn=lambda x, y: x @ y),
    Case("matmul_2d_1d", R("matmul"), lambda x, y: og.matmul(x, y), matmul_shapes("2", "1"),
         (((2, 3), (3,)), {}), tfn=lambda x, y: x @ y),
    Case("matmul_1d_1d", R("matmul"), lambda x, y: x @ y, matmul_shapes("1", "1"), (((3,), (3,)), {}),
         tfn=lambda x, y: x @ y),
    Case("matmul_batched", R("matmul"), lambda x, y: x @ y, matmul_shapes("b", "b"),
         (((2, 1, 2, 3), (4, 3, 2)), {}), tfn=lambda x, y: x @ y),
    Case("matmul_batched_2d", R("matmul"), lambda x, y: x @ y, matmul_shapes("b", "2"),
         (((2, 2, 3), (3, 4)), {}), tfn=lambda x, y: x @ y),
    Case("matmul_batched_1d", R("matmul"), lambda x, y: x @ y, matmul_shapes("b", "1"),
         (((2, 2, 3), (3,)), {}), tfn=lambda x, y: x @ y),
    Case("matmul_1d_batched", R("matmul"), lambda x, y: x @ y, matmul_shapes("1", "b"),
         (((3,), (2, 3, 4)), {}), tfn=lambda x, y: x @ y),
    # elementwise unary
    Case("exp", R("exp"), lambda x: x.exp(), unary(), (U2, {}), tfn=lambda x: x.exp()),
    Case("log", R("log"), lambda x: og.log(x), unary(), (U2, {}), (pos,), tfn=lambda x: x.log()),
    Case("sqrt", R("sqrt"), lambda x: x.sqrt(), unary(), (U2, {}), (pos,), tfn=lambda x: x.sqrt()),
    Case("tanh", R("tanh"), lambda x: x.tanh(), unary(), (U2, {}), tfn=lambda x: x.tanh()),
    Case("sigmoid", R("sigmoid"), lambda x: og.sigmoid(x), unary(), (U2, {}), tfn=lambda x: x.sigmoid()),
    Case("relu", R("relu"), lambda x: x.relu(), unary(), (U2, {}), (away,), tfn=lambda x: x.relu()),
    Case("abs", R("abs"), lambda x: x.abs(), unary(), (U2, {}), (away,), tfn=lambda x: x.abs()),
    Case("copy", R("copy"), lambda x: x.copy() * 3.0, unary(), (U2, {}), tfn=lambda x: x.clone() * 3.0),
    Case("cast", R("cast"), lambda x: x.astype(np.float32) * 2.0, unary(), (U2, {}),
         tfn=lambda x: x.float() * 2.0, eps=1e-2, rtol=1e-3),
    # n-ary functions
    Case("maximum", R("maximum"), lambda x, y: og.maximum(x, y), broadcast(), (B2, {}), (grid, maximum_pair),
         tfn=lambda x, y: __import__("torch").maximum(x, y)),
    Case("minimum", R("minimum"), lambda x, y: og.minimum(x, y), broadcast(), (B2, {}), (grid, maximum_pair),
         tfn=lambda x, y: __import__("torch").minimum(x, y)),
    Case("where", R("where"), lambda x, y, cond: og.where(cond, x, y), where_shapes(),
         (B2, {"cond": np.array([True, False, True])}),
         tfn=lambda x, y, cond: __import__("torch").where(__import__("torch").as_tensor(cond), x, y)),
    Case("where_comparison", R("where"), lambda x: og.where(x > 0, x * 3, -x), unary(), (U2, {}), (away,),
         tfn=lambda x: __import__("torch").where(x > 0, x * 3, -x)),
    Case("clip", R("clip"), lambda x: og.clip(x, -0.5, 0.5), unary(), (U2, {}), (clip_domain,),
         tfn=lambda x: x.clamp(-0.5, 0.5)),
    Case("clip_one_sided", R("clip"), lambda x: x.clip(lo=-0.5) + x.clip(hi=0.5), unary(), (U2, {}),
         (clip_domain,), tfn=lambda x: x.clamp(min=-0.5) + x.clamp(max=0.5)),
    Case("clip_tensor_bounds", R("clip_t"), lambda x, lo, hi: og.clip(x, lo, hi), broadcast(3),
         (((2, 3), (3,), (2, 1)), {}), (grid, maximum_pair, lambda s, r, kw: maximum_pair(s, r, kw) + 1.0),
         # torch.clamp keeps x's shape (no broadcasting to the bounds'); away from ties it is this:
         tfn=lambda x, lo, hi: __import__("torch").minimum(__import__("torch").maximum(x, lo), hi)),
    # reductions with axis / keepdims
    Case("sum", R("sum"), lambda x, axis, keepdims: x.sum(axis=axis, keepdims=keepdims), reduction(),
         (U2, {"axis": 1, "keepdims": False}),
         tfn=lambda x, axis, keepdims: x.sum(dim=tdims(axis, x.ndim), keepdim=keepdims)),
    Case("mean", R("mean"), lambda x, axis, keepdims: x.mean(axis=axis, keepdims=keepdims), reduction(),
         (U2, {"axis": (0, 1), "keepdims": True}),
         tfn=lambda x, axis, keepdims: x.mean(dim=tdims(axis, x.ndim), keepdim=keepdims)),
    Case("max", R("max"), lambda x, axis, keepdims: x.max(axis=axis, keepdims=keepdims), reduction(),
         (U2, {"axis": -1, "keepdims": False}), (distinct,),
         tfn=lambda x, axis, keepdims: x.amax(dim=tdims(axis, x.ndim), keepdim=keepdims)),
    Case("min", R("min"), lambda x, axis, keepdims: x.min(axis=axis, keepdims=keepdims), reduction(),
         (U2, {"axis": None, "keepdims": False}), (distinct,),
         tfn=lambda x, axis, keepdims: x.amin(dim=tdims(axis, x.ndim), keepdim=keepdims)),
    Case("var", R("var"), lambda x, axis, keepdims, ddof: x.var(axis=axis, keepdims=keepdims, ddof=ddof),
         reduction(ddof=True), (U2, {"axis": 0, "keepdims": False, "ddof": 1}),
         tfn=lambda x, axis, keepdims, ddof: x.var(dim=tdims(axis, x.ndim), keepdim=keepdims, correction=ddof)),
    Case("logsumexp", R("logsumexp"), lambda x, axis, keepdims: x.logsumexp(axis=axis, keepdims=keepdims),
         reduction(), (U2, {"axis": 1, "keepdims": True}),
         tfn=lambda x, axis, keepdims: x.logsumexp(dim=tdims(axis, x.ndim), keepdim=keepdims)),
    Case("softmax", R("softmax"), lambda x, axis: x.softmax(axis=axis), along_axis(), (U2, {"axis": -1}),
         tfn=lambda x, axis: x.softmax(dim=axis)),
    Case("log_softmax", R("log_softmax"), lambda x, axis: x.log_softmax(axis=axis), along_axis(),
         (U2, {"axis": 0}), tfn=lambda x, axis: x.log_softmax(dim=axis)),
    # losses (og.nn.functional)
    Case("cross_entropy", R(), _ce, cross_entropy_shapes(),
         (((3, 4), (3,)), {"n_classes": 4, "reduction": "mean"}), (real, labels), tfn=_tce,
         needs="cross_entropy"),
    Case("cross_entropy_1d", R(), _ce, cross_entropy_shapes(batched=False),
         (((4,), ()), {"n_classes": 4, "reduction": "mean"}), (real, labels), tfn=_tce,
         needs="cross_entropy"),
    Case("mse_loss", frozenset(), _mse, unary().map(lambda s: (s[0] * 2, {})), (((2, 3), (2, 3)), {}),
         tfn=_tmse, needs="mse_loss"),
    Case("conv2d", R("conv2d"), lambda x, w, b, stride, padding: _fn("conv2d")(x, w, b, stride=stride,
         padding=padding), conv_shapes(), (((2, 2, 5, 4), (3, 2, 3, 2), (3,)), {"stride": 1, "padding": 0}),
         tfn=lambda x, w, b, stride, padding: __import__("torch").nn.functional.conv2d(
             x, w, b, stride=stride, padding=padding), needs="conv2d"),
    Case("max_pool2d", R("max_pool2d"), lambda x, k, stride: _fn("max_pool2d")(x, k, stride), pool_shapes(),
         (((1, 2, 4, 4),), {"k": 2, "stride": None}), (distinct,),
         tfn=lambda x, k, stride: __import__("torch").nn.functional.max_pool2d(x, k, stride), needs="max_pool2d"),
    Case("embedding", R("gather"), lambda w, idx: _fn("embedding")(w, idx), mixed_index(negative=False),
         (((4, 3),), {"idx": np.array([[0, 3], [3, 3]])}),
         tfn=lambda w, idx: __import__("torch").nn.functional.embedding(__import__("torch").as_tensor(idx) % w.shape[0], w),
         needs="embedding"),
    Case("dropout", R("mul"), lambda x: _fn("dropout")(x, 0.5, rng=0), unary(min_dims=1), (U2, {}),
         needs="dropout"),
    # shape ops: views where numpy gives a view, copies otherwise
    Case("reshape", R("view"), lambda x, new: x.reshape(new), reshapeable(), (U2, {"new": (3, 2)}),
         tfn=lambda x, new: x.reshape(new)),
    Case("reshape_copy", R("reshape_copy"), lambda x, new: x.T.reshape(new), reshapeable(min_side=2),
         (U2, {"new": (-1,)}), tfn=lambda x, new: x.permute(*reversed(range(x.ndim))).reshape(new)),
    Case("transpose", R("view"), lambda x, perm: x.transpose(perm), permutation(),
         (((2, 3, 4),), {"perm": (2, 0, 1)}), tfn=lambda x, perm: x.permute(*perm)),
    Case("permute_T", R("view"), lambda x, perm: x.permute(*perm) * x.T.T.permute(*perm), permutation(),
         (((2, 3),), {"perm": (1, 0)}), tfn=lambda x, perm: x.permute(*perm) ** 2),
    Case("squeeze", R("view"), lambda x, axis: x.squeeze(axis) + x.squeeze(), squeezable(),
         (((2, 1, 3),), {"axis": 1}), tfn=lambda x, axis: x.squeeze(axis) + x.squeeze()),
    Case("unsqueeze", R("view"), lambda x, axis: x.unsqueeze(axis), unsqueezable(), (U2, {"axis": -1}),
         tfn=lambda x, axis: x.unsqueeze(axis)),
    # expand is a read-only view: nothing is recorded when the shape is unchanged
    Case("expand", R(), lambda x, to: x.expand(to), expandable(), (((3, 1),), {"to": (2, 3, 4)}),
         tfn=lambda x, to: x.expand(to) if to else x * 1),
    Case("concatenate", R("concatenate"), lambda *xs, axis: og.concatenate(list(xs), axis=axis),
         concat_shapes(stack=False), (((2, 3), (1, 3)), {"axis": 0}),
         tfn=lambda *xs, axis: __import__("torch").cat(xs, dim=axis)),
    Case("concatenate_constant", R("concatenate"),
         lambda x: og.concatenate([x, np.ones((1,) + x.shape[1:]), x * 2], axis=0), unary(min_dims=1),
         (U2, {}), tfn=lambda x: __import__("torch").cat([x, x.new_ones((1,) + x.shape[1:]), x * 2], dim=0)),
    Case("stack", R("stack"), lambda *xs, axis: og.stack(list(xs), axis=axis), concat_shapes(stack=True),
         (((2, 3), (2, 3)), {"axis": -1}), tfn=lambda *xs, axis: __import__("torch").stack(xs, dim=axis)),
    # indexing: basic (views, incl. negative steps, None, ...), integer arrays, booleans, mixed
    Case("basic_index", R("view"), lambda x, key: x[key], basic_index(),
         (((4, 3),), {"key": (slice(None, None, -2), None, 1)}), tfn=lambda x, key: _tbasic(x, lambda a: a[key])),
    Case("view_of_view", R("view"), lambda x: x[1:][::-1, 0:2][0], unary(min_dims=2, max_dims=2).filter(
        lambda s: s[0][0][0] >= 2 and s[0][0][1] >= 2), (((3, 3),), {}), tfn=lambda x: _tbasic(x, lambda a: a[1:][::-1, 0:2][0])),
    Case("int_index", R("gather"), lambda x, key: x[key], int_index(),
         (((4, 3),), {"key": (np.array([0, 2, 0, -1]),)}), tfn=_tindex),
    Case("repeated_index", R("gather"), lambda x: x[[0, 0, 1, 0]], unary(min_dims=1).filter(
        lambda s: s[0][0][0] >= 2), (U2, {}), tfn=lambda x: x[[0, 0, 1, 0]]),
    Case("bool_index", R("gather"), lambda x, mask: x[mask], bool_index(),
         (U2, {"mask": np.array([[True, False, True], [False, False, True]])}),
         tfn=lambda x, mask: x[__import__("torch").as_tensor(mask)]),
    Case("mixed_index", R("gather"), lambda x, idx: x[idx, 1:].sum(axis=1) + x[:, 0][idx], mixed_index(),
         (U2, {"idx": np.array([1, -1, 0])}),
         tfn=lambda x, idx: x[__import__("torch").as_tensor(idx), 1:].sum(1) + x[:, 0][__import__("torch").as_tensor(idx)]),
    # a composite through several rules and a view into a recorded result
    Case("composite", R("mul", "sum", "view", "tanh"),
         lambda x, y: ((x * y).tanh()[..., ::-1] * y).sum(axis=-1), broadcast(min_dims=1), (B2, {}),
         tfn=lambda x, y: ((x * y).tanh().flip(-1) * y).sum(dim=-1)),
]

#: Rules that cannot be exercised by a CPU-only gradient check, with the reason.
NOT_HERE = {"to": "device transfer: needs a second device (covered by the device tests)"}

IDS = [c.name for c in CASES]


# --- 1. gradient checks -----------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_gradient(case: Case, data: Any) -> None:
    shapes, kw = data.draw(case.shapes, label="shapes, attrs")
    seed = data.draw(st.integers(0, 2**16), label="values seed")
    fn = case.call(kw)
    ops = check_grads(fn, *case.arrays(shapes, kw, seed), eps=case.eps, rtol=case.rtol, rng=seed)
    assert case.rules <= ops, f"{case.name} should record {set(case.rules)}, recorded {ops}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_example(case: Case) -> None:
    shapes, kw = case.example
    check_grads(case.call(kw), *case.arrays(shapes, kw, 1), eps=case.eps, rtol=case.rtol, rng=1)


# --- 2. the table covers every rule ------------------------------------------------------------

def test_table_covers_every_rule() -> None:
    recorded: set[str] = set()
    unreachable = []
    for case in CASES:
        shapes, kw = case.example
        if case.needs is not None and functional(case.needs) is None:
            unreachable.append(f"og.nn.functional.{case.needs}")
            continue
        try:
            recorded |= recorded_ops(lambda *ts, c=case, k=kw: c.fn(*ts, **k), *case.arrays(shapes, kw, 0))
        except Exception as e:  # its rules stay uncovered; say why
            unreachable.append(f"{case.name}: {type(e).__name__}: {e}")
    missing = sorted(set(RULES) - recorded - set(NOT_HERE))
    assert not missing, (f"rules that no case in CASES records: {missing} "
                         f"(cases that could not run: {unreachable})")
    assert set(NOT_HERE) <= set(RULES), "NOT_HERE names a rule that no longer exists"


def test_every_case_is_named_once() -> None:
    assert len(set(IDS)) == len(IDS)


def test_check_grads_catches_a_wrong_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself can fail: break exp's vjp and it must notice."""
    import owngrad.rules as rules

    bad = rules.RULES["exp"]
    monkeypatch.setitem(rules.RULES, "exp", dataclasses.replace(bad, vjps=(lambda g, ans, x: g * ans * 1.01,)))
    with pytest.raises(AssertionError, match="gradient mismatch"):
        check_grads(lambda x: x.exp(), np.linspace(-1, 1, 6))


# --- 3. torch agrees on values and gradients ------------------------------------------------

@pytest.mark.parametrize("case", [c for c in CASES if c.tfn is not None], ids=[c.name for c in CASES if c.tfn])
@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_matches_torch(case: Case, data: Any) -> None:
    torch = pytest.importorskip("torch")
    shapes, kw = data.draw(case.shapes, label="shapes, attrs")
    seed = data.draw(st.integers(0, 2**16), label="values seed")
    fn = case.call(kw)
    arrays = case.arrays(shapes, kw, seed)
    value, grads = gradients(fn, *arrays, seed=None)
    tin = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    assert case.tfn is not None
    tout = case.tfn(*tin, **kw)
    np.testing.assert_allclose(value, tout.detach().numpy(), rtol=1e-4 if case.eps > 1e-4 else 1e-10,
                               atol=1e-10, err_msg=f"{case.name}: values differ from torch")
    floats = [t for t in tin if t.requires_grad]
    if tout.numel() == 0:
        return
    tg = torch.autograd.grad(tout, floats, torch.ones_like(tout), allow_unused=True)
    mine = [gr for gr in grads if gr is not None]
    for i, (a, b) in enumerate(zip(mine, tg)):
        expect = np.zeros_like(a) if b is None else b.numpy()
        np.testing.assert_allclose(a, expect, rtol=1e-4 if case.eps > 1e-4 else 1e-9, atol=1e-10,
                                   err_msg=f"{case.name}: gradient of input {i} differs from torch")


# --- 4. a node saves only what its inputs' gradients need (SPEC 2.1) -----------------------------

def _node(g: og.Graph, op: str) -> og.Node:
    nodes = [n for n in g.pending() if n.op == op]
    assert len(nodes) == 1, f"expected one pending {op} node, got {g.pending()}"
    return nodes[0]


def _refused(g: og.Graph, t: og.Tensor) -> bool:
    """Would an (untracked) in-place write to ``t`` be refused by a borrow?"""
    before = t.numpy()
    try:
        with g.no_grad():
            t += 1.0
    except og.BorrowError:
        np.testing.assert_array_equal(t.numpy(), before)
        return True
    with g.no_grad():
        t -= 1.0
    return False


@pytest.mark.parametrize("op", ["exp", "tanh", "sigmoid", "sqrt", "relu"])
def test_saves_output_only(op: str) -> None:
    g = og.Graph()
    x = g.param(np.full((2, 3), 0.5), name="x")
    y = getattr(x, op)()
    node = _node(g, op)
    assert len(node.borrows) == 1, node.borrows
    label = node.borrows[0].label
    assert op in label and label != "x" and not label.startswith("x["), label
    assert not _refused(g, x), f"{op} must not save its input"
    with pytest.raises(og.BorrowError):
        y += 1.0  # the output is saved: a recorded write to it is refused too


def test_log_saves_input_only() -> None:
    g = og.Graph()
    x = g.param(np.full((2, 3), 0.5), name="x")
    y = x.log()
    node = _node(g, "log")
    assert [b.label for b in node.borrows] == ["x"]
    assert _refused(g, x)
    y += 1.0  # not saved: a recorded in-place op on the result is fine
    grads = g.backward(y.sum())
    np.testing.assert_allclose(grads[x].numpy(), 1 / 0.5)


@pytest.mark.parametrize("op", ["+", "-"])
def test_add_sub_save_nothing(op: str) -> None:
    g = og.Graph()
    x = g.param(np.ones(3), name="x")
    w = g.param(np.ones(3), name="w")
    y = x + w if op == "+" else x - w
    assert _node(g, "add" if op == "+" else "sub").borrows == []
    assert not _refused(g, x) and not _refused(g, w)
    y *= 2.0  # nothing saved the result either: a recorded in-place op is fine
    grads = g.backward(y.sum())
    np.testing.assert_allclose(grads[x].numpy(), 2.0)
    np.testing.assert_allclose(grads[w].numpy(), 2.0 if op == "+" else -2.0)


def test_mul_by_constant_saves_only_the_constant() -> None:
    g = og.Graph()
    x = g.param(np.ones((2, 2)), name="x")
    c = g.constant(np.full((2, 2), 3.0), name="c")
    x * c
    node = _node(g, "mul")
    assert [b.label for b in node.borrows] == ["c"]
    assert _refused(g, c)
    assert not _refused(g, x)


def test_mul_of_two_params_saves_both() -> None:
    g = og.Graph()
    x = g.param(np.ones(2), name="x")
    w = g.param(np.ones(2), name="w")
    x * w
    assert sorted(b.label for b in _node(g, "mul").borrows) == ["w", "x"]
    assert _refused(g, x) and _refused(g, w)


def test_mul_by_python_scalar_saves_nothing() -> None:
    g = og.Graph()
    x = g.param(np.ones(2), name="x")
    x * 3.0
    assert _node(g, "mul").borrows == []
    assert not _refused(g, x)


def test_matmul_with_constant_saves_only_the_constant() -> None:
    g = og.Graph()
    a = g.constant(np.ones((4, 3)), name="a")
    w = g.param(np.ones((3, 2)), name="w")
    a @ w
    assert [b.label for b in _node(g, "matmul").borrows] == ["a"]
    assert _refused(g, a) and not _refused(g, w)


@pytest.mark.parametrize("op", ["sum", "mean", "neg", "reshape_copy"])
def test_shape_only_ops_save_nothing(op: str) -> None:
    g = og.Graph()
    x = g.param(np.ones((3, 2)), name="x")
    {"sum": lambda: x.sum(axis=0), "mean": lambda: x.mean(), "neg": lambda: -x,
     "reshape_copy": lambda: x.T.reshape(-1)}[op]()
    assert _node(g, op).borrows == []
    assert not _refused(g, x)


def test_saved_region_is_the_view_not_the_whole_storage() -> None:
    g = og.Graph()
    x = g.param(np.full((4, 3), 0.5), name="x")
    x[0:2].log()
    assert [b.label for b in _node(g, "log").borrows] in (["x[0:2]"], ["x[:2]"])
    with g.no_grad():
        x[2:4] += 1.0  # disjoint from the saved rows
    assert _refused(g, x[1])
    assert _refused(g, x[:, 0])


def test_nothing_saved_when_no_input_needs_a_gradient() -> None:
    g = og.Graph()
    c = g.constant(np.full(3, 0.5), name="c")
    y = c.log()
    assert g.pending() == [] and not y.requires_grad
    assert not _refused(g, c)


def test_where_does_not_save_the_branches() -> None:
    g = og.Graph()
    x = g.param(np.ones(3), name="x")
    y = g.param(np.ones(3), name="y")
    og.where(np.array([True, False, True]), x, y)
    node = _node(g, "where")
    assert not any(b.label in ("x", "y") for b in node.borrows), node.borrows
    assert not _refused(g, x) and not _refused(g, y)
