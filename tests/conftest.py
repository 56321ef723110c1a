"""Shared test helpers: the conf/ folder, Hydra composition, and a tiny CLI config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skipexp.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"
__all__ = ["CONF", "ROOT", "SHARED_DATA", "TINY", "assert_one_sentence", "compose_config", "run_cli", "skipexp_exe"]

# Small enough that a full train -> eval -> predict round trip takes seconds.
TINY = ["model.width=4", "dataset.size=64", "dataset.n_train=4", "dataset.n_val=2", "trainer.epochs=2",
        "trainer.batch_size=2", "gradflow.every=1"]


def skipexp_exe(name: str = "skipexp") -> str:
    """The installed console script ``name`` next to this interpreter."""
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else shutil.which(name) or name


def run_cli(args: list[str], cwd: Path, check: bool = True, exe: str = "skipexp") -> subprocess.CompletedProcess:
    """Run ``skipexp ARGS`` (or another console script, ``exe``) in ``cwd`` as a user would, capturing its output."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.run([skipexp_exe(exe), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{exe} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def assert_one_sentence(proc: subprocess.CompletedProcess, words: str) -> None:
    """A refused command: exit 2 and one line on stderr, ``skipexp: error: ...`` holding ``words``."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipexp: error: ") and words in lines[0], proc.stderr


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)
