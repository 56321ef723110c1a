"""The CLI end to end on a tiny config: train, eval, predict, summary, as a user runs them."""

import json

import numpy as np
import pytest
import tifffile
import torch

from skipexp.runtime import fast_norm_exact
from tests.conftest import assert_one_sentence, run_cli

HEADER = ["model", "long_skip", "short_skip", "block", "depth_layers", "params", "device"]
SCORES = ["val_loss", "val_dice", "val_pixel_error", "val_vrand", "val_vinfo"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli")
    from tests.conftest import TINY

    run_cli([*TINY, "hydra.run.dir=run"], work)
    return work, work / "run"


def test_train_writes_the_run_folder_contract(trained):
    _, run = trained
    results = json.loads((run / "results.json").read_text())
    for key in [*HEADER, "epochs_completed", "best", "final", "wall_s"]:
        assert key in results, key
    for part in ("best", "final"):
        for key in SCORES:
            assert 0.0 <= results[part][key] <= 1.5, (part, key)
    assert results["model"] == "both" and results["long_skip"] and results["short_skip"]
    assert results["depth_layers"] == 26 and results["epochs_completed"] == 2 and results["device"] == "cpu"
    assert results["params"] > 0 and results["wall_s"] > 0
    speedups = ("compile", "fast_dropout", "fast_resample", "fast_norm", "fast_relu", "fused_optimizer")
    assert [results[k] for k in speedups] == [None, True, True, fast_norm_exact(torch.device("cpu")), True, True]
    # the defaults' speed-ups, in effect on an eager net (fast_norm not on AVX2 CPUs)
    assert results["weight_decay_on"] == "kernels"
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "checkpoints" / "best.pt").is_file()
    assert any((run / "tb").glob("events.out.tfevents.*"))


def test_eval_reports_the_checkpoints_scores(trained):
    work, run = trained
    from tests.conftest import TINY

    run_cli([*TINY, "mode=eval", f"checkpoint={run}/checkpoints/best.pt", "hydra.run.dir=eval"], work)
    scores = json.loads((work / "eval" / "eval.json").read_text())
    best = json.loads((run / "results.json").read_text())["best"]
    for key in SCORES:
        assert scores[key] == pytest.approx(best[key], abs=1e-6), key


def test_predict_writes_challenge_format(trained):
    work, run = trained
    from tests.conftest import TINY

    run_cli([*TINY, "mode=predict", f"checkpoint={run}/checkpoints/last.pt", "hydra.run.dir=pred"], work)
    maps = tifffile.imread(work / "pred" / "predictions.tif")
    assert maps.dtype == np.float32 and maps.shape == (2, 64, 64)
    assert maps.min() >= 0.0 and maps.max() <= 1.0


def test_summary_counts_depth_without_training(tmp_path):
    run_cli(["mode=summary", "depth=paper", "hydra.run.dir=s"], tmp_path)
    header = json.loads((tmp_path / "s" / "results.json").read_text())
    assert header["depth_layers"] == 140 and header["mode"] == "summary"
    assert not {"compile", "fast_norm", "fused_optimizer"} & set(header)  # it trains nothing: no speed-ups ran
    assert not (tmp_path / "s" / "checkpoints").exists()


def test_training_into_a_used_folder_is_refused_and_keeps_the_earlier_run(trained):
    work, run = trained
    from tests.conftest import TINY

    before = (run / "results.json").read_bytes()
    proc = run_cli([*TINY, "hydra.run.dir=run"], work, check=False)
    assert proc.returncode != 0
    assert "already holds a run" in proc.stderr and "Traceback" not in proc.stderr
    assert (run / "results.json").read_bytes() == before


BAD_INPUTS = [  # (overrides, words the one sentence must contain)
    (["model=foo"], "model=foo is not an option of model; pick one of both, long_only, none, short_only"),
    (["trainer.epochs=abc"], "trainer.epochs=abc must be a positive whole number"),
    (["trainer.channels_last=3"], "trainer.channels_last=3 must be true or false"),
    (["trainer.lr=3"], "trainer.lr is not a key of this config"),
    (["trainer.retain_memory=false"], "trainer.retain_memory was replaced by trainer.allocator (retain, which was "),
    (["trainer.epochs=[1"], "an override could not be parsed"),
    (["dataset=isbi2012", "dataset.root=missing"], "missing"),
    (["trainer.crop=999"], "trainer.crop=999 is larger than the smallest training image"),
    (["depth=27"], "nearest reachable depths are 26 and 28"),
    (["mode=eval", "checkpoint=nope.pt"], "nope.pt does not exist"),
    (["resume=nope"], "resume=nope is not a run folder"),
    (["hydra.run.dir=/proc/skipexp/run"], "cannot be created"),
    (["trainer.batch_size=0"], "trainer.batch_size=0 must be a positive whole number"),
    (["trainer.on_nan=ignore"], "trainer.on_nan=ignore is not one of stop, skip"),
]


@pytest.mark.parametrize("overrides,words", BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_one_sentence_and_keeps_earlier_runs(trained, overrides, words):
    """Each bad input: exit 2, one line on stderr naming the value, no traceback, the earlier run untouched."""
    work, run = trained
    from tests.conftest import TINY

    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    tiny = [o for o in TINY if not (o.startswith("dataset.") and any(x.startswith("dataset=") for x in overrides))]
    proc = run_cli([*tiny, *overrides], work, check=False)
    assert_one_sentence(proc, words)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_unreachable_depth_is_one_sentence(tmp_path):
    proc = run_cli(["mode=summary", "depth=27"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "nearest reachable depths are 26 and 28" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_checkpoint_is_one_sentence(tmp_path):
    proc = run_cli(["mode=eval", "checkpoint=nope.pt"], tmp_path, check=False)
    assert proc.returncode == 2 and "nope.pt does not exist" in proc.stderr


@pytest.mark.parametrize("variant,long_skip,short_skip", [("long_only", True, False), ("short_only", False, True),
                                                          ("none", False, False)])
def test_each_variant_trains(tmp_path, variant, long_skip, short_skip):
    from tests.conftest import TINY

    run_cli([*TINY, f"model={variant}", "trainer.epochs=1", "hydra.run.dir=r"], tmp_path)
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert (results["model"], results["long_skip"], results["short_skip"]) == (variant, long_skip, short_skip)
    assert results["epochs_completed"] == 1 and set(SCORES) <= set(results["final"])


@pytest.mark.slow  # about 20 s: moved out of `make test` to keep it under 10 minutes
def test_the_variant_is_named_by_its_switches_not_by_its_config_file(tmp_path):
    """``model=both model.short_skip=false`` trains with long skips only: its folder, results.json and the report
    call it long_only, and resuming it as ``model=long_only`` continues the same network."""
    from skipexp.report import collect_runs
    from tests.conftest import TINY

    run_cli([*TINY, "model=both", "model.short_skip=false", "trainer.epochs=1"], tmp_path)
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    assert "_long_only_d26_train" in run.name
    results = json.loads((run / "results.json").read_text())
    assert (results["model"], results["long_skip"], results["short_skip"]) == ("long_only", True, False)
    assert [r.variant for r in collect_runs(tmp_path / "outputs" / "runs").runs] == ["long_only"]
    proc = run_cli([*TINY, "model=long_only", "trainer.epochs=2", f"resume={run}"], tmp_path)
    assert "resuming" in proc.stdout + proc.stderr
    assert json.loads((run / "results.json").read_text())["epochs_completed"] == 2
    summary = run_cli(["mode=summary", "model=both", "model.long_skip=false", "hydra.run.dir=s"], tmp_path)
    assert json.loads((tmp_path / "s" / "results.json").read_text())["model"] == "short_only", summary.stderr


@pytest.mark.slow  # about 20 s: moved out of `make test` to keep it under 10 minutes
def test_same_seed_gives_the_same_metrics(tmp_path):
    from tests.conftest import TINY

    for name in ("a", "b"):
        run_cli([*TINY, "trainer.seed=7", f"hydra.run.dir={name}"], tmp_path)
    a, b = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("a", "b"))
    assert a["history"] == b["history"] and a["best"] == b["best"]


def _rgb_folder(root, sizes):
    """RGB PNG images of odd, differing sizes with GIF masks named by number plus a suffix, and valid masks."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("images", "masks", "valid"):
        (root / sub).mkdir(parents=True)
    for i, (h, w) in enumerate(sizes, start=21):
        mask = np.zeros((h, w), np.uint8)
        mask[:, w // 3: w // 3 + 3] = 255
        mask[h // 2: h // 2 + 2, :] = 255
        image = rng.integers(100, 200, (h, w, 3), dtype=np.uint8)
        image[mask == 255] = 30
        Image.fromarray(image).save(root / "images" / f"{i}_training.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}_manual1.gif")
        valid = np.full((h, w), 255, np.uint8)
        valid[:3] = 0
        Image.fromarray(valid).save(root / "valid" / f"{i}_mask.gif")


def test_folder_of_rgb_images_of_odd_sizes_trains_and_predicts(tmp_path):
    _rgb_folder(tmp_path / "data", [(37, 45), (50, 41), (45, 37), (41, 50)])
    data = ["dataset=folder", "dataset.images=data/images", "dataset.masks=data/masks", "dataset.valid=data/valid",
            "dataset.in_channels=3", "dataset.pair_by=number", "dataset.val_count=1"]
    run_cli([*data, "model.width=4", "trainer.epochs=2", "trainer.batch_size=3", "hydra.run.dir=r"], tmp_path)
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["dataset"] == "folder" and results["epochs_completed"] == 2
    assert 0.0 <= results["final"]["val_dice"] <= 1.0
    run_cli([*data, "dataset.predict_images=data/images", "mode=predict", "checkpoint=r/checkpoints/last.pt",
             "hydra.run.dir=p"], tmp_path)
    written = sorted(p.name for p in (tmp_path / "p" / "predictions").iterdir())
    assert written == ["21_training.tif", "22_training.tif", "23_training.tif", "24_training.tif"]
    assert tifffile.imread(tmp_path / "p" / "predictions" / "22_training.tif").shape == (50, 41)


def test_gradient_flow_reaches_disk_and_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run = trained
    arrays = np.load(run / "gradflow.npz")
    assert arrays["grad_norm"].shape == (4, 26) and list(arrays["steps"]) == [1, 2, 3, 4]  # every step, 26 layers
    assert arrays["update_mean"].shape == (2, 26) and np.all(arrays["grad_norm"] > 0)
    assert (run / "gradflow_grad_norm.png").is_file() and (run / "gradflow_update.png").is_file()
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0, "images": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    assert {"grad_norm/down1/conv1", "grad_norm/down4/b1.conv2", "grad_norm/classifier/conv1",
            "update/up3/b1.conv3", "gradflow/first_last_ratio", "gradflow/median_grad_norm/across"} <= set(
        tags["scalars"])
    assert [e.step for e in events.Scalars("grad_norm/down1/conv1")] == [1, 2, 3, 4]
    assert events.Scalars("grad_norm/down1/conv1")[-1].value == pytest.approx(float(arrays["grad_norm"][-1, 0]))
    assert {"gradflow/layer_grad_norm", "gradflow/layer_update_mean"} <= set(tags["histograms"])
    assert {"gradflow/heatmap_grad_norm", "gradflow/heatmap_update", "1_val/prediction"} <= set(tags["images"])
    sections = sorted({tag.split("/")[0] for tag in tags["scalars"]})  # TensorBoard's order: by name
    assert sections[:2] == ["1_train", "1_val"] and {"1_val/vrand", "1_val/vinfo", "1_train/loss"} <= set(
        tags["scalars"])  # the scores first, then the per-layer sections
    results = json.loads((run / "results.json").read_text())
    assert results["gradflow"]["first_last_ratio"] == pytest.approx(
        float(arrays["grad_norm"][-1, 0] / arrays["grad_norm"][-1, -1]), rel=1e-5)


def test_skipexp_plot_gradflow_side_by_side(trained):
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    work, run = trained
    exe = str(Path(sys.executable).with_name("skipexp-plot"))
    subprocess.run([exe, "gradflow", str(run), str(run), "--measure", "update_mean", "--out", "cmp.png"],
                   cwd=work, check=True, capture_output=True)
    assert Image.open(work / "cmp.png").size == (760, 600)
    bad = subprocess.run([exe, "gradflow", "nowhere"], cwd=work, capture_output=True, text=True)
    assert bad.returncode == 2 and "nowhere/gradflow.npz does not exist" in bad.stderr


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    from tests.conftest import TINY

    proc = run_cli(["-m", "depth=26,27", *TINY, "trainer.epochs=1", "hydra.sweep.dir=sweep"], tmp_path, check=False)
    assert proc.returncode == 1
    summary = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    status = {job["job"].split("depth=")[1].split(",")[0]: job for job in summary["jobs"]}
    assert status["26"]["status"] == "completed" and status["27"]["status"] == "failed"
    assert "nearest reachable depths are 26 and 28" in status["27"]["error"]
    assert (tmp_path / "sweep" / status["26"]["job"] / "results.json").is_file()
    assert "1 of 2 jobs completed" in proc.stdout + proc.stderr
