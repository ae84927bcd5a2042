"""Where in the user's code an op or a write happened: file:line of the first frame outside owngrad.

Capturing a site costs one short walk up the stack (a few frames, ~0.3 us); only the
filename and line number are kept, never the frame, so nothing is held alive.
"""

from __future__ import annotations

import contextlib
import os
import sys

_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_CONTEXTLIB = contextlib.__file__  # `with t.borrow():` enters through contextlib's __enter__


_INSIDE: dict[str, bool] = {}  # filename -> is it owngrad's (or contextlib's)? one entry per source file


def user_site() -> tuple[str, int]:
    """(filename, lineno) of the innermost caller frame that is not owngrad's own code."""
    f = sys._getframe(2)  # user_site is only called by owngrad code: start at its caller's caller
    inside = _INSIDE.get
    while f is not None:
        fn = f.f_code.co_filename
        known = inside(fn)
        if known is None:
            known = _INSIDE[fn] = fn.startswith(_PKG_DIR) or fn == _CONTEXTLIB
        if not known:
            return fn, f.f_lineno
        f = f.f_back  # type: ignore[assignment]
    return "<unknown>", 0


def format_site(site: tuple[str, int]) -> str:
    """A short 'file.py:LINE' for messages; the path is shortened to its last component."""
    fn, line = site
    return f"{os.path.basename(fn)}:{line}"
