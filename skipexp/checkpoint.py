"""Checkpoints: written atomically, loaded with ``weights_only=True`` so a file cannot run code."""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from skipexp.errors import UserError


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or does not fit."""


def previous(path: Path) -> Path:
    """Where the checkpoint that ``path`` replaced is kept: ``last.pt`` -> ``last.prev.pt``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(state: dict[str, Any], path: Path, keep_previous: bool = False) -> None:
    """Write ``state`` to ``path`` through a temporary file in the same folder, fsync, then rename.

    With ``keep_previous`` the file it replaces becomes ``<name>.prev.pt``, so a
    resume has a good checkpoint to fall back on whatever happens to the newest.
    A full disk or an unwritable folder is one sentence, and the old file stays.
    """
    _write_atomically(path, lambda handle: torch.save(state, handle), keep_previous)


def copy_checkpoint(source: Path, path: Path) -> None:
    """Copy a written checkpoint to ``path`` as atomically as ``save_checkpoint`` writes one (no re-serialising)."""
    def copy(handle: BinaryIO) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, handle)

    _write_atomically(path, copy)


def _write_atomically(path: Path, write: Callable[[BinaryIO], None], keep_previous: bool = False) -> None:
    """Temporary file in the same folder, ``write`` into it, flush, fsync, (keep the old file,) rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
        raise CheckpointError(f"could not write checkpoint {path} ({err.strerror or err}); free disk space or "
                              "make the run folder writable, then resume with resume=RUN_DIR.") from err
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise


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


def load_latest(path: Path) -> tuple[dict[str, Any], Path, str | None]:
    """The newest readable of ``path`` and its ``.prev`` sibling, the file it came from, and why the newest
    was passed over (None when it was not)."""
    try:
        return load_checkpoint(path), path, None
    except CheckpointError as err:
        fallback = previous(path)
        if not fallback.is_file():
            raise
        return load_checkpoint(fallback), fallback, str(err)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint of tensors and plain containers; anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass checkpoint=PATH to a file under a run's "
                              "checkpoints/ folder.")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is damaged or foreign
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt (not the zip archive torch.save writes).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain containers, so it "
                              f"was not loaded ({str(err).splitlines()[0]}).") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({str(err).splitlines()[0]}).") from err
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"checkpoint {path} is not a skipexp checkpoint (no model weights and config).")
    return state
