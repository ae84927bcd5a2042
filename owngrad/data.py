"""Mini-batches: :func:`batches` over numpy arrays, re-iterable and reshuffled every epoch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["Batches", "batches"]


class Batches:
    """An iterable of ``(x_batch, y_batch)`` numpy arrays. Every ``iter()`` is one epoch: with
    ``shuffle`` the order is drawn afresh from one generator seeded by ``rng``, so epochs differ
    from each other but a run is reproducible. Batches are host numpy arrays (copies): the
    training loop turns them into constants of its graph (``g.constant(xb)``), on its device."""

    def __init__(self, x: Any, y: Any, batch_size: int, shuffle: bool = True, rng: int | np.random.Generator | None = 0,
                 drop_last: bool = False, rank: int | None = None, world: Any = None) -> None:
        self.x = np.asarray(x)
        self.y = np.asarray(y)
        if self.x.ndim == 0 or self.y.ndim == 0 or len(self.x) != len(self.y):
            raise ValueError(f"batches: x and y need the same number of samples (first axis), got shapes "
                             f"{self.x.shape} and {self.y.shape}")
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batches: batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self._gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        # sharding: every rank draws the same global order (same seed) and takes its part of each batch
        self.size = 1 if world is None else int(world) if isinstance(world, int) else int(world.size)
        self.rank = (0 if world is None or isinstance(world, int) else int(world.rank)) if rank is None else int(rank)
        #: a World (not a plain count) is told the (epoch, batch) each rank is at: its gradient
        #: reductions compare them, so a rank that skipped a step is caught at the next one
        self._world = None if world is None or isinstance(world, int) else world
        self._epoch = -1
        if not 0 <= self.rank < self.size:
            raise ValueError(f"batches: rank {self.rank} is out of range for a world of {self.size}")

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = len(self.x)
        order = self._gen.permutation(n) if self.shuffle else np.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        self._epoch += 1
        for i in range(0, stop, self.batch_size):
            idx = order[i:i + self.batch_size]
            if self.size > 1:
                idx = np.array_split(idx, self.size)[self.rank]  # this rank's part of the global batch
            if self._world is not None:
                self._world.cursor = (self._epoch, i // self.batch_size)
                self._world.batch_samples = len(idx)
            yield self.x[idx], self.y[idx]


def batches(x: Any, y: Any, batch_size: int, shuffle: bool = True, rng: int | np.random.Generator | None = 0,
            drop_last: bool = False, rank: int | None = None, world: Any = None) -> Batches:
    """Mini-batches of ``(x, y)`` (numpy arrays, first axis = samples): a re-iterable object,
    reshuffled each epoch when ``shuffle``; the last batch is smaller unless ``drop_last``.

    With ``world`` (an ``og.distributed.World``, or the number of ranks with ``rank=``), ``batch_size``
    is the *global* batch: every rank draws the same order each epoch and yields its own contiguous part
    of each global batch, so together the ranks see exactly the single-process batches."""
    return Batches(x, y, batch_size, shuffle, rng, drop_last, rank, world)
