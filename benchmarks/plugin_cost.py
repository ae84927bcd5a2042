"""What the mypy plugin costs: ``mypy --strict`` on one generated function with N in-place write sites
(each a forward, a backward and an update), with and without ``plugins = owngrad.mypy_plugin``.

Each figure is the CPU time of one in-process mypy run (the minimum of ``--repeats``; library modules come
from a warm cache, the generated module is re-checked every run), and the plugin's own analysis time
(``Context.diagnose``, the flow check of the function). A flow check that re-walked the function at every
hook would grow quadratically; this one grows linearly.

    python benchmarks/plugin_cost.py --sizes 200 400 800 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / "tests" / "typing" / "installed"


def program(n: int, tag: str) -> str:
    lines = ["import numpy as np", "import owngrad as og", "", "", "def big(g: og.Graph) -> None:",
             "    w = g.param(np.zeros((4, 4)))", "    x = g.param(np.ones((2, 4)))"]
    for i in range(n):
        lines += [f"    loss{i} = (x @ w).sum()", f"    grads{i} = g.backward(loss{i})", f"    w -= 0.1 * grads{i}[w]"]
    return "\n".join(lines) + f"\n# {tag}\n"


def _run(work: Path, plugin: bool, n: int, tag: str) -> tuple[float, float]:
    """CPU seconds of one mypy run, and of the plugin's analysis inside it."""
    from owngrad.mypy_plugin.analysis import Context

    spent = [0.0]
    original = Context.diagnose

    def timed(self: Context, scope: object) -> dict[int, list[str]]:
        t0 = time.process_time()
        try:
            return original(self, scope)  # type: ignore[arg-type]
        finally:
            spent[0] += time.process_time() - t0

    cfg = work / ("plugin.ini" if plugin else "plain.ini")
    cfg.write_text("[mypy]\nstrict = True\n" + f"mypy_path = {STUBS}\n" +
                   ("plugins = owngrad.mypy_plugin\n" if plugin else ""))
    src = work / f"prog_{tag.replace('-', '_')}_{int(plugin)}.py"  # a new module: never fresh in the cache
    src.write_text(program(n, tag))
    cache = work / ("c1" if plugin else "c0")
    Context.diagnose = timed  # type: ignore[method-assign]
    try:
        t0 = time.process_time()
        out, err, status = api.run(["--config-file", str(cfg), "--cache-dir", str(cache),
                                    str(src)])
        total = time.process_time() - t0
    finally:
        Context.diagnose = original  # type: ignore[method-assign]
    if status != 0:
        raise RuntimeError(out + err)
    return total, spent[0]


def measure(sizes: list[int], repeats: int) -> list[dict[str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cwd = os.getcwd()
        os.chdir(work)
        try:
            for plugin in (False, True):
                _run(work, plugin, 4, "warm")
            for n in sizes:
                plain = min(_run(work, False, n, f"{n}-{r}")[0] for r in range(repeats))
                runs = [_run(work, True, n, f"{n}-p{r}") for r in range(repeats)]
                rows.append({"sites": n, "mypy": plain, "mypy+plugin": min(t for t, _ in runs),
                             "analysis": min(a for _, a in runs)})
        finally:
            os.chdir(cwd)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 400, 800])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()
    rows = measure(args.sizes, args.repeats)
    if args.json:
        print(json.dumps(rows))
        return
    print("| write sites | mypy (s) | mypy + plugin (s) | ratio | plugin analysis (s) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sites']} | {r['mypy']:.2f} | {r['mypy+plugin']:.2f} | {r['mypy+plugin'] / r['mypy']:.2f}x "
              f"| {r['analysis']:.3f} |")


if __name__ == "__main__":
    main()
