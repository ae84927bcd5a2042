"""More of ``torch.optim``'s update rules, each exactly as torch's single-tensor implementation:
``Adadelta``, ``RMSprop``, ``Adagrad``, ``Adamax``, ``NAdam``, ``RAdam``.

Each is a subclass written against the public hooks of :class:`Optimizer` (``hyper_keys``,
``state_keys``, ``check_hyper``, ``update``), as a user's own optimizer would be.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..backend import Array, xp_of
from .optimizer import Optimizer, check_numbers

__all__ = ["Adadelta", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam"]


def _nonnegative(opt: Optimizer, group: dict[str, Any], *keys: str) -> None:
    check_numbers(opt, group, *keys)
    for k in keys:
        if not group[k] >= 0:
            raise ValueError(f"{type(opt).__name__}: {k} must be >= 0, got {group[k]}")


def _betas(opt: Optimizer, group: dict[str, Any]) -> None:
    betas = group["betas"]
    name = type(opt).__name__
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{name}: betas must be a pair of numbers, got {betas!r}")
    check_numbers(opt, {"beta1": betas[0], "beta2": betas[1]}, "beta1", "beta2")
    if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
        raise ValueError(f"{name}: betas must be in [0, 1), got {betas}")
    group["betas"] = (float(betas[0]), float(betas[1]))


def _lerp(start: Array, end: Array, weight: float) -> Array:
    """torch's ``start.lerp(end, weight)`` (the formula it uses for weight < 0.5, bit for bit)."""
    return start + weight * (end - start) if weight < 0.5 else end - (end - start) * (1 - weight)


def _decay(p: Array, g: Array, lr: float, wd: float, decoupled: bool) -> tuple[float, Array]:
    """Weight decay: L2 added to the gradient, or (``decoupled``, AdamW-style) a scale of the param."""
    if not wd:
        return 1.0, g
    if decoupled:
        return 1 - lr * wd, g
    return 1.0, g + wd * p


class Adadelta(Optimizer):
    """``torch.optim.Adadelta``: ``v = rho v + (1-rho) g^2; d = sqrt(u + eps) / sqrt(v + eps) * g;
    u = rho u + (1-rho) d^2; p -= lr d``."""

    state_keys = ("step", "square_avg", "acc_delta")
    hyper_keys = ("lr", "rho", "eps", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay})

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        _nonnegative(self, group, "rho", "eps", "weight_decay")
        if group["rho"] > 1:
            raise ValueError(f"Adadelta: rho must be in [0, 1], got {group['rho']}")

    def update(self, p: Array, g: Array, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Array]:
        xp = xp_of(p)
        rho, eps = group["rho"], group["eps"]
        _, g = _decay(p, g, group["lr"], group["weight_decay"], False)
        v = state.get("square_avg", xp.zeros_like(p)) * rho + (1 - rho) * (g * g)
        delta = xp.sqrt(state.get("acc_delta", xp.zeros_like(p)) + eps) / xp.sqrt(v + eps) * g
        u = state.get("acc_delta", xp.zeros_like(p)) * rho + (1 - rho) * (delta * delta)
        state["step"], state["square_avg"], state["acc_delta"] = state.get("step", 0) + 1, v, u
        return 1.0, group["lr"] * delta


class RMSprop(Optimizer):
    """``torch.optim.RMSprop``: ``v = alpha v + (1-alpha) g^2``; the denominator is ``sqrt(v) + eps``
    (``centered``: ``sqrt(v - mean(g)^2) + eps``); with ``momentum`` the step goes through a buffer
    ``b = momentum b + g / denom``."""

    state_keys = ("step", "square_avg", "momentum_buffer", "grad_avg")
    hyper_keys = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                                  "momentum": momentum, "centered": centered})

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        _nonnegative(self, group, "alpha", "eps", "weight_decay", "momentum")

    def update(self, p: Array, g: Array, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Array]:
        xp = xp_of(p)
        alpha, mu = group["alpha"], group["momentum"]
        _, g = _decay(p, g, group["lr"], group["weight_decay"], False)
        v = state.get("square_avg", xp.zeros_like(p)) * alpha + (1 - alpha) * (g * g)
        state["step"], state["square_avg"] = state.get("step", 0) + 1, v
        if group["centered"]:
            m = _lerp(state.get("grad_avg", xp.zeros_like(p)), g, 1 - alpha)
            state["grad_avg"] = m
            avg = xp.sqrt(v - m * m) + group["eps"]
        else:
            avg = xp.sqrt(v) + group["eps"]
        if mu > 0:
            buf = state.get("momentum_buffer", xp.zeros_like(p)) * mu + g / avg
            state["momentum_buffer"] = buf
            return 1.0, group["lr"] * buf
        return 1.0, group["lr"] * (g / avg)


class Adagrad(Optimizer):
    """``torch.optim.Adagrad``: ``s += g^2; p -= lr / (1 + (t-1) lr_decay) * g / (sqrt(s) + eps)``;
    the sum starts at ``initial_accumulator_value``."""

    state_keys = ("step", "sum")
    hyper_keys = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__(params, {"lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay,
                                  "initial_accumulator_value": initial_accumulator_value, "eps": eps})

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        _nonnegative(self, group, "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def update(self, p: Array, g: Array, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Array]:
        xp = xp_of(p)
        t = state.get("step", 0) + 1
        _, g = _decay(p, g, group["lr"], group["weight_decay"], False)
        clr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        s = state.get("sum", xp.full_like(p, group["initial_accumulator_value"])) + g * g
        state["step"], state["sum"] = t, s
        return 1.0, clr * (g / (xp.sqrt(s) + group["eps"]))


class _AdamFamily(Optimizer):
    """Shared checks of the Adam variants below: ``betas``, ``eps``, ``weight_decay``."""

    hyper_keys: tuple[str, ...] = ("lr", "betas", "eps", "weight_decay")

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        _betas(self, group)
        _nonnegative(self, group, "eps", "weight_decay")


class Adamax(_AdamFamily):
    """``torch.optim.Adamax``: ``m = lerp(m, g, 1-b1); u = max(b2 u, |g| + eps);
    p -= lr / (1 - b1^t) * m / u``."""

    state_keys = ("step", "exp_avg", "exp_inf")

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def update(self, p: Array, g: Array, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Array]:
        xp = xp_of(p)
        b1, b2 = group["betas"]
        t = state.get("step", 0) + 1
        _, g = _decay(p, g, group["lr"], group["weight_decay"], False)
        m = _lerp(state.get("exp_avg", xp.zeros_like(p)), g, 1 - b1)
        u = xp.maximum(state.get("exp_inf", xp.zeros_like(p)) * b2, xp.abs(g) + group["eps"])
        state["step"], state["exp_avg"], state["exp_inf"] = t, m, u
        return 1.0, group["lr"] / (1 - b1 ** t) * (m / u)


class NAdam(_AdamFamily):
    """``torch.optim.NAdam``: Adam with Nesterov momentum and torch's momentum schedule
    ``mu_t = b1 (1 - 0.5 * 0.96^(t momentum_decay))``; ``decoupled_weight_decay`` as AdamW."""

    state_keys = ("step", "mu_product", "exp_avg", "exp_avg_sq")
    hyper_keys = ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "momentum_decay": momentum_decay, "decoupled_weight_decay": decoupled_weight_decay})

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        _nonnegative(self, group, "momentum_decay")

    def update(self, p: Array, g: Array, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Array]:
        xp = xp_of(p)
        b1, b2 = group["betas"]
        lr, psi = group["lr"], group["momentum_decay"]
        t = state.get("step", 0) + 1
        scale, g = _decay(p, g, lr, group["weight_decay"], group["decoupled_weight_decay"])
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        # torch keeps this running product as a float32 scalar whatever the params' dtype: so do we, or
        # every float64 trajectory would drift from torch's by ~1e-8 relative
        mu_product = float(np.float32(state.get("mu_product", 1.0)) * np.float32(mu))
        m = _lerp(state.get("exp_avg", xp.zeros_like(p)), g, 1 - b1)
        v = state.get("exp_avg_sq", xp.zeros_like(p)) * b2 + (1 - b2) * (g * g)
        state.update(step=t, mu_product=mu_product, exp_avg=m, exp_avg_sq=v)
        denom = xp.sqrt(v / (1 - b2 ** t)) + group["eps"]
        delta = (lr * (1.0 - mu) / (1.0 - mu_product)) * (g / denom)
        return scale, delta + (lr * mu_next / (1.0 - mu_product * mu_next)) * (m / denom)


class RAdam(_AdamFamily):
    """``torch.optim.RAdam``: Adam whose adaptive term is switched on, rectified, once the variance of
    the adaptive learning rate is tractable (``rho_t > 5``); before that, SGD with momentum."""

    state_keys = ("step", "exp_avg", "exp_avg_sq")
    hyper_keys = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "decoupled_weight_decay": decoupled_weight_decay})

    def update(self, p: Array, g: Array, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Array]:
        xp = xp_of(p)
        b1, b2 = group["betas"]
        lr = group["lr"]
        t = state.get("step", 0) + 1
        scale, g = _decay(p, g, lr, group["weight_decay"], group["decoupled_weight_decay"])
        m = _lerp(state.get("exp_avg", xp.zeros_like(p)), g, 1 - b1)
        v = state.get("exp_avg_sq", xp.zeros_like(p)) * b2 + (1 - b2) * (g * g)
        state.update(step=t, exp_avg=m, exp_avg_sq=v)
        bc2 = 1 - b2 ** t
        corrected = m / (1 - b1 ** t)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * (b2 ** t) / bc2
        if rho_t <= 5.0:
            return scale, corrected * lr
        rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        adaptive = (bc2 ** 0.5) / (xp.sqrt(v) + group["eps"])
        return scale, corrected * lr * adaptive * rect
