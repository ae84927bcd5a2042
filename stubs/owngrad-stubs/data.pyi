from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Batches", "batches"]

class Batches:
    x: NDArray[Any]
    y: NDArray[Any]
    batch_size: int
    shuffle: bool
    drop_last: bool
    rank: int
    size: int
    def __init__(self, x: Any, y: Any, batch_size: int, shuffle: bool = True,
                 rng: int | np.random.Generator | None = 0, drop_last: bool = False, rank: int | None = None,
                 world: Any = None) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[NDArray[Any], NDArray[Any]]]: ...

def batches(x: Any, y: Any, batch_size: int, shuffle: bool = True, rng: int | np.random.Generator | None = 0,
            drop_last: bool = False, rank: int | None = None, world: Any = None) -> Batches: ...
