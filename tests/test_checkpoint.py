"""Checkpoints: atomic writes, a previous one kept, corrupt and crafted files refused with one sentence."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from skipexp.checkpoint import CheckpointError, load_checkpoint, load_latest, previous, save_checkpoint


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((3,), value)}, "config": {"model": {"variant": "both"}}}


class Exploit:
    """Unpickling this would run a shell command that leaves a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": Exploit(str(marker)), "config": {}}, path)
    with pytest.raises(CheckpointError, match="holds objects other than tensors") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_truncated_and_missing_checkpoints_are_one_sentence(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="is truncated or corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_the_previous_checkpoint_is_kept_and_used_when_the_newest_is_broken(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path, keep_previous=True)
    save_checkpoint(_state(2.0), path, keep_previous=True)
    assert load_checkpoint(previous(path))["model"]["w"][0] == 1.0
    state, source, why = load_latest(path)
    assert source == path and why is None and state["model"]["w"][0] == 2.0
    path.write_bytes(b"\x00" * 64)  # a kill mid-write can not do this (rename is atomic), but a bad disk can
    state, source, why = load_latest(path)
    assert source == previous(path) and state["model"]["w"][0] == 1.0 and "truncated or corrupt" in why


def test_a_full_disk_keeps_the_old_checkpoint_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path, keep_previous=True)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match=r"No space left on device.*free disk space") as err:
        save_checkpoint(_state(2.0), path, keep_previous=True)
    assert "\n" not in str(err.value)
    assert load_checkpoint(path)["model"]["w"][0] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left behind


def test_an_unwritable_folder_is_one_sentence(tmp_path, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", denied)  # tests run as root here, where chmod would not stop a write
    with pytest.raises(CheckpointError, match=r"could not write checkpoint .*Permission denied.*writable"):
        save_checkpoint(_state(1.0), tmp_path / "last.pt")


def test_a_kill_mid_write_leaves_the_previous_checkpoint_intact(tmp_path):
    """What SIGKILL during save_checkpoint leaves behind: a partial temporary file beside an intact last.pt."""
    path = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), path, keep_previous=True)
    partial = tmp_path / ".last.pt.abc123.tmp"
    partial.write_bytes(path.read_bytes()[:100])  # the write was cut short before the rename
    state, source, why = load_latest(path)
    assert source == path and why is None and state["model"]["w"][0] == 1.0
    save_checkpoint(_state(2.0), path, keep_previous=True)  # the next save is not disturbed by the leftover
    assert load_checkpoint(path)["model"]["w"][0] == 2.0 and load_checkpoint(previous(path))["model"]["w"][0] == 1.0


def test_copy_checkpoint_writes_the_same_file_atomically(tmp_path):
    from skipexp.checkpoint import copy_checkpoint

    save_checkpoint(_state(3.0), tmp_path / "last.pt")
    copy_checkpoint(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "last.pt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary file left
