"""og.data.batches, og.fit, og.save / og.load."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import owngrad as og
import owngrad.nn.functional as F

# --- batches ---------------------------------------------------------------------------------

def test_batches_reiterable_and_reshuffled() -> None:
    x = np.arange(10)[:, None] * np.ones((1, 2))
    y = np.arange(10)
    b = og.data.batches(x, y, 4, shuffle=True, rng=0)
    assert len(b) == 3
    e1 = [yb.tolist() for _, yb in b]
    e2 = [yb.tolist() for _, yb in b]
    assert [len(v) for v in e1] == [4, 4, 2]
    assert sorted(sum(e1, [])) == list(range(10)) == sorted(sum(e2, []))
    assert e1 != e2                                   # a new order every epoch
    for xb, yb in b:
        assert np.array_equal(xb[:, 0], yb)           # pairs stay together
    again = og.data.batches(x, y, 4, shuffle=True, rng=0)
    assert [yb.tolist() for _, yb in again] == e1     # reproducible from the seed
    plain = og.data.batches(x, y, 3, shuffle=False, drop_last=True)
    assert len(plain) == 3 and [yb.tolist() for _, yb in plain] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_batches_validate() -> None:
    with pytest.raises(ValueError, match="same number of samples"):
        og.data.batches(np.zeros((3, 2)), np.zeros(4), 2)
    with pytest.raises(ValueError, match="batch_size"):
        og.data.batches(np.zeros((3, 2)), np.zeros(3), 0)


# --- fit ---------------------------------------------------------------------------------------

def _blobs() -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(0)
    y = r.integers(0, 3, 300)
    centers = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.0]])
    return (centers[y] + 0.5 * r.standard_normal((300, 2))).astype(np.float32), y


def test_fit_trains_and_reports_history(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _blobs()
    g = og.Graph()
    model = og.nn.MLP(g, [2, 16, 3], rng=0)
    opt = og.optim.Adam(model.parameters(), lr=0.02)
    model.eval()
    hist = og.fit(model, og.data.batches(x, y, 32), F.cross_entropy, opt, epochs=5,
                  metrics={"acc": og.training.accuracy}, progress=False)
    assert model.training                             # fit puts the model in training mode
    assert set(hist) == {"loss", "acc"} and len(hist["loss"]) == len(hist["acc"]) == 5
    assert hist["loss"][-1] < hist["loss"][0] * 0.5
    assert hist["acc"][-1] > 0.9
    assert g.pending() == []
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_fit_history_is_sample_weighted_mean() -> None:
    x, y = _blobs()
    g = og.Graph()
    model = og.nn.Linear(g, 2, 3, rng=0)
    opt = og.optim.SGD(model.parameters(), lr=0.0)    # no learning: losses are fixed per batch
    hist = og.fit(model, og.data.batches(x[:70], y[:70], 32, shuffle=False), F.cross_entropy, opt, epochs=2,
                  progress=False)
    with g.no_grad():
        full = F.cross_entropy(model(g.constant(x[:70])), y[:70]).item()
    np.testing.assert_allclose(hist["loss"], [full, full], rtol=1e-5)


def test_fit_progress_bar_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    x, y = _blobs()
    g = og.Graph()
    model = og.nn.Linear(g, 2, 3, rng=0)
    og.fit(model, og.data.batches(x, y, 100), F.cross_entropy, og.optim.SGD(model.parameters(), lr=0.1),
           epochs=2, progress=True)
    out = capsys.readouterr()
    assert out.out == "" and "6/6" in out.err


def test_fit_loss_must_be_a_tensor() -> None:
    x, y = _blobs()
    g = og.Graph()
    model = og.nn.Linear(g, 2, 3, rng=0)
    with pytest.raises(TypeError, match="loss_fn"):
        og.fit(model, og.data.batches(x, y, 100), lambda o, t: 1.0,  # type: ignore[arg-type, return-value]
               og.optim.SGD(model.parameters(), lr=0.1), progress=False)


# --- save / load --------------------------------------------------------------------------------

def test_save_load_roundtrip(tmp_path: Any) -> None:
    g = og.Graph()
    a = og.nn.Sequential(og.nn.Linear(g, 3, 4, rng=0), og.nn.BatchNorm1d(g, 4))
    b = og.nn.Sequential(og.nn.Linear(g, 3, 4, rng=1), og.nn.BatchNorm1d(g, 4))
    a(g.constant(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)))  # moves running stats
    g.clear()
    path = tmp_path / "model.npz"
    og.save(path, a)
    state = og.load(path, into=b)
    assert set(state) == set(a.state_dict())
    for k, v in a.state_dict().items():
        assert np.array_equal(b.state_dict()[k], v) and state[k].dtype == v.dtype
    og.save(str(tmp_path / "plain.npz"), {"w": np.arange(3), "t": g.constant(np.ones(2))})
    plain = og.load(tmp_path / "plain.npz")
    assert plain["w"].tolist() == [0, 1, 2] and plain["t"].tolist() == [1.0, 1.0]
    assert sorted(os.listdir(tmp_path)) == ["model.npz", "plain.npz"]   # no temp files left behind


def test_load_errors(tmp_path: Any) -> None:
    g = og.Graph()
    m = og.nn.Linear(g, 3, 2, rng=0)
    before = m.state_dict()
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    with pytest.raises(ValueError, match="og.load: .*corrupt.npz is not a valid owngrad checkpoint"):
        og.load(bad, into=m)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(2))
    with pytest.raises(ValueError, match="not written by og.save"):
        og.load(foreign)
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a valid owngrad checkpoint"):
        og.load(pickled)
    other = tmp_path / "other.npz"
    og.save(other, og.nn.Linear(g, 3, 5, rng=0))
    with pytest.raises(og.ShapeError, match="weight"):
        og.load(other, into=m)
    for k, v in m.state_dict().items():
        assert np.array_equal(v, before[k])
    with pytest.raises(FileNotFoundError):
        og.load(tmp_path / "missing.npz")
    with pytest.raises(TypeError, match="og.save"):
        og.save(tmp_path / "x.npz", {"o": np.array([object()])})
    with pytest.raises(TypeError, match="og.save"):
        og.save(tmp_path / "x.npz", [1, 2])
    assert not (tmp_path / "x.npz").exists()


def test_interrupted_save_leaves_old_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    g = og.Graph()
    path = tmp_path / "ckpt.npz"
    og.save(path, og.nn.Linear(g, 3, 2, rng=0))
    old = path.read_bytes()

    def half_written(f: Any, **arrays: Any) -> None:
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    import owngrad.io

    monkeypatch.setattr(owngrad.io.np, "savez", half_written)
    with pytest.raises(OSError, match="disk full"):
        og.save(path, og.nn.Linear(g, 3, 2, rng=1))
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert np.array_equal(og.load(path)["weight"], og.nn.Linear(g, 3, 2, rng=0).weight.numpy())


# --- fit refuses what would train silently wrong; checkpoints: permissions, corruption --------

def test_fit_refuses_one_shot_iterators_and_empty_epochs() -> None:
    x, y = _blobs()
    g = og.Graph()
    model = og.nn.Linear(g, 2, 3, rng=0)
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    gen = ((x[i:i + 50], y[i:i + 50]) for i in range(0, 300, 50))
    with pytest.raises(TypeError, match="one-shot iterator.*og.data.batches"):
        og.fit(model, gen, F.cross_entropy, opt, epochs=2, progress=False)
    one = og.fit(model, iter([(x, y)]), F.cross_entropy, opt, epochs=1, progress=False)   # one epoch is fine
    assert len(one["loss"]) == 1
    with pytest.raises(ValueError, match="no samples in epoch 1"):
        og.fit(model, [], F.cross_entropy, opt, epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        og.fit(model, [(x, y)], F.cross_entropy, opt, epochs=True, progress=False)


def test_fit_names_an_optimizer_over_the_wrong_params() -> None:
    x, y = _blobs()
    g = og.Graph()
    model, other = og.nn.Linear(g, 2, 3, rng=0), og.nn.Linear(g, 2, 3, rng=1)
    before = model.state_dict()
    with pytest.raises(ValueError, match="does not depend on any param of the optimizer"):
        og.fit(model, [(x, y)], F.cross_entropy, og.optim.SGD(other.parameters(), lr=0.1), progress=False)
    assert g.pending() == [] and all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())


def test_saved_checkpoint_has_ordinary_permissions(tmp_path: Any) -> None:
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    g = og.Graph()
    ref = tmp_path / "plain"
    ref.write_bytes(b"")
    path = tmp_path / "model.npz"
    og.save(path, og.nn.Linear(g, 3, 2, rng=0))
    assert (path.stat().st_mode & 0o777) == (ref.stat().st_mode & 0o777)   # not mkstemp's private 0600
    os.chmod(path, 0o640)
    og.save(path, og.nn.Linear(g, 3, 2, rng=1))                              # replacing keeps the mode
    assert (path.stat().st_mode & 0o777) == 0o640


def test_load_detects_a_flipped_byte_in_the_data(tmp_path: Any) -> None:
    w = np.arange(64, dtype=np.float64)
    path = tmp_path / "ckpt.npz"
    og.save(path, {"w": w})
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(w.tobytes())
    assert at > 0
    raw[at + 100] ^= 0x40                  # inside w's data: numpy alone would load a wrong value
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="not a valid owngrad checkpoint.*CRC"):
        og.load(path)


def test_load_random_corruption_never_loads_wrong_values(tmp_path: Any) -> None:
    g = og.Graph()
    m = og.nn.Sequential(og.nn.Linear(g, 3, 4, rng=0), og.nn.BatchNorm1d(g, 4))
    path = tmp_path / "m.npz"
    og.save(path, m)
    raw, ref = path.read_bytes(), og.load(path)
    r = np.random.default_rng(0)
    bad = tmp_path / "bad.npz"
    for i in range(150):
        b = bytearray(raw)
        if i % 3 == 0:
            b = b[:int(r.integers(0, len(b)))]
        else:
            for _ in range(int(r.integers(1, 6))):
                b[int(r.integers(0, len(b)))] = int(r.integers(0, 256))
        bad.write_bytes(bytes(b))
        try:
            state = og.load(bad)
        except ValueError:
            continue
        if set(state) == set(ref):         # a renamed member is caught by load_state_dict's key check
            for k in ref:
                assert np.array_equal(state[k], ref[k]), (i, k)


def test_fit_takes_metrics_as_a_list_of_named_functions() -> None:
    g = og.Graph()
    model = og.nn.MLP(g, [4, 3], rng=0)
    opt = og.optim.SGD(model.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    batches = og.data.batches(rng.standard_normal((12, 4)), rng.integers(0, 3, 12), batch_size=4, rng=0)
    history = og.fit(model, batches, og.nn.functional.cross_entropy, opt, epochs=2,
                     metrics=[og.training.accuracy], progress=False)
    assert set(history) == {"loss", "accuracy"} and len(history["accuracy"]) == 2
    with pytest.raises(TypeError, match="named functions"):
        og.fit(model, batches, og.nn.functional.cross_entropy, opt, metrics=[lambda o, y: 0.0], progress=False)
