"""``write_report``: read a sweep, then write its table (Markdown, CSV, JSON), figures and HParams into one folder.

The Markdown page links its figures relative to itself, so the folder can be
moved or written straight into the docs (``--out docs/ablation``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skipexp.errors import UserError
from skipexp.files import write_json, write_text
from skipexp.report.collect import Sweep, collect_runs, sweep_command
from skipexp.report.figures import MEASURES, check_measure, report_figures
from skipexp.report.hparams import HPARAMS_DIR, write_hparams
from skipexp.report.tables import (
    COLUMNS,
    COMPARISON_COLUMNS,
    ablation_rows,
    cell_notes,
    comparison_markdown,
    comparison_rows,
    comparisons,
    markdown_table,
    no_learning_notes,
    run_key,
    unconverged_notes,
    write_csv,
)

# optimizer.weight_decay_on, in the page's words
DECAYED = {"kernels": "the conv kernels only", "all": "every parameter (norm weights and biases too)"}
CAPTIONS = {"curves": "validation and training curves (band: 95% t-interval over seeds)",
            "gradflow": "gradient flow ({})", "gradflow_update_mean": "the paper's figure: mean |weight update| per "
            "layer and epoch", "gradflow_grad_rms": "gradient RMS per weight (layer size removed)",
            "score_vs_depth": "final scores against depth (95% t-intervals)",
            "predictions": "the same validation slice predicted by each variant, and its errors"}


@dataclass
class Report:
    """What ``write_report`` wrote: the table rows, the sweep read, and the output paths."""

    sweep: Sweep
    rows: list[dict[str, Any]]
    markdown_table: str
    paths: dict[str, Path]


def _check_writable(out: Path) -> None:
    """Fail before any drawing when ``out`` cannot take files (the probe is an unnamed temporary file)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise UserError(f"--out {out} cannot be written ({err.strerror or type(err).__name__}); "
                        "pick a writable folder with --out DIR.") from err


def _link(path: Path, page: Path) -> str:
    """``path`` as the Markdown page at ``page`` links it: relative to the page's folder, with forward slashes."""
    return Path(os.path.relpath(path, page.parent)).as_posix()


def _markdown(page: Path, table: str, sweep: Sweep, n_cells: int, target: float, measure: str,
              figures: dict[str, Path], made_by: str, compared: str, unconverged: list[str]) -> str:
    kinds = sorted({f"{r.results.get('precision', '?')} on {r.results.get('device', '?')}, "
                    + (f"compiled ({r.compile_mode})" if r.compile_mode else "eager") + ", weight decay on "
                    + DECAYED.get(r.weight_decay_on, r.weight_decay_on) for r in sweep.runs})
    made = sweep_command(sweep.root)
    lines = [f"# Ablation report: {sweep.root}", "",
             f"{len(sweep.runs)} complete training runs in {n_cells} cells "
             f"({len(sweep.left_out)} left out). Scores: mean over seeds [95% t-interval, n − 1 degrees of "
             f"freedom]; converged: runs whose val Dice had stopped rising (best of the last 3 validations within "
             f"0.005 of the best before them); target Dice {target:g}; epochs to target: mean over the seeds that "
             f"reached it (reached/seeds). Runs in {'; '.join(kinds)}.",
             "", "Made by:", "", "```sh", made or "# (the sweep's multirun.yaml is missing)", made_by, "```", "",
             table, "", "## The paper's comparisons, paired by seed", "", compared, ""]
    if unconverged:
        lines += ["## Runs that had not converged", "",
                  f"{len(unconverged)} of {len(sweep.runs)} runs; their scores understate what the variant reaches.",
                  "", *(f"- {note}" for note in unconverged), ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{CAPTIONS[key].format(MEASURES[measure][2])}]({_link(path, page)})"
                  for key, path in figures.items()] + [""]
    lines += ["## Runs left out", ""]
    lines += [f"- `{item.folder.name}`: {item.reason}" for item in sweep.left_out] or ["None."]
    if sweep.notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in sweep.notes)]
    return "\n".join(lines) + "\n"


def write_report(sweep_dir: Path, out: Path | None = None, target: float = 0.75, measure: str = "grad_norm",
                 hparams: bool = True) -> Report:
    """Read the sweep and write the tables, figures and (unless ``hparams`` is False) HParams sessions into
    ``out`` (default SWEEP_DIR/report)."""
    if not 0.0 < target <= 1.0:
        raise UserError(f"--target-dice {target:g} is outside (0, 1]; give a Dice score such as 0.75.")
    check_measure(measure)
    sweep = collect_runs(sweep_dir)
    if not sweep.runs:
        reasons = "; ".join(f"{item.folder.name}: {item.reason}" for item in sweep.left_out[:3])
        raise UserError(f"SWEEP_DIR {sweep_dir} holds no complete training run ({len(sweep.left_out)} left out, "
                        f"e.g. {reasons}); wait for the sweep to finish or give another folder.")
    out = out if out is not None else sweep_dir / "report"
    _check_writable(out)
    rows = ablation_rows(sweep.runs, target)
    sweep.notes += cell_notes(sweep.runs) + no_learning_notes(sweep.runs)
    figures, notes = report_figures(sweep.runs, rows, measure, out)
    sweep.notes += notes
    paths = {"markdown": out / "ablation.md", "csv": out / "ablation.csv", "json": out / "ablation.json", **figures}
    if hparams:
        paths["hparams"] = out / HPARAMS_DIR
        write_hparams(sweep.runs, paths["hparams"])
    table = markdown_table(rows, target)
    found = comparisons(sweep.runs)
    paths["comparisons_csv"] = out / "ablation_comparisons.csv"
    options = ["--target-dice", f"{target:g}", *(["--measure", measure] if measure != "grad_norm" else []),
               *([] if hparams else ["--no-hparams"])]
    made_by = " ".join(["skipexp-report", str(sweep_dir), "--out", str(out), *options])
    write_text(paths["markdown"], _markdown(paths["markdown"], table, sweep, len(rows), target, measure, figures,
                                            made_by, comparison_markdown(found), unconverged_notes(sweep.runs)))
    write_csv(rows, paths["csv"])
    found_rows = comparison_rows(found)
    write_csv(found_rows, paths["comparisons_csv"], COMPARISON_COLUMNS)
    write_json(paths["json"], {
        "sweep_dir": str(sweep_dir), "target_dice": target, "measure": measure, "columns": COLUMNS, "rows": rows,
        "comparisons": found_rows,
        "runs": [run.row(target) for run in sorted(sweep.runs, key=run_key)],
        "left_out": [item.row() for item in sweep.left_out], "notes": sweep.notes,
        "files": {key: str(path) for key, path in paths.items()}})
    return Report(sweep, rows, table, paths)
