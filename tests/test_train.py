"""The loop's ends: a wall-clock budget (``trainer.budget_min``), the epochs, and what results.json says of them."""

from __future__ import annotations

import json

import pytest
import torch

from skipexp.build import saved_config
from tests.conftest import TINY, run_cli

BUDGET = [*TINY, "trainer.epochs=100000", "trainer.budget_min=0.05", "optimizer.schedule=cosine"]  # 3 s


def test_a_budget_ends_the_run_with_a_final_validation_and_checkpoint(tmp_path):
    proc = run_cli([*BUDGET, "hydra.run.dir=r"], tmp_path)
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["stopped_by"] == "budget" and results["budget_min"] == 0.05
    assert 3.0 <= results["wall_s"] < 60.0 and results["epochs_completed"] < 100000
    assert results["final"] == results["history"][-1] and results["final"]["step"] == results["steps_completed"]
    assert results["images_seen"] == 2 * results["steps_completed"]  # 4 images in batches of 2: every batch is full
    assert set(results["converged"]) >= {"converged", "rise", "window", "tolerance"}
    saved = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert saved["stopped_by"] == "budget" and saved["step"] == results["steps_completed"]
    assert saved["scheduler"]["progress"] >= 0.9  # the cosine ran over the budget: the lr is near its end
    assert saved["optimizer"]["param_groups"][0]["lr"] < 0.1 * 1e-3
    assert "budget of 0.05 min spent after" in proc.stdout + proc.stderr
    # resuming a run whose budget is spent trains no further
    run_cli([*BUDGET, "resume=r"], tmp_path)
    again = json.loads((tmp_path / "r" / "results.json").read_text())
    assert again["steps_completed"] == results["steps_completed"] and again["history"] == results["history"]


@pytest.mark.parametrize("schedule, factor", [("cosine", 0.0), ("step", 0.1 ** 2)])  # step: lr/10 each epoch
def test_a_budget_longer_than_the_epochs_still_anneals_the_schedule(tmp_path, schedule, factor):
    # a machine fast enough to finish trainer.epochs inside the budget: the schedule follows the steps instead
    run_cli([*TINY, "trainer.budget_min=30", f"optimizer.schedule={schedule}", "optimizer.step_epochs=1",
             "optimizer.gamma=0.1", "hydra.run.dir=r"], tmp_path)
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["stopped_by"] == "epochs" and results["steps_completed"] == 4 and results["wall_s"] < 600
    saved = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert saved["scheduler"]["progress"] == 1.0  # 4 of 4 steps, in a small part of the 30 minutes
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * factor, abs=1e-12)


def test_a_run_that_ends_by_its_epochs_says_so(tmp_path):
    run_cli([*TINY, "hydra.run.dir=r"], tmp_path)
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["stopped_by"] == "epochs" and results["budget_min"] == 0
    assert results["images_seen"] == 2 * results["steps_completed"]
    assert results["converged"] == {"converged": False, "rise": None, "window": 3, "tolerance": 0.005,
                                    "why": "2 validations, more than 3 are needed to judge"}


@pytest.mark.slow  # 8-22 s on a Zen 5 EPYC, about twice that on AVX2: keeps `make test` under 10 minutes there
def test_a_checkpoint_from_before_a_model_key_existed_still_evaluates(tmp_path):
    run_cli([*TINY, "trainer.epochs=1", "hydra.run.dir=r"], tmp_path)
    saved = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    del saved["config"]["model"]["match_params"]  # as checkpoints written before model.match_params have it
    torch.save(saved, tmp_path / "old.pt")
    run_cli([*TINY, "mode=eval", "checkpoint=old.pt", "hydra.run.dir=e"], tmp_path)
    assert json.loads((tmp_path / "e" / "eval.json").read_text())["val_dice"] > 0


def test_a_checkpoints_config_gets_the_keys_added_since_with_the_values_they_then_had():
    state = {"config": {"model": {"width": 16}, "trainer": {"precision": "bf16"}}}  # before match_params, fast_relu
    saved = saved_config(state)
    assert saved.model.match_params is None and saved.trainer.fast_relu is False
    assert saved.model.width == 16 and saved.trainer.precision == "bf16"
    newer = saved_config({"config": {"model": {"match_params": "both"}, "trainer": {"fast_relu": True}}})
    assert newer.model.match_params == "both" and newer.trainer.fast_relu is True  # what a run recorded stays
