"""One builder of a run's parts: the composed config in, the runtime, data, model, optimizer and header out.

Train, eval, predict and summary all receive their parts from here; nothing
below the entrypoint reads the config again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from skipexp.errors import UserError
from skipexp.models import FCResNet, build_model, count_parameters, main_path_layers
from skipexp.models.speed import apply_speedups
from skipexp.rundir import CHECKPOINTS, RESULTS, TENSORBOARD, variant_name
from skipexp.runtime import Runtime


def build_network(model_cfg: DictConfig, depth_cfg: DictConfig, in_channels: int, runtime: Runtime) -> FCResNet:
    """The configured FC-ResNet on the run's device and memory format, with the speed-ups ``trainer`` asks for.

    A compiled net keeps ``nn.Dropout``: inductor fuses its mask into the kernels, and FastDropout's NumPy
    generator is opaque to the compiler.
    """
    model = runtime.prepare(build_model(model_cfg, depth_cfg, in_channels))
    return apply_speedups(model, fast_dropout=runtime.fast_dropout and runtime.compile_mode is None)


def run_header(mode: str, model: FCResNet, runtime: Runtime, dataset: str) -> dict[str, Any]:
    """The fields every results.json starts with; variant, depth and parameters are read off the built model."""
    return {
        "mode": mode,
        "model": variant_name(model.spec.long_skip, model.spec.short_skip),
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
