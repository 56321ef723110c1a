"""``skipexp-plot``: figures drawn from run folders only (never re-running anything).

    skipexp-plot gradflow RUN_DIR... [--measure grad_norm|update_mean] [--out FILE]

draws the gradient-flow heat maps of several runs side by side on one shared
log colour scale, the figure the paper uses to compare the skip variants.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from skipexp.errors import UserError
from skipexp.gradflow import MEASURES, NPZ, color_range, draw_heatmap, load_arrays
from skipexp.rundir import RESULTS


def run_title(run_dir: Path) -> str:
    """``<variant>, <layers> layers`` from results.json, else the folder name."""
    try:
        results = json.loads((run_dir / RESULTS).read_text())
        return f"{results['model']}, {results['depth_layers']} layers"
    except (OSError, ValueError, KeyError):
        return run_dir.name


def gradflow_figure(run_dirs: list[Path], measure: str, out: Path) -> Path:
    """Side-by-side heat maps of ``measure`` for ``run_dirs``, one shared colour scale, saved as PNG."""
    return gradflow_grid([list(run_dirs)], measure, out)


def gradflow_grid(grid: list[list[Path | None]], measure: str, out: Path,
                  titles: list[list[str]] | None = None) -> Path:
    """Heat maps of ``measure`` in rows x columns of run folders (None: an empty panel), saved as PNG.

    All panels share one log colour scale, so a variant whose gradients vanish
    reads as darker than the others at a glance. ``titles`` (same shape as
    ``grid``) default to ``<variant>, <layers> layers`` from each results.json.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if measure not in MEASURES:
        raise UserError(f"--measure {measure} is not one of {', '.join(MEASURES)}.")
    n_cols = max((len(row) for row in grid), default=0)
    if not n_cols or all(run_dir is None for row in grid for run_dir in row):
        raise UserError("no run folders to draw; give at least one run folder with gradflow.npz.")
    arrays: dict[tuple[int, int], dict] = {}
    for i, row in enumerate(grid):
        for j, run_dir in enumerate(row):
            if run_dir is None:
                continue
            path = run_dir / NPZ
            if not path.is_file():
                raise UserError(f"{path} does not exist; give run folders of runs trained with gradflow.enabled=true.")
            data = load_arrays(path)
            if not data[measure].size:
                raise UserError(f"{path} holds no {measure} yet; let the run record at least one "
                                f"{MEASURES[measure][1]}.")
            arrays[i, j] = data
    vrange = color_range(list(arrays.values()), measure)
    fig = Figure(figsize=(3.2 * n_cols + 1.2, 6 * len(grid)), dpi=100, layout="constrained")
    axes = fig.subplots(len(grid), n_cols, squeeze=False)
    image = None
    for (i, j), ax in ((ij, axes[ij]) for ij in np.ndindex(axes.shape)):
        if (i, j) not in arrays:
            ax.set_axis_off()
            continue
        title = titles[i][j] if titles else run_title(grid[i][j])
        image = draw_heatmap(ax, arrays[i, j], measure, vrange, title)
        if j == 0 or (i, j - 1) not in arrays:
            ax.set_ylabel("layer (input at top)")
    fig.colorbar(image, ax=axes.ravel().tolist(), label=MEASURES[measure][2])
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    parser = argparse.ArgumentParser(prog="skipexp-plot", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    grad = sub.add_parser("gradflow", help="gradient-flow heat maps of several runs side by side")
    grad.add_argument("runs", nargs="+", type=Path, help="run folders (each with gradflow.npz)")
    grad.add_argument("--measure", default="grad_norm", choices=list(MEASURES),
                      help="grad_norm (per logged step) or update_mean (per epoch); default %(default)s")
    grad.add_argument("--out", type=Path, default=Path("gradflow_compare.png"), help="PNG to write")
    args = parser.parse_args(argv)
    try:
        print(gradflow_figure(args.runs, args.measure, args.out))
    except UserError as err:
        print(f"skipexp-plot: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
