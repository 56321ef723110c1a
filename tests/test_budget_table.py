"""bench/budget_table.py: the skipexp-against-MONAI table, checked against hand-computed statistics."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import budget_table


def fake_run(folder: Path, seed: int, vrand: float, tta: float | None = None, steps: int = 9000) -> Path:
    """A finished budget run's results.json: three validations, the last one final."""
    history = [{"step": s, "val_vrand": v, "val_vinfo": 0.98, "val_dice": 0.8}
               for s, v in ((416, 0.5), (1248, vrand - 0.01), (steps, vrand))]
    results = {"seed": seed, "params": 1_096_785, "steps_completed": steps, "precision": "bfloat16",
               "wall_s": 1200.0, "final": history[-1], "history": history, "converged": {"converged": True}}
    if tta is not None:
        results["final_tta"] = {"val_vrand": tta, "val_vinfo": 0.985}
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_a_row_takes_the_newest_with_flips_eval_of_its_own_checkpoint(tmp_path: Path):
    run = fake_run(tmp_path / "zen5_b20_seed0", 0, 0.98)
    evals = tmp_path / "runs"
    for name, checkpoint, tta, vrand in (("a_eval", run / "checkpoints" / "last.pt", True, 0.981),
                                         ("b_eval", run / "checkpoints" / "last.pt", False, 0.5),
                                         ("c_eval", tmp_path / "other" / "last.pt", True, 0.1)):
        (evals / name).mkdir(parents=True)
        (evals / name / "eval.json").write_text(json.dumps({"checkpoint": str(checkpoint),
                                                            "inference": {"tta": tta}, "val_vrand": vrand,
                                                            "val_vinfo": 0.983}))
    row = budget_table.row(run, budget_table.flips_index(evals))
    assert row["val_vrand_tta"] == 0.981 and row["val_vinfo_tta"] == 0.983
    assert row["settled_vrand"] == 0.97  # the lowest V_rand from step 832 on, not the early 0.5
    assert row["seed"] == 0 and row["steps"] == 9000 and row["converged"] is True


def test_the_table_gives_welch_and_paired_differences_as_computed_by_hand(tmp_path: Path):
    ours = [budget_table.row(fake_run(tmp_path / f"s{seed}", seed, v), None)
            for seed, v in enumerate((0.98, 0.97, 0.99))]
    theirs = [budget_table.row(fake_run(tmp_path / f"m{seed}", seed, v, tta=0.98), None)
              for seed, v in enumerate((0.96, 0.97, 0.95))]
    text = budget_table.table(ours, theirs)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    # means 0.98 and 0.96, each SD 0.01: half-width t(0.975, 2) x 0.01 / sqrt(3) = 4.3027 x 0.005774 = 0.0248
    assert "0.9800 ± 0.0248" in lines["**skipexp, mean**"] and "0.9600 ± 0.0248" in lines["MONAI UNet, mean"]
    # Welch: SE sqrt(2 x 0.0001 / 3) = 0.008165, t = 2.449 on 4 df, p = 0.070, CI +-2.7764 x SE = +-0.0227
    assert "+0.0200 [-0.0027, +0.0427], p = 0.07" in lines["skipexp - MONAI (Welch)"]
    # paired: differences 0.02, 0.00, 0.04; SD 0.02, SE 0.01155, t = 1.732 on 2 df, p = 0.225, CI +-0.0497
    assert "+0.0200 [-0.0297, +0.0697], p = 0.23" in lines["skipexp - MONAI, paired by seed"]
    assert "| skipexp, seed 1 | 1,096,785 | 9,000 | 0.9700 |" in text
    assert lines["MONAI UNet, seed 0"].count("0.9800 / 0.9850") == 1  # MONAI's own final_tta


def curve_run(folder: Path, epochs: int, vinfo: float) -> Path:
    """A run that validated every 4 epochs up to ``epochs``, V_info ``vinfo`` + epoch / 10,000."""
    history = [{"epoch": e, "step": 52 * e, "val_vrand": 0.97, "val_vinfo": vinfo + e / 10_000, "val_dice": 0.8,
                "val_loss": 0.2} for e in range(4, epochs + 1, 4)]
    train = [{"epoch": e, "step": 52 * e, "train_loss": 0.3 - e / 1000} for e in range(1, epochs + 1)]
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"history": history, "train_history": train}))
    return folder


def test_the_curve_averages_each_side_where_all_its_runs_validated(tmp_path: Path):
    ours = [curve_run(tmp_path / "s0", 40, 0.98), curve_run(tmp_path / "s1", 36, 0.97)]
    theirs = [curve_run(tmp_path / "m0", 48, 0.96), curve_run(tmp_path / "m1", 48, 0.96)]
    lines = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:]
             for line in budget_table.curve(ours, theirs, 16).splitlines()}
    # columns: skipexp V_rand, V_info, Dice, val loss, train loss, then MONAI's five
    assert lines["16 (832)"][1] == "0.9766"  # (0.9816 + 0.9716) / 2
    assert lines["16 (832)"][4] == "0.2840"  # train loss 0.3 - 0.016
    assert lines["32 (1,664)"][6] == "0.9632"
    assert lines["48 (2,496)"][:5] == ["-"] * 5  # run s1 had stopped at epoch 36
    assert lines["48 (2,496)"][6] == "0.9648"
    # each run's end: s0 at 40 (0.9840), s1 at 36 (0.9736); MONAI's at 48
    assert lines["each run's end"][1] == "0.9788" and lines["each run's end"][6] == "0.9648"


def test_a_negative_curve_step_is_refused_in_one_sentence(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "budget_table.py"), "--skipexp", str(tmp_path),
                           "--monai", str(tmp_path), "--curve", "-1"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--curve=-1 must be a positive number of epochs; give e.g. --curve 16" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
