"""Access modes: the type argument of ``Tensor``. Mut and Frozen are both Shared."""

__all__ = ["Shared", "Mut", "Frozen"]

class Shared:
    """May be read; in-place ops are type errors."""

class Mut(Shared):
    """May be read and written in place (params, constants, op results)."""

class Frozen(Shared):
    """A read-only handle from ``g.freeze(t)`` or a leaf handed to ``on_grad``."""
