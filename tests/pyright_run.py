"""basedpyright for the typing tests: run it, return its JSON report's errors (skipping the test cleanly
when it is not installed or could not run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest


def pyright_errors(args: list[str], cwd: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``basedpyright <args> --outputjson`` in ``cwd``: the error diagnostics, and the report's summary."""
    exe = shutil.which("basedpyright") or shutil.which("basedpyright", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("basedpyright is not installed (pip install -e '.[dev]' installs it)")
    if "--pythonpath" not in args:  # this interpreter's packages, whether or not its venv is activated
        args = [*args, "--pythonpath", sys.executable]
    r = subprocess.run([exe, *args, "--outputjson"], cwd=cwd, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.skip(f"basedpyright did not run: {(r.stdout + r.stderr)[-300:]}")
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    return errors, report["summary"]


def describe(errors: list[dict[str, Any]]) -> str:
    return "\n".join(f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}" for d in errors)
