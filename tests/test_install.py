"""The stubs reach a user's own project after every install the README names.

A throwaway virtual environment outside the checkout gets owngrad three ways: the editable
install (``pip install -e .``, the README's command), a plain ``pip install <project>`` and a built
wheel. A typed script in a
directory of its own is then checked with ``mypy --strict`` and with basedpyright in strict
mode, both pointed at that environment's interpreter: each must see ``owngrad-stubs`` (not the
runtime package) and report the misuse lines, and nothing on the correct ones.

The editable and regular wheels are built by hatchling's PEP 517/660 hooks from a copy of the project
(no network, no build/ left in the checkout); pip installs them into the environment with ``--no-deps``.
The plain install is pip's own build of a copy of the project.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyright_run import describe, pyright_errors

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parent.parent

USER_SCRIPT = '''\
import numpy as np
import owngrad as og


def train(g: og.Graph, w: og.Tensor[og.Mut], x: og.Tensor) -> float:
    grads = g.backward((x @ w).sum())
    grads[w][0:2] += 1  # MISUSE
    g.freeze(w)[1] = 0.0  # MISUSE
    grads[w].zero_()  # MISUSE
    opt = og.optim.SGD([w], lr=0.1)
    opt.step(grads)
    with g.no_grad():
        w[0] = 1.0
    return float(w.sum().item())


g = og.Graph()
print(train(g, g.param(np.ones((3, 2))), g.constant(np.ones((4, 3)))))
'''

MISUSE_LINES = [i for i, line in enumerate(USER_SCRIPT.splitlines(), 1) if line.endswith("# MISUSE")]


def _copy_project(tmp: Path, kind: str) -> Path:
    """What a clone holds that a build reads: the two packages, pyproject.toml and the README."""
    proj = tmp / f"proj-{kind}"
    for d in ("owngrad", "stubs"):
        shutil.copytree(ROOT / d, proj / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, proj / f)
    return proj


def _build(kind: str, tmp: Path) -> Path:
    """An owngrad wheel (``kind`` = "wheel" or "editable") built from a copy of the project."""
    proj = _copy_project(tmp, kind)
    out = tmp / f"dist-{kind}"
    out.mkdir()
    hook = "build_editable" if kind == "editable" else "build_wheel"
    code = f"import hatchling.build as b; print(b.{hook}({str(out)!r}))"
    r = subprocess.run([sys.executable, "-c", code], cwd=proj, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"{hook} failed:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
    name = r.stdout.strip().splitlines()[-1]
    if kind == "wheel":  # a wheel carries its files; the editable one points at the copy
        shutil.rmtree(proj)
    return out / name


def _venv(tmp: Path) -> Path:
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _link_numpy(py: Path) -> None:
    """numpy (owngrad's one run-time dependency, whose types the stubs use) linked in from this interpreter."""
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, timeout=120).stdout.strip())
    np_dir = Path(__import__("numpy").__file__).parent
    for d in (np_dir, np_dir.parent / "numpy.libs"):
        if d.exists():
            (site / d.name).symlink_to(d, target_is_directory=True)


def _install(kind: str, tmp: Path) -> Path:
    """A throwaway environment with owngrad installed the ``kind`` way; its interpreter.

    "editable" and "wheel" install what hatchling's hooks built here (no index needed); "plain" is
    ``pip install <project>`` as a user types it, which builds in an isolated environment and so needs the
    package index for hatchling (skipped when it cannot be reached)."""
    py = _venv(tmp)
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps"]
    if kind == "plain":
        r = subprocess.run([*pip, str(_copy_project(tmp, kind))], capture_output=True, text=True, timeout=600)
        if r.returncode != 0 and ("hatchling" in r.stderr or "connection" in r.stderr.lower()):
            pytest.skip(f"pip could not fetch the build backend: {r.stderr[-300:]}")
        shutil.rmtree(tmp / f"proj-{kind}")  # a plain install copies its files: the source may go
    else:
        r = subprocess.run([*pip, "--no-index", str(_build(kind, tmp))], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    _link_numpy(py)
    return py


@pytest.fixture(scope="module", params=["editable", "plain", "wheel"])
def user_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp(f"install-{request.param}")
    py = _install(request.param, tmp)
    project = tmp / "myproject"
    project.mkdir()
    (project / "train.py").write_text(USER_SCRIPT)
    return py, project


def test_mypy_sees_the_stubs_in_a_users_project(user_env: tuple[Path, Path]) -> None:
    py, project = user_env
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--python-executable",
                        str(py), "--cache-dir", str(project / ".mypy_cache"), "train.py"], cwd=project,
                       capture_output=True, text=True, timeout=600)
    lines = sorted({int(m.group(1)) for m in re.finditer(r"^train\.py:(\d+): error:", r.stdout, re.M)})
    assert "Cannot find implementation" not in r.stdout and "expects no type arguments" not in r.stdout, r.stdout
    assert lines == MISUSE_LINES, r.stdout + r.stderr


def test_basedpyright_sees_the_stubs_in_a_users_project(user_env: tuple[Path, Path]) -> None:
    py, project = user_env
    (project / "pyrightconfig.json").write_text(json.dumps({"typeCheckingMode": "strict", "include": ["train.py"],
                                                            "reportMissingModuleSource": "none"}))
    errors, _ = pyright_errors(["--pythonpath", str(py)], project)
    lines = sorted({d["range"]["start"]["line"] + 1 for d in errors})
    assert lines == MISUSE_LINES, describe(errors)


def test_the_program_runs_in_that_environment(user_env: tuple[Path, Path]) -> None:
    """The installed runtime is importable from the user's project (the misuse lines raise there, so they go)."""
    py, project = user_env
    clean = "\n".join(line for line in USER_SCRIPT.splitlines() if not line.endswith("# MISUSE"))
    (project / "clean.py").write_text(clean + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([str(py), "clean.py"], cwd=project, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    where = subprocess.run([str(py), "-c", "import owngrad; print(owngrad.__file__)"], cwd=project,
                           capture_output=True, text=True, env=env, timeout=120).stdout.strip()
    assert not where.startswith(str(ROOT)) and where.startswith(str(project.parent)), where
