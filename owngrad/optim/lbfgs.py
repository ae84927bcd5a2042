"""L-BFGS with a closure, as ``torch.optim.LBFGS``: the same two-loop recursion, step lengths,
stopping rules and (``line_search_fn="strong_wolfe"``) the same line search, on the params flattened
into one vector.

``opt.step(closure)`` calls ``closure()`` (up to ``max_eval`` times) to evaluate the loss at the
current params. The closure returns the loss tensor -- the optimizer runs ``g.backward`` on it -- or
a pair ``(loss, grads)`` when it runs the backward itself. Between two evaluations the params are
written in place under their exclusive borrows, like every optimizer step, so a pending result that
saved a param refuses the step at the line that called it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

from ..backend import Array, xp_of
from ..errors import GradError, GraphError
from ..grads import raw_gradients
from ..graph import Grads, graph_of
from ..handle import array_of, check_writable, exclusive
from ..sites import user_site
from ..tensor import Tensor
from .optimizer import Optimizer, check_numbers

__all__ = ["LBFGS"]

Closure = Callable[[], Any]


class LBFGS(Optimizer):
    """``LBFGS(params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
    history_size=100, line_search_fn=None)`` -- torch's defaults, one parameter group; ``step(closure)``
    returns the loss of the closure's first evaluation."""

    hyper_keys = ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size",
                  "line_search_fn")
    state_keys = ("func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad",
                  "prev_loss")

    def __init__(self, params: Iterable[Any], lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None) -> None:
        super().__init__(params, {"lr": lr, "max_iter": max_iter,
                                  "max_eval": max_iter * 5 // 4 if max_eval is None else max_eval,
                                  "tolerance_grad": tolerance_grad, "tolerance_change": tolerance_change,
                                  "history_size": history_size, "line_search_fn": line_search_fn})
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS: parameter groups are not supported (one group, as torch)")

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        check_numbers(self, group, "tolerance_grad", "tolerance_change")
        for k in ("max_iter", "max_eval", "history_size"):
            if isinstance(group[k], bool) or not isinstance(group[k], int) or group[k] <= 0:
                raise ValueError(f"LBFGS: {k} must be a positive int, got {group[k]!r}")
        if group["line_search_fn"] not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {group['line_search_fn']!r}")

    def update(self, p: Array, g: Array, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Array]:
        raise TypeError("LBFGS.update: L-BFGS steps all params together; call opt.step(closure)")

    # --- the flat vector of params and gradients ---
    def _evaluate(self, closure: Closure) -> tuple[Any, float, Array]:
        """Run the closure: (its loss as returned, the loss as a float, the flat gradient)."""
        out = closure()
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Grads):
            loss, grads = out
        elif isinstance(out, Tensor):
            try:
                loss, grads = out, graph_of(out).backward(out)
            except GraphError as e:
                raise GraphError(f"LBFGS.step: the loss the closure returned cannot be back-propagated: {e}\n  help: "
                                 "a closure that runs g.backward(loss) itself returns (loss, grads)") from None
        else:
            raise TypeError("LBFGS.step: the closure must return the loss tensor (the optimizer runs its "
                            f"backward) or a pair (loss, grads), got {type(out).__name__}")
        grads.wait()
        raw = raw_gradients(grads, self.params)
        if all(gd is None for gd in raw):
            raise GradError(self._nothing_to_step(grads, "LBFGS.step"))
        arrays = [array_of(p) for p in self.params]
        xp = xp_of(arrays[0])
        flat = xp.concatenate([(xp.zeros(a.size, a.dtype) if gd is None else gd.reshape(-1))
                               for a, gd in zip(arrays, raw)])
        value = float(loss.item()) if isinstance(loss, Tensor) else float(loss)
        return loss, value, flat

    def _write(self, values: Callable[[int, Array], Array]) -> None:
        """Set each param to ``values(offset, array)``, all under exclusive borrows taken first."""
        site = user_site()
        check_writable(self.params, site, "LBFGS.step")
        with exclusive(self.params, site, "LBFGS.step"):
            offset = 0
            for p in self.params:
                a = array_of(p)
                a[...] = values(offset, a)
                offset += a.size

    def _add(self, t: float, d: Array) -> None:
        self._write(lambda o, a: a + t * d[o:o + a.size].reshape(a.shape))

    def _flat_params(self) -> Array:
        arrays = [array_of(p) for p in self.params]
        return xp_of(arrays[0]).concatenate([a.reshape(-1) for a in arrays])

    def _set(self, x: Array) -> None:
        self._write(lambda o, a: x[o:o + a.size].reshape(a.shape))

    def _directional_evaluate(self, closure: Closure, x: Array, t: float, d: Array) -> tuple[float, Array]:
        self._add(t, d)
        try:
            _, value, flat = self._evaluate(closure)
        finally:
            self._set(x)
        return value, flat

    # --- the algorithm ---
    def step(self, closure: Closure) -> Any:  # type: ignore[override]
        """One L-BFGS step (up to ``max_iter`` iterations, ``max_eval`` closure calls), exactly as torch's."""
        if isinstance(closure, Grads) or not callable(closure):
            raise TypeError("LBFGS.step: L-BFGS re-evaluates the loss; pass a closure that computes it "
                            "(opt.step(closure)), not gradients")
        group = self.param_groups[0]
        state = self.state[0]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        orig_loss, loss, flat_grad = self._evaluate(closure)
        state["func_evals"] += 1
        if float(abs(flat_grad).max()) <= group["tolerance_grad"]:
            return orig_loss
        _Iteration(self, closure, group, state).run(loss, flat_grad)
        return orig_loss

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["state"] = copy.deepcopy(self.state)
        return sd

    def _loaded_state(self, i: int, p: Tensor, st: dict[str, Any]) -> dict[str, Any]:
        if set(st) - set(self.state_keys):
            raise ValueError(f"LBFGS.load_state_dict: unexpected state {sorted(set(st) - set(self.state_keys))}")
        return copy.deepcopy(st)


class _Iteration:
    """The loop of one ``LBFGS.step`` (torch's, statement for statement), with its state as attributes."""

    def __init__(self, opt: LBFGS, closure: Closure, group: dict[str, Any], state: dict[str, Any]) -> None:
        self.opt, self.closure, self.group, self.state = opt, closure, group, state

    def run(self, loss: float, flat_grad: Array) -> None:
        group, state = self.group, self.state
        tol_change = group["tolerance_change"]
        d, t = state.get("d"), state.get("t")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")
        current_evals, n_iter = 1, 0
        while n_iter < group["max_iter"]:
            n_iter += 1
            state["n_iter"] += 1
            d = self._direction(flat_grad, d, t, prev_flat_grad)
            prev_flat_grad, prev_loss = flat_grad.copy(), loss
            t = (min(1.0, 1.0 / float(abs(flat_grad).sum())) * group["lr"] if state["n_iter"] == 1
                 else group["lr"])
            gtd = float(flat_grad.dot(d))
            if gtd > -tol_change:
                break
            loss, flat_grad, t, evals = self._line_step(loss, flat_grad, t, d, gtd, n_iter)
            opt_cond = float(abs(flat_grad).max()) <= group["tolerance_grad"]
            current_evals += evals
            state["func_evals"] += evals
            if n_iter == group["max_iter"] or current_evals >= group["max_eval"] or opt_cond:
                break
            if float(abs(d * t).max()) <= tol_change or abs(loss - prev_loss) < tol_change:
                break
        state.update(d=d, t=t, prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)

    def _direction(self, flat_grad: Array, d: Any, t: Any, prev_flat_grad: Any) -> Array:
        """The search direction: steepest descent first, then the two-loop recursion over the history."""
        state = self.state
        if state["n_iter"] == 1:
            state.update(old_dirs=[], old_stps=[], ro=[], H_diag=1.0)
            return -flat_grad
        old_dirs, old_stps, ro = state["old_dirs"], state["old_stps"], state["ro"]
        y = flat_grad - prev_flat_grad
        s = d * t
        ys = float(y.dot(s))
        if ys > 1e-10:
            if len(old_dirs) == self.group["history_size"]:
                old_dirs.pop(0)
                old_stps.pop(0)
                ro.pop(0)
            old_dirs.append(y)
            old_stps.append(s)
            ro.append(1.0 / ys)
            state["H_diag"] = ys / float(y.dot(y))
        al = [0.0] * len(old_dirs)
        q = -flat_grad
        for i in range(len(old_dirs) - 1, -1, -1):
            al[i] = float(old_stps[i].dot(q)) * ro[i]
            q = q - al[i] * old_dirs[i]
        r = q * state["H_diag"]
        for i in range(len(old_dirs)):
            be_i = float(old_dirs[i].dot(r)) * ro[i]
            r = r + (al[i] - be_i) * old_stps[i]
        return r

    def _line_step(self, loss: float, flat_grad: Array, t: float, d: Array, gtd: float,
                   n_iter: int) -> tuple[float, Array, float, int]:
        """Move along ``d``: a fixed step ``t`` (torch's default), or the strong-Wolfe line search."""
        opt = self.opt
        if self.group["line_search_fn"] is None:
            opt._add(t, d)
            if n_iter == self.group["max_iter"]:
                return loss, flat_grad, t, 0
            _, loss, flat_grad = opt._evaluate(self.closure)
            return loss, flat_grad, t, 1
        x = opt._flat_params()
        search = _StrongWolfe(lambda step: opt._directional_evaluate(self.closure, x, step, d), d,
                              self.group["tolerance_change"])
        loss, flat_grad, t, evals = search.run(t, loss, flat_grad, gtd)
        opt._add(t, d)
        return loss, flat_grad, t, evals


def _cubic_interpolate(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float,
                       bounds: tuple[float, float] | None = None) -> float:
    """The minimiser of the cubic through two points with their slopes, clipped to ``bounds`` (torch's)."""
    lo, hi = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(d2_square)
    if x1 <= x2:
        min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(min_pos, lo), hi)


class _StrongWolfe:
    """torch's ``_strong_wolfe`` line search (c1=1e-4, c2=0.9, max_ls=25): a bracketing phase, then a
    zoom phase of cubic interpolations."""

    c1, c2, max_ls = 1e-4, 0.9, 25

    def __init__(self, evaluate: Callable[[float], tuple[float, Array]], d: Array, tolerance_change: float) -> None:
        self.evaluate, self.d, self.tol = evaluate, d, tolerance_change
        self.evals = 0

    def _at(self, t: float) -> tuple[float, Array, float]:
        f, g = self.evaluate(t)
        self.evals += 1
        return f, g, float(g.dot(self.d))

    def run(self, t: float, f: float, g: Array, gtd: float) -> tuple[float, Array, float, int]:
        f_new, g_new, gtd_new = self._at(t)
        t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g.copy(), gtd
        ls_iter = 0
        done = False
        br: list[list[Any]] = []   # [steps, values, gradients, slopes]
        while ls_iter < self.max_ls:
            armijo_fails = f_new > f + self.c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev)
            if not armijo_fails and abs(gtd_new) <= -self.c2 * gtd:
                br, done = [[t], [f_new], [g_new], [gtd_new]], True
                break
            if armijo_fails or gtd_new >= 0:
                br = [[t_prev, t], [f_prev, f_new], [g_prev, g_new.copy()], [gtd_prev, gtd_new]]
                break
            nxt = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                     bounds=(t + 0.01 * (t - t_prev), t * 10))
            t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new.copy(), gtd_new
            t = nxt
            f_new, g_new, gtd_new = self._at(t)
            ls_iter += 1
        if ls_iter == self.max_ls:
            br = [[0.0, t], [f, f_new], [g, g_new], [gtd, gtd_new]]
        low = self._zoom(br, f, gtd, ls_iter, done) if len(br[0]) == 2 else 0
        return br[1][low], br[2][low], br[0][low], self.evals

    def _zoom(self, br: list[list[Any]], f: float, gtd: float, ls_iter: int, done: bool) -> int:
        steps, fs, gs, gtds = br
        insuf_progress = False
        low, high = (0, 1) if fs[0] <= fs[-1] else (1, 0)
        d_norm = float(abs(self.d).max())
        while not done and ls_iter < self.max_ls:
            if abs(steps[1] - steps[0]) * d_norm < self.tol:
                break
            t = _cubic_interpolate(steps[0], fs[0], gtds[0], steps[1], fs[1], gtds[1])
            t, insuf_progress = self._away_from_ends(t, steps, insuf_progress)
            f_new, g_new, gtd_new = self._at(t)
            ls_iter += 1
            if f_new > f + self.c1 * t * gtd or f_new >= fs[low]:
                steps[high], fs[high], gs[high], gtds[high] = t, f_new, g_new.copy(), gtd_new
                low, high = (0, 1) if fs[0] <= fs[1] else (1, 0)
                continue
            if abs(gtd_new) <= -self.c2 * gtd:
                done = True
            elif gtd_new * (steps[high] - steps[low]) >= 0:
                steps[high], fs[high], gs[high], gtds[high] = steps[low], fs[low], gs[low], gtds[low]
            steps[low], fs[low], gs[low], gtds[low] = t, f_new, g_new.copy(), gtd_new
        return low

    @staticmethod
    def _away_from_ends(t: float, steps: list[float], insuf_progress: bool) -> tuple[float, bool]:
        """torch's safeguard: a trial too close to an end of the bracket is moved inside it."""
        hi, lo = max(steps), min(steps)
        eps = 0.1 * (hi - lo)
        if min(hi - t, t - lo) >= eps:
            return t, False
        if insuf_progress or t >= hi or t <= lo:
            return (hi - eps if abs(t - hi) < abs(t - lo) else lo + eps), False
        return t, True
