"""Checkpoints: :func:`save` and :func:`load` a module's (or any) state as ``.npz`` -- never pickle.

Writes are atomic: the archive goes to a temporary file in the destination's directory, is
flushed to disk, and only then renamed over the destination (``os.replace``), so a crash or
an error mid-write leaves any previous file intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .collective import current
from .tensor import Tensor

__all__ = ["save", "load"]

_MARK = "__owngrad_checkpoint__"


def _arrays(obj: Any) -> dict[str, np.ndarray]:
    from .nn import Module

    if isinstance(obj, Module):
        state: Mapping[str, Any] = obj.state_dict()
    elif isinstance(obj, Mapping):
        state = obj
    else:
        raise TypeError(f"og.save: expected an og.nn.Module or a mapping of names to arrays, got {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for k, v in state.items():
        if not isinstance(k, str) or not k or k == _MARK:
            raise ValueError(f"og.save: keys must be non-empty strings (and not {_MARK!r}), got {k!r}")
        a = v.numpy() if isinstance(v, Tensor) else np.asarray(v)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"og.save: {k!r} has dtype {a.dtype}; only bool, integer and float arrays are saved")
        out[k] = a
    return out


def _umask() -> int:
    # read without changing it where the OS tells (Linux); otherwise set-and-restore
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: str) -> None:
    # make the rename itself durable (POSIX); not possible (nor needed) on Windows
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(path: str | os.PathLike[str], module_or_state: Any) -> None:
    """Write ``module_or_state`` (an ``og.nn.Module``: its ``state_dict()``; or a mapping of
    names to arrays/tensors) to ``path`` as an ``.npz`` archive, atomically. Once
    ``og.distributed.init()`` has run, saving is a step every rank takes: rank 0 writes once every
    rank has reached it, and every rank returns once it is written (``distributed.save``)."""
    world = current()
    if world is not None:
        world.save_checkpoint(path, module_or_state, _write_checkpoint)
        return
    _write_checkpoint(path, module_or_state)


def _write_checkpoint(path: str | os.PathLike[str], module_or_state: Any) -> None:
    """Write the checkpoint on this process, atomically (what :func:`save` does on rank 0)."""
    arrays = _arrays(module_or_state)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp makes the file private (0600); the checkpoint gets the mode an ordinary open() would
        # give it (0666 less the umask), or keeps the mode of the file it replaces
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            payload: dict[str, Any] = {_MARK: np.array(1, dtype=np.int8), **arrays}
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike[str], into: Any = None) -> dict[str, np.ndarray]:
    """Read a checkpoint written by :func:`save`: a dict of numpy arrays. With ``into=module``
    it is also loaded into the module (``load_state_dict``: all-or-nothing, a clear error on
    missing/unexpected keys or shapes). A file that is not such a checkpoint raises ValueError."""
    path = os.fspath(path)
    try:
        # numpy reads each member's bytes without checking the archive's CRC-32: a flipped byte in an
        # array would load silently. testzip() reads every member and checks it first.
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise ValueError(f"member {bad!r} fails its CRC check (the file is corrupt)")
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array, not an .npz archive")
            names = list(z.files)
            if _MARK not in names:
                raise ValueError("it is an .npz archive but was not written by og.save")
            state = {k: z[k] for k in names if k != _MARK}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, NotImplementedError, RuntimeError,
            zlib.error) as e:
        raise ValueError(f"og.load: {path} is not a valid owngrad checkpoint (.npz): {e}") from None
    if into is not None:
        into.load_state_dict(state)
    return state
