"""Access modes for static checking: ``Tensor[Mut]``, ``Tensor[Shared]``, ``Tensor[Frozen]``.

At run time these are plain marker classes (``Tensor[Mut]`` is just ``Tensor``); the stubs in
``stubs/owngrad`` give them meaning for mypy. Mut and Frozen are both Shared.
"""

from __future__ import annotations

__all__ = ["Shared", "Mut", "Frozen"]


class Shared:
    """May be read; in-place ops are rejected by the type checker."""


class Mut(Shared):
    """May be read and written in place."""


class Frozen(Shared):
    """A read-only handle from ``g.freeze(t)``: may only be read."""
