"""Misuse mypy rejects but pyright accepts, so pyrightconfig.json leaves this file out.

pyright lets an undeclared local take the type of each assignment, so ``gw += 1`` just rebinds
``gw`` to the sentinel type ``_CannotWriteReadOnlyTensor`` (and any later tensor use of ``gw`` is
an error there); mypy fixes a local's type at its first assignment and rejects the write itself.
"""

from __future__ import annotations

import owngrad as og


def undeclared_local(g: og.Graph, w: og.Tensor[og.Mut]) -> None:
    gw = g.backward((w * w).sum())[w]
    gw += 1  # type: ignore[misc]
    fw = g.freeze(w)
    fw *= 2  # type: ignore[misc]
