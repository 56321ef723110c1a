"""The ``skipexp`` entrypoint: compose the config with Hydra, then train, evaluate, predict or summarise."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

import hydra
import numpy as np
import tifffile
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from skipexp.build import check_fresh, run_header, summary_line
from skipexp.checkpoint import load_checkpoint, previous
from skipexp.config import compose_config, find_conf_dir, normalise_overrides
from skipexp.data import build_data, dataset_channels
from skipexp.data.common import standardise
from skipexp.errors import UserError, describe_error
from skipexp.evaluate import Inference, evaluate, membrane_probability
from skipexp.files import write_json
from skipexp.losses import get_loss
from skipexp.models import build_model
from skipexp.rundir import CHECKPOINTS, EVAL, LAST_CHECKPOINT, PREDICTIONS, RESULTS
from skipexp.runtime import Runtime
from skipexp.sweep import SweepSummary

log = logging.getLogger("skipexp")
MODES = ("train", "eval", "predict", "summary")


def _model_from_checkpoint(cfg: DictConfig, runtime: Runtime) -> tuple[torch.nn.Module, DictConfig]:
    """Rebuild the checkpoint's own network (its model and depth config) and load its weights."""
    if cfg.checkpoint is None:
        raise UserError(f"mode={cfg.mode} needs a checkpoint; pass checkpoint=PATH (a run's checkpoints/best.pt).")
    state = load_checkpoint(cfg.checkpoint)
    saved = OmegaConf.create(state["config"])
    model = build_model(saved.model, saved.depth, dataset_channels(cfg.dataset))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise UserError(f"checkpoint {cfg.checkpoint} does not fit dataset.in_channels="
                        f"{dataset_channels(cfg.dataset)} ({str(err).splitlines()[0]}).") from err
    return runtime.prepare(model), saved


def run_eval(cfg: DictConfig, run_dir: Path) -> dict:
    """Score a checkpoint on the validation set of the configured dataset; write eval.json."""
    runtime = Runtime.from_config(cfg.trainer)
    model, saved = _model_from_checkpoint(cfg, runtime)
    data = build_data(cfg.dataset)
    header = run_header("eval", model, runtime, data.name)
    log.info(summary_line(header))
    inference = Inference.from_config(cfg.predict)
    scores, _ = evaluate(model, data.val, get_loss(saved.trainer.loss), runtime, inference)
    result = {**header, "checkpoint": str(Path(cfg.checkpoint).resolve()), "inference": asdict(inference), **scores}
    write_json(run_dir / EVAL, result)
    log.info(", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return result


def run_predict(cfg: DictConfig, run_dir: Path) -> Path:
    """Write probability maps of the dataset's prediction images as float32 TIFF, high = cell interior.

    Maps of one size go into one stack, ``predictions.tif`` (the ISBI 2012 submission format);
    maps of differing sizes go into ``predictions/<name>.tif``, one per input image.
    """
    runtime = Runtime.from_config(cfg.trainer)
    model, _ = _model_from_checkpoint(cfg, runtime)
    inference = Inference.from_config(cfg.predict)
    data = build_data(cfg.dataset)
    log.info(summary_line(run_header("predict", model, runtime, data.name)))
    maps = []
    for image in tqdm(data.predict_images, desc="predict", unit="image", disable=len(data.predict_images) < 2):
        prob = membrane_probability(model, torch.from_numpy(standardise(image)), runtime, inference)
        maps.append((1.0 - prob).astype(np.float32))
    if len({m.shape for m in maps}) == 1:
        out = run_dir / PREDICTIONS
        tifffile.imwrite(out, np.stack(maps))
    else:
        out = run_dir / PREDICTIONS.removesuffix(".tif")
        out.mkdir(exist_ok=True)
        for name, prob_map in zip(data.predict_names, maps, strict=True):
            tifffile.imwrite(out / f"{name}.tif", prob_map)
    log.info(f"wrote {len(maps)} probability maps (1 = cell interior) to {out}")
    return out


def run_summary(cfg: DictConfig, run_dir: Path) -> dict:
    """Build the network without training; print its stages and write the results.json header."""
    runtime = Runtime.from_config(cfg.trainer)
    model = build_model(cfg.model, cfg.depth, dataset_channels(cfg.dataset))
    header = run_header("summary", model, runtime, cfg.dataset.name)
    log.info(summary_line(header))
    for stage, blocks in model.spec.plan.stage_repeats.items():
        log.info(f"  {stage:<7} {blocks:>3} x {'simple' if stage in ('down2', 'up4') else header['block']}")
    write_json(run_dir / RESULTS, header)
    return header


def dispatch(cfg: DictConfig) -> None:
    """Run the configured mode in the Hydra run folder."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.mode not in MODES:
        raise UserError(f"mode={cfg.mode} is not one of {', '.join(MODES)}.")
    if cfg.mode == "train":
        from skipexp.train import train

        resume = resumable(run_dir, cfg.resume)
        if not resume:  # resume=auto before any checkpoint: a job killed that early simply starts again
            check_fresh(run_dir, restart=cfg.resume == "auto")
        results = train(cfg, run_dir, resume=resume)
        if results:  # empty on ranks other than 0, which write nothing
            log.info(f"run folder: {run_dir} (best val_dice {results['best']['val_dice']:.4f}, "
                     f"{results['wall_s']:.0f} s)")
    elif cfg.mode == "eval":
        run_eval(cfg, run_dir)
    elif cfg.mode == "predict":
        run_predict(cfg, run_dir)
    else:
        run_summary(cfg, run_dir)


def _fail(err: UserError) -> NoReturn:
    """A user's error: its one sentence on stderr, and exit 2 (or the error's own code, e.g. 128 + signal)."""
    print(f"skipexp: error: {err}", file=sys.stderr)
    sys.exit(getattr(err, "exit_code", 2))


@hydra.main(version_base=None, config_path=str(find_conf_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> dict | None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        dispatch(cfg)
    except UserError as err:
        if os.environ.get("SKIPEXP_TRACEBACK"):
            raise
        log.error(f"skipexp: error: {err}")
        if multirun:  # the other jobs go on; SweepSummary lists this one at the end
            return {"error": str(err)}
        _fail(err)
    except Exception as err:  # a crash in one job of a sweep must not stop the others
        if not multirun or os.environ.get("SKIPEXP_TRACEBACK"):
            raise
        log.exception(f"skipexp: job crashed: {err}")
        return {"error": describe_error(err)}
    return None


def resumable(run_dir: Path, resume: str | None) -> bool:
    """Whether this training run continues from a checkpoint in its folder (``resume=RUN_DIR`` or ``auto``)."""
    if resume is None:
        return False
    last = run_dir / CHECKPOINTS / LAST_CHECKPOINT
    has_checkpoint = last.is_file() or previous(last).is_file()
    if str(resume) == "auto":
        return has_checkpoint
    if not has_checkpoint:
        raise UserError(f"resume={resume}: {run_dir} holds no checkpoint to continue from (checkpoints/last.pt); "
                        "give the folder of an interrupted training run.")
    return True


def resume_overrides(args: list[str]) -> list[str]:
    """``resume=RUN_DIR``: the run's own overrides first (from its .hydra/overrides.yaml), then the run folder,
    then whatever else was given, so ``skipexp resume=RUN_DIR`` alone continues the run as it was configured."""
    given = [a for a in args if a.startswith("resume=")]
    if not given:
        return args
    run_dir = Path(given[-1].partition("=")[2])
    if str(run_dir) in ("auto", "null", "None", ""):
        return args
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise UserError(f"resume={run_dir} is not a run folder (no {saved}); give the folder of an interrupted "
                        "training run, such as outputs/runs/<run>.")
    earlier = [str(o) for o in OmegaConf.load(saved) if not str(o).startswith(("resume=", "hydra."))]
    return [*earlier, *args, f"hydra.run.dir={run_dir}"]


def _type_name(value: object) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number"}[type(value)]


def check_override_types(args: list[str], cfg: DictConfig) -> None:
    """Each ``key=value`` override must have the type of the value it replaces (the configs have no schema)."""
    choices = [a for a in args if "=" in a and "." not in a.partition("=")[0]]
    reference = compose_config(choices)
    for arg in args:
        key, sep, _ = arg.partition("=")
        if not sep or "." not in key or key.startswith(("hydra.", "+", "~")):
            continue
        default, value = OmegaConf.select(reference, key), OmegaConf.select(cfg, key)
        if not isinstance(default, bool | int | float) or value is None:
            continue
        ok = isinstance(value, bool) if isinstance(default, bool) else (
            isinstance(value, int | float) and not isinstance(value, bool)
            and (isinstance(default, float) or isinstance(value, int)))
        if not ok:
            shown = str(default).lower() if isinstance(default, bool) else default
            raise UserError(f"{key}={value!r} should be {_type_name(default)} (the default is {shown}); "
                            f"give e.g. {key}={shown}.")


def _writable_parent(folder: Path) -> None:
    """The run folder must be creatable: try a scratch folder in its nearest existing ancestor."""
    import tempfile

    ancestor = folder.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        Path(tempfile.mkdtemp(prefix=".skipexp-write-test-", dir=ancestor)).rmdir()
    except OSError as err:
        raise UserError(f"the output folder {folder} cannot be created ({ancestor}: {err.strerror or err}); "
                        "pick a writable place with hydra.run.dir=PATH.") from err


RENAMED_KEYS = {"trainer.retain_memory": "trainer.allocator (retain, which was true; system, which was false)"}


def preflight(args: list[str]) -> None:
    """Check a single run's overrides before Hydra starts, so a bad one is one sentence instead of a report:
    unknown group options (with the valid ones), unknown keys, unparsable values, wrong types, and an output
    folder that cannot be created. Sweeps (-m) and Hydra's own flags are left to Hydra."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if any(a.startswith("-") for a in args):
        return
    try:
        cfg = compose_config(args, return_hydra_config=True)
    except MissingConfigException as err:
        group, _, choice = str(err.missing_cfg_file or "").rpartition("/")
        options = ", ".join(err.options or [])
        raise UserError(f"{group}={choice} is not an option of {group}; pick one of {options}.") from err
    except OverrideParseException as err:
        raise UserError(f"an override could not be parsed ({str(err).splitlines()[0]}); write overrides as "
                        "key=value, quoting values with spaces or brackets.") from err
    except ConfigCompositionException as err:
        lines = str(err).splitlines()
        key = lines[0].removeprefix("Could not override '").rstrip("'.") if lines else ""
        if key in RENAMED_KEYS:
            raise UserError(f"{key} was replaced by {RENAMED_KEYS[key]}; use that instead.") from err
        if lines and lines[0].startswith("Could not override"):
            raise UserError(f"{key} is not a key of this config; check the spelling against `skipexp --cfg job` "
                            f"(or add a new key with +{key}=VALUE).") from err
        raise UserError(f"the config could not be composed ({' '.join(lines)[:300]}).") from err
    check_override_types(args, cfg)
    _writable_parent(Path(cfg.hydra.run.dir))


def main() -> None:
    """Console-script entry point."""
    import shutil
    import tempfile

    scratch = None
    if os.environ.get("RANK", "0") not in ("", "0"):  # torchrun's other ranks: a private folder, removed at the end
        scratch = tempfile.mkdtemp(prefix="skipexp-rank-")
    extra = [f"hydra.run.dir={scratch}", "hydra.output_subdir=null"] if scratch else []
    try:
        args = resume_overrides(normalise_overrides(sys.argv[1:]))
        preflight(args)
    except UserError as err:
        if os.environ.get("SKIPEXP_TRACEBACK"):
            raise
        _fail(err)
    sys.argv = [sys.argv[0], *args, *extra]
    try:
        _hydra_main()
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if SweepSummary.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
