"""Optimizers with PyTorch's update rules (:class:`SGD`, :class:`Adam`, :class:`AdamW`) and parameter
groups, learning-rate schedules (:mod:`owngrad.optim.lr_scheduler`) and an exponential moving average
of a model (:class:`EMA`). Every update is an in-place write under exclusive borrows, all or nothing."""

from __future__ import annotations

from . import lr_scheduler
from .ema import EMA
from .optimizer import Optimizer
from .rules import SGD, Adam, AdamW

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "EMA", "lr_scheduler"]
