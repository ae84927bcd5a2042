"""The owngrad mypy plugin (owngrad/mypy_plugin.py): exact owngrad-borrow messages.

tests/typing/plugin/*.py mark each expected error with `# E: <message>` at the end of its line;
every other line must be clean, and so must the pass/ cases (no false positives on ordinary
code). One mypy run with `plugins = owngrad.mypy_plugin` (tests/typing/mypy-plugin.ini).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("mypy")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPING = os.path.join(ROOT, "tests", "typing")


def _expected() -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    d = os.path.join(TYPING, "plugin")
    for f in sorted(os.listdir(d)):
        if f.endswith(".py"):
            with open(os.path.join(d, f)) as fh:
                for i, line in enumerate(fh, 1):
                    m = re.search(r"  # E: (.*)$", line)
                    if m:
                        out[(f"tests/typing/plugin/{f}", i)] = m.group(1).rstrip()
    return out


def test_plugin_messages_are_exact() -> None:
    expected = _expected()
    assert len(expected) >= 8
    cmd = [sys.executable, "-m", "mypy", "--config-file", os.path.join("tests", "typing", "mypy-plugin.ini"),
           "--cache-dir", os.path.join(ROOT, ".mypy_cache", "typing-tests", "plugin"), "--no-error-summary",
           "--show-error-codes", os.path.join("tests", "typing", "plugin"), os.path.join("tests", "typing", "pass")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    got: dict[tuple[str, int], str] = {}
    other: list[str] = []
    for line in r.stdout.splitlines():
        m = re.match(r"(.+?):(\d+): error: (.*)  \[owngrad-borrow\]$", line)
        if m:
            got[(m.group(1).replace(os.sep, "/"), int(m.group(2)))] = m.group(3)
        elif line.strip():
            other.append(line)
    assert not other, "\n".join(other) + r.stderr
    missing = {k: v for k, v in expected.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if k not in expected}
    assert not missing and not extra, f"missing/wrong: {missing}\nunexpected: {extra}"


def test_plugin_loads_under_the_installed_mypy() -> None:
    """The dev extra installs the current mypy (2.x at the time of writing); the oldest supported one (1.10)
    runs the same cases in tests/test_typing_corpus.py::test_oldest_supported_mypy."""
    import mypy.version

    from owngrad.mypy_plugin import OwngradPlugin, plugin

    assert plugin(mypy.version.__version__) is OwngradPlugin


def test_plugin_cost_grows_linearly() -> None:
    """One function grown from 200 to 800 write sites (benchmarks/plugin_cost.py, CPU time, library modules
    cached): the plugin's own analysis grows like the function (a re-walk per hook would grow 16x), and mypy
    with the plugin stays within 3x of mypy without it. Ratios measured in the same run, no absolute times."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "plugin_cost.py"), "--sizes", "200", "800",
                        "--repeats", "2", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    small, large = json.loads(r.stdout)
    growth = large["analysis"] / max(small["analysis"], 1e-3)
    assert growth < 8, f"analysis {small['analysis']:.3f}s at 200 sites, {large['analysis']:.3f}s at 800"
    assert large["mypy+plugin"] < 3 * large["mypy"], large
