"""The typed contract (stubs/owngrad-stubs: access modes Mut, Shared, Frozen), checked the way typeshed and
numpy check theirs.

- tests/typing/pass/*.py must type-check under mypy --strict (assert_type pins every mode); the realistic
  ones (pass/check_realistic_*.py: training scripts and helpers as users write them) also run as programs;
- tests/typing/fail/*.py put `# type: ignore[code]` on each misuse, under warn_unused_ignores:
  a misuse that stops being an error, or raises another code, fails the run;
- stubtest keeps the stubs in step with the runtime;
- owngrad/ and examples/ pass mypy --strict; basedpyright (strict) agrees on pass/fail.

One mypy process per test; caches live under .mypy_cache/typing-tests/ so reruns are warm.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pyright_run import describe, pyright_errors

pytest.importorskip("mypy")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPING = os.path.join(ROOT, "tests", "typing")
CACHE = os.path.join(ROOT, ".mypy_cache", "typing-tests")


def run_mypy(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m mypy`` from the repository root with its own warm cache directory."""
    cmd = [sys.executable, "-m", "mypy", "--cache-dir", os.path.join(CACHE, name), "--no-error-summary",
           "--show-error-codes", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def case_files(kind: str) -> list[str]:
    d = os.path.join(TYPING, kind)
    return sorted(os.path.join("tests", "typing", kind, f) for f in os.listdir(d) if f.endswith(".py"))


def test_pass_and_fail_cases() -> None:
    passing, failing = case_files("pass"), case_files("fail")
    assert passing and failing
    r = run_mypy("cases", "--config-file", os.path.join("tests", "typing", "mypy.ini"), *passing, *failing)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("rel", [f for f in case_files("pass") if os.path.basename(f).startswith("check_realistic_")],
                         ids=os.path.basename)
def test_realistic_pass_cases_run(rel: str, tmp_path: os.PathLike[str]) -> None:
    """The realistic pass cases are real programs, not just type-checked text: each runs to the end."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, os.path.join(ROOT, rel)], cwd=str(tmp_path), capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


def test_fail_cases_are_errors_without_their_ignores(tmp_path: os.PathLike[str]) -> None:
    """Each ignored line really is an error on its own (not just covered by a neighbour's ignore)."""
    import re

    stripped = []
    expected: dict[tuple[str, int], str] = {}
    for rel in case_files("fail"):
        with open(os.path.join(ROOT, rel)) as fh:
            lines = fh.read().splitlines()
        out = []
        for i, line in enumerate(lines, 1):
            m = re.search(r"  # type: ignore\[([a-z-]+)\]$", line)
            if m:
                expected[(os.path.basename(rel), i)] = m.group(1)
                line = line[: m.start()]
            out.append(line)
        dst = os.path.join(str(tmp_path), os.path.basename(rel))
        with open(dst, "w") as fh:
            fh.write("\n".join(out) + "\n")
        stripped.append(dst)
    assert expected
    r = run_mypy("stripped", "--config-file", os.path.join("tests", "typing", "mypy.ini"), *stripped)
    got: dict[tuple[str, int], set[str]] = {}
    for line in r.stdout.splitlines():
        m = re.match(r"(.+?):(\d+): error: .*  \[([a-z-]+)\]$", line)
        if m:
            got.setdefault((os.path.basename(m.group(1)), int(m.group(2))), set()).add(m.group(3))
    missing = {k: v for k, v in expected.items() if v not in got.get(k, set())}
    extra = {k: v for k, v in got.items() if k not in expected}
    assert not missing and not extra, (missing, extra, r.stdout)


def test_stubtest() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"}  # the installed owngrad-stubs, as users get them
    cmd = [sys.executable, "-m", "mypy.stubtest", "owngrad", "--mypy-config-file", os.path.join(TYPING, "mypy.ini"),
           "--allowlist", os.path.join(TYPING, "stubtest_allowlist.txt")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_owngrad_is_strict_clean() -> None:
    """The runtime itself passes mypy --strict under its own config (the stubs do not interfere)."""
    r = run_mypy("owngrad", "--config-file", os.path.join("tests", "typing", "mypy-runtime.ini"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_at_the_top_level_checks_examples_and_cases() -> None:
    """``mypy`` with no arguments at the top level: the examples and the typing cases, through the stubs and the
    plugin, as a user's project sees owngrad."""
    examples = [f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py")]
    assert examples
    r = run_mypy("top-level")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "expects no type arguments" not in r.stdout


def test_pyright_agrees_on_pass_and_fail_cases() -> None:
    """basedpyright in strict mode (the dev extra installs it) agrees: pass/ is clean, each fail/ ignore is needed."""
    errors, summary = pyright_errors(["-p", os.path.join(TYPING, "pyrightconfig.json")], ROOT)
    assert summary["filesAnalyzed"] >= 2
    assert not errors, describe(errors)
