"""The bad-input catalogue: every public entry point called with wrong
types, dtypes, shapes, axes, indices, devices, graphs, seeds and labels.

Each row of ``ROWS`` is ``(id, call, expected exception type, substrings the message must hold)``.
For every row the test checks that
- the exception is the expected one, and is owngrad's own or a builtin (never numpy's
  AxisError or a bare ufunc error from deep inside);
- the message names the op and the problem (the substrings: op name, both shapes, the bad axis
  or index, what to install...);
- the failed call changed nothing: the pending nodes of both graphs (ids), every involved
  storage's ledger (live borrows: region, kind, holder) and every tensor's data (copies), and
  the optimizer's state, are exactly as before.

NaN and inf are not errors: they propagate like numpy (forward and backward), and
``g.backward(..., check_finite=True)`` names the first node whose gradient is not finite.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import warnings
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import owngrad as og

THIS = os.path.basename(__file__)
F = getattr(getattr(og, "nn", None), "functional", None)
ALLOWED_MODULES = ("owngrad.errors", "builtins")


# --- the environment every row runs in ---------------------------------------------------------

def make_env(tmp: str) -> SimpleNamespace:
    """Two graphs; params, constants, views; pending nodes that hold borrows; a consumed loss and
    its Grads; a model and an optimizer when the training layer exists."""
    rng = np.random.default_rng(0)
    e = SimpleNamespace()
    e.tmp = tmp
    g = e.g = og.Graph()
    g2 = e.g2 = og.Graph()
    e.w = g.param(rng.standard_normal((3, 2)), name="w")
    e.b = g.param(np.zeros(2), name="b")
    e.q = g.param(np.ones(2), name="q")
    e.x = g.constant(np.ones((4, 3)), name="x")
    e.c = g.constant(np.ones((3, 2)), name="c")
    e.o = g2.param(np.ones((3, 2)), name="o")
    e.img = g.constant(rng.standard_normal((2, 3, 5, 5)), name="img")
    e.kern = g.param(rng.standard_normal((4, 3, 3, 3)), name="kern")
    e.emb = g.param(rng.standard_normal((5, 2)), name="emb")
    e.vec = g.param(np.ones(4), name="vec")
    # a loss walked by backward (consumed) and its gradients
    e.done = (e.w * 3.0).sum() + (e.b * e.b).sum() + (e.q * 2.0).sum()
    e.grads = g.backward(e.done)
    # pending work that holds borrows: x saved by matmul, q saved by mul, exp saves its output
    e.y = (e.x @ e.w).exp()
    e.ysum = e.y.sum()
    e.logits = e.x @ e.w
    e.hw = e.w * 2.0
    e.qq = e.q * e.q
    e.frozen = g.freeze(e.w)
    e.cond = e.w > 0
    e.labels = g.constant(np.array([0, 1, 1, 0], dtype=np.int64), name="labels")
    if hasattr(og, "nn") and hasattr(og.nn, "Linear"):
        e.model = og.nn.Linear(g, 3, 2, rng=0)
    if hasattr(og, "optim"):
        e.opt = og.optim.SGD([e.w, e.b], lr=0.1, momentum=0.9)
        e.opt.step(e.grads)  # momentum buffers exist, so a half-applied step would show
        e.opt_q = og.optim.SGD([e.w, e.b, e.q], lr=0.1)
    return e


def _tensors(e: SimpleNamespace) -> dict[str, og.Tensor]:
    out = {k: v for k, v in vars(e).items() if isinstance(v, og.Tensor)}
    for p, gt in e.grads.items():
        out[f"grad[{p.name}]"] = gt
    model = getattr(e, "model", None)
    if model is not None:
        for n, p in model.named_parameters():
            out[f"model.{n}"] = p
    return out


def snapshot(e: SimpleNamespace) -> dict[str, Any]:
    ts = _tensors(e)
    ledgers = {}
    for t in ts.values():
        st = t._storage
        ledgers[id(st)] = sorted((repr(b.region), b.kind, id(b.holder)) for b in st.ledger.live())
    snap = {
        "pending": {"g": [n.id for n in e.g.pending()], "g2": [n.id for n in e.g2.pending()]},
        "ledgers": ledgers,
        "data": {k: t.numpy() for k, t in ts.items()},
        "dtypes": {k: t.dtype for k, t in ts.items()},
    }
    for name in ("opt", "opt_q"):
        opt = getattr(e, name, None)
        if opt is not None:
            snap[name] = copy.deepcopy(opt.state_dict())
    return snap


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["pending"] == before["pending"], "the failed call changed the pending nodes"
    assert after["ledgers"] == before["ledgers"], "the failed call changed a ledger"
    assert after["dtypes"] == before["dtypes"]
    for k, a in before["data"].items():
        np.testing.assert_array_equal(after["data"][k], a, err_msg=f"the failed call changed {k}'s data")
    for name in ("opt", "opt_q"):
        if name in before:
            sb, sa = before[name], after[name]
            assert sa["param_groups"] == sb["param_groups"]
            assert len(sa["state"]) == len(sb["state"])
            for da, db in zip(sa["state"], sb["state"]):
                assert da.keys() == db.keys(), f"the failed call changed {name}'s state"
                for k in db:
                    np.testing.assert_array_equal(da[k], db[k], err_msg=f"the failed call changed {name}.{k}")


# --- helpers for rows ----------------------------------------------------------------------------

def need(*attrs: str) -> None:
    obj: Any = og
    for a in attrs:
        if not hasattr(obj, a):
            pytest.skip(f"og.{'.'.join(attrs)} does not exist (yet)")
        obj = getattr(obj, a)


def _with(cm_factory: Callable[[], Any]) -> None:
    with cm_factory():
        pass


def _setitem(t: og.Tensor, k: Any, v: Any) -> None:
    t[k] = v


def _iop(t: og.Tensor, op: str, v: Any) -> None:
    if op == "+=":
        t += v
    elif op == "-=":
        t -= v
    elif op == "*=":
        t *= v
    else:
        t /= v


def _write_file(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def _fn(*names: str) -> Any:
    """og.nn.functional.<name> (skips the row where it is absent)."""
    need("nn", "functional", *names)
    obj: Any = og.nn.functional
    for n in names:
        obj = getattr(obj, n)
    return obj


R = tuple[str, Callable[[SimpleNamespace], Any], type[BaseException] | tuple[type[BaseException], ...], list[str]]
ROWS: list[R] = []


def row(id_: str, call: Callable[[SimpleNamespace], Any], exc: Any, *subs: str) -> None:
    ROWS.append((id_, call, exc, list(subs)))


# --- g.param / g.constant: data ---------------------------------------------------------------
for maker in ("param", "constant"):
    m = f"g.{maker}"
    row(f"{maker}-object", lambda e, m=maker: getattr(e.g, m)(np.array([1, "a"], dtype=object)), TypeError, m, "object")
    row(f"{maker}-str", lambda e, m=maker: getattr(e.g, m)("abc"), TypeError, m, "str")
    row(f"{maker}-bytes", lambda e, m=maker: getattr(e.g, m)(b"abc"), TypeError, m)
    row(f"{maker}-str-array", lambda e, m=maker: getattr(e.g, m)(np.array(["a", "b"])), TypeError, m)
    row(f"{maker}-complex-array", lambda e, m=maker: getattr(e.g, m)(np.ones(2, dtype=complex)), TypeError, m,
        "complex")
    row(f"{maker}-complex-scalar", lambda e, m=maker: getattr(e.g, m)(1 + 2j), TypeError, m, "complex")
    row(f"{maker}-none", lambda e, m=maker: getattr(e.g, m)(None), TypeError, m)
    row(f"{maker}-dict", lambda e, m=maker: getattr(e.g, m)({"a": 1}), TypeError, m)
    row(f"{maker}-ragged", lambda e, m=maker: getattr(e.g, m)([[1.0, 2.0], [3.0]]), TypeError, m)
    row(f"{maker}-tensor", lambda e, m=maker: getattr(e.g, m)(e.w), TypeError, m, "Tensor")
row("param-int-array", lambda e: e.g.param(np.arange(3)), TypeError, "g.param", "int64", "float")
row("param-bool-array", lambda e: e.g.param(np.array([True, False])), TypeError, "g.param", "bool", "float")
row("param-int-scalar", lambda e: e.g.param(np.int32(3)), TypeError, "g.param", "int32")

# --- devices ------------------------------------------------------------------------------------
_NO_CUPY = importlib.util.find_spec("cupy") is None
if _NO_CUPY:
    row("graph-cuda-without-cupy", lambda e: og.Graph(device="cuda"), og.DeviceError,
        "cuda", "pip install -e '.[cuda]'")
    row("to-cuda-without-cupy", lambda e: e.w.to("cuda"), og.DeviceError, "cuda", "pip install -e '.[cuda]'")
row("graph-unknown-device", lambda e: og.Graph(device="tpu"), og.DeviceError, "'tpu'", "'cpu'", "'cuda'")
row("graph-device-not-a-str", lambda e: og.Graph(device=3), (og.DeviceError, TypeError), "device", "3")
row("to-unknown-device", lambda e: e.w.to("tpu"), og.DeviceError, "'tpu'", "'cpu'")

# --- binary ops: shapes, types, graphs ----------------------------------------------------------
BINARY = [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
          ("div", lambda a, b: a / b), ("pow", lambda a, b: a ** b)]
for name, f in BINARY:
    row(f"{name}-shape", lambda e, f=f: f(e.w, e.x), og.ShapeError, name, "(3, 2)", "(4, 3)")
    row(f"{name}-shape-array", lambda e, f=f: f(e.w, np.ones(5)), og.ShapeError, name, "(3, 2)", "(5,)")
    row(f"{name}-reflected-shape", lambda e, f=f: f(np.ones((5, 1, 7)), e.w), og.ShapeError, name, "(3, 2)")
    row(f"{name}-str", lambda e, f=f: f(e.w, "a"), TypeError, name, "str")
    row(f"{name}-reflected-str", lambda e, f=f: f("a", e.w), TypeError, name, "str")
    row(f"{name}-none", lambda e, f=f: f(e.w, None), TypeError, name, "NoneType")
    row(f"{name}-complex", lambda e, f=f: f(e.w, 1j), TypeError, name, "complex")
    row(f"{name}-complex-array", lambda e, f=f: f(e.w, np.ones((3, 2), dtype=complex)), TypeError, name, "complex")
    row(f"{name}-object-array", lambda e, f=f: f(e.w, np.array([[None]])), TypeError, name, "object")
    row(f"{name}-str-array", lambda e, f=f: f(e.w, np.array(["a", "b"])), TypeError, name)
    row(f"{name}-other-graph", lambda e, f=f: f(e.w, e.o), og.GraphError, name, "graph")
    row(f"{name}-other-graph-reflected", lambda e, f=f: f(e.o, e.w), og.GraphError, name, "graph")
    row(f"{name}-view-other-graph", lambda e, f=f: f(e.w[0:2], e.o[0:2]), og.GraphError, name, "graph")
    row(f"{name}-view-shape", lambda e, f=f: f(e.w[0:2], e.x), og.ShapeError, name, "(2, 2)", "(4, 3)")
row("matmul-shape", lambda e: e.w @ e.w, og.ShapeError, "matmul", "(3, 2)")
row("matmul-scalar", lambda e: e.w @ 2.0, og.ShapeError, "matmul", "(3, 2)")
row("matmul-str", lambda e: e.w @ "a", TypeError, "matmul")
row("matmul-other-graph", lambda e: e.w.T @ e.o, og.GraphError, "matmul", "graph")
row("og.matmul-other-graph", lambda e: og.matmul(e.w, e.o.T), og.GraphError, "matmul", "graph")
row("og.matmul-no-tensor", lambda e: og.matmul(np.ones(2), np.ones(2)), TypeError, "matmul", "Tensor")
for sym, f in [("<", lambda a, b: a < b), ("<=", lambda a, b: a <= b), (">", lambda a, b: a > b),
               (">=", lambda a, b: a >= b), ("==", lambda a, b: a == b), ("!=", lambda a, b: a != b)]:
    row(f"compare{sym}-shape", lambda e, f=f: f(e.w, e.x), og.ShapeError, sym, "(3, 2)", "(4, 3)")
    row(f"compare{sym}-other-graph", lambda e, f=f: f(e.w, e.o), og.GraphError, sym, "graph")
    row(f"compare{sym}-str", lambda e, f=f: f(e.w, "a"), TypeError, sym, "str")
row("invert-float", lambda e: ~e.w, TypeError, "~", "float64")

# --- reductions, softmax: axes ------------------------------------------------------------------
for name in ("sum", "mean", "max", "min", "var", "logsumexp"):
    row(f"{name}-axis-out-of-range", lambda e, n=name: getattr(e.w, n)(axis=2), og.ShapeError, name, "2", "(3, 2)")
    row(f"{name}-axis-negative", lambda e, n=name: getattr(e.w, n)(axis=-3), og.ShapeError, name, "-3", "(3, 2)")
    row(f"{name}-axis-float", lambda e, n=name: getattr(e.w, n)(axis=1.0), (og.ShapeError, TypeError), name, "1.0")
    row(f"{name}-axis-str", lambda e, n=name: getattr(e.w, n)(axis="a"), (og.ShapeError, TypeError), name, "'a'")
    row(f"{name}-axis-tuple", lambda e, n=name: getattr(e.w, n)(axis=(0, 5)), og.ShapeError, name, "5", "(3, 2)")
    row(f"{name}-axis-duplicate", lambda e, n=name: getattr(e.w, n)(axis=(0, 0)), og.ShapeError, name)
for name in ("softmax", "log_softmax"):
    row(f"{name}-axis", lambda e, n=name: getattr(e.w, n)(axis=3), og.ShapeError, name, "3", "(3, 2)")
row("var-ddof-str", lambda e: e.w.var(ddof="a"), TypeError, "var", "ddof")
row("argmax-axis", lambda e: e.w.argmax(axis=5), og.ShapeError, "argmax", "5", "(3, 2)")

# --- shape ops ---------------------------------------------------------------------------------
row("reshape-size", lambda e: e.w.reshape(5), og.ShapeError, "reshape", "(3, 2)", "(5,)")
row("reshape-str", lambda e: e.w.reshape("a"), (og.ShapeError, TypeError), "reshape", "(3, 2)")
row("reshape-view-size", lambda e: e.w[0:2].reshape(3), og.ShapeError, "reshape", "(2, 2)")
row("transpose-repeat", lambda e: e.w.transpose(0, 0), og.ShapeError, "transpose", "(3, 2)")
row("transpose-too-few", lambda e: e.w.transpose(0), og.ShapeError, "transpose", "(3, 2)")
row("permute-out-of-range", lambda e: e.w.permute(2, 0), og.ShapeError, "(3, 2)")
row("squeeze-not-one", lambda e: e.w.squeeze(0), og.ShapeError, "squeeze", "(3, 2)")
row("squeeze-out-of-range", lambda e: e.w.squeeze(5), og.ShapeError, "squeeze", "5", "(3, 2)")
row("unsqueeze-out-of-range", lambda e: e.w.unsqueeze(5), og.ShapeError, "unsqueeze", "5")
row("expand-incompatible", lambda e: e.w.expand(4, 3), og.ShapeError, "expand", "(3, 2)", "(4, 3)")
row("expand-fewer-dims", lambda e: e.w.expand(2), og.ShapeError, "expand", "(3, 2)")
row("astype-unknown", lambda e: e.w.astype("foo"), TypeError, "astype", "foo")
row("astype-complex", lambda e: e.w.astype(complex), TypeError, "astype", "complex")
row("astype-object", lambda e: e.w.astype(object), TypeError, "astype", "object")
row("item-not-scalar", lambda e: e.w.item(), ValueError, "item", "(3, 2)")
row("bool-ambiguous", lambda e: bool(e.w), ValueError, "(3, 2)")
row("len-0d", lambda e: len(e.done), TypeError, "0-d")
row("Tensor()", lambda e: og.Tensor(), TypeError, "g.param")

# --- indexing ----------------------------------------------------------------------------------
row("index-int-out-of-range", lambda e: e.w[5], IndexError, "5", "3", "(3, 2)")
row("index-negative-out-of-range", lambda e: e.w[-4], IndexError, "-4", "(3, 2)")
row("index-second-axis", lambda e: e.w[0, 2], IndexError, "2", "axis 1", "(3, 2)")
row("index-too-many", lambda e: e.w[0, 0, 0], IndexError, "too many", "(3, 2)")
row("index-float", lambda e: e.w[1.0], IndexError, "(3, 2)")
row("index-str", lambda e: e.w["a"], IndexError, "(3, 2)")
row("index-two-ellipses", lambda e: e.w[..., ...], IndexError, "ellipsis")
row("index-array-out-of-range", lambda e: e.w[np.array([0, 7])], IndexError, "7", "(3, 2)")
row("index-list-out-of-range", lambda e: e.w[[0, -9]], IndexError, "-9", "(3, 2)")
row("index-bool-wrong-length", lambda e: e.w[np.array([True, False])], IndexError, "boolean", "(3, 2)")
row("index-float-array", lambda e: e.w[np.array([0.0])], IndexError, "float64")
row("index-view-out-of-range", lambda e: e.w[0:2][2], IndexError, "2", "(2, 2)")
row("index-tensor-float", lambda e: e.w[e.b], IndexError, "float64")

# --- in-place writes ---------------------------------------------------------------------------
row("setitem-out-of-range", lambda e: _setitem(e.w, 9, 1.0), IndexError, "9", "(3, 2)")
row("setitem-array-out-of-range", lambda e: _setitem(e.w, np.array([0, 7]), 1.0), IndexError, "7", "(3, 2)")
row("setitem-shape", lambda e: _setitem(e.w, 0, np.ones(5)), og.ShapeError, "(5,)", "(2,)")
row("setitem-str", lambda e: _setitem(e.w, 0, "a"), TypeError, "str")
row("setitem-complex", lambda e: _setitem(e.w, 0, 1j), TypeError, "complex")
row("setitem-other-graph", lambda e: _setitem(e.w, 0, e.o[0]), og.GraphError, "graph")
row("setitem-frozen", lambda e: _setitem(e.frozen, 0, 0.0), og.BorrowError, "read-only", "g.freeze")
row("setitem-frozen-view", lambda e: _setitem(e.frozen[1], 0, 0.0), og.BorrowError, "read-only")
row("setitem-grad-handle", lambda e: _setitem(e.grads[e.w], 0, 0.0), og.BorrowError, "read-only", "gradient")
row("setitem-saved-region", lambda e: _setitem(e.x, 1, 0.0), og.BorrowError,
    "x[1]", "node #", "matmul", "saved for backward", THIS, "help:")
row("setitem-leaf-with-history", lambda e: _setitem(e.w, slice(0, 1), e.hw[0:1]), og.GraphError,
    "param", "no_grad")
for sym in ("+=", "-=", "*=", "/="):
    row(f"{sym}-shape", lambda e, s=sym: _iop(e.w, s, np.ones(5)), og.ShapeError, sym, "(5,)", "(3, 2)")
    row(f"{sym}-broadcast-grows", lambda e, s=sym: _iop(e.b, s, e.w), og.ShapeError, sym, "(3, 2)", "(2,)")
    row(f"{sym}-str", lambda e, s=sym: _iop(e.w, s, "s"), TypeError, sym, "str")
    row(f"{sym}-complex", lambda e, s=sym: _iop(e.x, s, 1j), TypeError, sym, "complex")
    row(f"{sym}-other-graph", lambda e, s=sym: _iop(e.w, s, e.o), og.GraphError, sym, "graph")
    row(f"{sym}-frozen", lambda e, s=sym: _iop(e.frozen, s, 1.0), og.BorrowError, sym, "read-only")
    row(f"{sym}-saved", lambda e, s=sym: _iop(e.q, s, 1.0), og.BorrowError, sym, "q", "saved for backward", "help:")
    row(f"{sym}-leaf-with-history", lambda e, s=sym: _iop(e.w, s, e.hw), og.GraphError, sym, "no_grad")
for meth in ("add_", "sub_", "mul_", "div_", "copy_"):
    row(f"{meth}-shape", lambda e, m=meth: getattr(e.w, m)(np.ones(4)), og.ShapeError, meth, "(4,)", "(3, 2)")
    row(f"{meth}-str", lambda e, m=meth: getattr(e.w, m)("a"), TypeError, meth)
    row(f"{meth}-other-graph", lambda e, m=meth: getattr(e.w, m)(e.o), og.GraphError, meth, "graph")
    row(f"{meth}-frozen", lambda e, m=meth: getattr(e.frozen, m)(e.c), og.BorrowError, meth, "read-only")
row("fill_-tensor", lambda e: e.w.fill_(e.x), og.ShapeError, "fill_", "(4, 3)")
row("fill_-str", lambda e: e.w.fill_("a"), TypeError, "fill_")
row("fill_-saved", lambda e: e.x.fill_(0.0), og.BorrowError, "fill_", "saved for backward")
row("zero_-saved", lambda e: e.q.zero_(), og.BorrowError, "zero_", "q", "saved for backward")
row("zero_-grad-handle", lambda e: e.grads[e.w].zero_(), og.BorrowError, "zero_", "read-only")
row("clamp_-str", lambda e: e.w.clamp_("a", 1.0), TypeError, "clamp_")
row("clamp_-saved", lambda e: e.q.clamp_(0.0, 1.0), og.BorrowError, "clamp_", "saved for backward")
row("borrow_mut-saved", lambda e: _with(e.x.borrow_mut), og.BorrowError,
    "x", "borrow_mut", "saved for backward", THIS)
row("borrow_mut-frozen", lambda e: _with(e.frozen.borrow_mut), og.BorrowError, "read-only")

# --- og.maximum / minimum / where / clip / concatenate / stack ---------------------------------
for name in ("maximum", "minimum"):
    row(f"og.{name}-shape", lambda e, n=name: getattr(og, n)(e.w, e.x), og.ShapeError, name, "(3, 2)", "(4, 3)")
    row(f"og.{name}-no-tensor", lambda e, n=name: getattr(og, n)(1.0, 2.0), TypeError, name, "Tensor")
    row(f"og.{name}-other-graph", lambda e, n=name: getattr(og, n)(e.w, e.o), og.GraphError, name, "graph")
    row(f"og.{name}-str", lambda e, n=name: getattr(og, n)(e.w, "a"), TypeError, name)
    row(f"og.{name}-view-other-graph", lambda e, n=name: getattr(og, n)(e.w[1], e.o[1]), og.GraphError, name)
row("og.where-float-condition", lambda e: og.where(e.w, e.w, e.w), TypeError, "where", "boolean")
row("og.where-shape", lambda e: og.where(e.cond, e.w, e.x), og.ShapeError, "where", "(3, 2)", "(4, 3)")
row("og.where-other-graph", lambda e: og.where(e.cond, e.w, e.o), og.GraphError, "where", "graph")
row("og.where-grad-condition", lambda e: og.where(e.hw, e.w, e.w), (og.GraphError, TypeError), "where")
row("og.clip-not-a-tensor", lambda e: og.clip(np.ones(2), 0.0, 1.0), TypeError, "clip", "Tensor")
row("og.clip-str-bound", lambda e: og.clip(e.w, "a", 1.0), TypeError, "clip")
row("og.clip-bound-other-graph", lambda e: og.clip(e.w, e.o, None), og.GraphError, "graph")
row("og.clip-bound-shape", lambda e: og.clip(e.w, e.x, None), og.ShapeError, "(3, 2)", "(4, 3)")
row("og.concatenate-shape", lambda e: og.concatenate([e.w, e.x], axis=1), og.ShapeError,
    "concatenate", "(3, 2)", "(4, 3)")
row("og.concatenate-ndim", lambda e: og.concatenate([e.w, e.b]), og.ShapeError, "concatenate", "(3, 2)", "(2,)")
row("og.concatenate-axis", lambda e: og.concatenate([e.w, e.w], axis=2), og.ShapeError, "concatenate", "axis 2")
row("og.concatenate-empty", lambda e: og.concatenate([]), TypeError, "concatenate")
row("og.concatenate-not-a-list", lambda e: og.concatenate(e.w), TypeError, "concatenate")
row("og.concatenate-other-graph", lambda e: og.concatenate([e.w, e.o]), og.GraphError, "concatenate", "graph")
row("og.concatenate-str", lambda e: og.concatenate([e.w, "a"]), TypeError, "concatenate")
row("og.stack-shape", lambda e: og.stack([e.w, e.x]), og.ShapeError, "stack", "(3, 2)", "(4, 3)")
row("og.stack-axis", lambda e: og.stack([e.w, e.w], axis=4), og.ShapeError, "stack", "axis 4")
row("og.stack-empty", lambda e: og.stack([]), TypeError, "stack")
row("og.stack-other-graph", lambda e: og.stack([e.w, e.o]), og.GraphError, "stack", "graph")

# --- Graph methods ------------------------------------------------------------------------------
row("backward-non-scalar", lambda e: e.g.backward(e.y), og.GraphError, "g.backward", "scalar", "(4, 2)", "seed=")
row("backward-seed-shape", lambda e: e.g.backward(e.y, seed=np.ones(3)), og.ShapeError,
    "g.backward", "seed", "(3,)", "(4, 2)")
row("backward-seed-tensor-shape", lambda e: e.g.backward(e.y, seed=e.b), og.ShapeError, "seed", "(2,)", "(4, 2)")
row("backward-seed-str", lambda e: e.g.backward(e.y, seed="a"), TypeError, "g.backward", "seed")
row("backward-seed-complex", lambda e: e.g.backward(e.y, seed=np.ones((4, 2), dtype=complex)), TypeError,
    "g.backward", "seed", "complex")
row("backward-seed-other-graph", lambda e: e.g.backward(e.y, seed=e.g2.constant(np.ones((4, 2)))),
    og.GraphError, "g.backward", "graph")
row("backward-other-graph", lambda e: e.g2.backward(e.ysum), og.GraphError, "g.backward", "another graph")
row("backward-not-a-tensor", lambda e: e.g.backward(3.0), TypeError, "g.backward", "float")
row("backward-constant", lambda e: e.g.backward(e.x.sum()), og.GradError, "g.backward", "does not depend")
row("backward-into-not-grads", lambda e: e.g.backward(e.ysum, into=3), TypeError, "into", "Grads")
row("backward-on_grad-not-callable", lambda e: e.g.backward(e.ysum, on_grad=3), TypeError, "on_grad")
row("backward-consumed", lambda e: e.g.backward(e.done), og.GraphError, "g.backward", "consumed", "retain=True")
row("free-other-graph", lambda e: e.g2.free(e.y), og.GraphError, "g.free", "another graph")
row("free-not-a-tensor", lambda e: e.g.free(1), TypeError, "g.free", "int")
row("freeze-other-graph", lambda e: e.g2.freeze(e.w), og.GraphError, "g.freeze", "another graph")
row("freeze-not-a-tensor", lambda e: e.g.freeze(np.ones(2)), TypeError, "g.freeze", "ndarray")
row("to_dot-other-graph", lambda e: e.g2.to_dot(e.y), og.GraphError, "g.to_dot", "another graph")
row("to_dot-not-a-tensor", lambda e: e.g.to_dot("y"), TypeError, "g.to_dot", "str")

# --- Grads ------------------------------------------------------------------------------------
row("grads-constant", lambda e: e.grads[e.x], og.GradError, "x", "not a param")
row("grads-unused-param", lambda e: e.grads[e.emb], og.GradError, "emb", "does not depend")
row("grads-not-a-tensor", lambda e: e.grads["w"], og.GradError, "str")
row("grads-view", lambda e: e.grads[e.w[0]], og.GradError, "view")
row("grads-other-graph", lambda e: e.grads[e.o], og.GradError, "o")
row("grads-clip-zero", lambda e: e.grads.clip_norm_(0.0), ValueError, "clip_norm_", "positive")
row("grads-clip-negative", lambda e: e.grads.clip_norm_(-1.0), ValueError, "clip_norm_")

# --- og.nn.functional ---------------------------------------------------------------------------
row("cross_entropy-label-too-large", lambda e: _fn("cross_entropy")(e.logits, np.array([0, 1, 5, 0])),
    (ValueError, IndexError), "cross_entropy", "5", "2")
row("cross_entropy-label-negative", lambda e: _fn("cross_entropy")(e.logits, np.array([0, -1, 1, 0])),
    (ValueError, IndexError), "cross_entropy", "-1")
row("cross_entropy-float-labels", lambda e: _fn("cross_entropy")(e.logits, np.array([0.0, 1.0, 1.0, 0.0])),
    TypeError, "cross_entropy", "integer")
row("cross_entropy-float-label-tensor", lambda e: _fn("cross_entropy")(e.logits, e.vec), TypeError,
    "cross_entropy", "integer")
row("cross_entropy-label-shape", lambda e: _fn("cross_entropy")(e.logits, np.array([0, 1, 1])),
    og.ShapeError, "cross_entropy", "(4, 2)", "(3,)")
row("cross_entropy-logits-1d", lambda e: _fn("cross_entropy")(e.b, np.array([0, 1])), og.ShapeError,
    "cross_entropy", "(2,)")
row("cross_entropy-reduction", lambda e: _fn("cross_entropy")(e.logits, e.labels, reduction="avg"),
    ValueError, "cross_entropy", "avg")
row("cross_entropy-labels-other-graph",
    lambda e: _fn("cross_entropy")(e.logits, e.g2.constant(np.array([0, 1, 1, 0]))), og.GraphError,
    "cross_entropy", "graph")
row("cross_entropy-str-labels", lambda e: _fn("cross_entropy")(e.logits, ["a", "b", "c", "d"]), TypeError,
    "cross_entropy")
row("cross_entropy-not-a-tensor", lambda e: _fn("cross_entropy")(np.ones((4, 2)), e.labels), TypeError,
    "cross_entropy", "Tensor")
row("mse_loss-shape", lambda e: _fn("mse_loss")(e.logits, np.ones(3)), og.ShapeError, "mse_loss", "(4, 2)", "(3,)")
row("mse_loss-reduction", lambda e: _fn("mse_loss")(e.logits, np.ones((4, 2)), reduction="x"), ValueError,
    "mse_loss")
row("mse_loss-other-graph", lambda e: _fn("mse_loss")(e.w, e.o), og.GraphError, "graph")
row("dropout-p", lambda e: _fn("dropout")(e.w, p=1.5), ValueError, "dropout", "1.5")
row("dropout-not-a-tensor", lambda e: _fn("dropout")(np.ones(3)), TypeError, "dropout", "Tensor")
row("conv2d-not-4d", lambda e: _fn("conv2d")(e.x, e.kern), og.ShapeError, "conv2d", "(4, 3)", "(4, 3, 3, 3)")
row("conv2d-channels", lambda e: _fn("conv2d")(e.img, e.kern[:, 0:2]), og.ShapeError, "conv2d",
    "(2, 3, 5, 5)", "(4, 2, 3, 3)")
row("conv2d-kernel-too-big", lambda e: _fn("conv2d")(e.img[:, :, 0:2, 0:2], e.kern), og.ShapeError, "conv2d")
row("conv2d-stride-zero", lambda e: _fn("conv2d")(e.img, e.kern, stride=0), ValueError, "conv2d", "stride")
row("conv2d-dilation-zero", lambda e: _fn("conv2d")(e.img, e.kern, dilation=0), ValueError, "conv2d", "dilation")
row("conv2d-dilated-kernel-too-big", lambda e: _fn("conv2d")(e.img, e.kern, dilation=3), og.ShapeError, "conv2d",
    "dilation (3, 3)", "(7, 7)")
row("conv2d-stride-str", lambda e: _fn("conv2d")(e.img, e.kern, stride="a"), TypeError, "conv2d", "stride")
row("conv2d-padding-negative", lambda e: _fn("conv2d")(e.img, e.kern, padding=-1), ValueError, "conv2d", "padding")
row("conv2d-bias-shape", lambda e: _fn("conv2d")(e.img, e.kern, bias=e.b), og.ShapeError, "conv2d", "bias", "(2,)")
row("conv2d-other-graph", lambda e: _fn("conv2d")(e.img, e.g2.param(np.ones((4, 3, 3, 3)))), og.GraphError,
    "conv2d", "graph")
row("max_pool2d-kernel-too-big", lambda e: _fn("max_pool2d")(e.img, 7), og.ShapeError, "max_pool2d", "(2, 3, 5, 5)")
row("max_pool2d-not-4d", lambda e: _fn("max_pool2d")(e.x, 2), og.ShapeError, "max_pool2d", "(4, 3)")
row("max_pool2d-kernel-zero", lambda e: _fn("max_pool2d")(e.img, 0), ValueError, "max_pool2d", "kernel_size")
row("max_pool2d-kernel-float", lambda e: _fn("max_pool2d")(e.img, 2.5), TypeError, "max_pool2d", "kernel_size")
row("embedding-out-of-range", lambda e: _fn("embedding")(e.emb, np.array([0, 7])), IndexError, "embedding", "7", "5")
row("embedding-negative", lambda e: _fn("embedding")(e.emb, np.array([-1])), IndexError, "embedding", "-1")
row("embedding-float-indices", lambda e: _fn("embedding")(e.emb, np.array([0.0, 1.0])), TypeError,
    "embedding", "integer")
row("embedding-weight-1d", lambda e: _fn("embedding")(e.b, np.array([0])), og.ShapeError, "embedding", "(2,)")

# --- og.nn modules ------------------------------------------------------------------------------
def _mod(name: str) -> Any:
    need("nn", name)
    return getattr(og.nn, name)


row("Linear-features", lambda e: e.model(e.img[0, 0]), og.ShapeError, "Linear", "3", "(5, 5)")
row("Linear-other-graph", lambda e: e.model(e.g2.constant(np.ones((4, 3)))), og.GraphError, "graph")
row("MLP-one-size", lambda e: _mod("MLP")(e.g, [3]), ValueError, "MLP", "[3]")
row("MLP-activation", lambda e: _mod("MLP")(e.g, [3, 2], activation="gelu2"), ValueError, "MLP", "gelu2")
row("Sequential-not-a-module", lambda e: _mod("Sequential")(3), TypeError, "Sequential", "int")
row("Dropout-p", lambda e: _mod("Dropout")(p=2.0), ValueError, "Dropout", "2.0")
row("load_state_dict-missing", lambda e: e.model.load_state_dict({"weight": np.ones((2, 3))}), (KeyError, ValueError),
    "bias")
row("load_state_dict-shape", lambda e: e.model.load_state_dict({"weight": np.ones((3, 3)), "bias": np.ones(2)}),
    og.ShapeError, "weight", "(3, 3)", "(2, 3)")
row("load_state_dict-dtype", lambda e: e.model.load_state_dict(
    {"weight": np.ones((2, 3), dtype=complex), "bias": np.ones(2)}), TypeError, "weight", "complex")

# --- og.optim -----------------------------------------------------------------------------------
def _optim(name: str) -> Any:
    need("optim", name)
    return getattr(og.optim, name)


for oname in ("SGD", "Adam", "AdamW"):
    row(f"{oname}-constant-param", lambda e, n=oname: _optim(n)([e.x], lr=0.1), TypeError, oname,
        "not a param")
    row(f"{oname}-view-param", lambda e, n=oname: _optim(n)([e.w[0]], lr=0.1), TypeError, oname, "not a param")
    row(f"{oname}-not-a-tensor", lambda e, n=oname: _optim(n)([np.ones(2)], lr=0.1), TypeError, oname, "ndarray")
    row(f"{oname}-empty", lambda e, n=oname: _optim(n)([], lr=0.1), ValueError, oname, "empty")
    row(f"{oname}-negative-lr", lambda e, n=oname: _optim(n)([e.w], lr=-1.0), ValueError, oname, "lr")
    row(f"{oname}-nan-lr", lambda e, n=oname: _optim(n)([e.w], lr=float("nan")), ValueError, oname, "lr")
    row(f"{oname}-str-lr", lambda e, n=oname: _optim(n)([e.w], lr="a"), (TypeError, ValueError), oname, "lr")
row("Adam-betas", lambda e: _optim("Adam")([e.w], lr=0.1, betas=(1.5, 0.9)), ValueError, "Adam", "betas")
row("SGD-nesterov", lambda e: _optim("SGD")([e.w], lr=0.1, nesterov=True), ValueError, "SGD", "nesterov")
row("SGD-negative-momentum", lambda e: _optim("SGD")([e.w], lr=0.1, momentum=-1), ValueError, "SGD", "momentum")
row("opt.step-not-grads", lambda e: e.opt.step({}), TypeError, "step", "Grads")
row("opt.step-while-saved", lambda e: e.opt_q.step(e.grads), og.BorrowError, "SGD.step", "q", "saved for backward")
row("opt.load_state_dict-wrong", lambda e: e.opt.load_state_dict({"a": 1}), ValueError, "load_state_dict")
row("opt.load_state_dict-shape", lambda e: e.opt.load_state_dict(
    {"type": "SGD", "param_groups": e.opt.state_dict()["param_groups"],
     "state": [{"momentum_buffer": np.ones(7)}, {"momentum_buffer": np.ones(2)}]}),
    og.ShapeError, "momentum_buffer", "(7,)", "(3, 2)")
row("opt.load_state_dict-type", lambda e: e.opt.load_state_dict({**e.opt.state_dict(), "type": "Adam"}),
    ValueError, "Adam")

# --- og.data.batches ----------------------------------------------------------------------------
def _batches(*a: Any, **k: Any) -> Any:
    need("data", "batches")
    return og.data.batches(*a, **k)


row("batches-lengths", lambda e: _batches(np.ones((10, 3)), np.ones(9), 2), ValueError, "batches", "(10, 3)", "(9,)")
row("batches-size-zero", lambda e: _batches(np.ones((10, 3)), np.ones(10), 0), ValueError, "batches", "batch_size")
row("batches-size-float", lambda e: _batches(np.ones((10, 3)), np.ones(10), 2.5), (ValueError, TypeError),
    "batches", "batch_size")
row("batches-scalar-x", lambda e: _batches(np.float64(1.0), np.ones(1), 1), ValueError, "batches")

# --- og.fit -------------------------------------------------------------------------------------
def _fit(e: SimpleNamespace, **k: Any) -> Any:
    need("fit")
    need("data", "batches")
    args: dict[str, Any] = dict(model=e.model, batches=og.data.batches(np.ones((4, 3)), np.array([0, 1, 1, 0]), 2),
                                loss_fn=og.nn.functional.cross_entropy, opt=og.optim.SGD(e.model.parameters(), lr=0.1),
                                epochs=1, progress=False)
    args.update(k)
    return og.fit(**args)


row("fit-negative-epochs", lambda e: _fit(e, epochs=-1), ValueError, "fit", "epochs")
row("fit-str-epochs", lambda e: _fit(e, epochs="2"), (ValueError, TypeError), "fit", "epochs")
row("fit-loss-not-a-tensor", lambda e: _fit(e, loss_fn=lambda out, y: 1.0), TypeError, "fit", "loss_fn")
row("fit-bad-shapes", lambda e: _fit(e, batches=og.data.batches(np.ones((4, 5)), np.array([0, 1, 1, 0]), 4)),
    og.ShapeError, "Linear", "(4, 5)")

# --- og.save / og.load --------------------------------------------------------------------------
def _save(*a: Any) -> Any:
    need("save")
    return og.save(*a)


def _load(*a: Any, **k: Any) -> Any:
    need("load")
    return og.load(*a, **k)


row("save-not-a-state", lambda e: _save(os.path.join(e.tmp, "a.npz"), 3), TypeError, "og.save", "int")
row("save-object-array", lambda e: _save(os.path.join(e.tmp, "a.npz"), {"a": np.array([None])}), TypeError,
    "og.save", "object")
row("save-bad-key", lambda e: _save(os.path.join(e.tmp, "a.npz"), {3: np.ones(2)}), (ValueError, TypeError),
    "og.save", "3")
row("load-missing", lambda e: _load(os.path.join(e.tmp, "nope.npz")), FileNotFoundError, "nope.npz")
row("load-garbage", lambda e: _load(_write_file(os.path.join(e.tmp, "g.npz"), b"not a zip")), ValueError,
    "og.load", "g.npz")
row("load-into-mismatch", lambda e: (_save(os.path.join(e.tmp, "m.npz"), {"weight": np.ones((9, 9))}),
                                     _load(os.path.join(e.tmp, "m.npz"), into=e.model)),
    (KeyError, ValueError), "bias")


# --- the test ------------------------------------------------------------------------------------
_IDS = [r[0] for r in ROWS]
assert len(set(_IDS)) == len(_IDS), "duplicate row ids"


@pytest.mark.parametrize("id_,call,exc,subs", ROWS, ids=_IDS)
def test_bad_input(id_: str, call: Callable[[SimpleNamespace], Any], exc: Any, subs: list[str],
                   tmp_path: Any) -> None:
    e = make_env(str(tmp_path))
    before = snapshot(e)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a numpy warning is not the error under test
        with pytest.raises(BaseException) as info:
            call(e)
    err = info.value
    if isinstance(err, pytest.skip.Exception):
        raise err
    assert isinstance(err, exc), f"expected {exc}, got {type(err).__module__}.{type(err).__name__}: {err}"
    assert type(err).__module__ in ALLOWED_MODULES, \
        f"a raw {type(err).__module__}.{type(err).__name__} escaped: {err}"
    msg = str(err)
    missing = [s for s in subs if s not in msg]
    assert not missing, f"the message does not mention {missing}:\n{msg}"
    assert_same(before, snapshot(e))


def test_every_row_kind_is_covered() -> None:
    """The catalogue really spans the entry points the issue lists (guards against rows being dropped)."""
    text = " ".join(_IDS)
    for word in ("param", "constant", "backward", "free", "freeze", "to_dot", "index", "setitem", "+=", "copy_",
                 "og.maximum", "og.minimum", "og.where", "og.clip", "og.concatenate", "og.stack", "cuda",
                 "seed", "cross_entropy", "embedding", "conv2d", "SGD", "batches", "fit", "save", "load"):
        assert word in text, word
    assert len(ROWS) >= 250


def test_no_row_is_a_false_alarm(tmp_path: Any) -> None:
    """The environment itself is sound: the correct counterparts of a few rows succeed."""
    e = make_env(str(tmp_path))
    assert (e.w + e.c).shape == (3, 2)
    assert e.w.sum(axis=1).shape == (3,)
    assert e.w[2].shape == (2,)
    e.c[0] = 5.0
    assert e.c.numpy()[0].tolist() == [5.0, 5.0]
    with e.g.no_grad():
        e.c += e.hw  # a value with history is fine under no_grad
    assert e.g.backward(e.ysum).keys()


# --- NaN and inf: propagate like numpy ----------------------------------------------------------

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0, 2.0])


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs", "neg", "square",
                                  "sum", "mean", "max", "min", "softmax", "logsumexp"])
def test_nan_inf_forward_like_numpy(name: str) -> None:
    ref = {
        "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
        "relu": lambda a: np.maximum(a, 0), "abs": np.abs, "neg": np.negative, "square": lambda a: a * a,
        "sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min,
        "softmax": lambda a: np.exp(a - a.max()) / np.exp(a - a.max()).sum(),
        "logsumexp": lambda a: np.log(np.exp(a).sum()),  # the plain formula: inf in, inf out
    }[name]
    g = og.Graph()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data in (SPECIAL, SPECIAL[1:], SPECIAL[3:]):
            x = g.param(data.copy())
            op = {"neg": lambda t: -t, "square": lambda t: t * t}.get(name, lambda t: getattr(t, name)())
            out = op(x).numpy()
            np.testing.assert_allclose(out, np.asarray(ref(data)), rtol=1e-12, atol=0, equal_nan=True,
                                       err_msg=f"{name} on {data}")
            assert np.array_equal(np.isnan(out), np.isnan(ref(data))), f"{name}: NaNs differ on {data}"
            assert np.array_equal(np.isposinf(out), np.isposinf(ref(data))), f"{name}: infs differ on {data}"
            g.clear()


def test_nan_inf_backward_like_numpy() -> None:
    """Gradients of elementwise ops on NaN/inf are what the chain rule in numpy gives; no error."""
    g = og.Graph()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = g.param(SPECIAL.copy())
        gr = g.backward((x * x).sum())
        np.testing.assert_array_equal(gr[x].numpy(), 2 * SPECIAL)
        gr = g.backward(x.exp().sum())
        np.testing.assert_array_equal(gr[x].numpy(), np.exp(SPECIAL))
        gr = g.backward((x * 3.0).sum())
        np.testing.assert_array_equal(gr[x].numpy(), np.full(6, 3.0))
        gr = g.backward(x.log().sum())
        np.testing.assert_array_equal(gr[x].numpy(), 1 / SPECIAL)
    assert g.pending() == []


def test_check_finite_names_the_first_bad_node(here: Callable[[], str]) -> None:
    g = og.Graph()
    w = g.param(np.array([1.0, 0.0, 2.0]), name="w")
    a = w * 2.0
    with pytest.warns(RuntimeWarning, match="divide by zero"):
        site = here(); b = a.log()  # noqa: E702 - gradient 1/a is inf at a == 0
    loss = (b * 1.0).sum()
    before = [n.id for n in g.pending()]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(og.GradError) as info:
            g.backward(loss, check_finite=True)
    msg = str(info.value)
    log_node = b._grad_node()
    assert log_node is not None
    assert f"#{log_node.id}" in msg and "log" in msg and site in msg and "finite" in msg, msg
    # nothing consumed, no borrow left behind: the same loss still backpropagates
    assert [n.id for n in g.pending()] == before
    assert w._storage.ledger.live() == []
    with np.errstate(all="ignore"):
        gr = g.backward(loss)
    np.testing.assert_array_equal(gr[w].numpy(), [1.0, np.inf, 0.5])


def test_check_finite_quiet_when_finite() -> None:
    g = og.Graph()
    w = g.param(np.array([1.0, 2.0]))
    gr = g.backward((w.exp() * w).sum(), check_finite=True)
    np.testing.assert_allclose(gr[w].numpy(), np.exp([1.0, 2.0]) * (1 + np.array([1.0, 2.0])))


def test_check_finite_catches_nan_seed_gradient_from_params() -> None:
    """A NaN already in the data shows up in the gradient of the node that multiplies by it."""
    g = og.Graph()
    w = g.param(np.array([1.0, 2.0]), name="w")
    c = g.constant(np.array([np.nan, 1.0]), name="c")
    loss = (w * c).sum()
    with pytest.raises(og.GradError) as info:
        g.backward(loss, check_finite=True)
    assert "mul" in str(info.value)
    gr = g.backward(loss)  # without the check the NaN just propagates
    np.testing.assert_array_equal(gr[w].numpy(), [np.nan, 1.0])
