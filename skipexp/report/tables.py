"""The ablation table: one row per (variant, depth), mean and sample std over seeds, as Markdown and CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from skipexp.files import write_text
from skipexp.report.collect import Run
from skipexp.rundir import VARIANTS

VARIANT_ORDER = VARIANTS
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
# overrides that name a table cell or a seed; any other override differing inside a cell is worth a note
CELL_KEYS = {"model", "model.long_skip", "model.short_skip", "depth", "depth.layers", "trainer.seed", "seed"}


def variant_key(variant: str) -> tuple[int, str]:
    """Sort key: both, long_only, short_only, none, then any other variant alphabetically."""
    return (VARIANT_ORDER.index(variant), "") if variant in VARIANT_ORDER else (len(VARIANT_ORDER), variant)


def run_key(run: Run) -> tuple[Any, ...]:
    """Table order of runs: variant, depth, seed, folder name."""
    return variant_key(run.variant), run.depth, run.seed, run.folder.name


def cells(runs: list[Run]) -> dict[tuple[str, int], list[Run]]:
    """Runs grouped by (variant, depth) in table order, each cell's runs by seed."""
    grouped: dict[tuple[str, int], list[Run]] = {}
    for run in sorted(runs, key=run_key):
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


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """One header row, then plain numbers (mean and std in separate columns; missing values empty)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row[key]) for key in COLUMNS})
    return write_text(path, text.getvalue())
