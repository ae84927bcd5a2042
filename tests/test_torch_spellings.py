"""torch's spellings next to numpy's: flatten(start_dim, end_dim), unflatten, chunk, std/var with
unbiased= or correction= (numpy's ddof=0 stays the default), and the graph's *_like constructors."""

from __future__ import annotations

import numpy as np
import pytest

import owngrad as og

X0 = np.random.default_rng(4).standard_normal((2, 3, 4, 5))


@pytest.mark.parametrize("start,end", [(0, -1), (1, -1), (0, 1), (1, 2), (-2, -1), (2, 2)])
def test_flatten_matches_torch(start: int, end: int) -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    x = g.param(X0)
    y = x.flatten(start, end)
    ty = torch.tensor(X0).flatten(start, end)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_array_equal(y.numpy(), ty.numpy())
    grads = g.backward((y * np.arange(y.size).reshape(y.shape)).sum())
    np.testing.assert_array_equal(grads[x].numpy(), np.arange(X0.size).reshape(X0.shape))


def test_unflatten_and_chunk_match_torch() -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    x = g.param(X0)
    t = torch.tensor(X0)
    np.testing.assert_array_equal(x.unflatten(-1, (5, 1)).numpy(), t.unflatten(-1, (5, 1)).numpy())
    np.testing.assert_array_equal(x.unflatten(2, (2, -1)).numpy(), t.unflatten(2, (2, -1)).numpy())
    for n, axis in [(2, 1), (3, 3), (4, 2), (5, 0), (1, -1)]:
        ours, theirs = x.chunk(n, axis=axis), t.chunk(n, dim=axis)
        assert [c.shape for c in ours] == [tuple(c.shape) for c in theirs], (n, axis)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    parts = x.chunk(3, axis=3)
    assert all(p.base is x for p in parts)  # views, as torch's
    grads = g.backward(sum(((p * float(i + 1)).sum() for i, p in enumerate(parts)), g.constant(0.0)))
    np.testing.assert_array_equal(grads[x].numpy()[..., :2], 1.0)
    np.testing.assert_array_equal(grads[x].numpy()[..., 4:], 3.0)
    with pytest.raises(ValueError, match="chunks"):
        x.chunk(0)
    with pytest.raises(og.ShapeError, match="out of range"):
        x.flatten(0, 7)
    with pytest.raises(og.ShapeError, match="start_dim"):
        x.flatten(2, 1)


def test_std_and_var_keep_numpys_default_and_take_torchs_spellings() -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    x = g.param(X0)
    t = torch.tensor(X0)
    np.testing.assert_allclose(x.var().item(), X0.var(), rtol=1e-13)  # numpy's ddof=0 by default
    np.testing.assert_allclose(x.var(unbiased=True).item(), t.var().item(), rtol=1e-13)
    np.testing.assert_allclose(x.std(axis=1, unbiased=False).numpy(), t.std(dim=1, unbiased=False).numpy(),
                               rtol=1e-13)
    np.testing.assert_allclose(x.std(axis=(0, 2), correction=2, keepdims=True).numpy(),
                               t.std(dim=(0, 2), correction=2, keepdim=True).numpy(), rtol=1e-13)
    np.testing.assert_allclose(x.var(axis=-1, correction=0).numpy(), t.var(dim=-1, correction=0).numpy(),
                               rtol=1e-13)
    with pytest.raises(TypeError, match="one of ddof, unbiased or correction"):
        x.var(ddof=1, unbiased=True)
    with pytest.raises(TypeError, match="unbiased must be True or False"):
        x.std(unbiased=1)  # type: ignore[arg-type]


def test_like_constructors() -> None:
    g = og.Graph()
    x = g.param(X0.astype(np.float32))
    for make in (g.randn_like, g.rand_like, g.empty_like):
        t = make(x)
        assert t.shape == x.shape and t.dtype == np.float32 and not t.requires_grad
    assert g.randn_like(x, dtype=np.float64).dtype == np.float64
    full = g.full_like(x, 2.5)
    assert full.dtype == np.float32 and (full.numpy() == 2.5).all()
    r = g.rand_like(x).numpy()
    assert r.min() >= 0 and r.max() < 1 and r.std() > 0.2
    assert (g.empty_like(x).numpy() == 0).all()
    with pytest.raises(TypeError, match="floating"):
        g.randn_like(g.constant(np.arange(3)))
    g.rng = np.random.default_rng(5)
    a = g.randn_like(x)
    g.rng = np.random.default_rng(5)
    np.testing.assert_array_equal(a.numpy(), g.randn_like(x).numpy())  # drawn from g.rng


def test_flatten_and_unflatten_modules_match_torch() -> None:
    torch = pytest.importorskip("torch")
    g = og.Graph()
    x = g.param(X0)
    t = torch.tensor(X0)
    for args in [(), (0,), (1, 2), (2, -1)]:
        np.testing.assert_array_equal(og.nn.Flatten(*args)(x).numpy(), torch.nn.Flatten(*args)(t).numpy())
    np.testing.assert_array_equal(og.nn.Unflatten(1, (3, 1))(x).numpy(), torch.nn.Unflatten(1, (3, 1))(t).numpy())
    with pytest.raises(TypeError, match="Flatten"):
        og.nn.Flatten()(X0)
