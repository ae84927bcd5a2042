"""The user's tensor: one handle (handle.py) with what it computes (tensor_math.py), its views
(tensor_views.py) and its in-place writes (inplace.py)."""

from __future__ import annotations

from .inplace import InplaceOps
from .tensor_math import MathOps
from .tensor_views import ViewOps

__all__ = ["Tensor"]


class Tensor(MathOps, ViewOps, InplaceOps):
    """An n-d array in a :class:`~owngrad.graph.Graph`, with a gradient role and borrow-checked writes.

    Made by a graph (``g.param``, ``g.constant``, its constructors) or by ops on tensors; never
    constructed directly."""

    __slots__ = ()
