"""Checkpoints: written atomically, loaded with ``weights_only=True`` so a file cannot run code."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from skipexp.errors import UserError
from skipexp.files import atomic_write, copy_file, previous


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or does not fit."""


_FAILS_AS = {"what": "checkpoint", "error": CheckpointError,
             "fix": "free disk space or make the run folder writable, then resume with resume=RUN_DIR"}


def save_checkpoint(state: dict[str, Any], path: Path, keep_previous: bool = False) -> None:
    """Write ``state`` to ``path`` atomically (``files.atomic_write``: temporary file, fsync, rename).

    With ``keep_previous`` the file it replaces becomes ``<name>.prev.pt``, so a
    resume has a good checkpoint to fall back on whatever happens to the newest.
    A full disk or an unwritable folder is one sentence, and the old file stays.
    """
    atomic_write(path, lambda handle: torch.save(state, handle), keep_previous=keep_previous, **_FAILS_AS)


def copy_checkpoint(source: Path, path: Path) -> None:
    """Copy a written checkpoint to ``path`` as atomically as ``save_checkpoint`` writes one (no re-serialising)."""
    copy_file(source, path, **_FAILS_AS)


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


def existing_checkpoint(path: str | Path) -> Path:
    """``path`` if it is a file, else the sentence that says so (cheap: the CLI asks before a run folder exists)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass checkpoint=PATH to a file under a run's "
                              "checkpoints/ folder.")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint of tensors and plain containers; anything else is refused."""
    path = existing_checkpoint(path)
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
