"""bench/monai_baseline.py: MONAI's UNet under skipexp's own loop, budget and metrics (issue 16's baseline)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED_DATA

ISBI = SHARED_DATA / "isbi2012"


@pytest.mark.skipif(not (ISBI / "train-volume.tif").is_file(), reason=f"ISBI 2012 stacks not found at {ISBI}")
def test_the_baseline_trains_and_scores_like_a_skipexp_run(tmp_path: Path):
    pytest.importorskip("monai", reason="MONAI is an optional extra: pip install -e '.[baseline]'")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "monai_baseline.py"), "--budget-min", "0.05",
                           "--out", str(tmp_path / "monai"), f"dataset.root={ISBI}", "trainer.crop=64",
                           "trainer.samples_per_epoch=8", "trainer.epochs=3", "trainer.val_every=1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    results = json.loads((tmp_path / "monai" / "results.json").read_text())
    assert results["model"] == "monai_unet" and results["baseline"]["channels"] == [16, 32, 64, 128, 256]
    assert results["params"] == printed["params"] and 1_000_000 < results["params"] < 3_000_000
    assert results["dataset"] == "isbi2012" and results["stopped_by"] in ("budget", "epochs")
    vrand = results["final"]["val_vrand"]
    assert 0.0 < vrand <= 1.0 and printed["val_vrand"] == round(vrand, 4)
    assert 0.0 < results["final_tta"]["val_vrand"] <= 1.0  # scored again with the four flips
    assert printed["val_vrand_tta"] == round(results["final_tta"]["val_vrand"], 4)
