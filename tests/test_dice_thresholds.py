"""bench/dice_thresholds.py: Dice per threshold from a run's last.pt, checked against the run's own record."""

import subprocess
import sys
from pathlib import Path

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


@pytest.mark.slow
def test_the_half_threshold_reproduces_the_runs_recorded_dice(tmp_path: Path):
    runs = [tmp_path / f"seed{seed}" for seed in (0, 1)]
    for seed, run in enumerate(runs):
        run_cli([*TINY, f"trainer.seed={seed}", f"hydra.run.dir={run}"], cwd=tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "dice_thresholds.py"), "--skipexp", *map(str, runs)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "note:" not in proc.stderr  # Dice at 0.50 matches each run's results.json
    rows = [line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| seed")]
    assert [r[0] for r in rows] == ["| seed0", "| seed1"]
    assert all(0.0 <= float(cell) <= 1.0 for r in rows for cell in r[1:-1])


def test_a_folder_that_is_not_a_finished_run_is_refused_in_one_sentence(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("{}")  # a run that never reached its final validation
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "dice_thresholds.py"), "--skipexp",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "is not the folder of a finished run" in lines[0] and str(tmp_path / "run") in lines[0]
