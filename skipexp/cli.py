"""The ``skipexp`` entrypoint: compose the config with Hydra, then train, evaluate, predict or summarise."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from skipexp.build import InferenceParts, build_inference, build_summary, build_training, check_config
from skipexp.config import compose_config, find_conf_dir, normalise_overrides
from skipexp.data.common import standardise
from skipexp.errors import UserError, describe_error, exit_on_user_error
from skipexp.evaluate import evaluate, membrane_probability
from skipexp.files import previous, write_json, write_tiff
from skipexp.rundir import CHECKPOINTS, EVAL, LAST_CHECKPOINT, PREDICTIONS, RESULTS, TENSORBOARD, summary_line
from skipexp.sweep import SweepSummary
from skipexp.train import train

log = logging.getLogger("skipexp")
_fresh_run_dir: dict[Path, Path] = {}  # the single run's new folder -> its nearest folder that existed before


def run_eval(parts: InferenceParts, run_dir: Path) -> dict:
    """Score a checkpoint on the validation set of the configured dataset; write eval.json."""
    log.info(summary_line(parts.header))
    scores, _ = evaluate(parts.model, parts.data.val, parts.loss_fn, parts.runtime, parts.inference)
    result = {**parts.header, "checkpoint": str(parts.checkpoint), "inference": asdict(parts.inference), **scores}
    write_json(run_dir / EVAL, result)
    log.info(", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return result


def run_predict(parts: InferenceParts, run_dir: Path) -> Path:
    """Write probability maps of the dataset's prediction images as float32 TIFF, high = cell interior.

    Maps of one size go into one stack, ``predictions.tif`` (the ISBI 2012 submission format);
    maps of differing sizes go into ``predictions/<name>.tif``, one per input image.
    """
    log.info(summary_line(parts.header))
    images = parts.data.predict_images
    maps = []
    for image in tqdm(images, desc="predict", unit="image", disable=len(images) < 2):
        prob = membrane_probability(parts.model, torch.from_numpy(standardise(image)), parts.runtime, parts.inference)
        maps.append((1.0 - prob).astype(np.float32))
    if len({m.shape for m in maps}) == 1:
        out = run_dir / PREDICTIONS
        write_tiff(out, np.stack(maps))
    else:
        out = run_dir / PREDICTIONS.removesuffix(".tif")
        for name, prob_map in zip(parts.data.predict_names, maps, strict=True):
            write_tiff(out / f"{name}.tif", prob_map)
    log.info(f"wrote {len(maps)} probability maps (1 = cell interior) to {out}")
    return out


def run_summary(model: torch.nn.Module, header: dict, run_dir: Path) -> dict:
    """Print the network's stages and write the results.json header; no training."""
    log.info(summary_line(header))
    for stage, blocks in model.spec.plan.stage_repeats.items():
        log.info(f"  {stage:<7} {blocks:>3} x {'simple' if stage in ('down2', 'up4') else header['block']}")
    write_json(run_dir / RESULTS, header)
    return header


def dispatch(cfg: DictConfig, run_dir: Path) -> None:
    """Build the configured mode's parts and run it in the run folder."""
    check_config(cfg)
    if cfg.mode == "train":
        resume = resumable(run_dir, cfg.resume)
        results = train(build_training(cfg), run_dir, resume=resume)
        if results:  # empty on ranks other than 0, which write nothing
            log.info(f"run folder: {run_dir} (best val_dice {results['best']['val_dice']:.4f}, "
                     f"{results['wall_s']:.0f} s)")
    elif cfg.mode in ("eval", "predict"):
        parts = build_inference(cfg)
        (run_eval if cfg.mode == "eval" else run_predict)(parts, run_dir)
    else:
        run_summary(*build_summary(cfg), run_dir)


@hydra.main(version_base=None, config_path=str(find_conf_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> dict | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return _sweep_job(cfg, run_dir)
    with exit_on_user_error("skipexp"):
        try:
            dispatch(cfg, run_dir)
        except UserError:
            _discard_if_empty(run_dir)
            raise
    return None


def _sweep_job(cfg: DictConfig, run_dir: Path) -> dict | None:
    """One job of a sweep: a bad value or a crash is logged and returned, and the other jobs go on
    (SweepSummary lists the failures at the end)."""
    try:
        dispatch(cfg, run_dir)
    except Exception as err:
        if os.environ.get("SKIPEXP_TRACEBACK"):
            raise
        if isinstance(err, UserError):
            log.error(f"skipexp: error: {err}")
            return {"error": str(err)}
        log.exception(f"skipexp: job crashed: {err}")
        return {"error": describe_error(err)}
    return None


def _discard_if_empty(run_dir: Path) -> None:
    """A run refused before it wrote anything leaves no folder that looks like a run (only Hydra's .hydra/ and
    log were there); a folder that existed before this command is never removed."""
    run_dir = run_dir.absolute()
    existed = _fresh_run_dir.get(run_dir)
    if existed is None or not run_dir.is_dir():
        return
    if all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
        for parent in run_dir.parents:  # and the folders made for it (outputs/runs/), where they are empty
            if parent == existed or any(parent.iterdir()):
                break
            parent.rmdir()


def resumable(run_dir: Path, resume: str | None) -> bool:
    """Whether this training run continues from a checkpoint in its folder (``resume=RUN_DIR`` or ``auto``);
    a run that does not must get a folder that holds no run, so nothing earlier is overwritten."""
    last = run_dir / CHECKPOINTS / LAST_CHECKPOINT
    has_checkpoint = last.is_file() or previous(last).is_file()
    if resume is not None and str(resume) != "auto" and not has_checkpoint:
        raise UserError(f"resume={resume}: {run_dir} holds no checkpoint to continue from (checkpoints/last.pt); "
                        "give the folder of an interrupted training run.")
    if resume is not None and has_checkpoint:
        return True
    # resume=auto before any checkpoint: a job killed that early simply starts again (its events are purged)
    names = (RESULTS,) if resume == "auto" else (RESULTS, CHECKPOINTS, TENSORBOARD)
    taken = [name for name in names if (run_dir / name).exists()]
    if taken:
        raise UserError(f"run folder {run_dir} already holds a run ({', '.join(taken)}); pick a new folder with "
                        "hydra.run.dir=PATH.")
    return False


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


def _writable_parent(folder: Path) -> None:
    """The run folder must be creatable: try a scratch folder in its nearest existing ancestor."""

    ancestor = folder.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        Path(tempfile.mkdtemp(prefix=".skipexp-write-test-", dir=ancestor)).rmdir()
    except OSError as err:
        raise UserError(f"the output folder {folder} cannot be created ({ancestor}: {err.strerror or err}); "
                        "pick a writable place with hydra.run.dir=PATH.") from err


RENAMED_KEYS = {"trainer.retain_memory": "trainer.allocator (retain, which was true; system, which was false)"}


def preflight(args: list[str]) -> list[str]:
    """Check a single run's overrides before Hydra starts, so a bad one is one sentence instead of a report:
    unknown group options (with the valid ones), unknown keys, unparsable values, wrong types, and an output
    folder that cannot be created. Sweeps (-m) and Hydra's own flags are left to Hydra."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if any(a.startswith("-") for a in args):
        return args
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
            raise UserError(f"{key} is not a key of this config; check the spelling against "
                            "`skipexp --cfg job`.") from err
        raise UserError(f"the config could not be composed ({' '.join(lines)[:300]}).") from err
    check_config(cfg)
    run_dir = Path(cfg.hydra.run.dir)
    if cfg.mode == "train":
        resumable(run_dir, cfg.resume)
    _writable_parent(run_dir)
    if not run_dir.exists():
        _fresh_run_dir[run_dir.absolute()] = next(p for p in run_dir.absolute().parents if p.exists())
    if any(a.startswith("hydra.run.dir=") for a in args):
        return args
    return [*args, f"hydra.run.dir={run_dir}"]  # the default's ${now:...}: the folder checked here, not a second later


def main() -> None:
    """Console-script entry point."""

    scratch = None
    if os.environ.get("RANK", "0") not in ("", "0"):  # torchrun's other ranks: a private folder, removed at the end
        scratch = tempfile.mkdtemp(prefix="skipexp-rank-")
    extra = [f"hydra.run.dir={scratch}", "hydra.output_subdir=null"] if scratch else []
    with exit_on_user_error("skipexp"):
        args = preflight(resume_overrides(normalise_overrides(sys.argv[1:])))
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
