"""The training loop, top to bottom: steps, validation, checkpoints, results.json.

``train`` is the one place the loop's ``trainer`` keys (epochs, batch_size,
samples_per_epoch, crop, loss, num_workers, val_every, patience) are read.
Under torchrun every rank runs this loop on its share of each global batch
(see skipexp.distributed); rank 0 alone validates and writes.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from skipexp.checkpoint import save_checkpoint
from skipexp.data import build_data
from skipexp.data.augment import Augmenter
from skipexp.data.common import SampleStream, ShardedBatches, pad_collate
from skipexp.errors import UserError
from skipexp.evaluate import evaluate
from skipexp.gradflow import GradFlow
from skipexp.losses import get_loss
from skipexp.models import build_model
from skipexp.optim import build_optimizer
from skipexp.rundir import CHECKPOINTS, RESULTS, TENSORBOARD, run_header, summary_line, write_json
from skipexp.runtime import Runtime

log = logging.getLogger(__name__)
PANEL_IMAGES = 4  # validation images shown in TensorBoard's image panel


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


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train the configured network, validating every ``trainer.val_every`` epochs; return results.json's content."""
    started = time.perf_counter()
    trainer = cfg.trainer
    runtime = Runtime.from_config(trainer)
    dist, main = runtime.dist, runtime.dist.is_main
    runtime.seed_everything()
    loss_fn = get_loss(trainer.loss)
    train_loss = functools.partial(loss_fn, reduce=dist.all_sum)  # the global batch's loss under torchrun
    data = build_data(cfg.dataset, Augmenter.from_config(cfg.augment, trainer.crop))
    per_epoch = trainer.samples_per_epoch or len(data.train)
    _check_batches(trainer, per_epoch, dist.world_size)
    dist.init(runtime.device)
    model = runtime.prepare(build_model(cfg.model, cfg.depth, data.in_channels))
    net, _ = runtime.compile(dist.wrap(model, runtime.device))  # what the step runs; ``model`` is measured and saved
    optimizer, scheduler = build_optimizer(cfg.optimizer, model.parameters(), trainer.epochs)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    header = {**run_header("train", cfg.model, model, runtime, data.name), "world_size": dist.world_size}
    if main:
        log.info(summary_line(header) + (f", {dist.world_size} processes" if dist.enabled else ""))

    # an epoch draws samples_per_epoch samples (0 = one pass), in fresh permutations of the training set
    stream = SampleStream(len(data.train), per_epoch, runtime.seed)
    loader = DataLoader(data.train, batch_sampler=ShardedBatches(stream, trainer.batch_size, dist.shard),
                        num_workers=trainer.num_workers, collate_fn=pad_collate,
                        pin_memory=runtime.device.type == "cuda", persistent_workers=trainer.num_workers > 0)
    checkpoints = run_dir / CHECKPOINTS
    config = OmegaConf.to_container(cfg, resolve=True)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    step = 0
    results: dict[str, Any] = {}
    writer = SummaryWriter(str(run_dir / TENSORBOARD)) if main else _Silent()
    gradflow = GradFlow.from_config(cfg.gradflow, model, main)
    writer.add_custom_scalars(gradflow.custom_scalars_layout())
    panel = [data.val[i] for i in range(min(PANEL_IMAGES, len(data.val)))]
    writer.add_images("data/train_samples", _to_unit(_stack(data.train.images[:PANEL_IMAGES])), 0)
    bar = tqdm(total=trainer.epochs * len(loader), desc="train", unit="step", dynamic_ncols=True, disable=not main,
               mininterval=0.5 if sys.stderr.isatty() else 30.0)  # a log file gets a line every 30 s
    try:
        for epoch in range(1, trainer.epochs + 1):
            net.train()
            stream.set_epoch(epoch)
            gradflow.start_epoch()
            for batch in loader:
                image, label = runtime.to_device(batch["image"]), runtime.to_device(batch["label"])
                with runtime.autocast():
                    logits = net(image)
                loss = train_loss(logits, label, runtime.to_device(batch["valid"]))
                if not torch.isfinite(loss):
                    raise UserError(f"the training loss became {loss.item()} at step {step + 1} (epoch {epoch}); "
                                    "lower optimizer.lr or use trainer.precision=fp32.")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                step += 1
                if gradflow.due(step):
                    scaler.unscale_(optimizer)  # true gradients, not fp16-scaled ones (a no-op otherwise)
                    gradflow.log_step(writer, step, gradflow.record_gradients(step))
                scaler.step(optimizer)
                scaler.update()
                loss_value = loss.item()
                writer.add_scalar("train/loss", loss_value, step)
                bar.set_postfix(epoch=epoch, loss=f"{loss_value:.4f}", refresh=False,
                                val_dice="-" if not history else f"{history[-1]['val_dice']:.4f}")
                bar.update(1)
            writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
            scheduler.step()
            gradflow.end_epoch(epoch)
            gradflow.log_epoch(writer, step)
            if epoch % trainer.val_every and epoch != trainer.epochs:
                continue
            if not main:  # rank 0 validates and writes; the others wait for its verdict on early stopping
                if dist.broadcast(None):
                    break
                continue
            scores, probs = evaluate(model, data.val, loss_fn, runtime)
            record = {"epoch": epoch, "step": step, **scores}
            history.append(record)
            for key, value in scores.items():
                writer.add_scalar(f"val/{key.removeprefix('val_')}", value, step)
            writer.add_images("val/input", _to_unit(_stack([s["image"] for s in panel])), step)
            writer.add_images("val/label", _stack([s["label"] for s in panel]), step)
            writer.add_images("val/prediction", _stack([torch.from_numpy(p)[None] for p in probs[:len(panel)]]), step)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                     "step": step, "config": config, "header": header, "history": history}
            if gradflow.enabled:
                gradflow.log_heatmaps(writer, step, gradflow.save(run_dir))
            save_checkpoint(state, checkpoints / "last.pt")
            if best is None or scores["val_dice"] > best["val_dice"]:
                best = record
                save_checkpoint(state, checkpoints / "best.pt")
            results = {**header, "epochs_completed": epoch, "steps_completed": step,
                       "best": best, "final": record, "wall_s": round(time.perf_counter() - started, 3),
                       "gradflow": {"first_last_ratio": gradflow.first_last_ratio(),
                                    "stage_median_grad_norm": gradflow.stage_medians()},
                       "history": history}
            write_json(run_dir / RESULTS, results)
            log.info(f"epoch {epoch}/{trainer.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
            stop = bool(trainer.patience and epoch - best["epoch"] >= trainer.patience)
            if dist.broadcast(stop):
                log.info(f"early stop: no better val_dice for {trainer.patience} epochs "
                         f"(best at epoch {best['epoch']})")
                break
    finally:
        bar.close()
        writer.close()
        dist.close()
    return results
