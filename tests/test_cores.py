"""skipexp/cores.py: runs on one machine share its cores; a run's threads follow the runs alive beside it."""

import subprocess
import sys

import pytest

from skipexp import cores
from skipexp.cores import CoreShare
from tests.conftest import compose_config


@pytest.fixture
def other_run():
    """A live process standing in for a second run."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_alone_takes_its_cap_and_leaves_at_the_end(tmp_path):
    share = CoreShare(tmp_path, cores=4, cap=4)
    assert (share.runs(), share.current) == (1, 4)
    assert CoreShare(tmp_path / "b", cores=4, cap=2).current == 2  # cap: e.g. a joblib job's share
    share.leave()
    assert not share.mine.exists()


def test_live_runs_divide_the_cores_and_files_of_dead_ones_are_removed(tmp_path, other_run):
    (tmp_path / str(other_run)).touch()
    dead = tmp_path / str(_dead_pid())
    dead.touch()
    (tmp_path / "notes.txt").touch()  # not a run's file: ignored
    share = CoreShare(tmp_path, cores=4, cap=4)
    assert (share.runs(), share.current) == (2, 2)
    assert not dead.exists() and (tmp_path / "notes.txt").exists()
    share.mine.unlink()  # a temp cleaner took this run's file: it still counts itself
    assert share.runs() == 2
    assert CoreShare(tmp_path, cores=1, cap=1).current == 1  # never fewer than one thread


def test_update_follows_runs_that_start_and_end(tmp_path, other_run, monkeypatch):
    share = CoreShare(tmp_path, cores=2, cap=2)
    assert share.current == 2
    (tmp_path / str(other_run)).touch()
    assert share.update() is None  # looked less than a second ago
    monkeypatch.setattr(cores, "LOOK_EVERY_S", 0.0)
    assert share.update() == 1 and share.current == 1
    assert share.update() is None  # unchanged
    (tmp_path / str(other_run)).unlink()
    assert share.update() == 2


def test_only_a_run_that_sizes_its_own_threads_shares_the_cores():
    from skipexp.runtime import Runtime

    assert Runtime.from_config(compose_config([]).trainer).share_cores
    assert not Runtime.from_config(compose_config(["trainer.threads=1"]).trainer).share_cores


def test_without_a_writable_folder_a_run_counts_itself_alone(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the folder should be
    share = CoreShare(blocked / "share", cores=2, cap=2)
    assert (share.mine, share.runs(), share.current) == (None, 1, 2)
    share.leave()


def test_a_run_that_left_joins_again(tmp_path):
    share = CoreShare(tmp_path, cores=2, cap=2)
    share.leave()
    assert not share.mine.exists()
    share.join()
    assert share.mine.exists() and share.current == 2


def test_a_run_counts_while_it_trains_and_leaves_when_training_ends(tmp_path):
    import os

    from skipexp.build import build_training
    from skipexp.train import train

    cfg = compose_config(["dataset.n_train=8", "dataset.n_val=2", "trainer.epochs=1", "model.width=4",
                          "gradflow.enabled=false"])
    parts = build_training(cfg)
    mine = cores.share_folder() / str(os.getpid())
    assert mine.exists()
    train(parts, tmp_path / "run")
    assert not mine.exists()
