"""``skipexp-report``: the ablation report of a sweep, read from its run folders only (never re-running anything).

    skipexp-report SWEEP_DIR [--out DIR] [--target-dice 0.75] [--measure grad_norm|update_mean]

reads every run folder of a sweep made by ``skipexp -m ...`` (or a folder of
plain runs such as outputs/runs) and writes, by default into SWEEP_DIR/report:

- ``ablation.md``, ``ablation.csv``, ``ablation.json``: one row per skip variant
  and depth, with the mean and std over seeds of the final validation scores,
  the best val Dice, the epochs taken to reach ``--target-dice`` and wall time;
- ``curves.png`` (val Dice and loss per epoch), ``gradflow.png`` (the variants'
  gradient-flow heat maps on one colour scale), ``score_vs_depth.png``;
- ``hparams/<run>/``: one TensorBoard HParams session per run, so
  ``tensorboard --logdir OUT/hparams`` shows the grid in its HParams tab.

Only complete training runs enter the table. Failed, interrupted, unreadable
and non-training runs are listed under "Runs left out" with the reason.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from skipexp.errors import UserError
from skipexp.files import write_json
from skipexp.gradflow import MEASURES, NPZ, load_arrays
from skipexp.rundir import RESULTS
from skipexp.sweep import SUMMARY

VARIANT_ORDER = ("both", "long_only", "short_only", "none")
# (table column, results.json part, score key): the scores averaged over seeds
SCORES = (
    ("final_val_loss", "final", "val_loss"),
    ("final_val_dice", "final", "val_dice"),
    ("final_val_vrand", "final", "val_vrand"),
    ("final_val_vinfo", "final", "val_vinfo"),
    ("best_val_dice", "best", "val_dice"),
)
COLUMNS = ["variant", "depth", "n_seeds", "params",
           *(f"{name}_{stat}" for name, _, _ in SCORES for stat in ("mean", "std")),
           "epochs_to_target_mean", "epochs_to_target_reached", "wall_s_mean", "wall_s_std"]
MARKDOWN_HEADER = {"final_val_loss": "final val loss", "final_val_dice": "final val Dice",
                   "final_val_vrand": "final V_rand", "final_val_vinfo": "final V_info",
                   "best_val_dice": "best val Dice"}
HPARAMS_DIR = "hparams"
RECORD_KEYS = ("epoch", "val_loss", "val_dice", "val_vrand", "val_vinfo")  # read from every validation record
# overrides that name a table cell or a seed; any other override differing inside a cell is worth a note
CELL_KEYS = {"model", "model.variant", "depth", "depth.layers", "trainer.seed", "seed"}


@dataclass
class Run:
    """A complete training run: its folder, results.json, composed config and overrides."""

    folder: Path
    results: dict[str, Any]
    config: dict[str, Any]
    overrides: list[str] = field(default_factory=list)

    @property
    def variant(self) -> str:
        return str(self.results["model"])

    @property
    def depth(self) -> int:
        return int(self.results["depth_layers"])

    @property
    def seed(self) -> int:
        return int(self.results["seed"])

    def epochs_to(self, target: float) -> int | None:
        """The epoch of the first validation with val_dice >= ``target`` (None if none reached it)."""
        return next((int(h["epoch"]) for h in self.results["history"] if h["val_dice"] >= target), None)

    def hparams(self) -> dict[str, Any]:
        """The values TensorBoard's HParams tab compares; config keys this run lacks are left out."""
        trainer, optimizer = self.config.get("trainer") or {}, self.config.get("optimizer") or {}
        values = {
            "variant": self.variant,
            "long_skip": str(bool(self.results.get("long_skip"))).lower(),
            "short_skip": str(bool(self.results.get("short_skip"))).lower(),
            "depth": self.depth,
            "width": self.results.get("width"),
            "seed": self.seed,
            "loss": trainer.get("loss"),
            "precision": trainer.get("precision"),
            "optimizer": optimizer.get("name"),
            "lr": float(optimizer["lr"]) if isinstance(optimizer.get("lr"), int | float) else None,
        }
        return {key: value for key, value in values.items() if value is not None}

    def metrics(self) -> dict[str, float]:
        """The HParams metrics: final scores, best val Dice and wall time."""
        final = self.results["final"]
        return {f"hparam/{key}": float(final[key]) for key in ("val_dice", "val_vrand", "val_vinfo", "val_loss")} | {
            "hparam/best_val_dice": float(self.results["best"]["val_dice"]),
            "hparam/wall_s": float(self.results["wall_s"])}

    def row(self, target: float) -> dict[str, Any]:
        """This run's line in ablation.json."""
        row = {"folder": str(self.folder), "job": self.folder.name, "variant": self.variant, "depth": self.depth,
               "seed": self.seed, "width": self.results.get("width"), "params": self.results.get("params"),
               "epochs_completed": self.results["epochs_completed"],
               "epochs_planned": (self.config.get("trainer") or {}).get("epochs")}
        row |= {f"final_{key}": value for key, value in self.results["final"].items() if key.startswith("val_")}
        row |= {"best_val_dice": self.results["best"]["val_dice"], "best_epoch": self.results["best"]["epoch"],
                "epochs_to_target": self.epochs_to(target), "wall_s": self.results["wall_s"]}
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


# ---- reading the sweep folder ----------------------------------------------------------------------


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
    missing = [k for k in ("model", "depth_layers", "seed", "epochs_completed", "best", "final", "wall_s")
               if k not in results]
    if not missing:
        records = [results["final"], results["best"], *results["history"]]
        missing = sorted({f"{key} in final/best/history" for record in records for key in RECORD_KEYS
                          if not isinstance(record, dict) or not isinstance(record.get(key), int | float)})
    if missing:
        return LeftOut(folder, f"results.json lacks {', '.join(missing)}")
    trainer = config.get("trainer") or {}
    planned, done = trainer.get("epochs"), int(results["epochs_completed"])
    if not isinstance(planned, int):
        return LeftOut(folder, "no .hydra/config.yaml with trainer.epochs, so whether the run finished is unknown")
    patience = int(trainer.get("patience") or 0)
    stopped_early = patience > 0 and done - int(results["best"]["epoch"]) >= patience
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


# ---- the table ----------------------------------------------------------------------------------------


def variant_key(variant: str) -> tuple[int, str]:
    """Sort key: both, long_only, short_only, none, then any other variant alphabetically."""
    return (VARIANT_ORDER.index(variant), "") if variant in VARIANT_ORDER else (len(VARIANT_ORDER), variant)


def cells(runs: list[Run]) -> dict[tuple[str, int], list[Run]]:
    """Runs grouped by (variant, depth) in table order, each cell's runs by seed."""
    grouped: dict[tuple[str, int], list[Run]] = {}
    for run in sorted(runs, key=lambda r: (variant_key(r.variant), r.depth, r.seed, r.folder.name)):
        grouped.setdefault((run.variant, run.depth), []).append(run)
    return grouped


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1; None for fewer than two values)."""
    if not values:
        return None, None
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) >= 2 else None


def ablation_rows(runs: list[Run], target: float) -> list[dict[str, Any]]:
    """One row per (variant, depth): raw means and stds over seeds, keyed by ``COLUMNS``."""
    rows = []
    for (variant, depth), group in cells(runs).items():
        params = sorted({r.results.get("params") for r in group} - {None})
        row: dict[str, Any] = {"variant": variant, "depth": depth, "n_seeds": len(group),
                               "params": params[0] if len(params) == 1 else (params or None)}
        for name, part, key in SCORES:
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std([float(r.results[part][key]) for r in group])
        reached = [epochs for r in group if (epochs := r.epochs_to(target)) is not None]
        row["epochs_to_target_mean"] = mean_std(reached)[0]
        row["epochs_to_target_reached"] = len(reached)
        row["wall_s_mean"], row["wall_s_std"] = mean_std([float(r.results["wall_s"]) for r in group])
        rows.append(row)
    return rows


def cell_notes(runs: list[Run]) -> list[str]:
    """Warnings about cells that mix configurations or repeat a seed, which would blur the means."""
    notes = []
    for (variant, depth), group in cells(runs).items():
        others = {tuple(sorted(o for o in r.overrides if o.partition("=")[0].lstrip("+~") not in CELL_KEYS))
                  for r in group}
        if len(others) > 1:
            notes.append(f"cell {variant}/{depth} mixes runs with different overrides "
                         f"({' vs '.join(', '.join(o) or 'none' for o in sorted(others))}).")
        seeds = [r.seed for r in group]
        if len(set(seeds)) < len(seeds):
            notes.append(f"cell {variant}/{depth} has several runs with the same seed ({sorted(seeds)}).")
    return notes


def _fmt(mean: float | None, std: float | None, digits: int = 3) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _fmt_wall(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    if mean >= 120:
        return _fmt(mean / 60, None if std is None else std / 60, 1) + " min"
    return _fmt(mean, std, 0) + " s"


def _fmt_params(params: Any) -> str:
    if isinstance(params, list):
        return " / ".join(f"{p:,}" for p in params)
    return "–" if params is None else f"{params:,}"


def markdown_table(rows: list[dict[str, Any]], target: float) -> str:
    """The ablation table as a Markdown pipe table, values as ``mean ± std``."""
    header = ["variant", "depth", "seeds", "params", *MARKDOWN_HEADER.values(), f"epochs to Dice ≥ {target:g}",
              "wall time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 1 else "---:" for i in range(len(header)))
             + "|"]
    for row in rows:
        reached = f"{row['epochs_to_target_reached']}/{row['n_seeds']}"
        epochs = row["epochs_to_target_mean"]
        cells_ = [row["variant"], str(row["depth"]), str(row["n_seeds"]), _fmt_params(row["params"]),
                  *(_fmt(row[f"{name}_mean"], row[f"{name}_std"]) for name in MARKDOWN_HEADER),
                  f"{'–' if epochs is None else f'{epochs:.1f}'} ({reached})",
                  _fmt_wall(row["wall_s_mean"], row["wall_s_std"])]
        lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return " / ".join(str(v) for v in value)
    return value


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """One header row, then plain numbers (mean and std in separate columns; missing values empty)."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(row[key]) for key in COLUMNS})


# ---- figures ------------------------------------------------------------------------------------------


def _figure(n_rows: int, n_cols: int, width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_cols + 1.0, height * n_rows), dpi=100, layout="constrained")
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def _label(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _colours(variants: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {variant: palette(i % 10) for i, variant in enumerate(variants)}


def curves_figure(runs: list[Run], out: Path) -> Path:
    """Val Dice (top) and val loss (bottom) per epoch, a column per depth: thin lines per seed, thick means."""
    from matplotlib.ticker import MaxNLocator

    grouped = cells(runs)
    depths = sorted({depth for _, depth in grouped})
    colours = _colours(list(dict.fromkeys(variant for variant, _ in grouped)))
    fig, axes = _figure(2, len(depths), 4.5, 3.4)
    for row, (key, label) in enumerate((("val_dice", "val Dice"), ("val_loss", "val loss"))):
        for col, depth in enumerate(depths):
            ax = axes[row, col]
            for (variant, cell_depth), group in grouped.items():
                if cell_depth != depth:
                    continue
                colour = colours[variant]
                series = [{int(h["epoch"]): float(h[key]) for h in r.results["history"]} for r in group]
                for values in series:
                    ax.plot(list(values), list(values.values()), color=colour, linewidth=0.8, alpha=0.4)
                common = sorted(set.intersection(*(set(values) for values in series)))  # epochs all seeds validated
                ax.plot(common, [np.mean([values[e] for values in series]) for e in common], color=colour,
                        linewidth=2.4, marker="o", markersize=3, label=f"{variant} (n={len(group)})")
            ax.set_title(f"{depth} layers", fontsize=10)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            _label(ax, "epoch", label)
        axes[0, 0].legend(fontsize=8)
    fig.savefig(out, format="png")
    return out


def score_vs_depth_figure(rows: list[dict[str, Any]], out: Path) -> Path:
    """Final val Dice and V_rand against depth, a line per variant, error bars the std over seeds."""
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    colours = _colours(variants)
    fig, axes = _figure(1, 2, 4.5, 3.6)
    depths = sorted({row["depth"] for row in rows})
    # depths sit at even spacing (26 and 140 layers alike), each variant nudged sideways so error bars stay apart
    dodge = {variant: 0.08 * (i - (len(variants) - 1) / 2) for i, variant in enumerate(variants)}
    for ax, (name, label) in zip(axes[0], (("final_val_dice", "final val Dice"),
                                           ("final_val_vrand", "final V_rand")), strict=True):
        for variant in variants:
            mine = [row for row in rows if row["variant"] == variant]
            ax.errorbar([depths.index(row["depth"]) + dodge[variant] for row in mine],
                        [row[f"{name}_mean"] for row in mine], yerr=[row[f"{name}_std"] or 0.0 for row in mine],
                        color=colours[variant], marker="o", capsize=3, linewidth=1.6, label=variant)
        ax.set_xticks(range(len(depths)), [str(d) for d in depths])
        ax.set_xlim(-0.5, len(depths) - 0.5)
        _label(ax, "depth (layers)", label)
    axes[0, 0].legend(fontsize=8)
    fig.savefig(out, format="png")
    return out


def gradflow_panels(runs: list[Run], measure: str) -> tuple[list[list[Path | None]], list[list[str]], list[str]]:
    """A grid of run folders (rows: depths, columns: variants), the lowest seed with gradflow data per cell.

    Returns the grid, its titles and notes on runs skipped for lack of gradflow data.
    """
    grouped = cells(runs)
    variants = list(dict.fromkeys(variant for variant, _ in grouped))
    depths = sorted({depth for _, depth in grouped})
    grid: list[list[Path | None]] = [[None] * len(variants) for _ in depths]
    titles = [[""] * len(variants) for _ in depths]
    notes = []
    for (variant, depth), group in grouped.items():
        for run in group:  # lowest seed first
            path = run.folder / NPZ
            if not path.is_file():
                notes.append(f"{run.folder.name} has no {NPZ}; left out of the gradient-flow figure.")
                continue
            try:
                empty = not load_arrays(path)[measure].size
            except (OSError, ValueError, KeyError) as err:
                notes.append(f"{path} is unreadable ({type(err).__name__}); left out of the gradient-flow figure.")
                continue
            if empty:
                notes.append(f"{path} holds no {measure}; left out of the gradient-flow figure.")
                continue
            i, j = depths.index(depth), variants.index(variant)
            grid[i][j] = run.folder
            titles[i][j] = f"{variant}, {depth} layers (seed {run.seed})"
            break
    return grid, titles, notes


# ---- TensorBoard HParams ------------------------------------------------------------------------------


def _domains(runs: list[Run]) -> dict[str, list[Any]]:
    """Each hparam's values over all runs, so every session declares the same experiment (checkboxes in the UI)."""
    values: dict[str, set] = {}
    for run in runs:
        for key, value in run.hparams().items():
            values.setdefault(key, set()).add(value)
    domains = {}
    for key, seen in values.items():
        if len({type(v) for v in seen}) == 1:  # torch wants every domain value of the hparam's own type
            domains[key] = sorted(seen, key=variant_key) if key == "variant" else sorted(seen)
    return domains


def write_hparams(runs: list[Run], out: Path) -> list[Path]:
    """One HParams session per run under ``out/<run folder name>/``: the three hparams summaries plus the metrics
    as scalars with the same tags (what ``SummaryWriter.add_hparams`` does, without its timestamped subfolder).
    """
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    for stale in out.glob("*/events.out.tfevents.*"):  # a re-run must not add a second session per run
        stale.unlink()
    domains = _domains(runs)
    written = []
    for run in runs:
        hparam_dict, metric_dict = run.hparams(), run.metrics()
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


# ---- the report ---------------------------------------------------------------------------------------


@dataclass
class Report:
    """What ``write_report`` wrote: the table rows, the sweep read, and the output paths."""

    sweep: Sweep
    rows: list[dict[str, Any]]
    markdown_table: str
    paths: dict[str, Path]


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".skipexp-report.tmp"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"--out {out} cannot be written ({err.strerror or type(err).__name__}); "
                        "pick a writable folder with --out DIR.") from err


def _markdown(report_rows: list[dict[str, Any]], table: str, sweep: Sweep, target: float, measure: str,
              figures: dict[str, Path]) -> str:
    lines = [f"# Ablation report: {sweep.root}", "",
             f"{len(sweep.runs)} complete training runs in {len(report_rows)} cells "
             f"({len(sweep.left_out)} left out). Mean ± sample std over seeds; target Dice {target:g}; "
             f"epochs to target: mean over the seeds that reached it (reached/seeds).", "", table, ""]
    if figures:
        lines += ["## Figures", ""]
        captions = {"curves": "validation curves", "gradflow": f"gradient flow ({MEASURES[measure][2]})",
                    "score_vs_depth": "final scores against depth"}
        lines += [f"![{captions[key]}]({path.name})" for key, path in figures.items()] + [""]
    lines += ["## Runs left out", ""]
    lines += [f"- `{item.folder.name}`: {item.reason}" for item in sweep.left_out] or ["None."]
    if sweep.notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in sweep.notes)]
    return "\n".join(lines) + "\n"


def write_report(sweep_dir: Path, out: Path | None = None, target: float = 0.75,
                 measure: str = "grad_norm") -> Report:
    """Read the sweep and write the tables, figures and HParams sessions into ``out`` (default SWEEP_DIR/report)."""
    if not 0.0 < target <= 1.0:
        raise UserError(f"--target-dice {target:g} is outside (0, 1]; give a Dice score such as 0.75.")
    if measure not in MEASURES:
        raise UserError(f"--measure {measure} is not one of {', '.join(MEASURES)}.")
    sweep = collect_runs(sweep_dir)
    if not sweep.runs:
        reasons = "; ".join(f"{item.folder.name}: {item.reason}" for item in sweep.left_out[:3])
        raise UserError(f"SWEEP_DIR {sweep_dir} holds no complete training run ({len(sweep.left_out)} left out, "
                        f"e.g. {reasons}); wait for the sweep to finish or give another folder.")
    out = out if out is not None else sweep_dir / "report"
    _check_writable(out)
    rows = ablation_rows(sweep.runs, target)
    sweep.notes += cell_notes(sweep.runs)
    figures = {"curves": curves_figure(sweep.runs, out / "curves.png")}
    grid, titles, grad_notes = gradflow_panels(sweep.runs, measure)
    sweep.notes += grad_notes
    if any(cell is not None for row in grid for cell in row):
        from skipexp.plot import gradflow_grid

        figures["gradflow"] = gradflow_grid(grid, measure, out / "gradflow.png", titles)
    else:
        sweep.notes.append(f"no run holds {measure} gradient-flow data; gradflow.png was not drawn.")
    figures["score_vs_depth"] = score_vs_depth_figure(rows, out / "score_vs_depth.png")
    hparams_dir = out / HPARAMS_DIR
    write_hparams(sweep.runs, hparams_dir)
    table = markdown_table(rows, target)
    paths = {"markdown": out / "ablation.md", "csv": out / "ablation.csv", "json": out / "ablation.json",
             **figures, "hparams": hparams_dir}
    paths["markdown"].write_text(_markdown(rows, table, sweep, target, measure, figures))
    write_csv(rows, paths["csv"])
    write_json(paths["json"], {
        "sweep_dir": str(sweep_dir), "target_dice": target, "measure": measure, "columns": COLUMNS, "rows": rows,
        "runs": [run.row(target) for run in sorted(sweep.runs, key=lambda r: (variant_key(r.variant), r.depth,
                                                                              r.seed, r.folder.name))],
        "left_out": [item.row() for item in sweep.left_out], "notes": sweep.notes,
        "files": {key: str(path) for key, path in paths.items()}})
    return Report(sweep, rows, table, paths)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    parser = argparse.ArgumentParser(prog="skipexp-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR",
                        help="a sweep folder made by `skipexp -m ...` (or a folder of runs such as outputs/runs)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="folder to write into (default SWEEP_DIR/report)")
    parser.add_argument("--target-dice", type=float, default=0.75, metavar="DICE",
                        help="val Dice whose first reaching epoch the table reports; default %(default)s")
    parser.add_argument("--measure", default="grad_norm", choices=list(MEASURES),
                        help="gradient-flow heat map: grad_norm (per logged step) or update_mean (per epoch); "
                             "default %(default)s")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.sweep_dir, args.out, args.target_dice, args.measure)
    except UserError as err:
        print(f"skipexp-report: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(report.markdown_table)
    for item in report.sweep.left_out:
        print(f"skipexp-report: left out {item.folder.name}: {item.reason}", file=sys.stderr)
    for note in report.sweep.notes:
        print(f"skipexp-report: note: {note}", file=sys.stderr)
    print()
    for key, path in report.paths.items():
        print(f"{key}: {path}")


if __name__ == "__main__":
    main()
