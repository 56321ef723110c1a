"""TensorBoard HParams: one session per run, so ``tensorboard --logdir OUT/hparams`` compares the grid.

torch's SummaryWriter is imported only when the sessions are written, so
reading a sweep and drawing its figures never loads torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from skipexp.report.collect import Run
from skipexp.report.tables import variant_key

HPARAMS_DIR = "hparams"


def hparams_of(run: Run) -> dict[str, Any]:
    """The values TensorBoard's HParams tab compares; config keys this run lacks are left out."""
    trainer, optimizer = run.config.get("trainer") or {}, run.config.get("optimizer") or {}
    values = {
        "variant": run.variant,
        "long_skip": str(bool(run.results.get("long_skip"))).lower(),
        "short_skip": str(bool(run.results.get("short_skip"))).lower(),
        "depth": run.depth,
        "width": run.results.get("width"),
        "seed": run.seed,
        "loss": trainer.get("loss"),
        "precision": trainer.get("precision"),
        "optimizer": optimizer.get("name"),
        "lr": float(optimizer["lr"]) if isinstance(optimizer.get("lr"), int | float) else None,
    }
    return {key: value for key, value in values.items() if value is not None}


def metrics_of(run: Run) -> dict[str, float]:
    """The HParams metrics: final scores, best val Dice and wall time."""
    final = run.results["final"]
    return {f"hparam/{key}": float(final[key]) for key in ("val_dice", "val_vrand", "val_vinfo", "val_loss")} | {
        "hparam/best_val_dice": float(run.results["best"]["val_dice"]),
        "hparam/wall_s": float(run.results["wall_s"])}


def _domains(runs: list[Run]) -> dict[str, list[Any]]:
    """Each hparam's values over all runs, so every session declares the same experiment (checkboxes in the UI)."""
    values: dict[str, set] = {}
    for run in runs:
        for key, value in hparams_of(run).items():
            values.setdefault(key, set()).add(value)
    domains = {}
    for key, seen in values.items():
        if len({type(v) for v in seen}) == 1:  # torch wants every domain value of the hparam's own type
            domains[key] = sorted(seen, key=variant_key) if key == "variant" else sorted(seen)
    return domains


def write_hparams(runs: list[Run], out: Path) -> list[Path]:
    """One HParams session per run under ``out/<run folder name>/``: the three hparams summaries plus the metrics
    as scalars with the same tags (what ``SummaryWriter.add_hparams`` does, without its timestamped subfolder).
    TensorBoard writes these event files itself; they are the only report files not written by atomic_write.
    """
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    for stale in out.glob("*/events.out.tfevents.*"):  # a re-run must not add a second session per run
        stale.unlink()
    domains = _domains(runs)
    written = []
    for run in runs:
        hparam_dict, metric_dict = hparams_of(run), metrics_of(run)
        summaries = hparams(hparam_dict, metric_dict, {k: v for k, v in domains.items() if k in hparam_dict})
        step = int(run.results["final"].get("step", 0))
        log_dir = out / run.folder.name
        with SummaryWriter(log_dir=str(log_dir)) as writer:
            for summary in summaries:
                writer.file_writer.add_summary(summary, step)
            for tag, value in metric_dict.items():
                if math.isfinite(value):
                    writer.add_scalar(tag, value, step)
        written.append(log_dir)
    return written
