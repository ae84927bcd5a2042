"""Where in the user's code an op or a write happened: the user's call chain, innermost first.

A site is a short tuple of ``(filename, lineno, function)`` frames: the first frame outside
owngrad, then its nearest caller that is also the user's code (owngrad frames in between,
such as ``Module.__call__``, are skipped; the walk stops at the standard library and installed
packages, so a test runner or ``runpy`` never shows up). A line inside ``forward()`` is then
named together with the training or validation line that called it.

Capturing a site costs one short walk up the stack (a few frames, under a microsecond: about
5-8 % of a recorded op);
only file names, line numbers and function names are kept, never the frames, so nothing is
held alive.
"""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
from typing import Any

__all__ = ["Site", "user_site", "format_site", "site_line", "sync_user_frames", "user_names_of"]

#: ``((filename, lineno, function), ...)``, the innermost user frame first; never empty.
Site = tuple[tuple[str, int, str], ...]

_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_CONTEXTLIB = contextlib.__file__  # `with t.borrow():` enters through contextlib's __enter__
_LIBRARY_DIRS = tuple(sorted({os.path.abspath(p) + os.sep for key in ("stdlib", "platstdlib", "purelib", "platlib")
                              if (p := sysconfig.get_paths().get(key))}))

_SKIP, _USER, _LIBRARY = 0, 1, 2
_UNKNOWN: Site = (("<unknown>", 0, ""),)
_KIND: dict[str, int] = {}  # filename -> which of the three it is; one entry per source file
#: the last caller frame's (code, instruction offset, site entry): a frame's line is found by walking its code's
#: line table, and the caller's stays the same for every op its callee records
_CALLER: tuple[object, int, tuple[str, int, str]] = (None, -1, ("", 0, ""))


def _kind_of(fn: str) -> int:
    if fn.startswith(_PKG_DIR) or fn == _CONTEXTLIB:
        kind = _SKIP
    elif fn.startswith(_LIBRARY_DIRS) or fn.startswith("<frozen"):
        kind = _LIBRARY
    else:
        kind = _USER
    _KIND[fn] = kind
    return kind


def user_site() -> Site:
    """The user's call chain at this point: the innermost frame that is not owngrad's own code,
    then its nearest user caller (innermost first)."""
    f = sys._getframe(2)  # user_site is only called by owngrad code: start at its caller's caller
    kinds = _KIND
    while f is not None:
        code = f.f_code
        fn = code.co_filename
        kind = kinds.get(fn)
        if kind is None:
            kind = _kind_of(fn)
        if kind:  # not _SKIP
            break
        f = f.f_back  # type: ignore[assignment]
    else:
        return _UNKNOWN
    first = (fn, f.f_lineno, code.co_name)
    f = f.f_back  # type: ignore[assignment]
    if kind == _LIBRARY:  # owngrad called from a library (copy.copy of a traced input): name the user's caller
        return _library_site(first, f)
    while f is not None:  # the caller: the nearest user frame, owngrad's skipped; a library frame ends the chain
        fn = f.f_code.co_filename
        kind = kinds.get(fn)
        if kind is None:
            kind = _kind_of(fn)
        if kind == _USER:
            global _CALLER
            code, lasti = f.f_code, f.f_lasti
            last = _CALLER  # (one read: another thread may replace it)
            if last[0] is code and last[1] == lasti:
                return first, last[2]
            caller = (fn, f.f_lineno, code.co_name)
            _CALLER = (code, lasti, caller)
            return first, caller
        if kind == _LIBRARY:
            break
        f = f.f_back  # type: ignore[assignment]
    return (first,)


def _library_site(first: tuple[str, int, str], f: Any) -> Site:
    """A site whose innermost frame is a library's: with the nearest user frame that called it, if any
    (a few frames up at most: a test runner or ``runpy`` calling owngrad directly gets none)."""
    for _ in range(8):
        if f is None:
            break
        fn = f.f_code.co_filename
        kind = _KIND.get(fn)
        if (kind if kind is not None else _kind_of(fn)) == _USER:
            return first, (fn, f.f_lineno, f.f_code.co_name)
        f = f.f_back
    return (first,)


def site_line(site: Site) -> tuple[str, int]:
    """The innermost ``(filename, lineno)`` of a site."""
    fn, line, _ = site[0]
    return fn, line


def _frame(fn: str, line: int, func: str) -> str:
    where = f"{os.path.basename(fn)}:{line}"
    return where if not func or func.startswith("<") else f"{where} in {func}"


def format_site(site: Site) -> str:
    """``'file.py:LINE'`` for a site of one frame; with callers,
    ``'model.py:24 in forward, called from train.py:80 in step, called from train.py:95'``."""
    fn, line, func = site[0]
    if len(site) == 1:
        return f"{os.path.basename(fn)}:{line}"
    return ", called from ".join(_frame(*fr) for fr in site)


def _user_locals() -> list[dict[str, object]]:
    """The locals of every user frame on the stack, innermost first.

    Before Python 3.13 reading ``frame.f_locals`` leaves a snapshot on the frame that keeps each value alive
    until the next read, even after the function deletes or rebinds the name; reading every user frame afresh
    (as this does) brings those snapshots up to date, so a ``del x`` is seen."""
    out: list[dict[str, object]] = []
    f = sys._getframe(2)
    while f is not None:
        fn = f.f_code.co_filename
        kind = _KIND.get(fn)
        if kind is None:
            kind = _kind_of(fn)
        if kind == _USER:
            out.append(dict(f.f_locals))
        f = f.f_back  # type: ignore[assignment]
    return out


def sync_user_frames() -> None:
    """Bring the user frames' local snapshots up to date (see :func:`_user_locals`): before asking which
    objects are still alive."""
    _user_locals()


def user_names_of(targets: list[object]) -> list[str]:
    """The names the user's code binds to any of ``targets`` (by identity), innermost frame first: for a
    message that says which variable still holds something. Slow (it reads every user frame's locals), so
    only for errors."""
    names: list[str] = []
    for scope in _user_locals():
        names.extend(k for k, v in scope.items() if any(v is t for t in targets) and k not in names)
    return names
