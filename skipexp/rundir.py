"""The run folder contract: results.json and friends, written atomically so a reader never sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from skipexp.errors import UserError
from skipexp.models import FCResNet, count_parameters, main_path_layers
from skipexp.runtime import Runtime

RESULTS = "results.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.pt"  # written after every epoch; the one before it is kept as last.prev.pt
BEST_CHECKPOINT = "best.pt"  # the best validation Dice so far
TENSORBOARD = "tb"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not write {path} ({err.strerror or err}); free disk space or make the run folder "
                        "writable (the previous copy, if any, is intact).") from err


def run_header(mode: str, model_cfg: DictConfig, model: FCResNet, runtime: Runtime, dataset: str) -> dict[str, Any]:
    """The fields every results.json starts with; depth and parameters are counted from the built model."""
    return {
        "mode": mode,
        "model": model_cfg.variant,
        "long_skip": model.spec.long_skip,
        "short_skip": model.spec.short_skip,
        "block": model.spec.plan.block,
        "width": model.spec.width,
        "n_simple_blocks": model.spec.plan.n_simple_blocks,
        "depth_layers": len(main_path_layers(model)),
        "params": count_parameters(model),
        "dataset": dataset,
        "device": str(runtime.device),
        "precision": "fp32" if runtime.amp_dtype is None else str(runtime.amp_dtype).removeprefix("torch."),
        "channels_last": runtime.channels_last,
        "threads": runtime.threads,
        "seed": runtime.seed,
    }


def summary_line(header: dict[str, Any]) -> str:
    """One line for the start of a run: variant, counted layers, parameters, device."""
    return (f"skipexp {header['mode']}: model={header['model']} (long_skip={header['long_skip']}, "
            f"short_skip={header['short_skip']}), {header['depth_layers']} layers, {header['block']} blocks, "
            f"width {header['width']}, {header['params']:,} parameters, device {header['device']} "
            f"({header['precision']})")


def check_fresh(run_dir: Path, restart: bool = False) -> None:
    """Refuse to train into a folder that already holds a run, so nothing earlier is overwritten.

    ``restart`` (resume=auto, no checkpoint yet) accepts the traces of a job killed
    before its first checkpoint: it had no results, and its events are purged.
    """
    names = (RESULTS,) if restart else (RESULTS, CHECKPOINTS, TENSORBOARD)
    taken = [name for name in names if (run_dir / name).exists()]
    if taken:
        raise UserError(f"run folder {run_dir} already holds a run ({', '.join(taken)}); pick a new folder with "
                        "hydra.run.dir=PATH.")
