"""Multirun sweeps: a failed job does not stop the others, and the sweep ends with a summary of failures.

In a multirun, the task function returns ``{"error": ...}`` for a job that
failed (bad value, NaN, crash) instead of raising, so Hydra goes on with the
other jobs. ``SweepSummary`` (registered in conf/config.yaml under
``hydra.callbacks``) writes each job's outcome to ``job_status.json`` in the
job's folder (in whichever process ran the job: joblib and SLURM jobs run
elsewhere), and once all have run, gathers them, prints which jobs failed and
why, and writes ``sweep_summary.json`` in the sweep folder; ``skipexp`` then
exits with status 1.
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
from skipexp.files import write_json
from skipexp.rundir import SUMMARY

log = logging.getLogger("skipexp.sweep")
JOB_STATUS = "job_status.json"


class SweepSummary(Callback):
    """Records every job of a multirun and reports the failed ones at the end."""

    failed: ClassVar[list[dict[str, Any]]] = []  # this process's last sweep; sets the exit code

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        value = job_return._return_value  # reading .return_value would re-raise a job's exception
        if job_return.status == JobStatus.FAILED:
            error = describe_error(value)
        else:
            error = value.get("error") if isinstance(value, dict) else None
        if job_return.hydra_cfg is None:
            return
        folder = Path(job_return.hydra_cfg.hydra.runtime.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        record = {"job": folder.name, "folder": str(folder), "status": "failed" if error else "completed",
                  "error": error}
        write_json(folder / JOB_STATUS, record)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs = [json.loads(path.read_text()) for path in sorted(sweep_dir.glob(f"*/{JOB_STATUS}"))]
        failed = [job for job in jobs if job["status"] == "failed"]
        SweepSummary.failed = failed
        write_json(sweep_dir / SUMMARY, {"jobs": jobs})
        log.info(f"sweep: {len(jobs) - len(failed)} of {len(jobs)} jobs completed ({sweep_dir})")
        for job in failed:
            log.error(f"sweep: job {job['job'] or job['folder']} failed: {job['error']}")
