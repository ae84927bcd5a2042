"""README.md stays true: its code blocks run and its error transcript is what owngrad prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import owngrad as og

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _block(after: str, lang: str = "python") -> str:
    """The first ``lang`` code block after the text ``after``."""
    return README.split(after, 1)[1].split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def test_tour_runs() -> None:
    scope: dict[str, Any] = {}
    exec(_block("## A short tour"), scope)
    grads, w = scope["grads"], scope["w"]
    assert isinstance(grads, og.Grads)
    assert np.abs(grads[w].numpy()).min() > 0, "the seeded tour shows a gradient with no zero column"


def test_training_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    scope: dict[str, Any] = {"x_train": rng.standard_normal((96, 64)).astype(np.float32),
                             "y_train": rng.integers(0, 10, 96)}
    code = _block("## Training a model").replace("epochs=30", "epochs=2")
    code = code.replace("metrics=", "progress=False, metrics=")
    monkeypatch.chdir(tmp_path)
    exec(code, scope)
    assert len(scope["history"]["loss"]) == 2 and os.path.exists(tmp_path / "mlp.npz")


def test_error_transcript_is_what_owngrad_prints(tmp_path: Path) -> None:
    section = README.split("## The error you get, and why", 1)[1]
    code, rest = section.split("```python", 1)[1].split("```", 1)
    shown = rest.split("```\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "ogcmp.py"  # run as the user runs it: a script whose lines 15 and 17 are the README's
    script.write_text("import numpy as np\nimport owngrad as og\n" + "\n" * 8 + code)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 1, run.stderr
    got = run.stderr[run.stderr.index("owngrad.errors.BorrowError:"):].strip()
    want = re.sub(r"node #\d+", "node #N", shown.strip())
    assert re.sub(r"node #\d+", "node #N", got) == want


def test_static_checking_block_prints_what_the_readme_shows(tmp_path: Path) -> None:
    """The static-checking example, saved as the user's train.py beside the README's two config lines, gives
    exactly the README's mypy output (run in a folder outside the checkout, as a user's project)."""
    pytest.importorskip("mypy")
    (tmp_path / "mypy.ini").write_text(_block("## Static checking", "ini"))
    (tmp_path / "train.py").write_text(_block("For this `train.py`:"))
    shown = README.split("`mypy --strict train.py` prints:", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".cache"), "train.py"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.stdout.strip() == shown.strip(), r.stdout + r.stderr


def test_higher_order_block_runs() -> None:
    g = og.Graph()
    critic = og.nn.MLP(g, [2, 8, 1], activation="tanh", rng=0, dtype=np.float64)
    x_hat = g.param(np.random.default_rng(0).standard_normal((4, 2)), name="x_hat")
    scope: dict[str, Any] = {"og": og, "g": g, "critic": critic, "x_hat": x_hat,
                             "loss": critic(g.constant(np.ones((4, 2)))).mean(),
                             "f": lambda t: (t * t * t).sum(), "x": g.constant(np.ones(3)), "v": np.ones(3)}
    exec(_block("## Higher-order gradients"), scope)
    assert set(scope["grads"]) >= set(critic.parameters())
    np.testing.assert_allclose(scope["hv"].numpy(), 6.0)
    assert g.pending() == []
