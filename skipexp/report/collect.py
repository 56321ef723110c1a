"""Reading a sweep folder: which run folders are complete training runs, and why the others are left out.

Everything comes from the run folders and sweep_summary.json; nothing is re-run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from skipexp.errors import UserError
from skipexp.rundir import (
    RESULTS,
    SUMMARY,
    compile_mode,
    convergence,
    early_stop_due,
    variant_name,
    weight_decay_on,
)

RECORD_KEYS = ("epoch", "val_loss", "val_dice", "val_vrand", "val_vinfo")  # read from every validation record
REQUIRED = ("depth_layers", "seed", "epochs_completed", "best", "final", "wall_s")  # besides the variant


def variant_of(results: dict[str, Any]) -> str | None:
    """The variant named by results.json's two switches, else its ``model`` (None when it has neither)."""
    long_skip, short_skip = results.get("long_skip"), results.get("short_skip")
    if isinstance(long_skip, bool) and isinstance(short_skip, bool):
        return variant_name(long_skip, short_skip)
    return None if results.get("model") is None else str(results["model"])


@dataclass
class Run:
    """A complete training run: its folder, results.json, composed config and overrides."""

    folder: Path
    results: dict[str, Any]
    config: dict[str, Any]
    overrides: list[str] = field(default_factory=list)

    @property
    def variant(self) -> str:
        return str(variant_of(self.results))

    @property
    def depth(self) -> int:
        return int(self.results["depth_layers"])

    @property
    def seed(self) -> int:
        return int(self.results["seed"])

    @property
    def converged(self) -> bool:
        """Whether val Dice had stopped rising (results.json's verdict; recomputed for runs written before it)."""
        verdict = self.results.get("converged") or convergence([h["val_dice"] for h in self.results["history"]])
        return bool(verdict["converged"])

    @property
    def compile_mode(self) -> str | None:
        """torch.compile's mode of the run, None = eager: results.json's, else (runs written before it had one)
        the run's own ``trainer.compile``."""
        if "compile" in self.results:
            return self.results["compile"]
        return compile_mode((self.config.get("trainer") or {}).get("compile", False))

    @property
    def weight_decay_on(self) -> str:
        """The parameters weight decay applied to (``optimizer.weight_decay_on``): results.json's, else the run's
        own config's (``rundir.weight_decay_on``)."""
        if "weight_decay_on" in self.results:
            return str(self.results["weight_decay_on"])
        return weight_decay_on(self.config)

    def epochs_to(self, target: float) -> int | None:
        """The epoch of the first validation with val_dice >= ``target`` (None if none reached it)."""
        return next((int(h["epoch"]) for h in self.results["history"] if h["val_dice"] >= target), None)

    def row(self, target: float) -> dict[str, Any]:
        """This run's line in ablation.json."""
        row = {"folder": str(self.folder), "job": self.folder.name, "variant": self.variant, "depth": self.depth,
               "seed": self.seed, "width": self.results.get("width"), "params": self.results.get("params"),
               "epochs_completed": self.results["epochs_completed"],
               "epochs_planned": (self.config.get("trainer") or {}).get("epochs")}
        row |= {f"final_{key}": value for key, value in self.results["final"].items() if key.startswith("val_")}
        row |= {"best_val_dice": self.results["best"]["val_dice"], "best_epoch": self.results["best"]["epoch"],
                "epochs_to_target": self.epochs_to(target), "wall_s": self.results["wall_s"],
                "converged": self.converged, "stopped_by": self.results.get("stopped_by"),
                "precision": self.results.get("precision"), "compile": self.compile_mode,
                "weight_decay_on": self.weight_decay_on, "steps_completed": self.results.get("steps_completed")}
        return row


@dataclass
class LeftOut:
    """A run folder (or a job of sweep_summary.json) kept out of the table, and why."""

    folder: Path
    reason: str

    def row(self) -> dict[str, str]:
        return {"job": self.folder.name, "folder": str(self.folder), "reason": self.reason}


@dataclass
class Sweep:
    """What a sweep folder holds: the runs the table uses, those left out, and notes for the reader."""

    root: Path
    runs: list[Run]
    left_out: list[LeftOut]
    notes: list[str] = field(default_factory=list)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """gradflow.npz as a dict of arrays."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if "grad_rms" not in arrays and "numel" in arrays:
        arrays["grad_rms"] = arrays["grad_norm"] / np.sqrt(arrays["numel"])
    return arrays


def run_title(run_dir: Path) -> str:
    """``<variant>, <layers> layers`` from results.json, else the folder name."""
    try:
        results = json.loads((run_dir / RESULTS).read_text())
        variant, depth = variant_of(results), results["depth_layers"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return run_dir.name
    return f"{variant}, {depth} layers" if variant else run_dir.name


def sweep_command(root: Path) -> str | None:
    """The ``skipexp -m ...`` command line that made the sweep, from its multirun.yaml (None when it has none)."""
    saved = _read_yaml(root / "multirun.yaml")
    try:
        overrides = saved["hydra"]["overrides"]
        hydra = [_as_given(o, root) for o in overrides["hydra"] if not o.startswith("hydra.mode=")]
        return " ".join(["skipexp -m", *overrides["task"], *hydra])
    except (TypeError, KeyError):
        return None


def _as_given(override: str, root: Path) -> str:
    """A ``hydra.sweep.dir`` naming this very folder is written with the folder's path as the report was given it,
    so that a sweep launched from elsewhere by absolute path reads as the command to type here."""
    key, _, value = override.partition("=")
    if key == "hydra.sweep.dir" and Path(value).expanduser().resolve() == root.resolve():
        return f"{key}={root}"
    return override


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _logged_error(folder: Path) -> str | None:
    """The last ``skipexp: error:`` or ``job crashed:`` line of the job's log, when sweep_summary.json is absent."""
    found = None
    for log in sorted(folder.glob("*.log")):
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            for marker in ("skipexp: error: ", "skipexp: job crashed: "):
                if marker in line:
                    found = line.split(marker, 1)[1].strip()
    return found


def _read_summary(root: Path, notes: list[str]) -> dict[str, dict[str, Any]]:
    """sweep_summary.json's jobs by subfolder name ({} when the sweep was killed before writing it)."""
    path = root / SUMMARY
    if not path.is_file():
        return {}
    try:
        jobs = json.loads(path.read_text())["jobs"]
        return {str(job.get("job") or Path(job["folder"]).name): job for job in jobs}
    except (OSError, ValueError, KeyError, TypeError) as err:
        notes.append(f"{path} is unreadable ({type(err).__name__}); job outcomes were taken from the run folders.")
        return {}


def _missing(results: dict[str, Any]) -> list[str]:
    """What results.json lacks for the table: top-level keys, then numbers in its validation records."""
    missing = [key for key in REQUIRED if key not in results]
    if variant_of(results) is None:
        missing.insert(0, "model")
    if missing:
        return missing
    records = [results["final"], results["best"], *results["history"]]
    return sorted({f"{key} in final/best/history" for record in records for key in RECORD_KEYS
                   if not isinstance(record, dict) or not isinstance(record.get(key), int | float)})


def _classify(folder: Path, job: dict[str, Any] | None) -> Run | LeftOut:
    """A complete training run, or the reason it is left out."""
    if job is not None and job.get("status") == "failed":
        return LeftOut(folder, f"failed: {job.get('error') or 'no error recorded'}")
    config = _read_yaml(folder / ".hydra" / "config.yaml")
    config = config if isinstance(config, dict) else {}
    overrides = _read_yaml(folder / ".hydra" / "overrides.yaml")
    overrides = [str(o) for o in overrides] if isinstance(overrides, list) else []
    if config.get("mode", "train") != "train":
        return LeftOut(folder, f"not a training run (mode={config['mode']})")
    if not (folder / RESULTS).is_file():
        error = _logged_error(folder)
        if error:
            return LeftOut(folder, f"failed: {error}")
        return LeftOut(folder, "no results.json (the job failed or stopped before its first validation)")
    try:
        results = json.loads((folder / RESULTS).read_text())
    except (OSError, ValueError) as err:
        return LeftOut(folder, f"results.json is unreadable ({type(err).__name__})")
    if not isinstance(results, dict) or results.get("mode", "train") != "train" or not results.get("history"):
        mode = results.get("mode") if isinstance(results, dict) else None
        return LeftOut(folder, f"not a training run (mode={mode})" if mode else "not a training run")
    missing = _missing(results)
    if missing:
        return LeftOut(folder, f"results.json lacks {', '.join(missing)}")
    trainer = config.get("trainer") or {}
    planned, done = trainer.get("epochs"), int(results["epochs_completed"])
    if not isinstance(planned, int):
        return LeftOut(folder, "no .hydra/config.yaml with trainer.epochs, so whether the run finished is unknown")
    stopped_early = early_stop_due(done, int(results["best"]["epoch"]), int(trainer.get("patience") or 0))
    if done < planned and not stopped_early:
        return LeftOut(folder, f"incomplete (interrupted or still running): {done} of {planned} epochs")
    return Run(folder, results, config, overrides)


def collect_runs(root: Path) -> Sweep:
    """Classify every direct subfolder of ``root`` holding results.json or .hydra/, and every summary job."""
    if not root.exists():
        raise UserError(f"SWEEP_DIR {root} does not exist; give the folder of a sweep made by `skipexp -m ...` "
                        "(its hydra.sweep.dir, e.g. outputs/sweeps/<time>).")
    if not root.is_dir():
        raise UserError(f"SWEEP_DIR {root} is a file, not a folder; give the sweep folder that holds the run folders.")
    notes: list[str] = []
    jobs = _read_summary(root, notes)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and ((p / RESULTS).is_file() or (p / ".hydra").is_dir()))
    if not any((p / RESULTS).is_file() for p in folders):
        if (root / RESULTS).is_file():
            raise UserError(f"SWEEP_DIR {root} is a run folder, not a sweep; give the folder above it ({root.parent}).")
        without = f" ({len(folders)} job folders have none: the jobs failed early)" if folders else ""
        raise UserError(f"SWEEP_DIR {root} holds no run folders with results.json{without}; give a sweep folder "
                        "made by `skipexp -m ...` or a folder of runs such as outputs/runs.")
    runs: list[Run] = []
    left_out: list[LeftOut] = []
    for folder in folders:
        outcome = _classify(folder, jobs.get(folder.name))
        (runs if isinstance(outcome, Run) else left_out).append(outcome)
    names = {p.name for p in folders}
    for name, job in jobs.items():
        if name not in names:
            reason = (f"failed: {job.get('error') or 'no error recorded'}" if job.get("status") == "failed"
                      else "listed in sweep_summary.json but its folder holds no run")
            left_out.append(LeftOut(root / name, reason))
    left_out.sort(key=lambda item: item.folder.name)
    return Sweep(root, runs, left_out, notes)
