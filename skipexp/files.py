"""Every file skipexp writes goes through ``atomic_write``: a reader (or a kill) never sees half a file.

The bytes go to a temporary file in the same folder, are flushed and fsynced,
and only then renamed over the target, so the target is either the old file
or the whole new one. A full disk or an unwritable folder is one sentence (a
``UserError``), the temporary file is removed and the old file stays.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from skipexp.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give: tempfile's own files are private (0600)
KEEP_FIX = "free disk space or make the folder writable (the previous copy, if any, is intact)"


class WriteError(UserError):
    """A file that could not be written (disk full, folder not writable)."""


def previous(path: Path) -> Path:
    """Where the file that ``path`` replaced is kept with ``keep_previous``: ``last.pt`` -> ``last.prev.pt``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_write(path: Path, write: Callable[[BinaryIO], None], *, keep_previous: bool = False,
                 what: str = "", error: type[UserError] = WriteError, fix: str = KEEP_FIX) -> Path:
    """Write ``path`` by calling ``write(handle)`` on a temporary file in its folder, fsync, then rename.

    With ``keep_previous`` the file it replaces becomes ``previous(path)``. On an
    OSError the sentence is ``could not write [WHAT ]PATH (why); FIX``, raised as ``error``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous and path.exists():
            os.replace(path, previous(path))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise error(f"could not write {what + ' ' if what else ''}{path} ({err.strerror or err}); {fix}.") from err
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: Path, data: bytes, **kwargs: Any) -> Path:
    """``data`` to ``path``, atomically."""
    return atomic_write(path, lambda handle: handle.write(data), **kwargs)


def write_text(path: Path, text: str, **kwargs: Any) -> Path:
    """``text`` (UTF-8) to ``path``, atomically."""
    return write_bytes(path, text.encode("utf-8"), **kwargs)


def write_json(path: Path, payload: Any, **kwargs: Any) -> Path:
    """``payload`` as indented JSON, atomically."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n", **kwargs)


def write_tiff(path: Path, array: Any, **kwargs: Any) -> Path:
    """``array`` as a (multi-page) TIFF, atomically; encoded in memory first, as tifffile wants a named file.

    A 2-D or Z x H x W array is grayscale pages (``minisblack``): tifffile would
    otherwise take a stack of 3 or 4 sections for the planes of one RGB image.
    """
    import tifffile

    buffer = io.BytesIO()
    gray = getattr(array, "ndim", 0) in (2, 3)
    tifffile.imwrite(buffer, array, **({"photometric": "minisblack"} if gray else {}))
    return write_bytes(path, buffer.getvalue(), **kwargs)


def copy_file(source: Path, path: Path, **kwargs: Any) -> Path:
    """A copy of ``source`` at ``path``, as atomic as any other write (no re-serialising)."""
    def copy(handle: BinaryIO) -> None:
        with Path(source).open("rb") as src:
            shutil.copyfileobj(src, handle)

    return atomic_write(path, copy, **kwargs)


def _fsync_dir(folder: Path) -> None:
    """Make the renames themselves durable (POSIX; a no-op where folders cannot be opened)."""
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
