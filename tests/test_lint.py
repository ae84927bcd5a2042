"""The repository meets its lint configuration (``[tool.ruff]`` in pyproject.toml): ``ruff check``
over the whole repository reports nothing.

Only the linter is enforced, not ``ruff format``: the code keeps a deliberately compact style
(aligned continuation lines, one-line tables) that the formatter would spread out. Skips when
ruff is not installed (``pip install -e '.[dev]'`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ruff() -> str:
    try:
        from ruff.__main__ import find_ruff_bin  # the pip package ships its binary

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        exe = shutil.which("ruff")
        if exe is None:
            pytest.skip("ruff is not installed (pip install -e '.[dev]')")
        return exe


@pytest.fixture(scope="module")
def findings() -> list[dict[str, Any]]:
    """Every finding of ``ruff check`` over the repository root, as ruff's JSON records."""
    r = subprocess.run([_ruff(), "check", "--no-cache", "--output-format", "json", "."], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 1), f"ruff could not run (exit {r.returncode}):\n{r.stderr}"
    out: list[dict[str, Any]] = json.loads(r.stdout or "[]")
    return out


def _show(fs: list[dict[str, Any]]) -> str:
    return "\n".join(f"{os.path.relpath(f['filename'], ROOT)}:{f['location']['row']}:{f['location']['column']}: "
                     f"{f['code']} {f['message']}" for f in fs)


def test_ruff_check_is_clean(findings: list[dict[str, Any]]) -> None:
    assert not findings, (f"ruff check found {len(findings)} problem(s) (`ruff check --fix .` fixes some):\n"
                          f"{_show(findings)}")


def test_the_config_selects_the_agreed_rules() -> None:
    """A config that selected nothing would make the check above pass vacuously."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomli = pytest.importorskip("tomli")
        tomllib = tomli
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        cfg = tomllib.load(fh)["tool"]["ruff"]
    assert cfg["line-length"] == 120 and cfg["target-version"] == "py310"
    assert {"E", "F", "W", "I", "B", "UP", "SIM"} <= set(cfg["lint"]["select"])
