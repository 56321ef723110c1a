"""bench/monai_baseline.py: MONAI's UNet under skipexp's own loop, budget and metrics (issue 16's baseline)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def test_the_switches_take_monai_s_block_apart_and_the_saved_run_rebuilds_them():
    pytest.importorskip("monai", reason="MONAI is an optional extra: pip install -e '.[baseline]'")
    sys.path.insert(0, str(ROOT / "bench"))
    from monai_baseline import monai_unet, saved_unet

    def kinds(net):
        return {type(m).__name__ for m in net.modules()}

    def affine(net):
        return {m.affine for m in net.modules() if isinstance(m, torch.nn.InstanceNorm2d)}

    default, relu, with_affine = monai_unet(1), monai_unet(1, "relu"), monai_unet(1, norm_affine=True)
    assert "PReLU" in kinds(default) and "ReLU" not in kinds(default) and affine(default) == {False}
    assert "PReLU" not in kinds(relu) and "ReLU" in kinds(relu)
    assert affine(with_affine) == {True}
    # 16 instance norms' weight and bias more than the default; one PReLU weight less per activation
    assert sum(p.numel() for p in default.parameters()) == 1_624_844  # the runs of docs/isbi-cpu.md
    assert sum(p.numel() for p in with_affine.parameters()) - 1_624_844 == 2 * sum(
        m.num_features for m in with_affine.modules() if isinstance(m, torch.nn.InstanceNorm2d))
    assert sum(p.numel() for p in relu.parameters()) == 1_624_844 - sum(
        1 for m in default.modules() if type(m).__name__ == "PReLU")
    # a run from before the switches (no act or norm_affine in its header) rebuilds MONAI's defaults
    saved = saved_unet(1, {"baseline": {"channels": [16, 32, 64, 128, 256]}})
    assert saved.state_dict().keys() == default.state_dict().keys()
    rebuilt = saved_unet(1, {"baseline": {"act": "relu", "norm_affine": True}})
    assert "PReLU" not in kinds(rebuilt) and affine(rebuilt) == {True}
