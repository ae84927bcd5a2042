"""The update rules: ``torch.optim.SGD``, ``Adam`` and ``AdamW``, per parameter group."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..backend import Array, xp_of
from .optimizer import Optimizer, check_numbers

__all__ = ["SGD", "Adam", "AdamW"]


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and
    L2 weight decay -- ``torch.optim.SGD``'s exact rule:
    ``d = g + wd*p; b = mu*b + (1-dampening)*d (b = d at first); d = d + mu*b if nesterov else b;
    p -= lr*d``."""

    state_keys = ("momentum_buffer",)
    hyper_keys = ("lr", "momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening, "nesterov": nesterov,
                                  "weight_decay": weight_decay})

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        check_numbers(self, group, "momentum", "dampening", "weight_decay")
        if group["momentum"] < 0 or group["weight_decay"] < 0:
            raise ValueError(f"SGD: momentum and weight_decay must be >= 0, got {group['momentum']}, "
                             f"{group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")

    def update(self, p: Array, g: Array, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Array]:
        wd, mu = group["weight_decay"], group["momentum"]
        d = g + wd * p if wd else g
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = d.copy()
            else:
                buf = buf * mu
                buf += (1 - group["dampening"]) * d
            state["momentum_buffer"] = buf
            d = d + mu * buf if group["nesterov"] else buf
        return 1.0, group["lr"] * d


class Adam(Optimizer):
    """Adam as ``torch.optim.Adam`` (no amsgrad): L2 ``weight_decay`` is added to the gradient;
    ``p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``."""

    state_keys = ("step", "exp_avg", "exp_avg_sq")
    hyper_keys = ("lr", "betas", "eps", "weight_decay")
    _decoupled = False

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        name = type(self).__name__
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{name}: betas must be a pair of numbers, got {betas!r}")
        check_numbers(self, {"beta1": betas[0], "beta2": betas[1], "eps": group["eps"],
                             "weight_decay": group["weight_decay"]}, "beta1", "beta2", "eps", "weight_decay")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"{name}: betas must be in [0, 1), got {betas}")
        if group["eps"] < 0 or group["weight_decay"] < 0:
            raise ValueError(f"{name}: eps and weight_decay must be >= 0")
        group["betas"] = (float(betas[0]), float(betas[1]))

    def update(self, p: Array, g: Array, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Array]:
        xp = xp_of(p)
        b1, b2 = group["betas"]
        lr, wd = group["lr"], group["weight_decay"]
        scale = 1.0
        if wd:
            if self._decoupled:
                scale = 1 - lr * wd
            else:
                g = g + wd * p
        t = state.get("step", 0) + 1
        m = state.get("exp_avg")
        v = state.get("exp_avg_sq")
        m = (1 - b1) * g if m is None else m * b1 + (1 - b1) * g
        v = (1 - b2) * (g * g) if v is None else v * b2 + (1 - b2) * (g * g)
        state["step"], state["exp_avg"], state["exp_avg_sq"] = t, m, v
        step_size = lr / (1 - b1 ** t)
        denom = xp.sqrt(v) / math.sqrt(1 - b2 ** t) + group["eps"]
        return scale, step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``: ``p *= 1 - lr*wd`` before the
    Adam step (default ``weight_decay=1e-2``)."""

    _decoupled = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)
