"""Dice at each threshold for budget runs of skipexp and of MONAI's UNet: is a Dice lead more than the cut-off?

A run's Dice (results.json's ``val_dice``) thresholds its membrane probabilities at 0.5. Two networks whose
maps are calibrated differently can differ there and not elsewhere. This script scores each run's
``checkpoints/last.pt`` again on its own held-out slices, without flips, at thresholds 0.30-0.70. It
prints each run's Dice at every threshold and its best threshold, the mean of each side, and skipexp
minus MONAI with the p-value of Welch's t-test at each threshold. Each run is rebuilt from the config in its
checkpoint; the data are read as that config says, so set ``SKIPEXP_DATA`` (or the run's
``dataset.root``) as for the run itself::

    python bench/dice_thresholds.py --skipexp outputs/budget/amx_b20_seed{0,1,2} \\
        --monai outputs/budget/monai_amx_b20_seed{0,1,2}

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
from scipy import stats

from skipexp.build import build_network, saved_config
from skipexp.checkpoint import load_checkpoint
from skipexp.data import build_data, data_spec
from skipexp.errors import UserError
from skipexp.evaluate import membrane_probability
from skipexp.metrics import dice
from skipexp.runtime import Runtime

sys.path.insert(0, str(Path(__file__).parent))
from monai_baseline import monai_unet  # bench/monai_baseline.py, beside this script

THRESHOLDS = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70)


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


def run_dice(run: Path) -> dict:
    """The run's Dice of the membrane at each of ``THRESHOLDS``, pooled over the valid pixels of its held-out
    slices (as results.json's ``val_dice`` at 0.5), from its ``checkpoints/last.pt``."""
    results, recorded, state = finished_run(run)
    config = saved_config(state)
    spec = data_spec(config.dataset)
    runtime = Runtime.from_config(config.trainer)  # the run's own precision, memory format and module swaps
    if results.get("model") == "monai_unet":
        model = runtime.prepare(monai_unet(spec.in_channels))
    else:
        model = build_network(config.model, config.depth, spec.in_channels, runtime)
    model.load_state_dict(state["model"])
    try:
        val = build_data(spec).val
    except UserError as err:  # the data the run read are not where its config says, here
        fail(f"{run}: {err}")
    probs, truths = [], []
    for index in range(len(val)):
        sample = val[index]
        valid = sample["valid"][0].numpy() > 0.5
        probs.append(membrane_probability(model, sample["image"], runtime)[valid])
        truths.append(sample["label"][0].numpy()[valid] > 0.5)
    prob, truth = np.concatenate(probs), np.concatenate(truths)
    return {"run": run.name, "recorded": recorded,
            "dice": [dice(prob > t, truth) for t in THRESHOLDS]}


def table(ours: list[dict], theirs: list[dict]) -> str:
    """The markdown table: a row per run, each side's mean, and (with both sides) their difference and p."""
    head = ["run", *(f"{t:.2f}" for t in THRESHOLDS), "best"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for r in (*ours, *theirs):
        best = int(np.argmax(r["dice"]))
        cells = [f"{d:.4f}" for d in r["dice"]]
        lines.append(f"| {r['run']} | " + " | ".join(cells) + f" | {r['dice'][best]:.4f} at {THRESHOLDS[best]:.2f} |")
    sides = [(name, np.array([r["dice"] for r in rows])) for name, rows in (("skipexp", ours), ("MONAI", theirs))
             if rows]
    for name, dices in sides:
        lines.append(f"| **{name}, mean** | " + " | ".join(f"{d:.4f}" for d in dices.mean(axis=0)) + " | |")
    if len(sides) == 2 and min(len(ours), len(theirs)) >= 2:
        a, b = sides[0][1], sides[1][1]
        p = stats.ttest_ind(a, b, axis=0, equal_var=False).pvalue
        lines.append("| skipexp - MONAI | " + " | ".join(f"{d:+.4f}" for d in a.mean(axis=0) - b.mean(axis=0))
                     + " | |")
        lines.append("| p (Welch) | " + " | ".join(f"{x:.2g}" for x in p) + " | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skipexp", type=Path, nargs="+", required=True, help="skipexp run folders")
    parser.add_argument("--monai", type=Path, nargs="*", default=[], help="bench/monai_baseline.py run folders")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    ours, theirs = [run_dice(run) for run in args.skipexp], [run_dice(run) for run in args.monai]
    for r in (*ours, *theirs):  # the threshold-0.5 column must reproduce what the run itself recorded
        at_half = r["dice"][THRESHOLDS.index(0.50)]
        if abs(at_half - r["recorded"]) > 1e-6:
            print(f"note: {r['run']}: Dice at 0.50 is {at_half:.4f} here, {r['recorded']:.4f} in its results.json "
                  "(another machine's kernels, or not its final weights)", file=sys.stderr)
    print(table(ours, theirs))


if __name__ == "__main__":
    main()
