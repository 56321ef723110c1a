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
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if measure not in MEASURES:
        raise UserError(f"--measure {measure} is not one of {', '.join(MEASURES)}.")
    arrays = []
    for run_dir in run_dirs:
        path = run_dir / NPZ
        if not path.is_file():
            raise UserError(f"{path} does not exist; give run folders of runs trained with gradflow.enabled=true.")
        data = load_arrays(path)
        if not data[measure].size:
            raise UserError(f"{path} holds no {measure} yet; let the run record at least one "
                            f"{MEASURES[measure][1]}.")
        arrays.append(data)
    vrange = color_range(arrays, measure)
    fig = Figure(figsize=(3.2 * len(arrays) + 1.2, 6), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(arrays), squeeze=False)[0]
    image = None
    for ax, data, run_dir in zip(axes, arrays, run_dirs, strict=True):
        image = draw_heatmap(ax, data, measure, vrange, run_title(run_dir))
    axes[0].set_ylabel("layer (input at top)")
    fig.colorbar(image, ax=list(axes), label=MEASURES[measure][2])
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
