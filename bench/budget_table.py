"""The side-by-side table of skipexp's budget runs against MONAI's UNet (docs/isbi-cpu.md), from their run folders.

Each skipexp run folder is one `skipexp experiment=isbi_cpu trainer.budget_min=...` run; its with-flips
scores are the newest eval.json under ``--evals`` (default: outputs/runs) whose checkpoint is that run's
last.pt and whose inference averaged the flips. Each MONAI folder is one `bench/monai_baseline.py` run,
whose with-flips scores are its own ``final_tta``. The table prints per run, the mean of each side with the
half-width of its 95% t-interval over seeds, and skipexp minus MONAI with the 95% interval and p-value of
Welch's t-test (the two sides' seeds are not assumed to pair), then the same difference paired by seed
(both networks see the same crops in the same order for a seed)::

    python bench/budget_table.py --skipexp outputs/budget/zen5_b20_seed{0,1,2} \\
        --monai outputs/budget/monai_zen5_b20_seed{0,1,2}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scipy import stats

from skipexp.report.stats import paired, t_interval

METRICS = (("val_vrand", "V_rand"), ("val_vinfo", "V_info"), ("val_dice", "Dice"))
TTA = (("val_vrand", "V_rand"), ("val_vinfo", "V_info"))
SETTLED_STEP = 832  # four validations of 208 steps: the lowest V_rand after the first few validations


def read_json(path: Path) -> dict:
    """A results.json or eval.json, or exit with one sentence naming the file."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        sys.exit(f"bench/budget_table.py: cannot read {path} ({err}); give the run folders of finished runs.")


def flips_index(evals: Path) -> dict[Path, dict]:
    """The newest with-flips eval.json under ``evals`` for each checkpoint it scored, read once for all runs."""
    newest: dict[Path, tuple[float, dict]] = {}
    for path in evals.glob("*/eval.json"):
        result = read_json(path)
        if result.get("inference", {}).get("tta") and result.get("checkpoint"):
            checkpoint, mtime = Path(result["checkpoint"]).resolve(), path.stat().st_mtime
            if checkpoint not in newest or mtime > newest[checkpoint][0]:
                newest[checkpoint] = (mtime, result)
    return {checkpoint: result for checkpoint, (_, result) in newest.items()}


def row(run: Path, flips_by_checkpoint: dict[Path, dict] | None) -> dict:
    """One run's figures: seed, parameters, steps, final scores, with-flips scores, lowest settled V_rand. The
    with-flips scores are the eval of the run's last.pt in ``flips_by_checkpoint`` (``flips_index``), or, where
    that is None (MONAI's runs), the run's own ``final_tta``."""
    results = read_json(run / "results.json")
    flips = (results.get("final_tta") if flips_by_checkpoint is None
             else flips_by_checkpoint.get((run / "checkpoints" / "last.pt").resolve()))
    settled = [h["val_vrand"] for h in results["history"] if h["step"] >= SETTLED_STEP]
    return {"run": run.name, "seed": int(results["seed"]), "params": results["params"],
            "steps": results["steps_completed"], "precision": results["precision"],
            "wall_min": results["wall_s"] / 60, **{key: results["final"][key] for key, _ in METRICS},
            **{f"{key}_tta": (flips or {}).get(key) for key, _ in TTA},
            "settled_vrand": min(settled) if settled else None, "converged": results["converged"]["converged"]}


def fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def pvalue(p: float) -> str:
    """Two decimals, or two significant digits below 0.01 (0.0031, not 0.00)."""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.2g}"


def mean_cell(values: list[float | None]) -> str:
    interval = t_interval([v for v in values if v is not None])
    if interval is None:
        return "-"
    return fmt(interval.mean) + ("" if interval.half_width is None else f" ± {interval.half_width:.4f}")


def welch_cell(a: list[float | None], b: list[float | None]) -> str:
    a, b = [v for v in a if v is not None], [v for v in b if v is not None]
    if len(a) < 2 or len(b) < 2:
        return "-"
    diff = sum(a) / len(a) - sum(b) / len(b)
    if len(set(a)) == 1 and len(set(b)) == 1:
        return f"{diff:+.4f}, no spread over seeds: no test"
    test = stats.ttest_ind(a, b, equal_var=False)
    ci = test.confidence_interval(0.95)
    return f"{diff:+.4f} [{ci.low:+.4f}, {ci.high:+.4f}], p = {pvalue(test.pvalue)}"


def paired_cell(a: list[dict], b: list[dict], key: str) -> str:
    comparison = paired("skipexp", "monai", {r["seed"]: r[key] for r in a if r[key] is not None},
                        {r["seed"]: r[key] for r in b if r[key] is not None})
    if comparison.interval is None or comparison.interval.low is None:
        return "-"
    i = comparison.interval
    return f"{i.mean:+.4f} [{i.low:+.4f}, {i.high:+.4f}], p = {pvalue(comparison.p_value)}"


def table(ours: list[dict], theirs: list[dict]) -> str:
    """The markdown table: a row per run, the two means and the two differences."""
    head = ["run", "parameters", "steps", *[name for _, name in METRICS], "with flips: V_rand / V_info",
            f"lowest V_rand from step {SETTLED_STEP} on", "converged"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 2) + " --- |"]
    for label, rows in (("skipexp", ours), ("MONAI UNet", theirs)):
        for r in rows:
            lines.append(f"| {label}, seed {r['seed']} | {r['params']:,} | {r['steps']:,} | "
                         + " | ".join(fmt(r[key]) for key, _ in METRICS)
                         + f" | {fmt(r['val_vrand_tta'])} / {fmt(r['val_vinfo_tta'])} | "
                         + f"{fmt(r['settled_vrand'], 3)} | {'yes' if r['converged'] else 'no'} |")
    for label, rows in (("**skipexp, mean**", ours), ("MONAI UNet, mean", theirs)):
        steps = sum(r["steps"] for r in rows) / len(rows)
        tta = " / ".join(mean_cell([r[f"{key}_tta"] for r in rows]) for key, _ in TTA)
        lines.append(f"| {label} | | {steps:,.0f} | "
                     + " | ".join(mean_cell([r[key] for r in rows]) for key, _ in METRICS) + f" | {tta} | | |")
    for label, cell in (("skipexp - MONAI (Welch)", lambda key: welch_cell([r[key] for r in ours],
                                                                            [r[key] for r in theirs])),
                        ("skipexp - MONAI, paired by seed", lambda key: paired_cell(ours, theirs, key))):
        tta = " / ".join(cell(f"{key}_tta") for key, _ in TTA)
        lines.append(f"| {label} | | | " + " | ".join(cell(key) for key, _ in METRICS) + f" | {tta} | | |")
    return "\n".join(lines)


CURVE = (("val_vrand", "V_rand"), ("val_vinfo", "V_info"), ("val_dice", "Dice"), ("val_loss", "val loss"),
         ("train_loss", "train loss"))


def by_epoch(run: Path) -> dict[int, dict]:
    """A run's validation scores and that epoch's mean training loss, by the epochs it validated at."""
    results = read_json(run / "results.json")
    train = {t["epoch"]: t["train_loss"] for t in results.get("train_history", [])}
    return {h["epoch"]: {**h, "train_loss": train.get(h["epoch"])} for h in results["history"]}


def curve(ours: list[Path], theirs: list[Path], every: int) -> str:
    """The markdown table of the two sides over training: at every ``every``-th epoch that every run of a side
    validated at, the mean over its runs of each score in CURVE ("-" where a run had stopped), then at each
    run's end."""
    sides = [[by_epoch(run) for run in runs] for runs in (ours, theirs)]
    epochs = sorted({e for side in sides for h in side for e in h if e % every == 0})
    head = ["epoch (steps)", *[f"skipexp {name}" for _, name in CURVE], *[f"MONAI {name}" for _, name in CURVE]]
    lines = ["| " + " | ".join(head) + " |", "| ---: |" + " ---: |" * (len(head) - 1)]

    def means(entries: list[dict | None]) -> list[str]:
        if any(e is None for e in entries):
            return ["-"] * len(CURVE)
        return [fmt(None if any(e[key] is None for e in entries) else sum(e[key] for e in entries) / len(entries))
                for key, _ in CURVE]

    for epoch in epochs:
        steps = next(h[epoch]["step"] for side in sides for h in side if epoch in h)
        lines.append(f"| {epoch} ({steps:,}) | "
                     + " | ".join(cell for side in sides for cell in means([h.get(epoch) for h in side])) + " |")
    lines.append("| each run's end | "
                 + " | ".join(cell for side in sides for cell in means([h[max(h)] for h in side])) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skipexp", type=Path, nargs="+", required=True, help="skipexp budget run folders")
    parser.add_argument("--monai", type=Path, nargs="+", required=True, help="bench/monai_baseline.py run folders")
    parser.add_argument("--evals", type=Path, default=Path("outputs/runs"),
                        help="where the skipexp runs' mode=eval folders are (default %(default)s)")
    parser.add_argument("--curve", type=int, metavar="EPOCHS", default=0,
                        help="also print the means over training, every EPOCHS epochs (a multiple of the runs' "
                             "trainer.val_every, e.g. 16)")
    args = parser.parse_args()
    if args.curve < 0:
        parser.error(f"--curve={args.curve} must be a positive number of epochs; give e.g. --curve 16")
    flips = flips_index(args.evals)
    ours = [row(run, flips) for run in args.skipexp]
    theirs = [row(run, None) for run in args.monai]
    for r in ours + theirs:
        print(f"{r['run']}: {r['precision']}, {r['wall_min']:.1f} min", file=sys.stderr)
    print(table(ours, theirs))
    if args.curve:
        print("\n" + curve(args.skipexp, args.monai, args.curve))


if __name__ == "__main__":
    main()
