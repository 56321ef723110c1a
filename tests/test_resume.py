"""Interrupted runs resume exactly: SIGTERM, SIGKILL at random moments, a broken newest checkpoint, NaNs."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import TINY, run_cli, skipexp_exe

RUN = [*TINY, "dataset.n_train=8", "trainer.epochs=4", "trainer.threads=1"]  # 16 steps, a checkpoint after each of
# 4 epochs; a fixed thread count, since the default's share of the cores follows the other runs on the machine, and
# a reduction split over another number of threads rounds differently


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([skipexp_exe(), *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def _loss_events(run: Path) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("1_train/loss")]


def assert_same_run(run: Path, reference: Path) -> None:
    """Weights (torch.equal on every tensor), history, gradient-flow arrays and TensorBoard steps all equal."""
    mine, theirs = _weights(run), _weights(reference)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine), [k for k in mine if not torch.equal(mine[k], theirs[k])]
    results, expected = (json.loads((r / "results.json").read_text()) for r in (run, reference))
    assert results["history"] == expected["history"]
    flow, expected_flow = np.load(run / "gradflow.npz"), np.load(reference / "gradflow.npz")
    assert all(np.array_equal(flow[k], expected_flow[k]) for k in expected_flow.files)
    assert _loss_events(run) == _loss_events(reference)  # no gap, no duplicate, same values


REFERENCE_WALL_S: list[float] = []  # how long the uninterrupted run took, to spread the kills over


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("reference")
    started = time.perf_counter()
    run_cli([*RUN, "hydra.run.dir=run"], cwd)
    REFERENCE_WALL_S.append(time.perf_counter() - started)
    return cwd / "run"


@pytest.mark.slow  # 8-22 s on a Zen 5 EPYC, about twice that on AVX2: keeps `make test` under 10 minutes there
def test_sigterm_stops_with_a_checkpoint_and_resume_ends_identical(tmp_path, reference):
    proc = _start([*RUN, "hydra.run.dir=run"], tmp_path)
    deadline = time.time() + 120
    while not (tmp_path / "run" / "tb").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived")
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM received: stopped after step" in err and f"skipexp resume={tmp_path / 'run'}" in err
    run_cli(["resume=run"], tmp_path)
    assert_same_run(tmp_path / "run", reference)


@pytest.mark.slow  # about 20 s: moved out of `make test` to keep it under 10 minutes
def test_a_broken_newest_checkpoint_falls_back_to_the_one_before(tmp_path, reference):
    run_cli([*RUN, "trainer.epochs=3", "hydra.run.dir=run"], tmp_path)  # an interrupted run: 3 of 4 epochs
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"truncated")
    proc = run_cli(["resume=run", "trainer.epochs=4"], tmp_path)
    assert "last.pt is truncated or corrupt" in proc.stderr + proc.stdout
    assert "Resuming from" in proc.stderr + proc.stdout and "last.prev.pt" in proc.stderr + proc.stdout


@pytest.mark.slow  # 8-22 s on a Zen 5 EPYC, about twice that on AVX2: keeps `make test` under 10 minutes there
def test_resume_refuses_a_different_network_in_one_sentence(tmp_path):
    run_cli([*RUN, "trainer.epochs=1", "hydra.run.dir=run"], tmp_path)
    proc = run_cli(["resume=run", "model.width=8"], tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is of a different network (model.width 4 vs 8)" in proc.stderr


@pytest.mark.slow  # 8-22 s on a Zen 5 EPYC, about twice that on AVX2: keeps `make test` under 10 minutes there
def test_a_checkpoint_from_before_weight_decay_on_resumes_only_as_it_was_trained(tmp_path):
    """A run from before optimizer.weight_decay_on decayed every parameter, in one parameter group; resumed under
    the default (kernels only, two groups) it is refused in one sentence with the fix, and resumes with the fix."""
    run_cli([*RUN, "trainer.epochs=1", "optimizer.weight_decay_on=all", "hydra.run.dir=run"], tmp_path)
    overrides = tmp_path / "run" / ".hydra" / "overrides.yaml"  # made to look like such a run's
    overrides.write_text("".join(line for line in overrides.read_text().splitlines(keepends=True)
                                 if "weight_decay_on" not in line))
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    saved = torch.load(last, weights_only=True)
    del saved["config"]["optimizer"]["weight_decay_on"]
    torch.save(saved, last)
    proc = run_cli(["resume=run", "trainer.epochs=2"], tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "was trained with optimizer.weight_decay_on=all, this run asks for kernels; resume with " \
           "optimizer.weight_decay_on=all" in proc.stderr
    run_cli(["resume=run", "trainer.epochs=2", "optimizer.weight_decay_on=all"], tmp_path)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["epochs_completed"] == 2


def test_resume_of_a_folder_that_is_not_a_run_is_one_sentence(tmp_path):
    proc = run_cli(["resume=nowhere"], tmp_path, check=False)
    assert proc.returncode == 2 and "resume=nowhere is not a run folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # 8-22 s on a Zen 5 EPYC, about twice that on AVX2: keeps `make test` under 10 minutes there
def test_resume_auto_starts_fresh_then_continues(tmp_path, reference):
    run_cli([*RUN, "resume=auto", "hydra.run.dir=run"], tmp_path)  # no checkpoint yet: a fresh run
    assert_same_run(tmp_path / "run", reference)
    proc = run_cli([*RUN, "resume=auto", "hydra.run.dir=run"], tmp_path)  # finished: nothing left to do
    assert "resuming" in proc.stdout + proc.stderr
    assert_same_run(tmp_path / "run", reference)


def test_results_json_is_only_written_after_the_checkpoint_that_holds_it(tmp_path, monkeypatch):
    """A kill can't leave results.json without a checkpoint (resume=auto would then refuse the folder)."""
    import skipexp.train as train_module
    from skipexp.build import build_training
    from tests.conftest import compose_config

    real = train_module.write_json
    seen = []

    def watching(path, payload):
        if path.name == "results.json":
            last = path.parent / "checkpoints" / "last.pt"
            seen.append(last.is_file() and torch.load(last, weights_only=True)["results"] == payload)
        return real(path, payload)

    monkeypatch.setattr(train_module, "write_json", watching)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    train_module.train(build_training(compose_config(RUN)), run_dir)
    assert seen == [True] * 4  # every epoch validates: each results.json follows a checkpoint holding it


@pytest.mark.slow  # about 20 s: moved out of `make test` to keep it under 10 minutes
def test_resume_auto_rewrites_results_lost_after_the_last_checkpoint(tmp_path, reference):
    """A kill after the final checkpoint but before results.json: resume=auto writes it back from the checkpoint."""
    run_cli([*RUN, "hydra.run.dir=run"], tmp_path)
    (tmp_path / "run" / "results.json").unlink()
    run_cli([*RUN, "resume=auto", "hydra.run.dir=run"], tmp_path)
    assert_same_run(tmp_path / "run", reference)


class _Poison(torch.autograd.Function):
    """Identity forward; NaN gradients backward (a fault that shows up in the gradients only)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def _train_with_faults(tmp_path, monkeypatch, fault: str, bad_calls: set[int], extra: list[str]):
    """Train in-process with the loss (or its gradient) made NaN at the given training steps."""
    import skipexp.build as build_module
    import skipexp.train as train_module
    from tests.conftest import compose_config

    real = build_module.get_loss("dice")
    calls = {"n": 0}

    def faulty(logits, target, valid=None, reduce=None):
        if reduce is None:  # validation, not a training step
            return real(logits, target, valid)
        calls["n"] += 1
        if calls["n"] in bad_calls:
            logits = logits * float("nan") if fault == "loss" else _Poison.apply(logits)
        return real(logits, target, valid, reduce)

    monkeypatch.setattr(build_module, "get_loss", lambda name: faulty)
    cfg = compose_config([*RUN, *extra])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return train_module.train(build_module.build_training(cfg), run_dir), run_dir


@pytest.mark.parametrize("fault", ["loss", "gradient"])
def test_a_nan_stops_with_the_step_and_the_last_good_checkpoint(tmp_path, monkeypatch, fault):
    from skipexp.errors import UserError

    with pytest.raises(UserError) as err:
        _train_with_faults(tmp_path, monkeypatch, fault, {7}, [])
    message = str(err.value)
    what = "loss" if fault == "loss" else "gradient norm"
    assert f"the training {what} became nan at step 7 (epoch 2)" in message
    assert f"the last good checkpoint is {tmp_path / 'run' / 'checkpoints' / 'last.pt'}" in message
    assert "trainer.on_nan=skip" in message and "\n" not in message


@pytest.mark.parametrize("fault", ["loss", "gradient"])
def test_on_nan_skip_drops_the_bad_steps_and_finishes(tmp_path, monkeypatch, fault):
    results, run_dir = _train_with_faults(tmp_path, monkeypatch, fault, {3, 9}, ["trainer.on_nan=skip"])
    assert results["skipped_steps"] == 2 and results["epochs_completed"] == 4
    weights = _weights(run_dir)
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    assert [s for s, _ in _loss_events(run_dir)] == [s for s in range(1, 17) if s not in (3, 9)]


@pytest.mark.slow
def test_ten_sigkills_at_random_moments_resume_to_the_same_weights(tmp_path, reference):
    """Each trial: kill -9 at a random moment (during a step, a validation or a checkpoint write), resume, repeat."""
    rng = random.Random(2026)
    wall = REFERENCE_WALL_S[0]
    args = [*RUN, "resume=auto", "hydra.run.dir=run"]
    for trial in range(10):
        cwd = tmp_path / f"trial{trial}"
        killed = False
        for fraction in [rng.uniform(0.15, 0.85), 0.3, 0.2, 0.1]:  # the first kill: a random moment of the run
            shutil.rmtree(cwd, ignore_errors=True)
            cwd.mkdir()
            killed = _run_until(args, cwd, fraction * wall)
            if killed:
                break
        assert killed, f"trial {trial}: the run always finished before the kill"
        for _attempt in range(30):  # resume, killed again at random moments, until the run completes
            if not _run_until(args, cwd, rng.uniform(0.3, 1.2) * wall):
                break
        else:
            raise AssertionError(f"trial {trial} never finished")
        assert_same_run(cwd / "run", reference)


def _run_until(args: list[str], cwd: Path, seconds: float) -> bool:
    """Run skipexp for at most ``seconds``; SIGKILL it then (True) or let it finish successfully (False)."""
    proc = _start(args, cwd)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
        return True
    assert proc.returncode == 0, proc.stderr.read()
    return False


@pytest.mark.slow
def test_a_compiled_run_resumes_to_the_same_weights_and_tracks_the_eager_one(tmp_path):
    """trainer.compile=true (experiment=study_cpu's): a run stopped after 2 of its 4 epochs and resumed ends
    bitwise as the uninterrupted compiled run, gradient flow and TensorBoard included; and it learns as the
    eager run does, in fp32: the same first steps within the rounding of two ways to compute them, then two
    trajectories that drift apart (RMSprop's early steps amplify any difference) at the same level of loss."""
    compiled = [*RUN, "trainer.compile=true", "model.dropout=0", "trainer.precision=fp32"]
    run_cli([*compiled, "hydra.run.dir=whole"], tmp_path)
    run_cli([*compiled, "trainer.epochs=2", "resume=auto", "hydra.run.dir=parts"], tmp_path)
    proc = run_cli([*compiled, "resume=auto", "hydra.run.dir=parts"], tmp_path)  # 2 more epochs, compiled again
    assert "resuming" in proc.stdout + proc.stderr and "torch.compile" in proc.stdout + proc.stderr
    assert_same_run(tmp_path / "parts", tmp_path / "whole")
    run_cli([*RUN, "model.dropout=0", "trainer.precision=fp32", "hydra.run.dir=eager"], tmp_path)
    losses, eager = (np.array([v for _, v in _loss_events(tmp_path / run)]) for run in ("whole", "eager"))
    np.testing.assert_allclose(losses[:4], eager[:4], rtol=1e-4)  # the same steps, rounded another way
    assert losses[8:].mean() == pytest.approx(eager[8:].mean(), rel=0.03)  # then two trajectories, drifting apart
