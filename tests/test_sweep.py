"""Sweeps through Hydra's launchers: the basic one, joblib (parallel, cores split) and submitit (SLURM's code path)."""

from __future__ import annotations

import json

import pytest

from skipexp.cores import thread_share
from skipexp.runtime import usable_cores
from tests.conftest import TINY, compose_config, run_cli


def _summary(sweep) -> dict[str, dict]:
    return {job["job"].split(",")[0]: job for job in json.loads((sweep / "sweep_summary.json").read_text())["jobs"]}


@pytest.mark.slow  # 8-22 s on a Zen 5 EPYC, about twice that on AVX2: keeps `make test` under 10 minutes there
def test_joblib_runs_jobs_in_parallel_with_the_cores_split(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "depth=26,27", *TINY,
                    "trainer.epochs=1", "hydra.sweep.dir=sweep"], tmp_path, check=False)
    assert proc.returncode == 1  # a job failed; the other ran to the end
    jobs = _summary(tmp_path / "sweep")
    assert jobs["depth=26"]["status"] == "completed" and jobs["depth=27"]["status"] == "failed"
    assert "nearest reachable depths are 26 and 28" in jobs["depth=27"]["error"]
    results = json.loads((tmp_path / "sweep" / jobs["depth=26"]["job"] / "results.json").read_text())
    assert results["threads"] == thread_share(usable_cores(), 2)


@pytest.mark.slow  # 8-22 s on a Zen 5 EPYC, about twice that on AVX2: keeps `make test` under 10 minutes there
def test_submitit_local_runs_the_slurm_code_path(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    run_cli(["-m", "hydra/launcher=submitit_local", "mode=summary", "model=both,none", "hydra.sweep.dir=sweep"],
            tmp_path)
    jobs = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())["jobs"]
    assert sorted(job["job"] for job in jobs) == ["mode=summary,model=both", "mode=summary,model=none"]
    assert {job["status"] for job in jobs} == {"completed"}
    for job in jobs:
        results = json.loads((tmp_path / "sweep" / job["job"] / "results.json").read_text())
        assert job["job"].endswith(f"model={results['model']}")


def test_slurm_preset_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_config(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.partition) == (1, 1, "gpu")
    assert launcher.max_num_timeout == 3 and launcher.timeout_min == 1440
