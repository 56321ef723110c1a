"""The ablation table: one row per (variant, depth), the mean over seeds with its 95% t-interval (and the sample
std), as Markdown and CSV; and the paired comparisons of the paper's questions."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from skipexp.files import write_text
from skipexp.report.collect import Run
from skipexp.report.stats import COMPARISONS, Paired, adjusted_p, describe, paired, t_interval
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
COLUMNS = ["variant", "depth", "n_seeds", "params", "precision", "converged",
           *(f"{name}_{stat}" for name, _, _ in SCORES for stat in ("mean", "std", "ci_low", "ci_high")),
           "epochs_to_target_mean", "epochs_to_target_reached", "wall_s_mean", "wall_s_std"]
# the scores the paired comparisons test (label, results.json part, key)
COMPARED = (("final V_rand", "final", "val_vrand"), ("final V_info", "final", "val_vinfo"),
            ("final val Dice", "final", "val_dice"))
COMPARISON_COLUMNS = ["depth", "metric", "a", "b", "n_pairs", "seeds", "difference_mean", "ci_low", "ci_high",
                      "p_value", "q_value", "significant"]
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
        precisions = sorted({str(r.results.get("precision", "?")) for r in group})
        row: dict[str, Any] = {"variant": variant, "depth": depth, "n_seeds": len(group),
                               "params": params[0] if len(params) == 1 else (params or None),
                               "precision": " / ".join(precisions), "converged": sum(r.converged for r in group)}
        for name, part, key in SCORES:
            values = [float(r.results[part][key]) for r in group]
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
            interval = t_interval(values)
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = interval.low, interval.high
        reached = [epochs for r in group if (epochs := r.epochs_to(target)) is not None]
        row["epochs_to_target_mean"] = mean_std(reached)[0]
        row["epochs_to_target_reached"] = len(reached)
        row["wall_s_mean"], row["wall_s_std"] = mean_std([float(r.results["wall_s"]) for r in group])
        rows.append(row)
    return rows


def comparisons(runs: list[Run]) -> list[tuple[int, str, Paired]]:
    """The paper's comparisons at each depth, paired by seed, for each score of ``COMPARED``: a list of
    (depth, metric label, Paired)."""
    grouped = cells(runs)
    out = []
    for depth in sorted({d for _, d in grouped}):
        for a, b in COMPARISONS:
            if (a, depth) not in grouped or (b, depth) not in grouped:
                continue
            for label, part, key in COMPARED:
                by_seed = {v: {r.seed: float(r.results[part][key]) for r in grouped[(v, depth)]} for v in (a, b)}
                out.append((depth, label, paired(a, b, by_seed[a], by_seed[b])))
    return out


def q_values(found: list[tuple[int, str, Paired]]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values over all the comparisons that have a p (``adjusted_p``)."""
    return adjusted_p([c.p_value for _, _, c in found])


def comparison_rows(found: list[tuple[int, str, Paired]]) -> list[dict[str, Any]]:
    """The comparisons as plain rows (``COMPARISON_COLUMNS``) for the CSV and JSON."""
    rows = []
    for (depth, label, c), q in zip(found, q_values(found), strict=True):
        rows.append({"depth": depth, "metric": label, "a": c.a, "b": c.b, "n_pairs": len(c.seeds),
                     "seeds": list(c.seeds), "difference_mean": c.interval.mean if c.interval else None,
                     "ci_low": c.interval.low if c.interval else None,
                     "ci_high": c.interval.high if c.interval else None, "p_value": c.p_value,
                     "q_value": q, "significant": c.significant})
    return rows


def comparison_markdown(found: list[tuple[int, str, Paired]]) -> str:
    """The comparisons as a table, then in words: the significant differences first, then the rest."""
    if not found:
        return "No cell pair of the paper's comparisons (both vs long_only, short_only, none) at one depth."
    lines = ["| depth | score | comparison | seeds | difference | 95% CI | p (paired t) | q (BH) |",
             "|---:|---|---|---:|---:|---|---:|---:|"]
    qs = q_values(found)
    for (depth, label, c), q in zip(found, qs, strict=True):
        i = c.interval
        ci = "–" if i is None or i.low is None else f"{i.low:+.3f} to {i.high:+.3f}"
        p = "–" if c.p_value is None else f"{c.p_value:.3g}" + (" *" if c.significant else "")
        diff = "–" if i is None else f"{i.mean:+.3f}"
        lines.append(f"| {depth} | {label} | {c.a} − {c.b} | {len(c.seeds)} | {diff} | {ci} | {p} | "
                     f"{'–' if q is None else f'{q:.3g}'} |")
    strong = [describe(c, label, depth) for depth, label, c in found if c.significant]
    weak = [describe(c, label, depth) for depth, label, c in found if not c.significant]
    tested = sum(q is not None for q in qs)
    lines += ["", rf"\* p < 0.05. {tested} tests at 0.05 would give about {0.05 * tested:.1f} false positives if no "
              "variant differed from another; q is the Benjamini-Hochberg adjusted p over all of them (false "
              "discovery rate), the stricter reading.", "", "**Significant at 0.05:**", "",
              *([f"- {s}" for s in strong] or ["- none."]), "", "**Not significant (no claim can be made):**", "",
              *([f"- {s}" for s in weak] or ["- none."])]
    return "\n".join(lines)


def unconverged_notes(runs: list[Run]) -> list[str]:
    """A line per run whose val Dice was still rising when it ended (its scores understate the variant)."""
    notes = []
    for run in sorted(runs, key=run_key):
        if run.converged:
            continue
        verdict = run.results.get("converged") or {}
        why = verdict.get("why") or "val Dice still rising over its last validations"
        ended = f", ended by its {run.results['stopped_by']}" if run.results.get("stopped_by") else ""
        notes.append(f"{run.folder.name} had not converged ({why}{ended}).")
    return notes


NO_LEARNING_DICE = 0.1  # a run whose val Dice never passed this predicts (nearly) one class everywhere


def no_learning_notes(runs: list[Run]) -> list[str]:
    """A line per run that never learned to segment: its best val Dice stayed under ``NO_LEARNING_DICE``, so its
    flat curve counts as converged by the rule but means that training failed, not that it finished."""
    notes = []
    for run in sorted(runs, key=run_key):
        history = run.results["history"]
        best = max(h["val_dice"] for h in history)
        if best < NO_LEARNING_DICE:
            last = history[-1]
            notes.append(f"{run.folder.name} never learned to segment: its best val Dice was {best:.3f} (final "
                         f"V_rand {last['val_vrand']:.3f}), it predicts (nearly) one class everywhere; its flat curve "
                         "counts as converged, but the training failed.")
    return notes


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
    simple = {r.depth: r.results.get("n_simple_blocks") for r in runs}
    if len(set(simple.values())) > 1:
        shown = ", ".join(f"{depth} layers: {n}" for depth, n in sorted(simple.items()))
        notes.append(f"the depths differ in simple blocks per side too ({shown}), not only in bottleneck blocks; "
                     "pin model.n_simple_blocks=1 (every depth of 3k + 2 layers) to compare depth alone.")
    precisions = {str(r.results.get("precision")) for r in runs}
    if len(precisions) > 1:
        notes.append(f"the runs mix precisions ({', '.join(sorted(precisions))}); pin trainer.precision to compare "
                     "like with like.")
    return notes


def _fmt(mean: float | None, std: float | None, digits: int = 3) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _fmt_ci(mean: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    """``mean [low, high]``; the mean alone for one seed."""
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if low is None else f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


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
    """The ablation table as a Markdown pipe table, scores as ``mean [95% CI]``."""
    header = ["variant", "depth", "seeds", "params", "precision", "converged", *MARKDOWN_HEADER.values(),
              f"epochs to Dice ≥ {target:g}", "wall time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 1 else "---:" for i in range(len(header)))
             + "|"]
    for row in rows:
        reached = f"{row['epochs_to_target_reached']}/{row['n_seeds']}"
        epochs = row["epochs_to_target_mean"]
        cells_ = [row["variant"], str(row["depth"]), str(row["n_seeds"]), _fmt_params(row["params"]),
                  row["precision"], f"{row['converged']}/{row['n_seeds']}",
                  *(_fmt_ci(row[f"{name}_mean"], row[f"{name}_ci_low"], row[f"{name}_ci_high"])
                    for name in MARKDOWN_HEADER),
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


def write_csv(rows: list[dict[str, Any]], path: Path, columns: list[str] = COLUMNS) -> Path:
    """One header row, then plain numbers (mean, std and interval in separate columns; missing values empty)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row[key]) for key in columns})
    return write_text(path, text.getvalue())
