"""One MLP training step (forward, backward, SGD update) in owngrad and its peers, float64.

    python benchmarks/step.py                 # all sizes, all installed libraries
    python benchmarks/step.py --sizes tiny --rounds 50
    python benchmarks/step.py --device cuda   # owngrad on cupy against a cupy floor (needs a GPU)

Libraries, in one run and interleaved round by round (so machine noise hits them alike):
owngrad (eager), "captured" (the same owngrad step through ``g.capture``: recorded once, then
replayed), a hand-written numpy forward+backward (the floor), torch (1 thread), MyGrad and HIPS
autograd (each skipped when absent). Every library starts from the same weights, and the first
step's losses are checked to agree before anything is timed.

Timing (``--clock cpu``, the default, counts this process's CPU time, which other jobs on a
shared machine disturb far less than wall time; ``--clock wall`` for an idle machine): each library
is warmed up, a block size is calibrated so one block takes ~10 ms, then
``--rounds`` rounds each time one block per library; the per-step median over rounds is
reported with ratios against the numpy floor and against torch.

BLAS threads are pinned to 1 for every library (environment variables set before numpy is
imported, threadpoolctl, torch.set_num_threads(1)); the BLAS each library runs and any
OPENBLAS_CORETYPE in force are printed. numpy runs OpenBLAS, torch runs MKL: the floor and
owngrad share the one kernel, so their ratio isolates owngrad's overhead.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

SIZES: dict[str, tuple[int, tuple[int, ...]]] = {
    "tiny": (8, (16, 16, 16, 4)),
    "small": (64, (64, 128, 128, 10)),
    "medium": (256, (784, 512, 512, 10)),
}
LR = 1e-3

# performance goals: (size, reference, max ratio)
GOALS = [("tiny", "torch", 1.0), ("small", "numpy", 1.15), ("medium", "numpy", 1.05)]
# captured steps (g.capture): (size, reference, max ratio); and faster than eager owngrad at every size
CAPTURED_GOALS = [("tiny", "torch", 0.5), ("small", "numpy", 1.15), ("medium", "numpy", 1.02)]


# --------------------------------------------------------------------------------------------
# problem data (identical for every library)

def make_problem(size: str, seed: int = 0) -> dict[str, Any]:
    batch, widths = SIZES[size]
    rng = np.random.default_rng(seed)
    params = []
    for i, o in zip(widths[:-1], widths[1:]):
        params.append(rng.standard_normal((i, o)) * np.sqrt(2.0 / i))
        params.append(rng.standard_normal(o) * 0.1)
    x = rng.standard_normal((batch, widths[0]))
    labels = rng.integers(0, widths[-1], size=batch)
    onehot = np.zeros((batch, widths[-1]))
    onehot[np.arange(batch), labels] = 1.0
    return {"params": params, "x": x, "labels": labels, "onehot": onehot}


Step = Callable[[], float | None]  # a step; returns the loss when asked (``step(True)``)


# --------------------------------------------------------------------------------------------
# the numpy floor: forward and backward by hand, SGD in place

def setup_numpy(p: dict[str, Any], loss: str, xp: Any = np) -> Callable[[bool], float | None]:
    params = [xp.asarray(a).copy() for a in p["params"]]
    x = xp.asarray(p["x"])
    labels = xp.asarray(p["labels"])
    onehot = xp.asarray(p["onehot"])
    n_layers = len(params) // 2
    batch = x.shape[0]
    rows = xp.arange(batch)

    def step(want: bool = False) -> float | None:
        hs = [x]
        h = x
        for i in range(n_layers):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < n_layers - 1:
                h = xp.maximum(h, 0)
            hs.append(h)
        if loss == "ce":
            m = h.max(axis=1, keepdims=True)
            e = xp.exp(h - m)
            s = e.sum(axis=1, keepdims=True)
            lsm = h - m - xp.log(s)
            val = -lsm[rows, labels].mean()
            d = e / s
            d[rows, labels] -= 1
            d /= batch
        else:
            diff = h - onehot
            val = (diff * diff).mean()
            d = diff * (2.0 / diff.size)
        for i in reversed(range(n_layers)):
            w, b = params[2 * i], params[2 * i + 1]
            a = hs[i]
            gw = a.T @ d
            gb = d.sum(axis=0)
            if i > 0:
                d = (d @ w.T) * (a > 0)
            w -= LR * gw
            b -= LR * gb
        return float(val) if want else None

    return step


# --------------------------------------------------------------------------------------------
# owngrad

def _og_cross_entropy() -> Callable[..., Any] | None:
    import owngrad as og

    nn = getattr(og, "nn", None)
    fn = getattr(getattr(nn, "functional", None), "cross_entropy", None)
    return fn  # type: ignore[no-any-return]


def setup_owngrad(p: dict[str, Any], loss: str, device: str = "cpu",
                  captured: bool = False) -> Callable[[bool], float | None]:
    """owngrad's step; ``captured``: the same step through ``g.capture`` (recorded at the first call,
    replayed after)."""
    import owngrad as og

    g = og.Graph(device=device)
    params = [g.param(a, name=f"p{i}") for i, a in enumerate(p["params"])]
    x = g.constant(p["x"], name="x")
    onehot = g.constant(p["onehot"], name="y")
    labels = g.constant(p["labels"], name="labels")
    n_layers = len(params) // 2
    ce = _og_cross_entropy()
    opt = None
    optim = getattr(og, "optim", None)
    if optim is not None and hasattr(optim, "SGD"):
        opt = optim.SGD(params, lr=LR)

    def train_step() -> Any:
        h = x
        for i in range(n_layers):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < n_layers - 1:
                h = h.relu()
        if loss == "ce":
            assert ce is not None
            val = ce(h, labels)
        else:
            diff = h - onehot
            val = (diff * diff).mean()
        grads = g.backward(val)
        if opt is not None:
            opt.step(grads)
        else:
            with g.no_grad():
                for w in params:
                    w -= LR * grads[w]
        return val

    run = g.capture(train_step) if captured else train_step

    def step(want: bool = False) -> float | None:
        val = run()
        return float(val.item()) if want else None

    step.sgd = "og.optim.SGD" if opt is not None else "w -= lr * grads[w] under g.no_grad()"  # type: ignore[attr-defined]
    return step


# --------------------------------------------------------------------------------------------
# torch

def setup_torch(p: dict[str, Any], loss: str, device: str = "cpu") -> Callable[[bool], float | None]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    params = [torch.tensor(a, device=device, requires_grad=True) for a in p["params"]]
    x = torch.tensor(p["x"], device=device)
    labels = torch.tensor(p["labels"], device=device)
    onehot = torch.tensor(p["onehot"], device=device)
    n_layers = len(params) // 2

    def step(want: bool = False) -> float | None:
        h = x
        for i in range(n_layers):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < n_layers - 1:
                h = h.relu()
        if loss == "ce":
            val = F.cross_entropy(h, labels)
        else:
            diff = h - onehot
            val = (diff * diff).mean()
        out = val.item() if want else None
        val.backward()
        with torch.no_grad():
            for w in params:
                w -= LR * w.grad
                w.grad = None
        return out

    return step


# --------------------------------------------------------------------------------------------
# MyGrad

def setup_mygrad(p: dict[str, Any], loss: str) -> Callable[[bool], float | None]:
    import mygrad as mg
    from mygrad.nnet.losses import softmax_crossentropy

    params = [mg.tensor(a.copy()) for a in p["params"]]
    x = p["x"]
    labels = p["labels"]
    onehot = p["onehot"]
    n_layers = len(params) // 2

    def step(want: bool = False) -> float | None:
        h = x
        for i in range(n_layers):
            h = mg.matmul(h, params[2 * i]) + params[2 * i + 1]
            if i < n_layers - 1:
                h = mg.maximum(h, 0)
        if loss == "ce":
            val = softmax_crossentropy(h, labels)
        else:
            diff = h - onehot
            val = (diff * diff).mean()
        out = float(val.item()) if want else None
        val.backward()
        for w in params:
            w.data[...] -= LR * w.grad
        return out

    return step


# --------------------------------------------------------------------------------------------
# HIPS autograd

def setup_autograd(p: dict[str, Any], loss: str) -> Callable[[bool], float | None]:
    import autograd.numpy as anp
    from autograd import value_and_grad
    from autograd.scipy.special import logsumexp

    params = [a.copy() for a in p["params"]]
    x = p["x"]
    labels = p["labels"]
    onehot = p["onehot"]
    n_layers = len(params) // 2
    rows = np.arange(x.shape[0])

    def loss_fn(ps: list[Any]) -> Any:
        h = x
        for i in range(n_layers):
            h = anp.dot(h, ps[2 * i]) + ps[2 * i + 1]
            if i < n_layers - 1:
                h = anp.maximum(h, 0)
        if loss == "ce":
            lsm = h - logsumexp(h, axis=1, keepdims=True)
            return -anp.mean(lsm[rows, labels])
        diff = h - onehot
        return anp.mean(diff * diff)

    vg = value_and_grad(loss_fn)

    def step(want: bool = False) -> float | None:
        val, grads = vg(params)
        for w, gw in zip(params, grads):
            w -= LR * gw
        return float(val) if want else None

    return step


# --------------------------------------------------------------------------------------------
# timing

def _sync_fn(device: str) -> Callable[[], None]:
    if device == "cuda":
        import cupy

        return lambda: cupy.cuda.Device().synchronize()
    return lambda: None


def time_all(steps: dict[str, Callable[[bool], float | None]], rounds: int, warmup: int,
             target_s: float, sync: Callable[[], None],
             clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    blocks: dict[str, int] = {}
    for name, step in steps.items():
        for _ in range(warmup):
            step(False)
        sync()
        n = 1
        while True:  # calibrate: a block of n steps takes about target_s
            t0 = clock()
            for _ in range(n):
                step(False)
            sync()
            dt = clock() - t0
            if dt >= target_s or n >= 1 << 16:
                break
            n = max(n * 2, int(n * target_s / max(dt, 1e-9)))
        blocks[name] = n
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            n = blocks[name]
            t0 = clock()
            for _ in range(n):
                step(False)
            sync()
            times[name].append((clock() - t0) / n)
    return times


def blas_report() -> str:
    lines = []
    try:
        from threadpoolctl import threadpool_info, threadpool_limits

        threadpool_limits(1)
        for info in threadpool_info():
            lines.append(f"  {info.get('internal_api')} {info.get('version')} "
                         f"kernel={info.get('architecture', '?')} threads={info.get('num_threads')} "
                         f"({os.path.basename(info.get('filepath', ''))})")
    except ImportError:
        lines.append("  (threadpoolctl absent: relying on *_NUM_THREADS=1)")
    for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        lines.append(f"  {v}={os.environ.get(v, '(unset)')}")
    return "\n".join(lines)


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, numpy {np.__version__}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="tiny,small,medium")
    ap.add_argument("--libs", default="owngrad,captured,numpy,torch,mygrad,autograd")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--block-ms", type=float, default=10.0)
    ap.add_argument("--loss", choices=("auto", "ce", "mse"), default="auto")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: this process's CPU time (robust when other jobs share the cores; every "
                         "library runs one thread); wall: perf_counter (use on an idle machine and for cuda)")
    args = ap.parse_args(argv)

    xp: Any = np
    if args.device == "cuda":
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no GPU found")
            xp = cupy
        except Exception as e:
            print(f"--device cuda needs cupy and a usable GPU: {type(e).__name__}: {e}", file=sys.stderr)
            return 2

    loss = args.loss
    if loss == "auto":
        loss = "ce" if _og_cross_entropy() is not None else "mse"
    if loss == "ce" and _og_cross_entropy() is None:
        print("--loss ce: owngrad has no og.nn.functional.cross_entropy yet", file=sys.stderr)
        return 2

    wanted = args.libs.split(",")
    setups: dict[str, Callable[[dict[str, Any]], Callable[[bool], float | None]]] = {}
    skipped = []
    for lib in wanted:
        if lib == "owngrad":
            setups[lib] = lambda p: setup_owngrad(p, loss, args.device)
        elif lib == "captured":
            setups[lib] = lambda p: setup_owngrad(p, loss, args.device, captured=True)
        elif lib == "numpy":
            setups[lib] = lambda p: setup_numpy(p, loss, xp)
        elif lib in ("torch", "mygrad", "autograd"):
            try:
                __import__(lib)
            except ImportError:
                skipped.append(f"{lib} (not installed)")
                continue
            if lib == "torch":
                import torch

                if args.device == "cuda" and not torch.cuda.is_available():
                    skipped.append("torch (no CUDA build)")
                    continue
                setups[lib] = lambda p: setup_torch(p, loss, args.device)
            elif args.device == "cuda":
                skipped.append(f"{lib} (CPU only)")
            elif lib == "mygrad":
                setups[lib] = lambda p: setup_mygrad(p, loss)
            else:
                setups[lib] = lambda p: setup_autograd(p, loss)

    print(f"machine: {machine()}")
    print(f"device: {args.device}; loss: {'cross-entropy' if loss == 'ce' else 'mean-squared error'}; "
          f"float64; lr={LR}")
    print("BLAS (1 thread each):")
    print(blas_report())
    if "torch" in setups:
        import torch

        torch.set_num_threads(1)
        print(f"  torch {torch.__version__}: {torch.get_num_threads()} thread, BLAS via MKL")
    if skipped:
        print("skipped: " + ", ".join(skipped))
    sync = _sync_fn(args.device)
    clock = time.process_time if args.clock == "cpu" and args.device == "cpu" else time.perf_counter
    print(f"clock: {'process CPU time' if clock is time.process_time else 'wall (perf_counter)'}")
    results: dict[str, dict[str, float]] = {}
    for size in args.sizes.split(","):
        prob = make_problem(size)
        steps = {lib: make(prob) for lib, make in setups.items()}
        if "owngrad" in steps and size == args.sizes.split(",")[0]:
            print(f"owngrad SGD: {getattr(steps['owngrad'], 'sgd', '?')}")
        first = {lib: s(True) for lib, s in steps.items()}
        ref = first.get("numpy")
        for lib, v in first.items():
            if ref is not None and v is not None and not abs(v - ref) <= 1e-9 * max(1.0, abs(ref)):
                print(f"  !! {size}: {lib}'s first loss {v!r} differs from numpy's {ref!r}")
        times = time_all(steps, args.rounds, args.warmup, args.block_ms / 1e3, sync, clock)
        med = {lib: statistics.median(ts) for lib, ts in times.items()}
        results[size] = med
        batch, widths = SIZES[size]
        print(f"\n{size}: batch {batch}, widths {'-'.join(map(str, widths))}   "
              f"(median of {args.rounds} rounds; first loss {ref:.6f})")
        print(f"  {'library':<10}{'us/step':>12}{'vs numpy':>10}{'vs torch':>10}{'iqr %':>8}")
        for lib, m in med.items():
            q = statistics.quantiles(times[lib], n=4)
            vs_np = f"{m / med['numpy']:.2f}x" if "numpy" in med else "-"
            vs_t = f"{m / med['torch']:.2f}x" if "torch" in med else "-"
            print(f"  {lib:<10}{m * 1e6:>12.1f}{vs_np:>10}{vs_t:>10}{(q[2] - q[0]) / m * 100:>7.1f}%")

    if "owngrad" in setups:
        print("\ngoals:")
        for size, ref_lib, limit in GOALS:
            med = results.get(size)
            if med is None or ref_lib not in med:
                continue
            r = med["owngrad"] / med[ref_lib]
            ok = "MET " if r <= limit else "MISS"
            print(f"  [{ok}] {size}: owngrad {r:.2f}x {ref_lib} (goal <= {limit:.2f}x)")
        for size, ref_lib, limit in CAPTURED_GOALS:
            med = results.get(size)
            if med is None or ref_lib not in med or "captured" not in med:
                continue
            r = med["captured"] / med[ref_lib]
            ok = "MET " if r <= limit else "MISS"
            print(f"  [{ok}] {size}: captured {r:.2f}x {ref_lib} (goal <= {limit:.2f}x)")
        for size, med in results.items():
            if "captured" in med:
                r = med["captured"] / med["owngrad"]
                ok = "MET " if r < 1.0 else "MISS"
                print(f"  [{ok}] {size}: captured {r:.2f}x eager owngrad (goal < 1.00x)")
            for peer in ("mygrad", "autograd"):
                if peer in med:
                    r = med["owngrad"] / med[peer]
                    ok = "MET " if r < 1.0 else "MISS"
                    print(f"  [{ok}] {size}: owngrad {r:.2f}x {peer} (goal < 1.00x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
