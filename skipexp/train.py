"""The training loop, top to bottom: steps, validation, checkpoints, results.json.

``train`` is the one place the loop's ``trainer`` keys (epochs, batch_size,
samples_per_epoch, crop, loss, num_workers, val_every, patience) are read.
Under torchrun every rank runs this loop on its share of each global batch
(see skipexp.distributed); rank 0 alone validates and writes.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from skipexp.build import build_network, run_header, summary_line
from skipexp.checkpoint import CheckpointError, copy_checkpoint, load_latest, save_checkpoint
from skipexp.data import build_data
from skipexp.data.augment import Augmenter
from skipexp.data.common import SampleStream, ShardedBatches, pad_collate
from skipexp.errors import UserError
from skipexp.evaluate import evaluate
from skipexp.files import write_json
from skipexp.gradflow import GradFlow
from skipexp.losses import get_loss
from skipexp.optim import build_optimizer
from skipexp.rundir import BEST_CHECKPOINT, CHECKPOINTS, LAST_CHECKPOINT, RESULTS, TENSORBOARD
from skipexp.runtime import Runtime

log = logging.getLogger(__name__)
PANEL_IMAGES = 4  # validation images shown in TensorBoard's image panel
ON_NAN = ("stop", "skip")


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """Scale each image of an N x C x H x W batch to [0, 1] for display."""
    flat = images.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    return (images - low.view(-1, 1, 1, 1)) / (high - low).clamp_min(1e-6).view(-1, 1, 1, 1)


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack C x H x W images of possibly different sizes into one padded N x C x H x W panel."""
    return pad_collate([{"image": im} for im in images])["image"]


class _Silent:
    """Stands in for the SummaryWriter on ranks other than 0, which write nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def _check_batches(trainer: DictConfig, per_epoch: int, world_size: int) -> None:
    """Every rank must get at least one sample of every global batch."""
    if trainer.epochs < 1 or trainer.batch_size < 1 or trainer.val_every < 1:
        raise UserError(f"trainer.epochs={trainer.epochs}, trainer.batch_size={trainer.batch_size} and "
                        f"trainer.val_every={trainer.val_every} must each be at least 1.")
    last = per_epoch % trainer.batch_size
    if world_size > 1 and (trainer.batch_size < world_size or 0 < last < world_size):
        raise UserError(f"trainer.batch_size={trainer.batch_size} (the global batch) with {per_epoch} samples an "
                        f"epoch leaves some of the {world_size} processes without samples; use a batch_size and "
                        f"trainer.samples_per_epoch that are multiples of {world_size}.")


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


def _network_mismatch(saved: dict[str, Any], cfg: DictConfig) -> str | None:
    """The architecture keys in which a checkpoint's config differs from this run's, as ``key saved vs now``."""
    now = OmegaConf.to_container(cfg, resolve=True)
    keys = [("model", "long_skip"), ("model", "short_skip"), ("model", "block"), ("model", "width"),
            ("model", "n_simple_blocks"), ("model", "merge"), ("model", "upsample"), ("model", "norm"),
            ("depth", "layers")]
    diffs = [f"{a}.{b} {saved.get(a, {}).get(b)} vs {now[a][b]}" for a, b in keys
             if saved.get(a, {}).get(b) != now[a][b]]
    return ", ".join(diffs) or None


def train(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train the configured network, validating every ``trainer.val_every`` epochs; return results.json's content.

    A checkpoint (``checkpoints/last.pt``, the one before it kept as ``last.prev.pt``)
    is written after every epoch and when SIGINT or SIGTERM stops the run between
    steps; ``resume`` continues from it so that the run ends bitwise as an
    uninterrupted one would (on CPU): weights, optimizer, schedule, every random
    stream, the sample stream, the gradient-flow arrays and the TensorBoard steps.
    """
    started = time.perf_counter()
    trainer = cfg.trainer
    if trainer.on_nan not in ON_NAN:
        raise UserError(f"trainer.on_nan={trainer.on_nan!r} is not one of {', '.join(ON_NAN)}.")
    runtime = Runtime.from_config(trainer)
    dist, main = runtime.dist, runtime.dist.is_main
    runtime.seed_everything()
    checkpoints = run_dir / CHECKPOINTS
    last = checkpoints / LAST_CHECKPOINT
    state: dict[str, Any] | None = None
    if resume:
        state, source, passed_over = load_latest(last)
        if passed_over:
            log.warning(f"{passed_over} Resuming from {source}, the checkpoint before it.")
        mismatch = _network_mismatch(state["config"], cfg)
        if mismatch:
            raise CheckpointError(f"checkpoint {source} is of a different network ({mismatch}); resume with the "
                                  "run's own model and depth, or start a new run.")
    loss_fn = get_loss(trainer.loss)
    train_loss = functools.partial(loss_fn, reduce=dist.all_sum)  # the global batch's loss under torchrun
    data = build_data(cfg.dataset, Augmenter.from_config(cfg.augment, trainer.crop))
    per_epoch = trainer.samples_per_epoch or len(data.train)
    _check_batches(trainer, per_epoch, dist.world_size)
    dist.init(runtime.device)
    model = build_network(cfg.model, cfg.depth, data.in_channels, runtime)
    optimizer, scheduler = build_optimizer(cfg.optimizer, model.parameters(), trainer.epochs,
                                           runtime.fused_optimizer)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    header = {**run_header("train", model, runtime, data.name), "world_size": dist.world_size}
    gradflow = GradFlow.from_config(cfg.gradflow, model, main)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    results: dict[str, Any] = {}
    step, epochs_done, batches_done, wall_before, skipped = 0, 0, 0, 0.0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, epochs_done, batches_done = state["step"], state["epoch"], state["batch_in_epoch"]
        history, best, results = state["history"], state["best"], state["results"]
        wall_before, skipped = state["wall_s"], state["skipped_steps"]
        if gradflow.enabled and state.get("gradflow"):
            gradflow.load_state_dict(state["gradflow"])
        _set_rng_state(state["rng"])
    net = runtime.compile(dist.wrap(model, runtime.device))  # what the step runs; ``model`` is measured and saved
    if main:
        log.info(summary_line(header) + (f", {dist.world_size} processes" if dist.enabled else ""))
        if state is not None:
            log.info(f"resuming {run_dir} at epoch {epochs_done + 1}, step {step}")
            if results:  # the checkpoint's results.json, in case a kill came between writing the two
                write_json(run_dir / RESULTS, results)

    # an epoch draws samples_per_epoch samples (0 = one pass), in fresh permutations of the training set
    stream = SampleStream(len(data.train), per_epoch, runtime.seed)
    batches = ShardedBatches(stream, trainer.batch_size, dist.shard)
    # the loader's own generator: starting an epoch must not draw from torch's global one (dropout's), or a run
    # resumed mid-epoch would see different dropout masks than an uninterrupted one
    loader = DataLoader(data.train, batch_sampler=batches, num_workers=trainer.num_workers, collate_fn=pad_collate,
                        pin_memory=runtime.device.type == "cuda", persistent_workers=trainer.num_workers > 0,
                        generator=torch.Generator().manual_seed(runtime.seed))
    config = OmegaConf.to_container(cfg, resolve=True)
    # a resumed writer drops any events logged after the checkpoint, so no step is shown twice
    # (and a job killed before its first checkpoint, restarted by resume=auto, drops all of its events)
    purge = step + 1 if state else 0 if (run_dir / TENSORBOARD).exists() else None
    writer = SummaryWriter(str(run_dir / TENSORBOARD), purge_step=purge) if main else _Silent()
    if state is None:
        writer.add_custom_scalars(gradflow.custom_scalars_layout())
        writer.add_images("data/train_samples", _to_unit(_stack(data.train.images[:PANEL_IMAGES])), 0)
    panel = [data.val[i] for i in range(min(PANEL_IMAGES, len(data.val)))]
    bar = tqdm(total=trainer.epochs * len(loader), initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=not main, mininterval=0.5 if sys.stderr.isatty() else 30.0)  # a log file: a line every 30 s

    def save(epoch_done: int, batch_in_epoch: int) -> None:
        """Write last.pt (keeping the one before); everything logged up to now reaches disk first."""
        if not main:
            return
        writer.flush()
        save_checkpoint({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch_done, "batch_in_epoch": batch_in_epoch, "step": step,
            "config": config, "header": header, "history": history, "best": best, "results": results,
            "wall_s": wall_before + time.perf_counter() - started, "skipped_steps": skipped,
            "gradflow": gradflow.state_dict() if gradflow.enabled else None, "rng": _rng_state(),
        }, last, keep_previous=True)

    def numerical_fault(what: str, value: float, epoch: int) -> None:
        """Stop with a sentence, or (trainer.on_nan=skip) drop this step's update and go on."""
        nonlocal skipped
        if trainer.on_nan == "skip":
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
            log.warning(f"skipped step {step} (epoch {epoch}): the {what} was {value} ({skipped} skipped so far)")
            return
        good = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
        raise UserError(f"the training {what} became {value} at step {step} (epoch {epoch}); {good}: resume from "
                        f"it with resume={run_dir} and a lower optimizer.lr, or set trainer.on_nan=skip.")

    try:
        with _StopSignals() as signals:
            for epoch in range(epochs_done + 1, trainer.epochs + 1):
                net.train()
                stream.set_epoch(epoch)
                skip = batches_done if epoch == epochs_done + 1 else 0
                batches.skip_next(skip)
                if not skip:  # a run resumed mid-epoch keeps the epoch's starting weights from its checkpoint
                    gradflow.start_epoch()
                for index, batch in enumerate(loader, start=skip + 1):
                    image, label = runtime.to_device(batch["image"]), runtime.to_device(batch["label"])
                    with runtime.autocast():
                        logits = net(image)
                    loss = train_loss(logits, label, runtime.to_device(batch["valid"]))
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    loss_value = loss.item()
                    if not math.isfinite(loss_value):
                        numerical_fault("loss", loss_value, epoch)
                    else:
                        scaler.scale(loss).backward()
                        norm = None if scaler.is_enabled() else _grad_norm(model)  # fp16: the scaler skips infs
                        if norm is not None and not math.isfinite(norm):
                            numerical_fault("gradient norm", norm, epoch)
                        else:
                            if gradflow.due(step):
                                scaler.unscale_(optimizer)  # true gradients, not fp16-scaled ones (else a no-op)
                                gradflow.log_step(writer, step, gradflow.record_gradients(step))
                            scaler.step(optimizer)
                            scaler.update()
                            writer.add_scalar("train/loss", loss_value, step)
                    bar.set_postfix(epoch=epoch, loss=f"{loss_value:.4f}", refresh=False,
                                    val_dice="-" if not history else f"{history[-1]['val_dice']:.4f}")
                    bar.update(1)
                    stop = dist.broadcast(signals.signum)  # every rank stops at the same step
                    if stop is not None and index < len(loader):
                        save(epoch - 1, index)
                        raise Stopped(_stopped_message(stop, step, run_dir), stop)
                writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
                scheduler.step()
                gradflow.end_epoch(epoch)
                gradflow.log_epoch(writer, step)
                early_stop = validated = False
                if epoch % trainer.val_every == 0 or epoch == trainer.epochs:
                    if main:
                        results, best = _validate(model, data, loss_fn, runtime, writer, panel, epoch, step,
                                                          history, best, header, gradflow, run_dir, trainer)
                        results = {**results, "wall_s": round(wall_before + time.perf_counter() - started, 3),
                                   "skipped_steps": skipped}
                        validated = True
                        early_stop = bool(trainer.patience and epoch - best["epoch"] >= trainer.patience)
                    early_stop = dist.broadcast(early_stop)
                save(epoch, 0)
                if validated:  # after the checkpoint that holds it: a kill in between leaves what resume rewrites
                    write_json(run_dir / RESULTS, results)
                if main and best is not None and best["epoch"] == epoch:
                    copy_checkpoint(last, checkpoints / BEST_CHECKPOINT)
                if signals.signum is not None and epoch < trainer.epochs:
                    raise Stopped(_stopped_message(signals.signum, step, run_dir), signals.signum)
                if early_stop:
                    log.info(f"early stop: no better val_dice for {trainer.patience} epochs "
                             f"(best at epoch {best['epoch']})")
                    break
    finally:
        bar.close()
        writer.close()
        dist.close()
    return results


def _grad_norm(model: torch.nn.Module) -> float:
    """The global L2 norm of all gradients (inf or nan when any gradient is)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))) if grads else 0.0


def _stopped_message(signum: int, step: int, run_dir: Path) -> str:
    name = signal.Signals(signum).name
    return (f"{name} received: stopped after step {step} with a checkpoint; continue with "
            f"`skipexp resume={run_dir}`.")


def _validate(model, data, loss_fn, runtime, writer, panel, epoch: int, step: int, history: list, best, header,
              gradflow: GradFlow, run_dir: Path, trainer: DictConfig) -> tuple[dict, dict]:
    """Score the validation set, log it, and return (results.json content, best record)."""
    scores, probs = evaluate(model, data.val, loss_fn, runtime)
    record = {"epoch": epoch, "step": step, **scores}
    history.append(record)
    for key, value in scores.items():
        writer.add_scalar(f"val/{key.removeprefix('val_')}", value, step)
    writer.add_images("val/input", _to_unit(_stack([s["image"] for s in panel])), step)
    writer.add_images("val/label", _stack([s["label"] for s in panel]), step)
    writer.add_images("val/prediction", _stack([torch.from_numpy(p)[None] for p in probs[:len(panel)]]), step)
    if gradflow.enabled:
        gradflow.log_heatmaps(writer, step, gradflow.save(run_dir))
    if best is None or scores["val_dice"] > best["val_dice"]:
        best = record
    results = {**header, "epochs_completed": epoch, "steps_completed": step, "best": best, "final": record,
               "gradflow": {"first_last_ratio": gradflow.first_last_ratio(),
                            "stage_median_grad_norm": gradflow.stage_medians()},
               "history": history}
    log.info(f"epoch {epoch}/{trainer.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return results, best
