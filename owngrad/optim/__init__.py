"""Optimizers with PyTorch's update rules and parameter groups (:class:`SGD`, :class:`Adam`, :class:`AdamW`,
:class:`Adadelta`, :class:`RMSprop`, :class:`Adagrad`, :class:`Adamax`, :class:`NAdam`, :class:`RAdam`,
:class:`LBFGS` with a closure), learning-rate schedules (:mod:`owngrad.optim.lr_scheduler`) and an
exponential moving average of a model (:class:`EMA`). Every update is an in-place write under exclusive
borrows, all or nothing. A user's own optimizer subclasses :class:`Optimizer` and defines its public hooks
(``hyper_keys``, ``state_keys``, ``check_hyper``, ``update``); schedulers drive it like any other."""

from __future__ import annotations

from . import lr_scheduler
from .adaptive import Adadelta, Adagrad, Adamax, NAdam, RAdam, RMSprop
from .ema import EMA
from .lbfgs import LBFGS
from .optimizer import Optimizer
from .rules import SGD, Adam, AdamW

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adadelta", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam",
           "LBFGS", "EMA", "lr_scheduler"]
