"""The training loop :func:`fit` and the :func:`accuracy` metric."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from .graph import Grads, Graph
from .tensor import Tensor

__all__ = ["fit", "accuracy"]

Metric = Callable[[Tensor, Tensor], float]


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose argmax over the last axis equals the label."""
    pred = logits.numpy().argmax(axis=-1)
    return float((pred == labels.numpy()).mean())


def fit(model: Any, batches: Iterable[tuple[Any, Any]], loss_fn: Callable[[Tensor, Tensor], Tensor], opt: Any,
        epochs: int = 1, metrics: Mapping[str, Metric] | Sequence[Metric] | None = None,
        progress: bool = True, world: Any = None, capture: bool = True) -> dict[str, list[float]]:
    """Train ``model`` for ``epochs`` passes over ``batches``; return the history.

    - ``model``: an ``og.nn.Module`` (anything callable with a ``.graph`` and ``.train()``);
      it is put in training mode first.
    - ``batches``: re-iterable ``(x, y)`` pairs of numpy arrays (``og.data.batches``); each is
      made a constant of ``model.graph`` (``g.constant``), so labels keep their integer dtype.
    - ``loss_fn(output, y) -> scalar Tensor`` (e.g. ``og.nn.functional.cross_entropy``).
    - ``opt``: an optimizer; each batch runs ``grads = g.backward(loss); opt.step(grads)``.
    - ``metrics``: ``{name: fn(output, y) -> float}``, or a list of such functions (named by their
      ``__name__``, as Keras does); ``fn`` gets a read-only (frozen) output.
    - ``progress``: a tqdm bar on stderr (if tqdm is installed); ``False`` for none.
    - ``world``: an ``og.distributed.World``: gradients are averaged over the ranks (``DataParallel``,
      weighted by each rank's samples; a rank with an empty share contributes nothing), each epoch runs
      under ``dp.join(opt)`` (ranks may have different numbers of batches), the reported loss and metrics
      are averaged over every rank's samples, and only rank 0 shows a bar.
    - ``capture``: run each batch through ``g.capture`` (the default): the first batch of each shape
      is recorded, later ones replay it with bitwise the same numbers and less overhead; a step that
      cannot be captured runs eagerly (``fallback=True``). Python code in ``loss_fn`` or a module's
      ``forward`` runs when a batch shape is first seen, not at every batch, and array work done
      outside owngrad ops (a raw ``np.random`` draw in ``forward``) is fixed at capture: pass
      ``capture=False`` for such models. Distributed training (``world``) runs eagerly.

    Returns ``{"loss": [...], name: [...], ...}``: per epoch, the mean over samples of each
    batch's value (batches weighted by their size).
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
    if epochs > 1 and iter(batches) is batches:
        raise TypeError(f"fit: batches is a one-shot iterator ({type(batches).__name__}): it would be empty after "
                        "the first epoch. Pass something re-iterable, such as og.data.batches(x, y, batch_size) "
                        "or a list")
    named = _named_metrics(metrics)
    history: dict[str, list[float]] = {"loss": [], **{k: [] for k in named}}
    bar = _progress_bar(epochs, batches) if progress and (world is None or world.rank == 0) else None
    dp = None
    if world is not None:
        from .distributed import DataParallel

        dp = DataParallel(model, world)
    model.train()
    try:
        step = _Step(model, loss_fn, opt, dp, capture and world is None)
        for epoch in range(epochs):
            sums, count = _epoch(model, batches, named, epoch, bar, step)
            if world is not None:
                total = world.allreduce(np.array([*sums.values(), count], dtype=np.float64))
                sums, count = dict(zip(sums, total[:-1].tolist())), int(total[-1])
            if count == 0:
                raise ValueError(f"fit: batches yielded no samples in epoch {epoch + 1}")
            for k in history:
                history[k].append(sums[k] / count)
    finally:
        if bar is not None:
            bar.close()
    return history


def _named_metrics(metrics: Mapping[str, Metric] | Sequence[Metric] | None) -> dict[str, Metric]:
    """``{name: fn}``, from a mapping or from a list of named functions (as Keras takes them)."""
    if metrics is None:
        return {}
    if not isinstance(metrics, (list, tuple)):
        return dict(metrics)  # type: ignore[arg-type]  # a Mapping (not a list or tuple)
    named: dict[str, Metric] = {}
    for fn in metrics:
        name = getattr(fn, "__name__", None)
        if not callable(fn) or not name or name == "<lambda>" or name in named or name == "loss":
            raise TypeError(f"fit: metrics given as a list need distinct named functions (got {fn!r}); "
                            "pass a dict {name: fn} instead")
        named[name] = fn
    return named


def _progress_bar(epochs: int, batches: Iterable[Any]) -> Any:
    """A tqdm bar on stderr over every batch of every epoch, or None without tqdm."""
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    total: int | None
    try:
        total = epochs * len(batches)  # type: ignore[arg-type]
    except TypeError:
        total = None
    return tqdm(total=total, file=sys.stderr, unit="batch", dynamic_ncols=True)


class _Step:
    """One batch of ``fit``: forward, backward, optimizer step (captured per batch shape unless told not to)."""

    _capture_walk = True
    _capture_skip = ("checked", "run")  # set once by the first call / the captured step itself

    def __init__(self, model: Any, loss_fn: Callable[[Tensor, Tensor], Tensor], opt: Any, dp: Any,
                 capture: bool) -> None:
        self.model, self.loss_fn, self.opt, self.dp = model, loss_fn, opt, dp
        self.opt_params = list(getattr(opt, "params", []))
        self.checked = False
        g = model.graph
        self.run: Callable[[Any, Any], tuple[Tensor, Tensor, Tensor]] = (
            g.capture(self._step, fallback=True, verify=True) if capture else self._step)

    def _step(self, xb: Any, yb: Any) -> tuple[Tensor, Tensor, Tensor]:
        g = self.model.graph
        y = g.constant(yb)
        dp = self.dp
        backward: Callable[[Tensor], Grads] = (
            g.backward if dp is None else lambda loss: dp.backward(loss, samples=len(xb)))
        out, loss, grads = _forward_backward(self.model, self.loss_fn, g.constant(xb), y, backward)
        if self.opt_params and not self.checked:
            if not any(p in grads for p in self.opt_params):
                raise ValueError("fit: the loss does not depend on any param of the optimizer: build it over "
                                 "this model's params, e.g. og.optim.SGD(model.parameters(), lr=0.1)")
            self.checked = True
        self.opt.step(grads)
        return out, loss, y

    def joined(self) -> AbstractContextManager[None]:
        """One epoch's batches: under ``dp.join(opt)`` when distributed (ranks may run out at different
        batches), else as they are."""
        return nullcontext() if self.dp is None else self.dp.join(self.opt)


def _epoch(model: Any, batches: Iterable[tuple[Any, Any]], metrics: dict[str, Metric], epoch: int, bar: Any,
           step: _Step) -> tuple[dict[str, float], int]:
    """One pass over ``batches``: the per-sample sums of the loss and each metric, and the sample count."""
    g = model.graph
    sums = {"loss": 0.0, **{k: 0.0 for k in metrics}}
    count = 0
    with step.joined():
        for xb, yb in batches:
            n = len(xb)
            if n == 0 and step.dp is not None:  # this rank's share of the global batch is empty
                step.opt.step(step.dp.empty_backward())
                continue
            out, loss, y = step.run(xb, yb)
            count += n
            sums["loss"] += float(loss.item()) * n
            if metrics:
                frozen = g.freeze(out)
                for k, fn in metrics.items():
                    sums[k] += float(fn(frozen, y)) * n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{sums['loss'] / max(count, 1):.4f}", refresh=False)
    return sums, count


def _forward_backward(model: Any, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor,
                      backward: Callable[[Tensor], Grads]) -> tuple[Tensor, Tensor, Grads]:
    g: Graph = model.graph
    out: Tensor | None = None
    loss: Any = None
    try:
        out = model(x)
        loss = loss_fn(out, y)
        if not isinstance(loss, Tensor):
            raise TypeError(f"fit: loss_fn must return a scalar Tensor, got {type(loss).__name__}")
        return out, loss, backward(loss)
    except BaseException:
        # an interrupted batch must not leave its forward pending: those nodes borrow the weights
        for t in (loss, out):
            if isinstance(t, Tensor) and t.graph is g:
                g.free(t)
        raise
