"""A corpus of realistic strictly typed training programs (tests/typing/corpus/): RL with a shared
loss helper, a GAN, EMA and target networks, buffers written through slices, helpers that run
backward and clip.

- each program runs to the end (it is a real program, not just type-checked text);
- each misuse twin fails at run time at a line marked ``# MISUSE``: a twin made of ``case_*`` functions runs
  every case, and each must fail at its own marked line (so every marked line is a real run-time failure);
- under ``mypy --strict`` with the plugin, the programs have no error at all (no false alarm),
  and each ``*_misuse.py`` twin has an error on exactly its lines marked ``# MISUSE``;
- the same holds with the oldest mypy the project supports (1.10), installed into a throwaway
  environment (skipped when the package index cannot be reached).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyright_run import describe, pyright_errors

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "typing" / "corpus"
PROGRAMS = sorted(p for p in CORPUS.glob("*.py") if not p.stem.endswith("_misuse"))
TWINS = sorted(CORPUS.glob("*_misuse.py"))
OLDEST_MYPY = "1.10.1"


def _marked() -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    for f in TWINS:
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if "# MISUSE" in line:
                out[(f.name, i)] = line.strip()
    return out


def _check(python: str, cache: str, env: dict[str, str] | None = None) -> tuple[dict[tuple[str, int], list[str]], str]:
    cmd = [python, "-m", "mypy", "--config-file", os.path.join("tests", "typing", "mypy-plugin.ini"), "--cache-dir",
           cache, "--no-error-summary", "--show-error-codes", *(str(p.relative_to(ROOT)) for p in PROGRAMS + TWINS)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    errors: dict[tuple[str, int], list[str]] = {}
    for line in r.stdout.splitlines():
        m = re.match(r"(.+?):(\d+): error: (.*)$", line)
        if m:
            errors.setdefault((os.path.basename(m.group(1)), int(m.group(2))), []).append(m.group(3))
    return errors, r.stdout + r.stderr


def _assert_exact(errors: dict[tuple[str, int], list[str]], out: str) -> None:
    marked = _marked()
    assert len(PROGRAMS) >= 5 and len(TWINS) == len(PROGRAMS)
    false_alarms = {k: v for k, v in errors.items() if k not in marked}
    missed = {k: v for k, v in marked.items() if k not in errors}
    assert not false_alarms and not missed, f"false alarms: {false_alarms}\nmissed: {missed}\n{out}"


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.stem)
def test_corpus_program_runs(program: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, str(program)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


#: runs a misuse twin: each ``case_*`` function (or the program, without them) must raise an owngrad error
#: while one of its frames in the twin stands on a marked line; prints the marked lines that failed, as JSON
_RUN_TWIN = """
import importlib.util, json, runpy, sys, traceback
import owngrad as og
path = sys.argv[1]
marked = {i for i, l in enumerate(open(path).read().splitlines(), 1) if "# MISUSE" in l}
def failing_line(run, name=None):
    try:
        run()
    except (og.BorrowError, og.GraphError, og.GradError) as e:
        lines = [n for f, n in traceback.walk_tb(e.__traceback__) if f.f_code.co_filename == path]
        return ([n for n in lines if n in marked] or lines)[-1]  # the innermost marked frame: the call or the write
    raise SystemExit(f"{name or path}: ran without an owngrad error")
spec = importlib.util.spec_from_file_location("twin", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
cases = [v for k, v in vars(mod).items() if k.startswith("case_") and callable(v)]
if cases:
    hit = [failing_line(c, c.__name__) for c in cases]
    if sorted(hit) != sorted(marked):
        raise SystemExit(f"failed at lines {sorted(hit)}, marked {sorted(marked)}")
else:
    hit = [failing_line(lambda: runpy.run_path(path, run_name="__main__"))]
    if hit[0] not in marked:
        raise SystemExit(f"failed at line {hit[0]}, not a marked line")
print(json.dumps(hit))
"""


@pytest.mark.parametrize("twin", TWINS, ids=lambda p: p.stem)
def test_misuse_twin_fails_at_run_time_at_a_marked_line(twin: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", _RUN_TWIN, str(twin)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


def test_corpus_no_false_alarm_and_every_misuse_caught() -> None:
    errors, out = _check(sys.executable, str(ROOT / ".mypy_cache" / "typing-tests" / "corpus"))
    _assert_exact(errors, out)


def test_oldest_supported_mypy(tmp_path: Path) -> None:
    """The plugin's cases and the corpus under mypy 1.10 (the lower bound the dev extra declares).

    The throwaway environment gets mypy 1.10 first, then a path file that lists this interpreter's own
    ``sys.path`` (so it sees this environment's owngrad, stubs and test tools, however this environment was made:
    ``--system-site-packages`` would show the *base* interpreter's packages instead, which lack owngrad when this
    is itself a venv)."""
    venv = tmp_path / "old-mypy"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"mypy=={OLDEST_MYPY}"],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"could not install mypy=={OLDEST_MYPY}: {(r.stdout + r.stderr)[-300:]}")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    Path(site, "zz-parent-env.pth").write_text("".join(f"{p}\n" for p in sys.path if p and os.path.isdir(p)))
    version = subprocess.run([py, "-m", "mypy", "--version"], capture_output=True, text=True, timeout=120).stdout
    assert OLDEST_MYPY in version, version
    errors, out = _check(py, str(tmp_path / "cache"))
    _assert_exact(errors, out)
    plugin_cases = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_mypy_plugin.py"],
                                  cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert plugin_cases.returncode == 0, plugin_cases.stdout[-4000:]


def test_corpus_programs_are_clean_under_basedpyright_strict(tmp_path: Path) -> None:
    """The stubs hold under pyright too: the correct programs raise nothing in strict mode."""
    cfg = tmp_path / "pyrightconfig.json"
    cfg.write_text(json.dumps({"include": [str(p) for p in PROGRAMS], "typeCheckingMode": "strict",
                               "reportMissingModuleSource": "none"}))
    errors, summary = pyright_errors(["-p", str(cfg)], ROOT)
    assert summary["filesAnalyzed"] == len(PROGRAMS)
    assert not errors, describe(errors)
