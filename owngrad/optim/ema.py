"""An exponential moving average of a model's weights, updated in place under exclusive borrows."""

from __future__ import annotations

import numbers
from typing import Any

from ..handle import array_of, exclusive, shared
from ..nn.modules import Module
from ..sites import user_site
from ..tracer import recorded

__all__ = ["EMA"]


class EMA:
    """``ema = EMA(model, decay=0.999)`` keeps an averaged copy of ``model`` (``ema.module``: new params in
    the same graph, no history); ``ema.update()`` after each optimizer step writes
    ``avg = decay * avg + (1 - decay) * param`` for every param (and copies the buffers, such as
    BatchNorm's running statistics), all or nothing: the averaged params are borrowed exclusively and
    the model's shared for the update, so a pending forward through ``ema.module`` refuses it."""

    # a captured step reads decay and counts updates at each replay
    _capture_walk = True
    _capture_live = ("decay", "num_updates")

    def __init__(self, model: Module, decay: float = 0.999) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"EMA: expected an og.nn.Module, got {type(model).__name__}")
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA: decay must be a number in [0, 1], got {decay!r}")
        self.decay: float = float(decay)
        self.source: Module = model
        self.module: Module = model.clone()
        self.num_updates: int = 0

    def update(self) -> None:
        """One averaging step (call it after ``opt.step``)."""
        site = user_site()
        params = list(zip(self.module.parameters(), self.source.parameters()))
        buffers = list(zip((b for _, b in self.module.named_buffers()), (b for _, b in self.source.named_buffers())))
        targets = [a for a, _ in params + buffers]
        sources = [b for _, b in params + buffers]
        with exclusive(targets, site, "EMA.update"), shared(sources, site, "EMA.update"):
            if targets:  # a captured step averages (reading decay) and counts at each replay
                recorded(targets[0].graph, self._average, len(params), *[array_of(t) for t in targets],
                         *[array_of(t) for t in sources], writes=targets)
            else:
                self.num_updates += 1

    def _average(self, n_params: int, *arrays: Any) -> None:
        _average(self.decay, n_params, *arrays)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged module's state (torch's keys) plus ``decay`` and the update count."""
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        if not isinstance(sd, dict) or set(sd) != {"decay", "num_updates", "module"}:
            raise ValueError("EMA.load_state_dict: expected the keys decay, num_updates, module")
        self.module.load_state_dict(sd["module"])
        self.decay, self.num_updates = float(sd["decay"]), int(sd["num_updates"])

    def __repr__(self) -> str:
        return f"EMA(decay={self.decay}, updates={self.num_updates}, module={type(self.module).__name__})"


def _average(d: float, n_params: int, *arrays: Any) -> None:
    """``target = d * target + (1 - d) * source`` for the first ``n_params`` pairs, a copy for the buffers
    after them (targets first, then sources); every new value is computed before any write."""
    half = len(arrays) // 2
    targets, sources = arrays[:half], arrays[half:]
    new = [targets[i] * d + sources[i] * (1.0 - d) for i in range(n_params)]
    for i, v in enumerate(new):
        targets[i][...] = v
    for i in range(n_params, half):
        targets[i][...] = sources[i]
