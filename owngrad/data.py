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
                 drop_last: bool = False) -> None:
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

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = len(self.x)
        order = self._gen.permutation(n) if self.shuffle else np.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        for i in range(0, stop, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]


def batches(x: Any, y: Any, batch_size: int, shuffle: bool = True, rng: int | np.random.Generator | None = 0,
            drop_last: bool = False) -> Batches:
    """Mini-batches of ``(x, y)`` (numpy arrays, first axis = samples): a re-iterable object,
    reshuffled each epoch when ``shuffle``; the last batch is smaller unless ``drop_last``."""
    return Batches(x, y, batch_size, shuffle, rng, drop_last)
