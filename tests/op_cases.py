"""The op tables every gradient and device test is driven from.

``CASES``: one :class:`Case` per differentiable op (or family), which names the rules it must
record, draws operand shapes and attributes with hypothesis, samples values from its domain (log
and sqrt positive, the kinks of relu, abs, clip, max and maximum avoided) and, where torch has the
op, gives torch's version. tests/test_rules.py checks each against finite differences and torch;
tests/test_dispatch.py and tests/test_cuda.py run it on other array backends.

``EXTRA``: fixed inputs, one or more rows per rule, that on their own record every rule in
``owngrad.rules.RULES`` (the device tests use it so that their proof does not depend on how
``CASES`` is drawn).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import owngrad as og

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
def linear_shapes(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    """x (..., in) with 0-2 leading axes, weight (out, in), bias (out,) or none."""
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    i, o = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    shapes = ((*lead, i), (o, i), (o,)) if draw(st.booleans()) else ((*lead, i), (o, i))
    return shapes, {}


@st.composite
def layer_norm_shapes(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    """x (..., *norm) with 0-2 leading axes and 1-2 normalised axes (each of at least 2 elements: the
    variance of one element is 0 and its gradient is all rounding), with or without weight and bias."""
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    norm = tuple(draw(st.lists(st.integers(2, 4), min_size=1, max_size=2)))
    shapes = ((*lead, *norm), norm, norm) if draw(st.booleans()) else ((*lead, *norm),)
    return shapes, {"norm": norm}


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
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h, w = (kh - 1) * dilation[0] + 1 + draw(st.integers(0, 3)), (kw - 1) * dilation[1] + 1 + draw(st.integers(0, 3))
    return ((n, c, h, w), (o, c, kh, kw), (o,)), {"stride": stride, "padding": padding, "dilation": dilation}


@st.composite
def recurrence_shapes(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    from owngrad.nn.recurrence import CellKind

    kind = draw(st.sampled_from(list(CellKind)))
    t, b, h = draw(st.integers(1, 4)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    gh = h * {"rnn_tanh": 1, "rnn_relu": 1, "gru": 3, "lstm": 4}[kind.value]
    return ((t, b, gh), (b, h), (gh, h), (gh,), (b, h)), {"kind": kind, "reverse": draw(st.booleans())}


def _recurrence(gi: og.Tensor, h0: og.Tensor, w: og.Tensor, bias: og.Tensor, c0: og.Tensor, kind: Any,
                reverse: bool) -> og.Tensor:
    """The ``recurrence`` rule of og.nn's recurrent layers, called directly (c0 is read by LSTM only)."""
    lstm = kind.value == "lstm"
    out = gi.graph.apply("recurrence", (gi, h0, w, bias, c0 if lstm else None), {"kind": kind, "reverse": reverse})
    return out if lstm else out + c0.sum() * 0.0


@st.composite
def pool_shapes(draw: Any) -> tuple[Shapes, dict[str, Any]]:
    k = draw(st.integers(1, 3))
    stride = draw(st.sampled_from([None, 1, 2]))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), k + draw(st.integers(0, 3)), k + draw(st.integers(0, 3)))
    return (shape,), {"k": k, "stride": stride}


# --- the op table -----------------------------------------------------------------------------

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
    atol: float = 1e-6  # float32 cases: central differences carry float32 rounding / eps
    needs: str | None = None  # an og.nn.functional name that must exist

    def arrays(self, shapes: Shapes, kw: dict[str, Any], seed: int) -> list[np.ndarray]:
        r = np.random.default_rng(seed)
        doms = self.domains if len(self.domains) == len(shapes) else self.domains * len(shapes)
        return [np.asarray(d(s, r, kw)) for d, s in zip(doms, shapes)]

    def call(self, kw: dict[str, Any]) -> Callable[..., og.Tensor]:
        if self.needs is not None and functional(self.needs) is None:
            pytest.skip(f"og.nn.functional.{self.needs} does not exist yet")
        return lambda *ts: self.fn(*ts, **kw)


def _cell_kind(name: str) -> Any:
    from owngrad.nn.recurrence import CellKind

    return CellKind(name)


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

def _write_row(x: Any) -> Any:
    """An in-place write through a view of a non-leaf (owngrad and torch alike)."""
    y = x * 2.0
    y[0] = x[1] * 3.0
    return y


def _lerp(x: Any, e: Any) -> Any:
    """lerp_ on a non-leaf copy (owngrad and torch alike)."""
    y = x * 1.0
    y.lerp_(e, 0.3)
    return y


def _index_add(x: Any, s: Any) -> Any:
    """index_add_ with a repeated index, on a non-leaf copy (owngrad: axis, index as numpy ints; torch: dim)."""
    y = x * 1.0
    if isinstance(y, og.Tensor):
        y.index_add_(0, np.array([0, 2, 0, 1]), s)
    else:
        y.index_add_(0, __import__("torch").tensor([0, 2, 0, 1]), s)
    return y


def prob(shape: tuple[int, ...], r: np.random.Generator, kw: dict[str, Any]) -> np.ndarray:
    """Values in (0.05, 0.95): probabilities away from the clamps."""
    return r.uniform(0.05, 0.95, shape)


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
         tfn=lambda x: x.float() * 2.0, eps=1e-2, rtol=1e-2, atol=1e-4),
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
    # more elementwise, scans, triangles, norms
    Case("sin", R("sin"), lambda x: x.sin(), unary(), (U2, {}), tfn=lambda x: x.sin()),
    Case("cos", R("cos"), lambda x: x.cos(), unary(), (U2, {}), tfn=lambda x: x.cos()),
    Case("log1p", R("log1p"), lambda x: x.log1p(), unary(), (U2, {}), (pos,), tfn=lambda x: x.log1p()),
    Case("expm1", R("expm1"), lambda x: x.expm1(), unary(), (U2, {}), tfn=lambda x: x.expm1()),
    Case("square", R("square"), lambda x: x.square(), unary(), (U2, {}), tfn=lambda x: x.square()),
    Case("norm", R("norm"), lambda x, axis, keepdims: x.norm(axis=axis, keepdims=keepdims), reduction(),
         (U2, {"axis": 1, "keepdims": False}), (away,),
         tfn=lambda x, axis, keepdims: __import__("torch").linalg.vector_norm(x, dim=tdims(axis, x.ndim),
                                                                              keepdim=keepdims)),
    Case("std", R("var", "sqrt"), lambda x: x.std(axis=0, ddof=1), unary(min_dims=1).filter(
        lambda s: s[0][0][0] >= 2), (U2, {}), tfn=lambda x: x.std(dim=0)),
    Case("cumsum", R("cumsum"), lambda x, axis: x.cumsum(axis), along_axis(), (U2, {"axis": 1}),
         tfn=lambda x, axis: x.cumsum(dim=axis)),
    Case("cumsum_flat", R("cumsum"), lambda x: x.cumsum(), unary(), (U2, {}), tfn=lambda x: x.reshape(-1).cumsum(0)),
    Case("flip", R("flip"), lambda x, axis: x.flip(axis), along_axis(), (U2, {"axis": 0}),
         tfn=lambda x, axis: x.flip(dims=(axis,))),
    Case("tril", R("tril"), lambda x: x.tril(-1) * 2.0, unary(min_dims=2), (U2, {}), tfn=lambda x: x.tril(-1) * 2.0),
    Case("triu", R("triu"), lambda x: x.triu(1) * 2.0, unary(min_dims=2), (U2, {}), tfn=lambda x: x.triu(1) * 2.0),
    Case("masked_fill", R("masked_fill"), lambda x: x.masked_fill(x > 0, 0.5), unary(), (U2, {}), (away,),
         tfn=lambda x: x.masked_fill(x > 0, 0.5)),
    Case("lerp_", R("lerp", "copy_slices"), lambda x, e: _lerp(x, e), st.just((((2, 3), (2, 3)), {})),
         (((2, 3), (2, 3)), {}), tfn=lambda x, e: _lerp(x, e)),
    Case("index_add_", R("index_add", "copy_slices"), lambda x, s: _index_add(x, s),
         st.just((((3, 2), (4, 2)), {})), (((3, 2), (4, 2)), {}), tfn=lambda x, s: _index_add(x, s)),
    Case("take_along_axis", R("take_along_axis"), lambda x: og.take_along_axis(x, np.array([[0, 0], [2, 1]]), 1),
         st.just((((2, 3),), {})), (U2, {}),
         tfn=lambda x: x.gather(1, __import__("torch").tensor([[0, 0], [2, 1]]))),
    Case("pad", R("pad"), lambda x: og.pad(x, ((1, 0), (0, 2)), value=0.5), unary(min_dims=2, max_dims=2),
         (U2, {}), tfn=lambda x: __import__("torch").nn.functional.pad(x, (0, 2, 1, 0), value=0.5)),
    Case("einsum", R("einsum"), lambda x, y: og.einsum("ij,kj->ik", x, y) + og.einsum("ij->i", x).sum(),
         st.just((((2, 3), (4, 3)), {})), (((2, 3), (4, 3)), {}),
         tfn=lambda x, y: __import__("torch").einsum("ij,kj->ik", x, y) + __import__("torch").einsum("ij->i", x).sum()),
    # activations (og.nn.functional)
    Case("gelu", R("gelu"), lambda x: _fn("gelu")(x), unary(), (U2, {}),
         tfn=lambda x: __import__("torch").nn.functional.gelu(x), needs="gelu"),
    Case("gelu_tanh", R("gelu"), lambda x: _fn("gelu")(x, approximate="tanh"), unary(), (U2, {}),
         tfn=lambda x: __import__("torch").nn.functional.gelu(x, approximate="tanh"), needs="gelu"),
    Case("softplus", R("softplus"), lambda x: _fn("softplus")(x, beta=2.0), unary(), (U2, {}),
         tfn=lambda x: __import__("torch").nn.functional.softplus(x, beta=2.0), needs="softplus"),
    Case("logsigmoid", R("logsigmoid"), lambda x: _fn("logsigmoid")(x), unary(), (U2, {}),
         tfn=lambda x: __import__("torch").nn.functional.logsigmoid(x), needs="logsigmoid"),
    Case("leaky_relu", R("leaky_relu"), lambda x: _fn("leaky_relu")(x, 0.2), unary(), (U2, {}), (away,),
         tfn=lambda x: __import__("torch").nn.functional.leaky_relu(x, 0.2), needs="leaky_relu"),
    Case("elu", R("elu"), lambda x: _fn("elu")(x, alpha=0.7), unary(), (U2, {}), (away,),
         tfn=lambda x: __import__("torch").nn.functional.elu(x, alpha=0.7), needs="elu"),
    Case("binary_cross_entropy", R("binary_cross_entropy"), lambda p, t: _fn("binary_cross_entropy")(p, t),
         st.just((((2, 3), (2, 3)), {})), (((2, 3), (2, 3)), {}), (prob,),
         tfn=lambda p, t: __import__("torch").nn.functional.binary_cross_entropy(p, t), needs="binary_cross_entropy"),
    Case("avg_pool2d", R("avg_pool2d"), lambda x: _fn("avg_pool2d")(x, 3, 2, 1), st.just((((1, 2, 5, 4),), {})),
         (((1, 2, 5, 4),), {}), tfn=lambda x: __import__("torch").nn.functional.avg_pool2d(x, 3, 2, 1),
         needs="avg_pool2d"),
    # losses (og.nn.functional)
    Case("cross_entropy", R(), _ce, cross_entropy_shapes(),
         (((3, 4), (3,)), {"n_classes": 4, "reduction": "mean"}), (real, labels), tfn=_tce,
         needs="cross_entropy"),
    Case("cross_entropy_1d", R(), _ce, cross_entropy_shapes(batched=False),
         (((4,), ()), {"n_classes": 4, "reduction": "mean"}), (real, labels), tfn=_tce,
         needs="cross_entropy"),
    Case("mse_loss", frozenset(), _mse, unary().map(lambda s: (s[0] * 2, {})), (((2, 3), (2, 3)), {}),
         tfn=_tmse, needs="mse_loss"),
    Case("conv2d", R("conv2d"), lambda x, w, b, stride, padding, dilation=1: _fn("conv2d")(
         x, w, b, stride=stride, padding=padding, dilation=dilation), conv_shapes(),
         (((2, 2, 5, 4), (3, 2, 3, 2), (3,)), {"stride": 1, "padding": 0}),
         tfn=lambda x, w, b, stride, padding, dilation=1: __import__("torch").nn.functional.conv2d(
             x, w, b, stride=stride, padding=padding, dilation=dilation), needs="conv2d"),
    Case("linear", R("linear"), lambda x, w, b=None: _fn("linear")(x, w, b), linear_shapes(),
         (((2, 3, 4), (5, 4), (5,)), {}),
         tfn=lambda x, w, b=None: __import__("torch").nn.functional.linear(x, w, b), needs="linear"),
    Case("layer_norm", R("layer_norm"), lambda x, w=None, b=None, norm=(): _fn("layer_norm")(x, norm, w, b),
         layer_norm_shapes(), (((2, 3, 4), (3, 4), (3, 4)), {"norm": (3, 4)}),
         tfn=lambda x, w=None, b=None, norm=(): __import__("torch").nn.functional.layer_norm(x, norm, w, b),
         needs="layer_norm"),
    Case("recurrence", R("recurrence"), _recurrence, recurrence_shapes(),
         (((3, 2, 6), (2, 2), (6, 2), (6,), (2, 2)), {"kind": _cell_kind("gru"), "reverse": True})),
    Case("max_pool2d", R("max_pool2d"), lambda x, k, stride: _fn("max_pool2d")(x, k, stride), pool_shapes(),
         (((1, 2, 4, 4),), {"k": 2, "stride": None}), (distinct,),
         tfn=lambda x, k, stride: __import__("torch").nn.functional.max_pool2d(x, k, stride), needs="max_pool2d"),
    Case("embedding", R("gather"), lambda w, idx: _fn("embedding")(w, idx), mixed_index(negative=False),
         (((4, 3),), {"idx": np.array([[0, 3], [3, 3]])}),
         tfn=lambda w, idx: __import__("torch").nn.functional.embedding(
             __import__("torch").as_tensor(idx) % w.shape[0], w),
         needs="embedding"),
    Case("dropout", R("dropout"), lambda x: _fn("dropout")(x, 0.5, rng=0), unary(min_dims=1), (U2, {}),
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
        lambda s: s[0][0][0] >= 2 and s[0][0][1] >= 2), (((3, 3),), {}),
        tfn=lambda x: _tbasic(x, lambda a: a[1:][::-1, 0:2][0])),
    Case("write_through_view", R("copy_slices", "view", "mul"), _write_row, unary(min_dims=2).filter(
        lambda s: s[0][0][0] >= 2), (U2, {}), tfn=_write_row),
    Case("int_index", R("gather"), lambda x, key: x[key], int_index(),
         (((4, 3),), {"key": (np.array([0, 2, 0, -1]),)}), tfn=_tindex),
    Case("repeated_index", R("gather"), lambda x: x[[0, 0, 1, 0]], unary(min_dims=1).filter(
        lambda s: s[0][0][0] >= 2), (U2, {}), tfn=lambda x: x[[0, 0, 1, 0]]),
    Case("bool_index", R("gather"), lambda x, mask: x[mask], bool_index(),
         (U2, {"mask": np.array([[True, False, True], [False, False, True]])}),
         tfn=lambda x, mask: x[__import__("torch").as_tensor(mask)]),
    Case("mixed_index", R("gather"), lambda x, idx: x[idx, 1:].sum(axis=1) + x[:, 0][idx], mixed_index(),
         (U2, {"idx": np.array([1, -1, 0])}),
         tfn=lambda x, idx: (x[__import__("torch").as_tensor(idx), 1:].sum(1)
                             + x[:, 0][__import__("torch").as_tensor(idx)])),
    # a composite through several rules and a view into a recorded result
    Case("composite", R("mul", "sum", "view", "tanh"),
         lambda x, y: ((x * y).tanh()[..., ::-1] * y).sum(axis=-1), broadcast(min_dims=1), (B2, {}),
         tfn=lambda x, y: ((x * y).tanh().flip(-1) * y).sum(dim=-1)),
]

#: Rules that cannot be exercised by a CPU-only gradient check, with the reason.
NOT_HERE = {"to": "device transfer: needs a second device (covered by the device tests)"}

IDS = [c.name for c in CASES]


# --- EXTRA: fixed inputs that record every rule -------------------------------------------

def _cross_entropy(logits: og.Tensor, labels: og.Tensor, reduction: str = "mean") -> og.Tensor:
    """The ``cross_entropy`` rule itself (og.nn.functional has its own copy, covered below)."""
    return logits.graph.apply("cross_entropy", (logits, labels), {"reduction": reduction})


def F(name: str) -> Callable[..., og.Tensor]:
    """``og.nn.functional.<name>``; the case skips while it does not exist."""
    try:
        import owngrad.nn.functional as fmod
    except ImportError:
        pytest.skip("owngrad.nn.functional does not exist yet")
    fn = getattr(fmod, name, None)
    if fn is None:
        pytest.skip(f"og.nn.functional.{name} does not exist yet")
    return fn  # type: ignore[no-any-return]


def _recorded_inplace(x: og.Tensor, y: og.Tensor) -> og.Tensor:
    z = x * y
    z[0:1] = 0.0  # through a basic view
    z[:, 1] += x[:, 0]  # in-place add through a view, rhs with history
    z[[1, 1]] = y[1:2, :] * 3  # integer-array setitem
    z *= 2.0
    z.clamp_(-3.0, 3.0)
    return (z * x).sum(axis=0)


def _recurrences(x: og.Tensor, h: og.Tensor) -> og.Tensor:
    """The ``recurrence`` rule of og.nn's GRU, LSTM and RNN, both directions, with initial states."""
    g = x.graph
    gru = og.nn.GRU(g, 3, 2, bidirectional=True, rng=0, dtype=np.float64)
    lstm = og.nn.LSTM(g, 3, 2, num_layers=2, rng=1, dtype=np.float64)
    rnn = og.nn.RNN(g, 3, 2, nonlinearity="relu", bias=False, rng=2, dtype=np.float64)
    a, hn = gru(x, h)
    b, (hl, cl) = lstm(x, (h, h * 0.5))
    c, _ = rnn(x)
    out: og.Tensor = a.sum(axis=-1) + b.sum(axis=-1) + c.sum(axis=-1) + (hn * hl).sum() + cl.sum()
    return out


def _view_zoo(x: og.Tensor) -> og.Tensor:
    return (x[1, 2] * x[::-1, None, 1:] + x[..., 0:1].T.squeeze(0).unsqueeze(-1)[0]).sum(axis=1)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


R = _rng(7)
A = R.uniform(-2, 2, (3, 4))
B = R.uniform(-2, 2, (3, 4))
ROW = R.uniform(-2, 2, (4,))
POS = R.uniform(0.5, 2, (3, 4))
M = R.uniform(-2, 2, (4, 2))
BAT = R.uniform(-2, 2, (2, 3, 4))
LAB = np.array([0, 3, 1])

EXTRA: list[tuple[str, Callable[..., og.Tensor], list[np.ndarray]]] = [
    ("neg", lambda x: -x, [A]),
    ("exp_log_sqrt", lambda x: x.exp() + x.log() * x.sqrt(), [POS]),
    ("tanh_sigmoid_relu_abs", lambda x: x.tanh() * og.sigmoid(x) + x.relu() - og.abs(x), [A]),
    ("clip", lambda x: og.clip(x, -0.5, 0.7) + x.clip(lo=0.1), [A]),
    ("clip_tensor_bounds", lambda x, y: og.clip(x, y, 1.0), [A, B]),
    ("copy", lambda x: x.copy() * 3, [A]),
    ("cast", lambda x: x.astype(np.float32) * 2, [A]),
    ("arith_broadcast", lambda x, r: (x + r) * (x - r) / (r * r + 1) - 2 / (x * x + 1), [A, ROW]),
    ("pow", lambda x, y: x ** y + x ** 2 + 2.0 ** y, [POS, B]),
    ("matmul_2d", lambda x, m: x @ m, [A, M]),
    ("matmul_1d_2d", lambda r, m: r @ m, [ROW, M]),
    ("matmul_2d_1d", lambda x, r: og.matmul(x, r), [A, ROW]),
    ("matmul_batched", lambda b, m: b @ m, [BAT, M]),
    ("matmul_1d_1d", lambda r, s: r @ s, [ROW, ROW * 0.5]),
    ("maximum_minimum", lambda x, y: og.maximum(x, y) * og.minimum(x, 0.3), [A, B]),
    ("where", lambda x, y: og.where(x > y, x * 3, y), [A, B]),
    ("where_bcast", lambda x, r: og.where(x > 0, x, r), [A, ROW]),
    ("sum_mean", lambda x: x.sum(axis=0) * x.mean(axis=1, keepdims=True) + x.sum() + x.mean(axis=(0, 1)), [A]),
    ("max_min", lambda x: x.max(axis=1) + x.min(axis=0, keepdims=True).sum() + x.max(), [A]),
    ("var", lambda x: x.var(axis=0, ddof=1) + x.var(), [A]),
    ("logsumexp", lambda x: x.logsumexp(axis=1) + x.logsumexp(), [A]),
    ("softmax", lambda x: x.softmax(axis=-1) * x + x.log_softmax(axis=0), [A]),
    ("cross_entropy_mean", lambda x, y: _cross_entropy(x, y), [A, LAB]),
    ("cross_entropy_sum", lambda x, y: _cross_entropy(x, y, "sum"), [A, LAB]),
    ("cross_entropy_none", lambda x, y: _cross_entropy(x, y, "none"), [A, LAB]),
    ("cross_entropy_1d", lambda x, y: _cross_entropy(x, y), [ROW, np.array(2)]),
    ("expand", lambda x: x[0:1].expand(2, 3, 4) * x, [A]),
    ("reshape_view_and_copy", lambda x: x.reshape(2, 6).T.reshape(-1) * x.reshape(12), [A]),
    ("concatenate", lambda x, y: og.concatenate([x, y[0:1], x.graph.constant(np.ones((1, 4)))], axis=0), [A, B]),
    ("stack", lambda x, y: og.stack([x, y], axis=1) * og.stack([y, x], axis=1)[:, ::-1], [A, B]),
    ("gather_int", lambda x: x[[0, 0, 2]] * x[np.array([1, -1])].sum(), [A]),
    ("gather_bool", lambda x: x[x > 0] * 2, [A]),
    ("gather_tensor_index", lambda x, i: x[i, 1:] + x[:, 0][i].unsqueeze(1), [A, np.array([2, 0, 0])]),
    ("views", _view_zoo, [A]),
    ("transpose_permute", lambda b: b.transpose(2, 0, 1) * b.permute(2, 0, 1), [BAT]),
    ("recorded_inplace", _recorded_inplace, [A, B]),
    ("to_cpu_and_back_is_noop_on_same_device", lambda x: x.to(x.device) * 2, [A]),
    ("composite", lambda x, y: ((x * y).tanh()[..., ::-1] @ x.graph.constant(M)).relu().sum(axis=-1), [A, B]),
    # og.nn.functional (its rules register on import)
    ("F.cross_entropy", lambda x, y: F("cross_entropy")(x, y) + F("cross_entropy")(x, y, reduction="sum"),
     [A, LAB]),
    ("F.conv2d", lambda x, w, b: F("conv2d")(x, w, b, stride=(2, 1), padding=1) + F("conv2d")(
        x, w, stride=(2, 1), padding=(2, 2), dilation=(1, 2)).sum(),
     [R.uniform(-1, 1, (2, 2, 5, 4)), R.uniform(-1, 1, (3, 2, 3, 2)), R.uniform(-1, 1, (3,))]),
    ("F.max_pool2d", lambda x: F("max_pool2d")(x, 2) + F("max_pool2d")(x, (2, 1), (2, 2)),
     [R.permutation(32).reshape(1, 2, 4, 4) * 0.1]),
    ("F.linear", lambda x, w, b: F("linear")(x, w, b) + F("linear")(x[0], w).sum(),
     [R.uniform(-1, 1, (2, 3, 4)), R.uniform(-1, 1, (5, 4)), R.uniform(-1, 1, (5,))]),
    ("F.layer_norm", lambda x, w, b: F("layer_norm")(x, 4, w, b) * F("layer_norm")(x, (3, 4)),
     [R.uniform(-1, 1, (2, 3, 4)), R.uniform(-1, 1, (4,)), R.uniform(-1, 1, (4,))]),
    ("F.embedding", lambda w: F("embedding")(w, np.array([[0, 2], [2, 2]])), [A]),
    ("F.mse_bce", lambda x, y: F("mse_loss")(x, y) + F("binary_cross_entropy_with_logits")(x, 0.3), [A, B]),
    ("F.dropout", lambda x: F("dropout")(x, 0.5, rng=3) * x, [A]),
    ("trig_log1p_expm1_square", lambda x: x.sin() * x.cos() + x.log1p() + x.expm1() * x.square(), [POS]),
    ("norm_cumsum_flip", lambda x: x.norm(axis=1) * x.cumsum(1).sum(axis=1) + x.flip(0).cumsum().sum(), [A]),
    ("tril_triu_masked_fill", lambda x: x.tril() * x.triu(1) + x.masked_fill(x > 0, 0.5), [A]),
    ("lerp_index_add", lambda x, y: _lerp(x, y) + _index_add(x[:, 0:2], og.concatenate([y, y[0:1]])[:, 0:2]).sum(),
     [A, B]),
    ("take_pad_einsum", lambda x, y: og.take_along_axis(x, np.array([[0, 1], [3, 3], [2, 0]]), 1).sum()
     + og.pad(x, 1, value=0.5).sum() + og.einsum("ij,kj->ik", x, y), [A, B]),
    ("F.activations", lambda x: F("gelu")(x) + F("gelu")(x, "tanh") + F("softplus")(x) + F("logsigmoid")(x)
     + F("leaky_relu")(x) + F("elu")(x), [A]),
    ("F.bce_avg_pool", lambda p, x: F("binary_cross_entropy")(p, p.graph.constant(POS / 2.5))
     + F("avg_pool2d")(x, 2).sum(), [POS / 2.5, R.uniform(-1, 1, (1, 2, 4, 4))]),
    ("nn.recurrence", _recurrences, [R.uniform(-1, 1, (4, 2, 3)), R.uniform(-1, 1, (2, 2, 2))]),
]
EXTRA_IDS = [c[0] for c in EXTRA]
