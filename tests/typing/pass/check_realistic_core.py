"""Realistic, correct, strictly-typed user code over the core API (graph, borrows, views, in-place):
a false error here is a bug.

Also a real program: tests/test_typing.py runs it (``python tests/typing/pass/check_realistic_core.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from typing_extensions import assert_type

import owngrad as og


def properties_and_conversions() -> None:
    g = og.Graph()
    w = g.param(np.random.default_rng(0).standard_normal((3, 4)), name="w")
    x = g.constant(np.arange(12.0).reshape(4, 3), name="x")
    n_rows: int = w.shape[0]
    rows, cols = w.shape
    assert n_rows == rows == 3 and cols == 4
    assert w.ndim == 2 and w.size == 12 and len(w) == 3
    assert w.dtype == np.float64 and w.dtype.kind == "f"
    assert w.device == "cpu" and w.graph is g
    assert w.name == "w" and x.name == "x"
    assert w.requires_grad and not x.requires_grad
    assert w.is_leaf and w.base is None
    v = w[1:]
    base = v.base
    assert base is not None
    assert_type(base, og.Tensor[og.Mut])
    assert base is w
    s = (x @ w).sum()
    total: float = s.item()
    assert float(s) == total
    assert int(g.constant(3.0)) == 3
    arr: NDArray[Any] = w.numpy()
    arr2 = np.asarray(w)
    arr3 = np.array(x, dtype=np.float32)
    assert arr.shape == arr2.shape == (3, 4) and arr3.dtype == np.float32
    listed: list[list[float]] = w.tolist()
    assert len(listed) == 3
    for row in w:
        assert_type(row, og.Tensor[og.Mut])
        assert row.shape == (4,)
    print(repr(w), str(x))
    w.name = "weights"


def arithmetic_and_numpy_interop() -> None:
    g = og.Graph()
    rng = np.random.default_rng(1)
    a = g.param(rng.standard_normal((4, 3)))
    b = g.constant(rng.standard_normal((4, 3)))
    m: NDArray[np.float64] = rng.standard_normal((4, 3))
    y = a + b - a * b / (b.abs() + 1.0)
    y = y + 1 + 2.5 + np.float64(0.5) + np.float32(1.0) + m + [1.0, 2.0, 3.0]
    y = 1 + y
    y = 2.0 * y
    y = np.float64(3.0) * y
    y = 1.0 - y
    y = 1.0 / (y.abs() + 1)
    y = y ** 2 + 2 ** a + a.abs() ** 0.5
    y = -y + (+y)
    z = m * a
    assert_type(z, og.Tensor[og.Mut])
    z2 = m + a
    assert_type(z2, og.Tensor[og.Mut])
    z3 = m - a
    z4 = m / (a.abs() + 1)
    z5 = a.T @ m
    z6 = m.T @ a
    assert_type(z3, og.Tensor[og.Mut])
    assert_type(z4, og.Tensor[og.Mut])
    assert_type(z5, og.Tensor[og.Mut])
    assert_type(z6, og.Tensor[og.Mut])
    scalar = np.float64(2.0) + a
    assert_type(scalar, og.Tensor[og.Mut])
    loss = (y * y).mean() + z.sum() + z2.sum() + z3.sum() + z4.sum() + z5.sum() + z6.sum() + scalar.sum()
    grads = g.backward(loss)
    assert grads[a].shape == a.shape


def elementwise_and_reductions() -> None:
    g = og.Graph()
    x = g.param(np.linspace(-2.0, 2.0, 24).reshape(2, 3, 4))
    h = x.exp().log().tanh() + x.sigmoid() + x.relu() + x.abs().sqrt()
    h = og.exp(x) + og.log(x.abs() + 1) + og.tanh(x) + og.sqrt(x * x + 1) + og.sigmoid(x) + og.relu(x) + og.abs(x)
    h = og.maximum(h, 0.0) + og.minimum(h, x) + og.maximum(1.0, x) + og.where(x > 0, x, 0.0)
    h = og.where(x > 0, h, -h) + og.clip(h, -1.0, 1.0) + h.clip(0, None) + h.clip(None, 3.0)
    h = og.where(np.ones((2, 3, 4), dtype=bool), h, 1.0)
    r1 = h.sum(axis=(0, 2))
    r2 = h.mean(axis=-1, keepdims=True)
    r3 = h.max(axis=1)
    r4 = h.min(axis=[0, 1])
    r5 = h.var(axis=0, ddof=1)
    r6 = h.logsumexp(axis=2)
    r7 = h.softmax(axis=-1) + h.log_softmax(axis=1)
    assert r1.shape == (3,) and r2.shape == (2, 3, 1) and r3.shape == (2, 4) and r4.shape == (4,)
    assert r5.shape == (3, 4) and r6.shape == (2, 3)
    loss = r1.sum() + r2.sum() + r3.sum() + r4.sum() + r5.sum() + r6.sum() + r7.sum() + h.var()
    idx = h.argmax(axis=-1)
    assert idx.shape == (2, 3)
    g.backward(loss)


def comparisons_and_masks() -> None:
    g = og.Graph()
    x = g.param(np.array([[-1.0, 2.0], [3.0, -4.0]]))
    pos = x > 0
    neg = x <= 0
    assert_type(pos, og.Tensor[og.Mut])
    assert pos.dtype == np.bool_
    both = (pos & ~neg) | (x == 2.0) | (x != x) | (x >= 1) | (x < -3)
    if (x > 10).any() or not (x < 10).all():
        raise AssertionError("unexpected")
    n_pos = int(pos.sum().item())
    assert n_pos == 2
    assert bool((x.abs() > 0).all())
    picked = x[pos]
    assert picked.shape == (2,)
    picked2 = x[both.numpy()]
    masked = og.where(pos, x, 0.0)
    loss = picked.sum() + picked2.sum() + masked.sum()
    g.backward(loss)
    if x.sum() < 100:  # a scalar bool tensor in a condition
        pass
    m = np.array([[0.0, 1.0], [1.0, 0.0]])
    flipped = (0 < x) & (m > x) | (1.0 >= x)  # Python and numpy on the left: still a tensor
    assert_type(flipped, og.Tensor[og.Mut])
    assert flipped.shape == (2, 2)


def indexing() -> None:
    g = og.Graph()
    x = g.param(np.arange(60.0).reshape(3, 4, 5))
    parts = [
        x[0], x[-1], x[0, 1], x[0, 1, 2], x[1:3], x[::2], x[:, 1:3], x[..., 0], x[None], x[:, None, 0],
        x[0, ..., ::-1], x[[0, 2]], x[np.array([2, 0, 2])], x[:, [1, 3]], x[g.constant(np.array([1, 1]))],
        x[x > 30], x[np.int64(1)], x[(0, slice(1, 3))], x[1][2][3], x[0:2, np.array([0, 1]), 4],
    ]
    i = 1
    parts.append(x[i, i + 1])
    sl = slice(0, 2)
    parts.append(x[sl, sl])
    key: tuple[int | slice, ...] = (0, slice(None))
    parts.append(x[key])
    total = og.concatenate([p.reshape(-1) for p in parts])
    assert_type(total, og.Tensor[og.Mut])
    g.backward(total.sum())


def shapes_and_joins() -> None:
    g = og.Graph()
    x = g.param(np.ones((2, 3)))
    y = g.param(np.ones((2, 3)))
    views = [x.reshape(3, 2), x.reshape((6,)), x.reshape(-1, 1), x.flatten(), x.T, x.transpose(),
             x.transpose(1, 0), x.transpose((1, 0)), x.permute(1, 0), x.unsqueeze(0).squeeze(0), x[None].squeeze(),
             x.unsqueeze(-1).squeeze(axis=-1), x[0].expand(4, 3), x[0:1].expand((5, 3))]
    cat = og.concatenate((x, y), axis=1)
    st = og.stack([x, y, x * 2], axis=0)
    mm = og.matmul(x, y.T) + og.matmul(x.T, np.ones((2, 2)))[0, 0]
    assert cat.shape == (2, 6) and st.shape == (3, 2, 3) and mm.shape == (2, 2)
    loss = sum((v.sum() for v in views), start=cat.sum()) + st.sum() + mm.sum()
    assert_type(loss, og.Tensor[og.Mut])
    g.backward(loss)


def in_place_and_borrows() -> None:
    g = og.Graph()
    w = g.param(np.zeros((4, 3)))
    w += 1
    w -= np.ones((4, 3)) * 0.5
    w *= 2.0
    w /= np.float64(2.0)
    w[0] = 1.0
    w[1:3] = np.full((2, 3), 2.0)
    w[3, ::2] = [5.0, 6.0]
    w[w.numpy() > 4] = 0.0
    w[:, 0] += 1
    w.add_(1.0).sub_(np.float32(1.0)).mul_(1.0).div_(1.0).clamp_(-10.0, 10.0).clamp_(hi=5.0)
    w[2].fill_(3.0)
    w[0:2].zero_()
    w.copy_(w.numpy() + 1)
    with w.borrow() as ro:
        total = float(ro.sum())
        mean = np.mean(ro, axis=0)
        assert mean.shape == (3,) and total > 0
    with w.borrow_mut() as rw:
        rw *= 0.5
        rw[0, :] = np.arange(3.0)
        np.clip(rw, -1.0, 1.0, out=rw)
    with w[1:3].borrow_mut() as part:
        part.fill(0.0)
    y = w * 2
    y[0:2] = 0  # in-place on a non-leaf: recorded
    y.clamp_(0.0, 1.0)
    loss = (y * y).sum()
    g.backward(loss)


def graph_management() -> None:
    with og.Graph() as g:
        w = g.param(np.ones(3), name="w")
        x = g.constant([1.0, 2.0, 3.0])
        a = (w * x).exp().sum()
        b = (w * w).sum()
        pending = g.pending()
        assert all(isinstance(n, og.Node) for n in pending)
        ops: list[str] = [n.op for n in pending]
        ids: list[int] = [n.id for n in pending]
        assert ops and ids
        dot: str = g.to_dot(a)
        assert dot.startswith("digraph")
        dropped: int = g.free(b)
        assert dropped >= 1
        with g.no_grad():
            c = (w * 3).sum()
        assert not c.requires_grad
        g.clear()
        assert g.pending() == []
        with g.no_grad():
            w -= 0.1


def backward_options() -> None:
    g = og.Graph()
    w = g.param(np.ones((2, 2)), name="w")
    b = g.param(np.zeros(2), name="b")
    x = g.constant(np.eye(2))
    out = x @ w + b
    grads = g.backward(out, seed=np.ones((2, 2)), retain=True)
    grads = g.backward(out.sum(), into=grads, retain=True)
    seen: dict[str | None, float] = {}

    def log_grad(leaf: og.Tensor[og.Frozen], grad: og.Tensor[og.Shared]) -> None:
        seen[leaf.name] = float(grad.abs().sum().item())

    grads2 = g.backward(out.mean(), seed=2.0, on_grad=log_grad, check_finite=True, retain=True)
    g.backward(out, seed=g.constant(np.ones((2, 2))), into=grads2)
    assert set(seen) == {"w", "b"}
    for p, gp in grads.items():
        assert_type(p, og.Tensor[og.Mut])
        assert gp.shape == p.shape
    for p in grads:
        assert p in grads
    assert w in grads and b in grads and x not in grads and len(grads) == 2
    norms: list[float] = [float((v * v).sum().item()) for v in grads.values()]
    keys = grads.keys()
    assert len(keys) == len(norms)
    pre: float = grads.clip_norm_(0.5)
    assert pre > 0
    gw = grads[w]
    assert_type(gw, og.Tensor[og.Shared])
    as_np = gw.numpy()
    with gw.borrow() as arr:
        assert np.allclose(arr, as_np)
    with g.no_grad():
        w -= 0.1 * grads[w]
        b[:] = b - 0.1 * grads[b]


def decay_(t: og.Tensor[og.Mut]) -> None:
    with t.graph.no_grad():
        t -= 1


def errors_caught() -> None:
    g = og.Graph()
    w = g.param(np.ones(3), name="w")
    loss = (w * w).sum()
    try:
        later: Callable[[og.Tensor[og.Mut]], None] = decay_  # a call the plugin does not follow
        later(w)  # mul saved w: refused at run time
        raise AssertionError("not refused")
    except og.BorrowError as e:
        msg = str(e)
        assert "w" in msg
    try:
        print(g.param(np.ones(3)) @ g.param(np.ones((4, 2))))
        raise AssertionError("not refused")
    except og.ShapeError as e:
        assert isinstance(e, ValueError)
    except ValueError:
        pass
    other = og.Graph()
    try:
        print(w + other.constant(np.ones(3)))
        raise AssertionError("not refused")
    except og.GraphError:
        pass
    with contextlib.suppress(og.DeviceError, RuntimeError, ImportError):
        w.to("cuda")
    grads = g.backward(loss)
    try:
        _ = grads[g.param(np.ones(3))]
        raise AssertionError("not refused")
    except og.GradError as e:
        assert isinstance(e, LookupError)
    except KeyError:
        pass
    try:
        with g.freeze(w).borrow() as seen:
            assert seen.shape == (3,)
            raise RuntimeError("leaving the block by an exception ends the borrow")
    except RuntimeError:
        pass
    with g.no_grad():
        w -= 1  # the borrow was released by backward


def freeze_detach_to() -> None:
    g = og.Graph()
    w = g.param(np.ones((2, 3)))
    frozen = g.freeze(w)
    assert_type(frozen, og.Tensor[og.Frozen])
    assert_type(frozen[0], og.Tensor[og.Frozen])
    assert_type(frozen.T, og.Tensor[og.Frozen])
    looked = float(frozen.sum().item()) + float(frozen.numpy().mean())
    d = w.detach()
    assert_type(d, og.Tensor[og.Mut])
    assert not d.requires_grad
    d2 = (w * 2).detach()
    d2 += 1
    c = w.to("cpu")
    assert_type(c, og.Tensor[og.Mut])
    cf = frozen.to("cpu").detach()
    assert_type(cf, og.Tensor[og.Frozen])
    copy = frozen.copy()
    copy += 1  # a copy is a new, writable tensor
    half = w.astype(np.float32)
    assert half.dtype == np.float32 and looked > 0


def main() -> None:
    properties_and_conversions()
    arithmetic_and_numpy_interop()
    elementwise_and_reductions()
    comparisons_and_masks()
    indexing()
    shapes_and_joins()
    in_place_and_borrows()
    graph_management()
    backward_options()
    errors_caught()
    freeze_detach_to()


if __name__ == "__main__":
    main()
