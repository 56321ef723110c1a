"""The console scripts ``skipexp-report`` and ``skipexp-plot``: argument parsing and printing only.

    skipexp-report SWEEP_DIR [--out DIR] [--target-dice 0.75] [--measure grad_norm|grad_rms|update_mean] [--no-hparams]
    skipexp-plot gradflow RUN_DIR... [--measure grad_norm|grad_rms|update_mean] [--out FILE]

A user's mistake (a missing folder, a bad value) is one sentence on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skipexp.errors import exit_on_user_error
from skipexp.report.ablation import write_report
from skipexp.report.figures import MEASURES, gradflow_figure

REPORT_HELP = "the ablation report of a sweep, read from its run folders only (never re-running anything)"
PLOT_HELP = "figures drawn from run folders only (never re-running anything)"


def _measure_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--measure", default="grad_norm", choices=list(MEASURES),
                        help=f"{what}: grad_norm (per logged step) or update_mean (per epoch); default %(default)s")


def report_main(argv: list[str] | None = None) -> None:
    """``skipexp-report``: write the report, print its table, what was left out, notes and the files written."""
    parser = argparse.ArgumentParser(prog="skipexp-report", description=REPORT_HELP)
    parser.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR",
                        help="a sweep folder made by `skipexp -m ...` (or a folder of runs such as outputs/runs)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="folder to write into (default SWEEP_DIR/report; e.g. docs/ablation for the docs' page)")
    parser.add_argument("--target-dice", type=float, default=0.75, metavar="DICE",
                        help="val Dice whose first reaching epoch the table reports; default %(default)s")
    _measure_option(parser, "gradient-flow heat map")
    parser.add_argument("--no-hparams", dest="hparams", action="store_false",
                        help="skip the TensorBoard HParams sessions (e.g. when writing the page into docs/)")
    args = parser.parse_args(argv)
    with exit_on_user_error("skipexp-report"):
        report = write_report(args.sweep_dir, args.out, args.target_dice, args.measure, args.hparams)
    print(report.markdown_table)
    for item in report.sweep.left_out:
        print(f"skipexp-report: left out {item.folder.name}: {item.reason}", file=sys.stderr)
    for note in report.sweep.notes:
        print(f"skipexp-report: note: {note}", file=sys.stderr)
    print()
    for key, path in report.paths.items():
        print(f"{key}: {path}")


def plot_main(argv: list[str] | None = None) -> None:
    """``skipexp-plot gradflow RUN_DIR...``: several runs' gradient-flow heat maps side by side, one colour scale."""
    parser = argparse.ArgumentParser(prog="skipexp-plot", description=PLOT_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    grad = sub.add_parser("gradflow", help="gradient-flow heat maps of several runs side by side")
    grad.add_argument("runs", nargs="+", type=Path, help="run folders (each with gradflow.npz)")
    _measure_option(grad, "the measure drawn")
    grad.add_argument("--out", type=Path, default=Path("gradflow_compare.png"), help="PNG to write")
    args = parser.parse_args(argv)
    with exit_on_user_error("skipexp-plot"):
        print(gradflow_figure(args.runs, args.measure, args.out))
