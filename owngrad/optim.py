"""Optimizers with PyTorch's update rules: :class:`SGD`, :class:`Adam`, :class:`AdamW`.

``opt.step(grads)`` updates the params in place. Each update is an untracked leaf write that
needs the param's exclusive borrow, so a step taken while a pending node still saved a param
(the old weights are needed by a backward that has not run yet) raises ``og.BorrowError`` at
the step. A step is all-or-nothing: every param's borrow is taken before anything is written,
so a refused step leaves every param and the optimizer's state as they were. Every update is
computed first (``_update`` reads the param and returns ``(scale, delta)`` and the param's new
state, never writing in place), then all are committed together (``p *= scale; p -= delta``), so
an error while computing the third param's update changes nothing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from .backend import Array, to_device, xp_of
from .errors import GradError, ShapeError
from .grads import raw_gradient
from .graph import Grads
from .handle import array_of, check_writable, exclusive, is_param, label_of
from .sites import user_site
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Holds the params it updates (in order) and per-param state; subclasses define ``_update``."""

    _state_keys: tuple[str, ...] = ()
    _hyper_keys: tuple[str, ...] = ("lr",)

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        ps: list[Tensor] = []
        seen: set[int] = set()
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: params must be Tensors, got {type(p).__name__}")
            if not is_param(p):
                raise TypeError(f"{type(self).__name__}: {label_of(p)} is not a param (made by g.param); "
                                "only params can be optimized")
            if id(p) not in seen:
                seen.add(id(p))
                ps.append(p)
        if not ps:
            raise ValueError(f"{type(self).__name__}: got an empty list of params")
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise TypeError(f"{type(self).__name__}: lr must be a number, got {type(lr).__name__} {lr!r}")
        if not lr >= 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {lr}")
        self.params: list[Tensor] = ps
        self.lr: float = float(lr)
        self.state: list[dict[str, Any]] = [{} for _ in ps]

    def step(self, grads: Grads) -> None:
        """Update every param that has a gradient in ``grads`` (others are skipped, like torch's
        ``grad is None``). Raises BorrowError, before changing anything, if any of them cannot
        be written now."""
        if not isinstance(grads, Grads):
            raise TypeError(f"{type(self).__name__}.step: expected the og.Grads returned by g.backward(...), "
                            f"got {type(grads).__name__}")
        site = user_site()
        what = f"{type(self).__name__}.step"
        # params are roots made by g.param (checked in __init__)
        todo = [(i, p, gd) for i, p in enumerate(self.params) if (gd := raw_gradient(grads, p)) is not None]
        if not todo:
            raise GradError(self._nothing_to_step(grads, what))
        for _, p, gd in todo:
            check_writable(p, site, what)
            if gd.shape != p.shape:
                raise ShapeError(f"{what}: gradient of shape {tuple(gd.shape)} for {label_of(p)} of shape {p.shape}")
        # take every borrow first: a refusal on the third param leaves the first two untouched
        with exclusive([p for _, p, _ in todo], site, what):
            # compute every update first, then commit: an error (or a KeyboardInterrupt) while
            # computing the third param's update cannot leave the first two, or the state, half-stepped
            staged: list[tuple[int, Array, float, Array, dict[str, Any]]] = []
            for i, p, gd in todo:
                new_state = dict(self.state[i])  # _update rebinds keys, never writes old arrays in place
                arr = array_of(p)
                scale, delta = self._update(arr, gd, new_state)
                staged.append((i, arr, scale, delta, new_state))
            for i, arr, scale, delta, new_state in staged:
                if scale != 1.0:
                    arr *= scale
                arr -= delta
                self.state[i] = new_state

    def _nothing_to_step(self, grads: Grads, what: str) -> str:
        """The message for a step whose gradients hold none of this optimizer's params (a copy-paste
        slip such as ``opt_critic.step(grads_actor)``, which would otherwise silently do nothing)."""
        def names(ts: list[Tensor]) -> str:
            shown = ", ".join(label_of(t) for t in ts[:4])
            return shown + (f" and {len(ts) - 4} more" if len(ts) > 4 else "")
        held = list(grads)
        holds = f"gradients for {names(held)}" if held else "no gradients"
        return (f"{what}: the gradients hold none of this optimizer's params ({names(self.params)}); "
                f"they hold {holds}\n  help: step each optimizer with the Grads of a loss that depends on its "
                "params (g.backward(that_loss))")

    def _update(self, p: Array, g: Array, state: dict[str, Any]) -> tuple[float, Array]:
        """The step for one param, as ``(scale, delta)`` meaning ``p = p * scale - delta``; new state
        goes into ``state`` by rebinding its keys (old state arrays are never written in place)."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Nothing to do: gradients live in the Grads of each backward, never on the params."""

    # --- state ---
    def state_dict(self) -> dict[str, Any]:
        """``{"hyper": {name: value}, "state": [{key: np.ndarray or int}, ...]}`` (copies, host arrays)."""
        state = []
        for st in self.state:
            state.append({k: (np.array(to_device(v, "cpu"), copy=True) if hasattr(v, "shape") else v)
                          for k, v in st.items()})
        return {"type": type(self).__name__, "hyper": {k: getattr(self, k) for k in self._hyper_keys},
                "state": state}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned. All-or-nothing: a mismatch raises before any change."""
        name = type(self).__name__
        if not isinstance(sd, dict) or set(sd) != {"type", "hyper", "state"}:
            raise ValueError(f"{name}.load_state_dict: not an optimizer state dict (expected keys type, hyper, state)")
        if sd["type"] != name:
            raise ValueError(f"{name}.load_state_dict: the state is from a {sd['type']} optimizer")
        if len(sd["state"]) != len(self.params):
            raise ValueError(f"{name}.load_state_dict: the state has {len(sd['state'])} params, "
                             f"this optimizer {len(self.params)}")
        if set(sd["hyper"]) != set(self._hyper_keys):
            raise ValueError(f"{name}.load_state_dict: hyper-parameters {sorted(sd['hyper'])} do not match "
                             f"{sorted(self._hyper_keys)}")
        new_state: list[dict[str, Any]] = []
        for i, (p, st) in enumerate(zip(self.params, sd["state"])):
            if set(st) - set(self._state_keys):
                raise ValueError(f"{name}.load_state_dict: unexpected state {sorted(set(st) - set(self._state_keys))} "
                                 f"for param {i}")
            out: dict[str, Any] = {}
            for k, v in st.items():
                if hasattr(v, "shape"):
                    if tuple(v.shape) != p.shape:
                        raise ShapeError(f"{name}.load_state_dict: state {k!r} of param {i} has shape "
                                         f"{tuple(v.shape)}, the param {p.shape}")
                    out[k] = xp_of(array_of(p)).asarray(to_device(np.asarray(v), p.device)).astype(p.dtype, copy=True)
                else:
                    out[k] = v
            new_state.append(out)
        for k, v in sd["hyper"].items():
            setattr(self, k, v)
        self.state = new_state

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={getattr(self, k)}" for k in self._hyper_keys)
        return f"{type(self).__name__}({len(self.params)} params, {hyper})"


def _check_numbers(opt: Optimizer, **values: Any) -> None:
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{type(opt).__name__}: {k} must be a number, got {type(v).__name__} {v!r}")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and
    L2 weight decay -- ``torch.optim.SGD``'s exact rule:
    ``d = g + wd*p; b = mu*b + (1-dampening)*d (b = d at first); d = d + mu*b if nesterov else b;
    p -= lr*d``."""

    _state_keys = ("momentum_buffer",)
    _hyper_keys = ("lr", "momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        _check_numbers(self, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: momentum and weight_decay must be >= 0, got {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening, self.nesterov, self.weight_decay = momentum, dampening, nesterov, weight_decay

    def _nothing_to_step(self, grads: Grads, what: str) -> str:
        """The message for a step whose gradients hold none of this optimizer's params (a copy-paste
        slip such as ``opt_critic.step(grads_actor)``, which would otherwise silently do nothing)."""
        def names(ts: list[Tensor]) -> str:
            shown = ", ".join(label_of(t) for t in ts[:4])
            return shown + (f" and {len(ts) - 4} more" if len(ts) > 4 else "")
        held = list(grads)
        holds = f"gradients for {names(held)}" if held else "no gradients"
        return (f"{what}: the gradients hold none of this optimizer's params ({names(self.params)}); "
                f"they hold {holds}\n  help: step each optimizer with the Grads of a loss that depends on its "
                "params (g.backward(that_loss))")

    def _update(self, p: Array, g: Array, state: dict[str, Any]) -> tuple[float, Array]:
        d = g + self.weight_decay * p if self.weight_decay else g
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = d.copy()
            else:
                buf = buf * self.momentum
                buf += (1 - self.dampening) * d
            state["momentum_buffer"] = buf
            d = d + self.momentum * buf if self.nesterov else buf
        return 1.0, self.lr * d


class Adam(Optimizer):
    """Adam as ``torch.optim.Adam`` (no amsgrad): L2 ``weight_decay`` is added to the gradient;
    ``p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``."""

    _state_keys = ("step", "exp_avg", "exp_avg_sq")
    _hyper_keys = ("lr", "betas", "eps", "weight_decay")
    _decoupled = False

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{type(self).__name__}: betas must be a pair of numbers, got {betas!r}")
        _check_numbers(self, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: eps and weight_decay must be >= 0")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps, self.weight_decay = eps, weight_decay

    def _nothing_to_step(self, grads: Grads, what: str) -> str:
        """The message for a step whose gradients hold none of this optimizer's params (a copy-paste
        slip such as ``opt_critic.step(grads_actor)``, which would otherwise silently do nothing)."""
        def names(ts: list[Tensor]) -> str:
            shown = ", ".join(label_of(t) for t in ts[:4])
            return shown + (f" and {len(ts) - 4} more" if len(ts) > 4 else "")
        held = list(grads)
        holds = f"gradients for {names(held)}" if held else "no gradients"
        return (f"{what}: the gradients hold none of this optimizer's params ({names(self.params)}); "
                f"they hold {holds}\n  help: step each optimizer with the Grads of a loss that depends on its "
                "params (g.backward(that_loss))")

    def _update(self, p: Array, g: Array, state: dict[str, Any]) -> tuple[float, Array]:
        xp = xp_of(p)
        b1, b2 = self.betas
        scale = 1.0
        if self.weight_decay:
            if self._decoupled:
                scale = 1 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        t = state.get("step", 0) + 1
        m = state.get("exp_avg")
        v = state.get("exp_avg_sq")
        m = (1 - b1) * g if m is None else m * b1 + (1 - b1) * g
        v = (1 - b2) * (g * g) if v is None else v * b2 + (1 - b2) * (g * g)
        state["step"], state["exp_avg"], state["exp_avg_sq"] = t, m, v
        step_size = self.lr / (1 - b1 ** t)
        denom = xp.sqrt(v) / math.sqrt(1 - b2 ** t) + self.eps
        return scale, step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``: ``p *= 1 - lr*wd`` before the
    Adam step (default ``weight_decay=1e-2``)."""

    _decoupled = True

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)

