"""The CLI on the real ISBI 2012 stacks: train with the challenge's metrics, predict the submission format."""

import json

import numpy as np
import pytest
import tifffile

from tests.conftest import SHARED_DATA, run_cli

ISBI = SHARED_DATA / "isbi2012"
pytestmark = pytest.mark.skipif(not (ISBI / "train-volume.tif").is_file(),
                                reason=f"ISBI 2012 stacks not found at {ISBI}")


def test_isbi_train_scores_vrand_vinfo_and_predict_writes_the_submission(tmp_path):
    data = ["dataset=isbi2012", f"dataset.root={ISBI}", "model.width=4", "trainer.crop=64"]
    run_cli([*data, "trainer.epochs=1", "trainer.samples_per_epoch=8", "trainer.batch_size=4",
             "hydra.run.dir=r"], tmp_path)
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["dataset"] == "isbi2012"
    for part in ("best", "final"):
        assert 0.0 < results[part]["val_vrand"] <= 1.0 and 0.0 < results[part]["val_vinfo"] <= 1.0
    run_cli([*data, "mode=predict", "checkpoint=r/checkpoints/last.pt", "predict.tta=true", "hydra.run.dir=p"],
            tmp_path)
    maps = tifffile.imread(tmp_path / "p" / "predictions.tif")
    assert maps.shape == (30, 512, 512) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0


def test_isbi_bad_root_is_one_sentence(tmp_path):
    proc = run_cli(["dataset=isbi2012", "dataset.root=missing", "mode=eval", "checkpoint=x.pt"], tmp_path,
                   check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
