"""bench/dice_thresholds.py: Dice per threshold from a run's last.pt, checked against the run's own record."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TINY, run_cli

sys.path.insert(0, str(ROOT / "bench"))

import dice_thresholds


def test_the_table_gives_each_sides_mean_and_welchs_p_at_each_threshold():
    n = len(dice_thresholds.THRESHOLDS)
    ours = [{"run": "a", "dice": [0.80] * n}, {"run": "b", "dice": [0.82] * n}]
    theirs = [{"run": "c", "dice": [0.70] * n}, {"run": "d", "dice": [0.72] * n}]
    lines = dice_thresholds.table(ours, theirs).splitlines()
    assert lines[2] == "| a | " + " | ".join(["0.8000"] * n) + " | 0.8000 at 0.30 |"  # ties: the lowest threshold
    assert lines[6] == "| **skipexp, mean** | " + " | ".join(["0.8100"] * n) + " | |"
    assert lines[8] == "| skipexp - MONAI | " + " | ".join(["+0.1000"] * n) + " | |"
    # Welch by hand: t = 0.1 / sqrt(2e-4/2 + 2e-4/2) = sqrt(50), 2 degrees of freedom, two-sided
    # p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(50/52) = 0.0194
    assert lines[9] == "| p (Welch) | " + " | ".join(["0.019"] * n) + " | |"


def test_one_side_alone_prints_its_runs_and_mean_without_a_comparison():
    n = len(dice_thresholds.THRESHOLDS)
    dice = [0.5, 0.6, 0.7, 0.75, 0.74, 0.7, 0.6, 0.5, 0.4][:n]
    lines = dice_thresholds.table([{"run": "a", "dice": dice}], []).splitlines()
    assert lines[2].endswith("| 0.7500 at 0.45 |") and len(lines) == 4


def test_errors_are_counted_by_their_distance_to_the_other_class():
    truth = np.zeros((5, 9), dtype=bool)
    truth[:, 2:7] = True  # a band 5 px wide: columns 2 and 6 lie 1 px from a cell, 3 and 5 2 px, column 4 3 px
    pred = np.zeros_like(truth)
    pred[:, [0, 2, 3, 6]] = True  # misses columns 4 and 5; column 0 is false, 2 px from the band
    valid = np.ones_like(truth)
    valid[0] = False  # four valid rows
    counts = dice_thresholds.error_bands(pred, truth, valid)
    assert counts.tolist() == [12, 0, 4, 4, 0, 4, 0]  # true positives, missed by band, false by band
    assert dice_thresholds.error_row(counts) == [12 / 16, 12 / 20, 0, 4, 4, 0, 4, 0]


def test_the_errors_table_gives_fractions_counts_means_and_welchs_p():
    ours = [{"run": "a", "errors": [0.80, 0.70, 1000, 1000, 1000, 500, 500, 500]},
            {"run": "b", "errors": [0.82, 0.72, 1200, 1200, 1200, 700, 700, 700]}]
    theirs = [{"run": "c", "errors": [0.70, 0.60, 0, 0, 0, 1500, 1500, 1500]},
              {"run": "d", "errors": [0.72, 0.62, 200, 200, 200, 1700, 1700, 1700]}]
    lines = dice_thresholds.errors_table(ours, theirs).splitlines()
    assert lines[0].startswith("| run | precision | recall | missed, 1 px in |")
    assert lines[3] == "| b | 0.8200 | 0.7200 | 1,200 | 1,200 | 1,200 | 700 | 700 | 700 |"
    assert lines[6] == "| **skipexp, mean** | 0.8100 | 0.7100 | 1,100 | 1,100 | 1,100 | 600 | 600 | 600 |"
    assert lines[8] == ("| skipexp - MONAI | +0.1000 | +0.1000 | +1,000 | +1,000 | +1,000 | -1,000 | -1,000 "
                        "| -1,000 |")
    # every column's difference is 5 times the spread of its two runs, as in the Dice table's case: p = 0.019
    assert lines[9] == "| p (Welch) | " + " | ".join(["0.019"] * 8) + " |"


@pytest.mark.slow
def test_the_half_threshold_reproduces_the_runs_recorded_dice(tmp_path: Path):
    runs = [tmp_path / f"seed{seed}" for seed in (0, 1)]
    for seed, run in enumerate(runs):
        run_cli([*TINY, f"trainer.seed={seed}", f"hydra.run.dir={run}"], cwd=tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "dice_thresholds.py"), "--skipexp", *map(str, runs)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "note:" not in proc.stderr  # Dice at 0.50 matches each run's results.json
    rows = [line.split(" | ") for line in proc.stdout.split("\n\n")[0].splitlines() if line.startswith("| seed")]
    assert [r[0] for r in rows] == ["| seed0", "| seed1"]
    assert all(0.0 <= float(cell) <= 1.0 for r in rows for cell in r[1:-1])
    errors = [line for line in proc.stdout.split("\n\n")[1].splitlines() if line.startswith("| seed")]
    assert len(errors) == 2 and all(len(line.split(" | ")) == 9 for line in errors)
    # in overlapping tiles of half the slice: other maps, so other Dice, and no check against the record
    tiled = subprocess.run([sys.executable, str(ROOT / "bench" / "dice_thresholds.py"), "--skipexp",
                            *map(str, runs), "--tile", "32", "--overlap", "8"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert tiled.returncode == 0 and "note:" not in tiled.stderr, tiled.stderr
    tiled_rows = [line.split(" | ") for line in tiled.stdout.split("\n\n")[0].splitlines()
                  if line.startswith("| seed")]
    assert len(tiled_rows) == 2 and tiled_rows != rows


def test_a_folder_that_is_not_a_finished_run_is_refused_in_one_sentence(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("{}")  # a run that never reached its final validation
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "dice_thresholds.py"), "--skipexp",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "is not the folder of a finished run" in lines[0] and str(tmp_path / "run") in lines[0]


@pytest.mark.parametrize("tiling", [["--tile", "64", "--overlap", "64"], ["--tile", "-1"]])
def test_a_tiling_that_does_not_advance_is_refused_in_one_sentence(tmp_path: Path, tiling: list[str]):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "dice_thresholds.py"), "--skipexp",
                           str(tmp_path / "run"), *tiling], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "is not a tiling" in lines[0] and "--tile 256 --overlap 128" in lines[0]
