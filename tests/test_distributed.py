"""Data-parallel training: 2 gloo processes under torchrun take the same steps as 1 process with the whole batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from skipexp.cores import thread_share
from skipexp.distributed import Distributed
from tests.conftest import TINY, run_cli, skipexp_exe

# batch-independent normalisation and no dropout: per-process BatchNorm statistics and dropout masks
# are the only things that differ between 1 and 2 processes on CPU (SyncBatchNorm needs CUDA); fp32 (trainer=plain)
# because bf16 rounding of differently split batches would differ by more than float sums do
EXACT = [*TINY, "trainer=plain", "dataset.n_train=8", "trainer.batch_size=4", "model.norm=group", "model.dropout=0",
         "optimizer=sgd"]
LOSS_RTOL = 1e-5  # float sums in a different order: the losses agree to about 1e-7
WEIGHT_ATOL = 1e-5


def test_shard_splits_a_global_batch_contiguously():
    batch = list(range(10))
    shares = [Distributed(rank=r, world_size=3).shard(batch) for r in range(3)]
    assert shares == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert Distributed().shard(batch) == batch


def test_from_env_reads_what_torchrun_sets(monkeypatch):
    for name, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    dist = Distributed.from_env()
    assert (dist.rank, dist.world_size, dist.local_rank, dist.local_world_size) == (3, 4, 1, 2)
    assert dist.enabled and not dist.is_main and dist.device("cuda") == torch.device("cuda:1")


def test_threads_are_split_between_processes():
    assert [thread_share(16, n) for n in (1, 2, 4, 32)] == [16, 8, 4, 1]


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("1_train/loss")]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(cwd)}
    return subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "--no-python", skipexp_exe(), *args],
                          cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow  # 8-22 s on a Zen 5 EPYC, about twice that on AVX2: keeps `make test` under 10 minutes there
def test_two_gloo_processes_match_one_process(tmp_path):
    if not shutil.which("torchrun", path=str(Path(sys.executable).parent)):
        pytest.skip("torchrun is not installed beside this interpreter")
    run_cli([*EXACT, "hydra.run.dir=one"], tmp_path)
    proc = _torchrun([*EXACT, "hydra.run.dir=two"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert [s for s, _ in one] == [s for s, _ in two] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(one, two, strict=True):
        assert b == pytest.approx(a, rel=LOSS_RTOL)
    w1 = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)
    w2 = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)
    assert w2["header"]["world_size"] == 2
    for key, tensor in w1["model"].items():
        torch.testing.assert_close(w2["model"][key], tensor, atol=WEIGHT_ATOL, rtol=0)
    # only rank 0 wrote: one run folder, and rank 1's scratch folder is gone
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("skipexp-rank")]
    assert not (tmp_path / "outputs").exists()
    assert proc.stdout.count("run folder:") + proc.stderr.count("run folder:") == 1


def test_a_global_batch_smaller_than_the_process_count_is_refused(tmp_path):
    proc = _torchrun([*EXACT, "trainer.batch_size=1", "hydra.run.dir=run"], tmp_path)
    assert proc.returncode != 0
    assert "skipexp: error: trainer.batch_size=1 (the global batch)" in proc.stderr
    assert 'skipexp/' not in "".join(line for line in proc.stderr.splitlines() if line.strip().startswith("File"))
