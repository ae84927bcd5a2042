"""The model benchmark runs in its quick mode: every implementation agrees with torch, and the table
and the goals are printed (no timing thresholds: timings belong to the benchmark, not the tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def test_models_benchmark_quick() -> None:
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "models.py"), "--quick"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert not [line for line in lines if line.startswith("!!")], proc.stdout  # losses agree with torch's
    rows = [line for line in lines if line.startswith("| ") and "ms" not in line.split("|")[2]]
    assert [r.split("|")[1].split("(")[0].strip() for r in rows] == ["MNIST CNN", "LSTM LM", "transformer LM",
                                                                     "sine-wave LSTMCell predictor", "VAE"]
    assert all(len(r.split("|")) == 10 for r in rows)
    goals = [line for line in lines if line.startswith(("[MET ]", "[MISS]"))]
    assert len(goals) == 10 and all("torch (goal <= " in line for line in goals)


def test_models_benchmark_memory_probe() -> None:
    """The memory column's probe: a step's peak above the built model, measured in this process."""
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux /proc to reset the peak resident set")
    sys.path.insert(0, BENCHMARKS)
    try:
        import models
    finally:
        sys.path.remove(BENCHMARKS)
    used = models.probe_memory("cnn", "floor", models.QUICK)
    assert isinstance(used, int) and used >= 0


def test_models_benchmark_catches_a_wrong_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agreement check can fail: a floor whose update uses a gradient 10 % off is reported."""
    pytest.importorskip("torch")
    sys.path.insert(0, BENCHMARKS)
    try:
        import model_floors
        import models
    finally:
        sys.path.remove(BENCHMARKS)
    sgd = model_floors._sgd

    def off(params: dict[str, Any], grads: dict[str, Any], lr: float, clip: float) -> None:
        sgd(params, {k: g * 0.9 if k == "fc1.weight" else g for k, g in grads.items()}, lr, clip)

    assert models.check_training("cnn", models.QUICK) == []
    monkeypatch.setattr(model_floors, "_sgd", off)
    problems = models.check_training("cnn", models.QUICK)
    assert len(problems) == 1 and "floor's loss after two steps" in problems[0]
