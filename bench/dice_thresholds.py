"""Dice at each threshold for budget runs of skipexp and of MONAI's UNet, and where each misses: what is a Dice lead?

A run's Dice (results.json's ``val_dice``) thresholds its membrane probabilities at 0.5. Two networks whose
maps are calibrated differently can differ there and not elsewhere. This script scores each run's
``checkpoints/last.pt`` again on its own held-out slices, without flips, at thresholds 0.30-0.70. It
prints each run's Dice at every threshold and its best threshold, the mean of each side, and skipexp
minus MONAI with the p-value of Welch's t-test at each threshold. A second table says, at 0.5, where the
errors lie: precision and recall, the membrane pixels missed by their distance to the nearest cell pixel
(1 px: a membrane's edge; more than 2 px: inside a membrane band wider than about 4 px), and the false
membrane pixels by their distance to the nearest labelled membrane, with the same means and tests. Each run
is rebuilt from the config in its checkpoint; the data are read as that config says, so set
``SKIPEXP_DATA`` (or the run's ``dataset.root``) as for the run itself::

    python bench/dice_thresholds.py --skipexp outputs/budget/amx_b20_seed{0,1,2} \\
        --monai outputs/budget/monai_amx_b20_seed{0,1,2}

``--tile 256 --overlap 128`` predicts each slice in tiles of the training crop, blended as ``predict.tile``
does, so that every norm sees an image of the size it was trained on (the recorded Dice is then not
reproduced, and not checked).

MONAI's runs need MONAI installed (``pip install -e '.[baseline]'``), as ``bench/monai_baseline.py`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from scipy import ndimage, stats

from skipexp.build import build_network, saved_config
from skipexp.checkpoint import load_checkpoint
from skipexp.data import build_data, data_spec
from skipexp.errors import UserError
from skipexp.evaluate import Inference, membrane_probability
from skipexp.metrics import dice
from skipexp.runtime import Runtime

sys.path.insert(0, str(Path(__file__).parent))
from monai_baseline import saved_unet  # bench/monai_baseline.py, beside this script

THRESHOLDS = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70)
BANDS = ("1 px", "2 px", "more")  # an error pixel's distance to the other class: 1, 2, more than 2 pixels
WHOLE = Inference()  # each slice predicted whole, without flips, as a run validates
ERRORS = ("precision", "recall", *(f"missed, {b} in" for b in BANDS), *(f"false, {b} out" for b in BANDS))


def fail(message: str) -> NoReturn:
    """Refuse in one sentence on stderr, exit status 2 (a folder or value the user gave)."""
    print(f"bench/dice_thresholds.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def finished_run(run: Path) -> tuple[dict, float, dict]:
    """The run folder's results.json, the Dice its final validation recorded, and its ``checkpoints/last.pt``;
    or ``fail`` naming the folder."""
    try:
        results = json.loads((run / "results.json").read_text())
        recorded = float(results["final"]["val_dice"])
        return results, recorded, load_checkpoint(run / "checkpoints" / "last.pt")
    except (OSError, ValueError, KeyError, TypeError) as err:  # a UserError is a ValueError
        fail(f"{run} is not the folder of a finished run ({type(err).__name__}: {err}); give the run folders of "
             "finished budget runs.")


def error_bands(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Counts over the valid pixels of one slice (H x W boolean maps): true positives, then the missed membrane
    pixels by their distance to the nearest cell pixel (1, 2, more than 2), then the false membrane pixels by
    their distance to the nearest labelled membrane pixel (the same bands). Distances are Euclidean, measured
    on the whole slice."""
    inside = ndimage.distance_transform_edt(truth)  # a membrane pixel's distance to the nearest cell pixel
    outside = ndimage.distance_transform_edt(~truth)  # a cell pixel's distance to the nearest membrane pixel
    missed, false = inside[~pred & truth & valid], outside[pred & ~truth & valid]
    return np.array([(pred & truth & valid).sum(), *distance_bands(missed), *distance_bands(false)])


def distance_bands(distances: np.ndarray) -> list[int]:
    """How many of ``distances`` are 1, up to 2, and more than 2 (``BANDS``)."""
    return [int((distances <= 1).sum()), int(((distances > 1) & (distances <= 2)).sum()), int((distances > 2).sum())]


def error_row(counts: np.ndarray) -> list[float]:
    """``ERRORS``' values from the summed ``error_bands`` counts: precision, recall, then the six band counts."""
    true_pos, missed, false = counts[0], counts[1:4], counts[4:7]
    return [true_pos / (true_pos + false.sum()), true_pos / (true_pos + missed.sum()), *missed, *false]


def run_dice(run: Path, inference: Inference = WHOLE) -> dict:
    """The run's Dice of the membrane at each of ``THRESHOLDS``, pooled over the valid pixels of its held-out
    slices (as results.json's ``val_dice`` at 0.5), and its ``ERRORS`` at 0.5, from its ``checkpoints/last.pt``,
    each slice predicted as ``inference`` says."""
    results, recorded, state = finished_run(run)
    config = saved_config(state)
    spec = data_spec(config.dataset)
    runtime = Runtime.from_config(config.trainer)  # the run's own precision, memory format and module swaps
    if results.get("model") == "monai_unet":
        model = runtime.prepare(saved_unet(spec.in_channels, results))
    else:
        model = build_network(config.model, config.depth, spec.in_channels, runtime)
    model.load_state_dict(state["model"])
    try:
        val = build_data(spec).val
    except UserError as err:  # the data the run read are not where its config says, here
        fail(f"{run}: {err}")
    probs, truths, counts = [], [], np.zeros(7, dtype=np.int64)
    for index in range(len(val)):
        sample = val[index]
        valid = sample["valid"][0].numpy() > 0.5
        truth = sample["label"][0].numpy() > 0.5
        prob = membrane_probability(model, sample["image"], runtime, inference)
        probs.append(prob[valid])
        truths.append(truth[valid])
        counts += error_bands(prob > 0.5, truth, valid)
    prob, truth = np.concatenate(probs), np.concatenate(truths)
    return {"run": run.name, "recorded": recorded,
            "dice": [dice(prob > t, truth) for t in THRESHOLDS], "errors": error_row(counts)}


def comparison(head: list[str], ours: list[dict], theirs: list[dict], key: str, cell, extra=None) -> str:
    """A markdown table of each run's ``key`` values (``cell(value, column, sign)`` formats one), then the
    ``extra(values)`` column where given; each side's mean; and, with two runs or more a side, skipexp minus
    MONAI and Welch's p."""
    def line(name: str, cells: list[str], last: str = "") -> str:
        tail = (f" | {last} |" if last else " | |") if extra else " |"  # the extra column: a run's value, else empty
        return "| " + " | ".join([name, *cells]) + tail

    def row(name: str, values, sign: bool = False, last: str = "") -> str:
        return line(name, [cell(v, j, sign) for j, v in enumerate(values)], last)

    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    lines += [row(r["run"], r[key], last=extra(r[key]) if extra else "") for r in (*ours, *theirs)]
    sides = [(name, np.array([r[key] for r in rows], dtype=float))
             for name, rows in (("skipexp", ours), ("MONAI", theirs)) if rows]
    lines += [row(f"**{name}, mean**", values.mean(axis=0)) for name, values in sides]
    if len(sides) == 2 and min(len(ours), len(theirs)) >= 2:
        a, b = sides[0][1], sides[1][1]
        p = stats.ttest_ind(a, b, axis=0, equal_var=False).pvalue
        lines.append(row("skipexp - MONAI", a.mean(axis=0) - b.mean(axis=0), sign=True))
        lines.append(line("p (Welch)", [f"{x:.2g}" for x in p]))
    return "\n".join(lines)


def table(ours: list[dict], theirs: list[dict]) -> str:
    """Dice at each threshold: a row per run with its best threshold, each side's mean, their difference and p."""
    def best(values: list[float]) -> str:
        i = int(np.argmax(values))
        return f"{values[i]:.4f} at {THRESHOLDS[i]:.2f}"

    return comparison(["run", *(f"{t:.2f}" for t in THRESHOLDS), "best"], ours, theirs, "dice",
                      lambda v, _, sign=False: f"{v:+.4f}" if sign else f"{v:.4f}", best)


def errors_table(ours: list[dict], theirs: list[dict]) -> str:
    """Where each run errs at 0.5 (``ERRORS``): fractions to 4 places, pixel counts whole, means and p as above."""
    def cell(v: float, column: int, sign: bool = False) -> str:
        kind = ".4f" if column < 2 else ",.0f"  # precision and recall, then pixel counts
        return f"{v:{'+' if sign else ''}{kind}}"

    return comparison(["run", *ERRORS], ours, theirs, "errors", cell)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skipexp", type=Path, nargs="+", required=True, help="skipexp run folders")
    parser.add_argument("--monai", type=Path, nargs="*", default=[], help="bench/monai_baseline.py run folders")
    parser.add_argument("--tile", type=int, default=0, help="predict in tiles of this size (default: whole slices)")
    parser.add_argument("--overlap", type=int, default=0, help="the tiles' overlap, blended (default %(default)s)")
    args = parser.parse_args()
    if args.tile < 0 or args.overlap < 0 or (args.tile and args.overlap >= args.tile):
        fail(f"--tile {args.tile} --overlap {args.overlap} is not a tiling; give a tile size above 0 and an "
             "overlap below it, e.g. --tile 256 --overlap 128, or neither for whole slices.")
    inference = Inference(args.tile, args.overlap)
    torch.set_grad_enabled(False)
    ours = [run_dice(run, inference) for run in args.skipexp]
    theirs = [run_dice(run, inference) for run in args.monai]
    for r in (*ours, *theirs) if not args.tile else ():  # whole slices must reproduce what the run recorded
        at_half = r["dice"][THRESHOLDS.index(0.50)]
        if abs(at_half - r["recorded"]) > 1e-6:
            print(f"note: {r['run']}: Dice at 0.50 is {at_half:.4f} here, {r['recorded']:.4f} in its results.json "
                  "(another machine's kernels, or not its final weights)", file=sys.stderr)
    print(table(ours, theirs))
    print()
    print(errors_table(ours, theirs))


if __name__ == "__main__":
    main()
