"""Every example runs in its quick mode and prints what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_every_example_is_tested() -> None:
    tested = {"train_digits.py", "safe_inplace.py", "gan_pitfall.py", "indexing.py", "rnn_digits.py",
              "char_transformer.py", "captured_step.py", "pinn.py", "wgan_gp.py"}
    assert {f for f in os.listdir(EXAMPLES) if f.endswith(".py")} == tested


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_train_digits_quick(model: str) -> None:
    pytest.importorskip("sklearn")
    out = run("train_digits.py", "--quick", "--model", model, "--epochs", "2" if model == "mlp" else "1")
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"model: {model}") and "train 1437 / test 360" in lines[0]
    m = re.fullmatch(r"test accuracy: (0\.\d{4}|1\.0000)", lines[-1])
    assert m, lines[-1]
    assert float(m.group(1)) > (0.7 if model == "mlp" else 0.3)   # better than chance after 1-2 epochs


def test_safe_inplace() -> None:
    out = run("safe_inplace.py", "--quick")
    assert "gradient exact: True" in out
    assert "EMA equals 0.9 * EMA + 0.1 * weights after every step: True" in out
    assert re.search(r"BorrowError: cannot write 1\.weight \(exclusive borrow for SGD\.step\) at safe_inplace\.py:\d+",
                     out)
    assert re.search(r"borrowed \(shared\) by node #\d+ \w+ recorded at safe_inplace\.py:\d+"
                     r"( in main, called from safe_inplace\.py:\d+)?: saved for backward", out)
    assert "call g.backward(...) on it first" in out
    assert "after g.backward(loss) the step went through" in out
    assert out.rstrip().endswith("done")


def test_gan_pitfall() -> None:
    out = run("gan_pitfall.py", "--quick")
    assert re.search(r"BorrowError: cannot write 0\.weight \(exclusive borrow for Adam\.step\) at gan_pitfall\.py:\d+",
                     out)
    assert "discriminator unchanged after the refused step: True" in out
    assert re.search(r"step +5: loss_d [\d.]+ +loss_g [\d.]+", out)
    assert "pending nodes left: 0" in out


def test_indexing() -> None:
    out = run("indexing.py", "--quick")
    assert "gradient per row = occurrences: [1, 1, 3, 0, 1, 0]" in out
    assert "left part 2*w, right part 1-tanh^2: True" in out
    assert "the rest 18*x: True" in out
    m = re.search(r"loss ([\d.]+) -> ([\d.]+); training accuracy ([\d.]+)", out)
    assert m and float(m.group(2)) < float(m.group(1))
    assert "pending nodes left: 0" in out


def test_rnn_digits_quick() -> None:
    pytest.importorskip("sklearn")
    out = run("rnn_digits.py", "--quick")
    lines = out.strip().splitlines()
    assert lines[0].startswith("model: GRU(64) over 8 rows")
    m = re.fullmatch(r"test accuracy: (0\.\d{4}|1\.0000)", lines[-1])
    assert m and float(m.group(1)) > 0.5, lines[-1]  # far better than chance after two epochs


def test_char_transformer_quick_cached_generation_equals_recomputation() -> None:
    out = run("char_transformer.py", "--quick")
    m = re.search(r"held-out bits per character: transformer (\d+\.\d+), bigram baseline (\d+\.\d+)", out)
    assert m, out
    assert 0 < float(m.group(2)) < 7  # log2(vocab) is about 6.6: the bigram model must beat uniform
    assert "cached generation equals recomputed generation: True" in out, out


def test_captured_step() -> None:
    out = run("captured_step.py", "--quick")
    assert "losses and weights bitwise equal to eager after every step: True" in out
    assert re.search(r"eager \d+ us/step, captured \d+ us/step \(39 replays of 1 plan\)", out)
    assert re.search(r"GraphError: g\.capture: float\(t\) of .* at captured_step\.py:\d+ in logging_step", out)
    # the replay's borrows conflict, so the step runs eagerly and is refused where an eager step is
    assert re.search(r"BorrowError: cannot write 3\.weight \(exclusive borrow for Adam\.step\) at captured_step\.py",
                     out)
    assert "saved for backward" in out
    assert out.rstrip().endswith("after g.free(pending) the replay went through")


def test_pinn_quick_residual_below_goal() -> None:
    out = run("pinn.py", "--quick")
    m = re.search(r"final ode residual: ([0-9.e+-]+)", out)
    assert m is not None and float(m.group(1)) < 1e-3, out
    m = re.search(r"max \|u\(t\) - exp\(-t\)\| on \[0, 2\]: ([0-9.e+-]+)", out)
    assert m is not None and float(m.group(1)) < 0.05, out
    assert "pending nodes left: 0" in out


def test_wgan_gp_quick_critic_gradient_norm_near_one() -> None:
    out = run("wgan_gp.py", "--quick")
    m = re.search(r"critic gradient norm at interpolates, last \d+ critic steps: ([0-9.]+)", out)
    assert m is not None and 0.8 < float(m.group(1)) < 1.2, out
    assert "pending nodes left: 0" in out
