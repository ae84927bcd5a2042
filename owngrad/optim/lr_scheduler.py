"""Learning-rate schedules with PyTorch's names, arguments and values: ``StepLR``, ``CosineAnnealingLR``,
``LinearLR``, ``OneCycleLR``.

A schedule sets every parameter group's ``lr`` (from the group's ``initial_lr``) when it is made and
at each ``.step()``; ``get_last_lr()`` returns the values it set. Call ``sched.step()`` after
``opt.step(grads)``, as in torch.
"""

from __future__ import annotations

import math
from typing import Any

from .optimizer import Optimizer

__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR", "LinearLR", "OneCycleLR"]


class LRScheduler:
    """The base: ``last_epoch`` counts the steps taken; subclasses define :meth:`lr_at`."""

    # a captured step that reads a schedule is not recaptured when it steps between calls (the optimizer
    # reads its learning rates at each replay); a schedule stepped inside the step is a refused side effect
    _capture_walk = True
    _capture_live: tuple[str, ...] = ("last_epoch", "_last_lr", "base_lrs")

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an og.optim optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs: list[float] = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._last_lr: list[float] = []
        self.step()

    def lr_at(self, epoch: int, base_lr: float, group: dict[str, Any]) -> float:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one step and set each group's learning rate."""
        self.last_epoch += 1
        self._last_lr = []
        for base, group in zip(self.base_lrs, self.optimizer.param_groups):
            lr = self.lr_at(self.last_epoch, base, group)
            group["lr"] = lr
            self._last_lr.append(lr)

    def get_last_lr(self) -> list[float]:
        """The learning rate of each group, as set by the last step."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (as torch)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.__dict__.update({k: v for k, v in sd.items() if k != "optimizer"})


def _positive_int(name: str, what: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{name}: {what} must be a positive int, got {v!r}")
    return int(v)


class StepLR(LRScheduler):
    """``base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = _positive_int("StepLR", "step_size", step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int, base_lr: float, group: dict[str, Any]) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = _positive_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int, base_lr: float, group: dict[str, Any]) -> float:
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class LinearLR(LRScheduler):
    """The factor goes linearly from ``start_factor`` to ``end_factor`` over ``total_iters`` steps, then stays."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], got "
                             f"{start_factor}, {end_factor}")
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        self.total_iters = _positive_int("LinearLR", "total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int, base_lr: float, group: dict[str, Any]) -> float:
        t = min(epoch, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * t)


def _anneal_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _anneal_linear(start: float, end: float, pct: float) -> float:
    return (end - start) * pct + start


class OneCycleLR(LRScheduler):
    """torch's one-cycle policy: from ``max_lr / div_factor`` up to ``max_lr`` over ``pct_start`` of the
    steps, then down to ``initial_lr / final_div_factor`` (``three_phase`` as torch). With
    ``cycle_momentum`` (the default, as torch) the momentum (SGD) or beta1 (Adam) moves inversely between
    ``max_momentum`` and ``base_momentum``."""

    def __init__(self, optimizer: Optimizer, max_lr: float | list[float], total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True, base_momentum: float = 0.85,
                 max_momentum: float = 0.95, div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False, last_epoch: int = -1) -> None:
        name = "OneCycleLR"
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError(f"{name}: give total_steps, or epochs and steps_per_epoch")
            total_steps = (_positive_int(name, "epochs", epochs)
                           * _positive_int(name, "steps_per_epoch", steps_per_epoch))
        self.total_steps = _positive_int(name, "total_steps", total_steps)
        if not 0 <= pct_start <= 1:
            raise ValueError(f"{name}: pct_start must be in [0, 1], got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{name}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self._anneal = _anneal_cos if anneal_strategy == "cos" else _anneal_linear
        self.phases = self._phases(float(pct_start), three_phase)
        groups = optimizer.param_groups
        max_lrs = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * len(groups)
        for group, m in zip(groups, max_lrs):
            group["initial_lr"] = m / div_factor
            group["max_lr"] = m
            group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self._use_beta1 = "betas" in optimizer.defaults
            if not self._use_beta1 and "momentum" not in optimizer.defaults:
                raise ValueError(f"{name}: the optimizer has no momentum or betas to cycle (cycle_momentum=False)")
            for group in groups:
                group["max_momentum"], group["base_momentum"] = max_momentum, base_momentum
                self._set_momentum(group, max_momentum)
        super().__init__(optimizer, last_epoch)

    def _phases(self, pct: float, three_phase: bool) -> list[tuple[float, str, str, str, str]]:
        """(end step, lr from, lr to, momentum from, momentum to) per phase, as torch."""
        n = self.total_steps
        if three_phase:
            return [(pct * n - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                    (2 * pct * n - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                    (n - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        return [(pct * n - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (n - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]

    def _set_momentum(self, group: dict[str, Any], m: float) -> None:
        if self._use_beta1:
            group["betas"] = (m, group["betas"][1])
        else:
            group["momentum"] = m

    def lr_at(self, epoch: int, base_lr: float, group: dict[str, Any]) -> float:
        if epoch > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {epoch} times, more than total_steps={self.total_steps}")
        start = 0.0
        for i, (end, lo, hi, mlo, mhi) in enumerate(self.phases):
            if epoch <= end or i == len(self.phases) - 1:
                pct = (epoch - start) / (end - start)
                if self.cycle_momentum:
                    self._set_momentum(group, self._anneal(group[mlo], group[mhi], pct))
                return self._anneal(group[lo], group[hi], pct)
            start = end
        raise AssertionError("unreachable: the last phase always answers")
