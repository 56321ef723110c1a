"""The training loop, top to bottom: steps, validation, checkpoints, results.json.

``train`` receives a run's parts from ``skipexp.build`` (nothing here reads the
config or builds a part) and writes the run folder. Under torchrun every rank
runs this loop on its share of each global batch (see skipexp.distributed);
rank 0 alone validates and writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from skipexp import checks
from skipexp.checkpoint import CheckpointError, copy_checkpoint, load_latest, save_checkpoint
from skipexp.errors import UserError
from skipexp.evaluate import evaluate
from skipexp.files import atomic_write, write_json
from skipexp.rundir import (
    BEST_CHECKPOINT,
    CHECKPOINTS,
    LAST_CHECKPOINT,
    RESULTS,
    TENSORBOARD,
    VAL_PANEL,
    convergence,
    early_stop_due,
    summary_line,
    weight_decay_on,
)
from skipexp.runtime import Runtime

log = logging.getLogger(__name__)
PANEL_IMAGES = 4  # validation images shown in TensorBoard's image panel
# TensorBoard sorts its sections by name: the digit puts the scores a researcher looks at first (training loss, val
# Dice, V_rand, V_info) ahead of the per-layer gradient sections (grad_norm/<stage>/..., update/<stage>/...)
TRAIN_TAGS, VAL_TAGS = "1_train", "1_val"
ON_NAN = ("stop", "skip")
ARCHITECTURE_KEYS = [("model", "long_skip"), ("model", "short_skip"), ("model", "block"), ("model", "width"),
                     ("model", "n_simple_blocks"), ("model", "merge"), ("model", "upsample"), ("model", "norm"),
                     ("depth", "layers")]


@dataclass(frozen=True)
class LoopSettings:
    """How long and how the loop runs: the one place these ``trainer`` keys are read and checked."""

    epochs: int
    batch_size: int
    samples_per_epoch: int  # 0 = one pass over the training set
    num_workers: int
    val_every: int
    patience: int  # 0 = no early stopping
    on_nan: str
    budget_min: float = 0.0  # 0 = no budget: the run ends after ``epochs``; else at this much wall time, or sooner

    KEYS = ("epochs", "batch_size", "samples_per_epoch", "num_workers", "val_every", "patience", "on_nan",
            "budget_min")

    @classmethod
    def from_config(cls, trainer: DictConfig) -> LoopSettings:
        """Read and check ``trainer.epochs`` ... ``trainer.on_nan``."""
        def count(key: str, minimum: int = 1) -> int:
            return checks.integer("trainer", trainer, key, minimum=minimum)

        return cls(epochs=count("epochs"), batch_size=count("batch_size"),
                   samples_per_epoch=count("samples_per_epoch", 0), num_workers=count("num_workers", 0),
                   val_every=count("val_every"), patience=count("patience", 0),
                   on_nan=checks.one_of("trainer", trainer, "on_nan", ON_NAN),
                   budget_min=checks.non_negative_number("trainer", trainer, "budget_min", example=20))

    @property
    def budget_s(self) -> float:
        """The wall-clock budget in seconds (0 = none)."""
        return 60.0 * self.budget_min

    def check_batches(self, n_train: int, world_size: int) -> int:
        """Samples an epoch; every rank must get at least one sample of every global batch."""
        per_epoch = self.samples_per_epoch or n_train
        last = per_epoch % self.batch_size
        if world_size > 1 and (self.batch_size < world_size or 0 < last < world_size):
            raise UserError(f"trainer.batch_size={self.batch_size} (the global batch) with {per_epoch} samples an "
                            f"epoch leaves some of the {world_size} processes without samples; use a batch_size and "
                            f"trainer.samples_per_epoch that are multiples of {world_size}.")
        return per_epoch


@dataclass
class TrainParts:
    """What ``skipexp.build.build_training`` hands the loop: built once, from the composed config."""

    runtime: Runtime
    loop: LoopSettings
    data: Any  # skipexp.data.DataSplits: train (augmented), val
    loader: torch.utils.data.DataLoader  # over data.train, batch_sampler = ``batches`` over ``stream``
    stream: Any  # skipexp.data.common.SampleStream: which samples each epoch draws
    batches: Any  # skipexp.data.common.ShardedBatches: this rank's share of each global batch
    collate: Callable  # stacks images of different sizes into a padded batch
    model: torch.nn.Module  # what is measured and saved
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loss_fn: Callable  # loss(logits, target, valid, reduce=None)
    gradflow: Any  # skipexp.gradflow.GradFlow
    header: dict[str, Any]  # the run-folder header of results.json
    config: dict[str, Any]  # the composed config, saved in every checkpoint
    started: float = field(default_factory=time.perf_counter)  # when the build began: the run's clock


@dataclass
class TrainState:
    """Where the run is: what a checkpoint holds beside the weights, and what resume restores."""

    step: int = 0
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the next epoch already done (a run stopped mid-epoch)
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    results: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0  # wall time of the earlier sessions of this run
    skipped_steps: int = 0
    images_seen: int = 0  # training images (crops) the steps have used, over every process
    stopped_by: str = ""  # what ended the run: epochs | budget | early_stop
    train_history: list[dict[str, Any]] = field(default_factory=list)  # the mean training loss of every epoch
    epoch_loss: list[float] = field(default_factory=lambda: [0.0, 0])  # this epoch's loss sum and step count

    COUNTERS = ("step", "epoch", "batch_in_epoch", "history", "best", "results", "wall_s", "skipped_steps",
                "images_seen", "stopped_by", "train_history", "epoch_loss")

    def checkpoint(self, parts: TrainParts, wall_s: float) -> dict[str, Any]:
        """Everything resume needs to continue bitwise: weights, optimizer, schedule, RNGs, gradient flow."""
        counters = {key: getattr(self, key) for key in self.COUNTERS}
        return {**counters, "wall_s": wall_s, "model": parts.model.state_dict(),
                "optimizer": parts.optimizer.state_dict(), "scheduler": parts.scheduler.state_dict(),
                "scaler": parts.scaler.state_dict(), "config": parts.config, "header": parts.header,
                "gradflow": parts.gradflow.state_dict() if parts.gradflow.enabled else None, "rng": _rng_state()}

    @classmethod
    def restore(cls, parts: TrainParts, last: Path) -> TrainState:
        """Load the newest good checkpoint of ``last`` into the parts; return the run's counters."""
        saved, source, passed_over = load_latest(last)
        if passed_over:
            log.warning(f"{passed_over} Resuming from {source}, the checkpoint before it.")
        mismatch = _network_mismatch(saved["config"], parts.config)
        if mismatch:
            raise CheckpointError(f"checkpoint {source} is of a different network ({mismatch}); resume with the "
                                  "run's own model and depth, or start a new run.")
        decayed, asked = weight_decay_on(saved["config"]), parts.header["weight_decay_on"]
        if decayed != asked:  # the optimizer's parameter groups differ with it
            raise CheckpointError(f"checkpoint {source} was trained with optimizer.weight_decay_on={decayed}, "
                                  f"this run asks for {asked}; resume with optimizer.weight_decay_on={decayed}, "
                                  "or start a new run.")
        parts.model.load_state_dict(saved["model"])
        parts.optimizer.load_state_dict(saved["optimizer"])
        parts.scheduler.load_state_dict(saved["scheduler"])
        parts.scaler.load_state_dict(saved["scaler"])
        if parts.gradflow.enabled and saved.get("gradflow"):
            parts.gradflow.load_state_dict(saved["gradflow"])
        _set_rng_state(saved["rng"])
        return cls(**{key: saved[key] for key in cls.COUNTERS if key in saved})  # older checkpoints lack some


def train(parts: TrainParts, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train the network, validating every ``trainer.val_every`` epochs; return results.json's content.

    A checkpoint (``checkpoints/last.pt``, the one before it kept as ``last.prev.pt``)
    is written after every epoch and when SIGINT or SIGTERM stops the run between
    steps; ``resume`` continues from it so that the run ends bitwise as an
    uninterrupted one would (on CPU): weights, optimizer, schedule, every random
    stream, the sample stream, the gradient-flow arrays and the TensorBoard steps.
    """
    run = _Run(parts, run_dir, resume)
    state, settings, dist = run.state, parts.loop, parts.runtime.dist
    first_epoch = state.epoch + 1
    if state.stopped_by == "epochs" or (state.stopped_by == "budget" and not run.budget_spent()):
        state.stopped_by = ""  # resumed with more epochs or a larger budget: the run goes on
    with run.session() as signals:
        for epoch in range(first_epoch, settings.epochs + 1):
            if state.stopped_by:  # a resumed run that had already ended (its budget spent, or it stopped early)
                break
            # the epoch's batches; a run resumed mid-epoch skips those its checkpoint had done
            done = state.batch_in_epoch if epoch == first_epoch else 0
            run.start_epoch(epoch, done)
            for index, batch in enumerate(parts.loader, start=done + 1):
                run.step(batch, epoch)
                # rank 0's signal, budget and progress, so that every rank stops and sets its lr at the same step
                stop, spent, progress = dist.broadcast((signals.signum, run.budget_spent(), run.progress()))
                if settings.budget_s:  # the schedule over the budget (or the epochs): the lr of the next step
                    parts.scheduler.advance(progress)
                if spent:  # trainer.budget_min: this (partial) epoch is the last
                    state.stopped_by = "budget"
                    break
                if stop is not None and index < len(parts.loader):
                    run.save(epoch - 1, index)
                    raise Stopped(_stopped_message(stop, state.step, run_dir), stop)
            # the epoch's end: schedule, gradient flow, validation, checkpoint, best.pt
            early_stop = run.end_epoch(epoch)
            if state.stopped_by == "budget":
                log.info(f"budget of {settings.budget_min:g} min spent after {state.step} steps (epoch {epoch})")
                break
            if signals.signum is not None and epoch < settings.epochs:
                raise Stopped(_stopped_message(signals.signum, state.step, run_dir), signals.signum)
            if early_stop:
                log.info(f"early stop: no better val_dice for {settings.patience} epochs "
                         f"(best at epoch {state.best['epoch']})")
                break
    return state.results


class _Run:
    """One training session of a run: its parts, its state, its writer and its clock."""

    def __init__(self, parts: TrainParts, run_dir: Path, resume: bool) -> None:
        self.parts, self.run_dir = parts, run_dir
        self.started = parts.started
        self.main = parts.runtime.dist.is_main
        self.last = run_dir / CHECKPOINTS / LAST_CHECKPOINT
        try:
            self.state = TrainState.restore(parts, self.last) if resume else TrainState()
        except BaseException:
            parts.runtime.dist.close()
            raise
        self.net = parts.runtime.compile(parts.runtime.dist.wrap(parts.model, parts.runtime.device))  # what steps run
        self.train_loss = lambda *args: parts.loss_fn(*args, reduce=parts.runtime.dist.all_sum)  # the global batch's
        self.writer = self._open_writer(resume)
        if parts.runtime.compile_mode is not None and self.main:
            log.info(f"torch.compile (mode {parts.runtime.compile_mode}) compiles at the first step: minutes "
                     "for a net not compiled on this machine before, seconds from inductor's cache after")
        self.panel = [parts.data.val[i] for i in range(min(PANEL_IMAGES, len(parts.data.val)))]
        # a budgeted run's bar counts seconds of its budget, so its ETA is the budget's end (a run that reaches
        # its epochs first ends sooner)
        budget = parts.loop.budget_s
        self.bar = tqdm(total=round(budget) if budget else parts.loop.epochs * len(parts.loader),
                        initial=self._bar_position(),
                        desc="train", unit="s" if budget else "step", dynamic_ncols=True, disable=not self.main,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s of budget [{elapsed}<{remaining}{postfix}]"
                        if budget else None,
                        mininterval=0.5 if sys.stderr.isatty() else 30.0)  # a log file: a line every 30 s

    def _bar_position(self) -> int:
        """Where the progress bar stands: seconds of the budget spent, or steps done."""
        budget = self.parts.loop.budget_s
        return min(round(self.elapsed()), round(budget)) if budget else self.state.step

    def elapsed(self) -> float:
        """The run's wall time so far, earlier sessions included (what ``trainer.budget_min`` counts)."""
        return self.state.wall_s + time.perf_counter() - self.started

    def progress(self) -> float:
        """How far the run is towards its end: the fraction of its epochs' steps done, or of its budget spent
        where that is further. A budgeted run's schedule follows it, so a fast machine that finishes
        ``trainer.epochs`` before the budget still anneals to the schedule's end."""
        loop = self.parts.loop
        steps = self.state.step / (loop.epochs * len(self.parts.loader))
        return max(steps, self.elapsed() / loop.budget_s) if loop.budget_s else steps

    def budget_spent(self) -> bool:
        """Whether a run with ``trainer.budget_min`` has used its budget (never, without one)."""
        budget = self.parts.loop.budget_s
        return bool(budget) and self.elapsed() >= budget

    def _open_writer(self, resume: bool) -> SummaryWriter | _Silent:
        """TensorBoard's writer (rank 0); a resumed one drops events logged after the checkpoint, so no step is
        shown twice (and a job killed before its first checkpoint, restarted by resume=auto, drops them all)."""
        if not self.main:
            return _Silent()
        header, dist = self.parts.header, self.parts.runtime.dist
        log.info(summary_line(header) + (f", {dist.world_size} processes" if dist.enabled else ""))
        tb = self.run_dir / TENSORBOARD
        purge = self.state.step + 1 if resume else 0 if tb.exists() else None
        writer = SummaryWriter(str(tb), purge_step=purge)
        if resume:
            log.info(f"resuming {self.run_dir} at epoch {self.state.epoch + 1}, step {self.state.step}")
            if self.state.results:  # the checkpoint's results.json, in case a kill came between writing the two
                write_json(self.run_dir / RESULTS, self.state.results)
        else:
            writer.add_custom_scalars(self.parts.gradflow.custom_scalars_layout())
            writer.add_images("data/train_samples", self._panel(self.parts.data.train.images[:PANEL_IMAGES]), 0)
        return writer

    @contextlib.contextmanager
    def session(self) -> Iterator[_StopSignals]:
        """Catch SIGINT/SIGTERM while training; close the progress bar, writer and process group at the end."""
        try:
            with _StopSignals() as signals:
                yield signals
        finally:
            self.bar.close()
            self.writer.close()
            self.parts.runtime.dist.close()
            self.parts.runtime.release_cores()

    def start_epoch(self, epoch: int, done: int) -> None:
        """Position the sample stream at ``epoch`` (past ``done`` batches) and snapshot the weights for gradflow."""
        self.net.train()
        self.parts.stream.set_epoch(epoch)
        self.parts.batches.skip_next(done)
        if not done:  # a run resumed mid-epoch keeps the epoch's starting weights from its checkpoint
            self.parts.gradflow.start_epoch()

    def step(self, batch: dict[str, torch.Tensor], epoch: int) -> None:
        """One optimizer step on one batch, with the gradient-flow hook; a NaN/Inf stops or skips it."""
        parts, runtime, state = self.parts, self.parts.runtime, self.state
        runtime.rebalance()  # a run that started or ended beside this one moves its share of the cores
        image, label = runtime.to_device(batch["image"]), runtime.to_device(batch["label"])
        with runtime.autocast():
            logits = self.net(image)
        loss = self.train_loss(logits, label, runtime.to_device(batch["valid"]))
        parts.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        loss_value = loss.item()
        self._show(epoch, loss_value)
        if not math.isfinite(loss_value):
            return self._numerical_fault("loss", loss_value, epoch)
        parts.scaler.scale(loss).backward()
        norm = None if parts.scaler.is_enabled() else _grad_norm(parts.model)  # fp16: the scaler skips infs
        if norm is not None and not math.isfinite(norm):
            return self._numerical_fault("gradient norm", norm, epoch)
        self._record_gradients()
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        state.images_seen += image.shape[0] * runtime.dist.world_size
        state.epoch_loss = [state.epoch_loss[0] + loss_value, state.epoch_loss[1] + 1]
        self.writer.add_scalar(f"{TRAIN_TAGS}/loss", loss_value, state.step)
        return None

    def _show(self, epoch: int, loss_value: float) -> None:
        """The progress bar: epoch, loss, the last val Dice."""
        history, budget = self.state.history, self.parts.loop.budget_s
        self.bar.set_postfix(epoch=epoch, loss=f"{loss_value:.4f}", refresh=False,
                             val_dice="-" if not history else f"{history[-1]['val_dice']:.4f}",
                             **({"step": self.state.step} if budget else {}))
        self.bar.update(self._bar_position() - self.bar.n if budget else 1)

    def _record_gradients(self) -> None:
        """The gradient-flow hook: every ``gradflow.every`` steps, the per-layer gradient norms."""
        gradflow, step = self.parts.gradflow, self.state.step
        if gradflow.due(step):
            self.parts.scaler.unscale_(self.parts.optimizer)  # true gradients, not fp16-scaled ones (else a no-op)
            gradflow.log_step(self.writer, step, gradflow.record_gradients(step))

    def _numerical_fault(self, what: str, value: float, epoch: int) -> None:
        """Stop with a sentence, or (trainer.on_nan=skip) drop this step's update and go on."""
        state = self.state
        if self.parts.loop.on_nan == "skip":
            state.skipped_steps += 1
            self.parts.optimizer.zero_grad(set_to_none=True)
            log.warning(f"skipped step {state.step} (epoch {epoch}): the {what} was {value} "
                        f"({state.skipped_steps} skipped so far)")
            return
        good = f"the last good checkpoint is {self.last}" if self.last.is_file() else "no checkpoint was written yet"
        raise UserError(f"the training {what} became {value} at step {state.step} (epoch {epoch}); {good}: resume "
                        f"from it with resume={self.run_dir} and a lower optimizer.lr, or set trainer.on_nan=skip.")

    def end_epoch(self, epoch: int) -> bool:
        """Schedule, gradient flow, validation (when due), checkpoint, results.json, best.pt; True to stop early."""
        parts, state, settings = self.parts, self.state, self.parts.loop
        self.writer.add_scalar(f"{TRAIN_TAGS}/lr", parts.optimizer.param_groups[0]["lr"], state.step)
        total, steps = state.epoch_loss
        if steps:
            state.train_history.append({"epoch": epoch, "step": state.step, "train_loss": total / steps})
            self.writer.add_scalar(f"{TRAIN_TAGS}/epoch_loss", total / steps, state.step)
        state.epoch_loss = [0.0, 0]
        if not settings.budget_s:  # a budgeted run's schedule advances every step
            parts.scheduler.step()
        parts.gradflow.end_epoch(epoch)
        parts.gradflow.log_epoch(self.writer, state.step)
        due = epoch % settings.val_every == 0 or epoch == settings.epochs or bool(state.stopped_by)
        early_stop = False
        if due and self.main:
            early_stop = early_stop_due(epoch, self.validate(epoch), settings.patience)
        early_stop = parts.runtime.dist.broadcast(early_stop) if due else False
        if early_stop or (epoch == settings.epochs and not state.stopped_by):
            state.stopped_by = "early_stop" if early_stop else "epochs"
            if state.results:  # rank 0's (the other ranks keep no results)
                state.results["stopped_by"] = state.stopped_by
        self.save(epoch, 0)
        if due and self.main:  # after the checkpoint that holds it: a kill in between leaves what resume rewrites
            write_json(self.run_dir / RESULTS, state.results)
        if self.main and state.best is not None and state.best["epoch"] == epoch:
            copy_checkpoint(self.last, self.run_dir / CHECKPOINTS / BEST_CHECKPOINT)
        return bool(early_stop)

    def validate(self, epoch: int) -> int:
        """Score the validation set, log it to TensorBoard, and update the history, best and results; return the
        best epoch so far."""
        parts, state, writer = self.parts, self.state, self.writer
        scores, probs = evaluate(parts.model, parts.data.val, parts.loss_fn, parts.runtime)
        record = {"epoch": epoch, "step": state.step, **scores}
        state.history.append(record)
        for key, value in scores.items():
            writer.add_scalar(f"{VAL_TAGS}/{key.removeprefix('val_')}", value, state.step)
        writer.add_images(f"{VAL_TAGS}/input", self._panel([s["image"] for s in self.panel]), state.step)
        writer.add_images(f"{VAL_TAGS}/label", self._stack([s["label"] for s in self.panel]), state.step)
        predictions = [torch.from_numpy(p)[None] for p in probs[:len(self.panel)]]
        writer.add_images(f"{VAL_TAGS}/prediction", self._stack(predictions), state.step)
        if parts.gradflow.enabled:
            parts.gradflow.log_heatmaps(writer, state.step, parts.gradflow.save(self.run_dir))
        self._save_panel(probs[0], epoch)
        if state.best is None or scores["val_dice"] > state.best["val_dice"]:
            state.best = record
        state.results = {**parts.header, "epochs_completed": epoch, "steps_completed": state.step,
                         "images_seen": state.images_seen, "best": state.best, "final": record,
                         "converged": convergence([h["val_dice"] for h in state.history]),
                         "stopped_by": state.stopped_by or None,  # None: still running, or killed
                         "gradflow": {"first_last_ratio": parts.gradflow.first_last_ratio(),
                                      "stage_median_grad_norm": parts.gradflow.stage_medians()},
                         "history": state.history, "train_history": state.train_history,
                         "wall_s": round(self.elapsed(), 3),
                         "skipped_steps": state.skipped_steps}
        log.info(f"epoch {epoch}/{parts.loop.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        return state.best["epoch"]

    def _save_panel(self, prob: np.ndarray, epoch: int) -> None:
        """The first validation image, its label and this validation's membrane probabilities, for the report's
        side-by-side predictions (skipexp-report draws every variant's prediction of the same slice)."""
        sample = self.panel[0]
        arrays = {"image": sample["image"][0].numpy().astype(np.float16), "label": sample["label"][0].numpy() > 0.5,
                  "valid": sample["valid"][0].numpy() > 0.5, "prob": prob.astype(np.float16),
                  "epoch": np.int64(epoch), "step": np.int64(self.state.step)}
        atomic_write(self.run_dir / VAL_PANEL, lambda handle: np.savez_compressed(handle, **arrays))

    def save(self, epoch_done: int, batch_in_epoch: int) -> None:
        """Write last.pt (keeping the one before); everything logged up to now reaches disk first."""
        if not self.main:
            return
        self.writer.flush()
        self.state.epoch, self.state.batch_in_epoch = epoch_done, batch_in_epoch
        save_checkpoint(self.state.checkpoint(self.parts, self.elapsed()), self.last, keep_previous=True)

    def _stack(self, images: list[torch.Tensor]) -> torch.Tensor:
        """C x H x W images of possibly different sizes as one padded N x C x H x W panel."""
        return self.parts.collate([{"image": im} for im in images])["image"]

    def _panel(self, images: list[torch.Tensor]) -> torch.Tensor:
        """A panel of images scaled to [0, 1] for display."""
        return _to_unit(self._stack(images))


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """Scale each image of an N x C x H x W batch to [0, 1] for display."""
    flat = images.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    return (images - low.view(-1, 1, 1, 1)) / (high - low).clamp_min(1e-6).view(-1, 1, 1, 1)


class _Silent:
    """Stands in for the SummaryWriter on ranks other than 0, which write nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def _network_mismatch(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The architecture keys in which a checkpoint's config differs from this run's, as ``key saved vs now``."""
    diffs = [f"{a}.{b} {saved.get(a, {}).get(b)} vs {now[a][b]}" for a, b in ARCHITECTURE_KEYS
             if saved.get(a, {}).get(b) != now[a][b]]
    return ", ".join(diffs) or None


def _grad_norm(model: torch.nn.Module) -> float:
    """The global L2 norm of all gradients (inf or nan when any gradient is)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))) if grads else 0.0


def _rng_state() -> dict[str, Any]:
    """Every global random stream, in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuples(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """random.setstate wants the nested tuples it gave (a checkpoint may hand lists back)."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


class Stopped(UserError):
    """SIGINT or SIGTERM: the run saved a checkpoint and stopped; exit with 128 + the signal's number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class _StopSignals:
    """Catches SIGINT and SIGTERM (what SLURM sends before pre-emption) so the loop can stop between steps."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._old[signum] = signal.signal(signum, self._catch)
        return self

    def _catch(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)


def _stopped_message(signum: int, step: int, run_dir: Path) -> str:
    name = signal.Signals(signum).name
    return (f"{name} received: stopped after step {step} with a checkpoint; continue with "
            f"`skipexp resume={run_dir}`.")
