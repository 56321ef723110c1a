"""Multirun sweeps: a failed job does not stop the others, and the sweep ends with a summary of failures.

In a multirun, the task function returns ``{"error": ...}`` for a job that
failed (bad value, NaN, crash) instead of raising, so Hydra goes on with the
other jobs. ``SweepSummary`` (registered in conf/config.yaml under
``hydra.callbacks``) collects each job's outcome, prints which jobs failed and
why once all have run, and writes ``sweep_summary.json`` in the sweep folder;
``skipexp`` then exits with status 1.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from skipexp.errors import describe_error

log = logging.getLogger("skipexp.sweep")
SUMMARY = "sweep_summary.json"


class SweepSummary(Callback):
    """Records every job of a multirun and reports the failed ones at the end."""

    failed: ClassVar[list[dict[str, Any]]] = []  # this process's last sweep; sets the exit code

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        value = job_return._return_value  # reading .return_value would re-raise a job's exception
        if job_return.status == JobStatus.FAILED:
            error = describe_error(value)
        else:
            error = value.get("error") if isinstance(value, dict) else None
        hydra_cfg = job_return.hydra_cfg.hydra if job_return.hydra_cfg else None
        self.jobs.append({
            "job": Path(hydra_cfg.runtime.output_dir).name if hydra_cfg else "",  # the job's subfolder
            "folder": hydra_cfg.runtime.output_dir if hydra_cfg else "",
            "status": "failed" if error else "completed",
            "error": error,
        })

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = [job for job in self.jobs if job["status"] == "failed"]
        SweepSummary.failed = failed
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SUMMARY).write_text(json.dumps({"jobs": self.jobs}, indent=2) + "\n")
        log.info(f"sweep: {len(self.jobs) - len(failed)} of {len(self.jobs)} jobs completed ({sweep_dir})")
        for job in failed:
            log.error(f"sweep: job {job['job'] or job['folder']} failed: {job['error']}")
