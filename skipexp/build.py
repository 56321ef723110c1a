"""One builder of a run's parts: the composed config in; runtime, data, model, optimizer and header out.

``check_config`` reads and checks every value a user can set without building
anything (the CLI calls it before Hydra makes a run folder); ``build_training``,
``build_inference`` and ``build_summary`` call the same readers and then build
what train, eval/predict and summary receive. Nothing below the entrypoint
reads the config again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from skipexp import checks
from skipexp.checkpoint import existing_checkpoint, load_checkpoint
from skipexp.data import DataSplits, build_data, data_spec
from skipexp.data.augment import Augmenter
from skipexp.data.common import SampleStream, ShardedBatches, pad_collate
from skipexp.errors import UserError
from skipexp.evaluate import Inference
from skipexp.gradflow import GradFlow
from skipexp.losses import get_loss
from skipexp.models import MODEL_KEYS, FCResNet, build_model, count_parameters, main_path_layers, net_spec
from skipexp.models.speed import apply_speedups
from skipexp.optim import build_optimizer, check_optimizer
from skipexp.rundir import variant_name
from skipexp.runtime import Runtime
from skipexp.train import LoopSettings, TrainParts

MODES = ("train", "eval", "predict", "summary")
NODES = ("model", "depth", "dataset", "optimizer", "trainer", "mode", "checkpoint", "resume", "augment", "gradflow",
         "predict")  # the top level of conf/config.yaml


def check_config(cfg: DictConfig) -> None:
    """Read and check every node a run reads (mode, trainer, augment, dataset, model, depth, optimizer,
    gradflow, predict, checkpoint, resume), building nothing: a bad value is one sentence within seconds."""
    checks.known_keys("", cfg, (*NODES, "hydra"), "this config")
    for node, keys in (("model", MODEL_KEYS), ("depth", ("layers",)), ("gradflow", ("enabled", "every")),
                       ("trainer", (*Runtime.KEYS, *LoopSettings.KEYS, "loss", "crop"))):
        checks.known_keys(node, cfg[node], keys)
    mode = checks.one_of("", cfg, "mode", MODES)
    checkpoint = checks.optional(checks.text, "", cfg, "checkpoint", "a path", "outputs/runs/RUN/checkpoints/best.pt")
    if mode in ("eval", "predict"):
        if checkpoint is None:
            raise UserError(f"mode={mode} needs a checkpoint; pass checkpoint=PATH (a run's checkpoints/best.pt).")
        existing_checkpoint(checkpoint)
    checks.optional(checks.text, "", cfg, "resume", "a run folder or auto", "auto")
    Runtime.from_config(cfg.trainer)
    LoopSettings.from_config(cfg.trainer)
    get_loss(cfg.trainer.loss)
    Augmenter.from_config(cfg.augment, cfg.trainer.crop)
    spec = data_spec(cfg.dataset)
    net_spec(cfg.model, cfg.depth, spec.in_channels)
    check_optimizer(cfg.optimizer)
    GradFlow.settings(cfg.gradflow)
    Inference.from_config(cfg.predict)


def _runtime(trainer: DictConfig) -> Runtime:
    """The run's runtime, applied to this process (threads, allocator) and seeded."""
    runtime = Runtime.from_config(trainer)
    runtime.apply()
    runtime.seed_everything()
    return runtime


def build_network(model_cfg: DictConfig, depth_cfg: DictConfig, in_channels: int, runtime: Runtime) -> FCResNet:
    """The configured FC-ResNet on the run's device and memory format, with the speed-ups ``trainer`` asks for
    (``Runtime.network_speedups``: a compiled net leaves dropout and instance norm to inductor)."""
    model = runtime.prepare(build_model(model_cfg, depth_cfg, in_channels))
    return apply_speedups(model, **runtime.network_speedups())


def build_training(cfg: DictConfig) -> TrainParts:
    """Everything ``train`` needs, built in the order that makes a seed give the same run: seed, data, weights."""
    started = time.perf_counter()  # a run's wall time counts its build (data generation included)
    runtime = _runtime(cfg.trainer)
    loop = LoopSettings.from_config(cfg.trainer)
    loss_fn = get_loss(cfg.trainer.loss)
    data = build_data(data_spec(cfg.dataset), Augmenter.from_config(cfg.augment, cfg.trainer.crop))
    per_epoch = loop.check_batches(len(data.train), runtime.dist.world_size)
    runtime.dist.init(runtime.device)
    model = build_network(cfg.model, cfg.depth, data.in_channels, runtime)
    optimizer, scheduler = build_optimizer(cfg.optimizer, model, loop.epochs, runtime.fused_optimizer,
                                           budget=loop.budget_s > 0)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    header = {**run_header("train", model, runtime, data.name), "world_size": runtime.dist.world_size,
              "batch_size": loop.batch_size, "budget_min": loop.budget_min,
              "compile": runtime.compile_mode,  # torch.compile's mode, None = eager (eval and predict run eager)
              **runtime.network_speedups(),  # the module swaps in effect (dropout, norm, ReLU: eager nets only)
              "fused_optimizer": runtime.fused_optimizer,
              "weight_decay_on": check_optimizer(cfg.optimizer).decay_on}
    gradflow = GradFlow.from_config(cfg.gradflow, model, runtime.dist.is_main)
    # an epoch draws samples_per_epoch samples (0 = one pass), in fresh permutations of the training set
    stream = SampleStream(len(data.train), per_epoch, runtime.seed)
    batches = ShardedBatches(stream, loop.batch_size, runtime.dist.shard)
    # the loader's own generator: starting an epoch must not draw from torch's global one (dropout's), or a run
    # resumed mid-epoch would see different dropout masks than an uninterrupted one
    loader = DataLoader(data.train, batch_sampler=batches, num_workers=loop.num_workers, collate_fn=pad_collate,
                        pin_memory=runtime.device.type == "cuda", persistent_workers=loop.num_workers > 0,
                        generator=torch.Generator().manual_seed(runtime.seed))
    return TrainParts(runtime=runtime, loop=loop, data=data, loader=loader, stream=stream, batches=batches,
                      collate=pad_collate, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                      loss_fn=loss_fn, gradflow=gradflow, header=header,
                      config=OmegaConf.to_container(cfg, resolve=True), started=started)


@dataclass
class InferenceParts:
    """What eval and predict receive: a checkpoint's own network with its weights, the data, how to infer."""

    runtime: Runtime
    model: FCResNet
    data: DataSplits
    inference: Inference
    loss_fn: Any  # the loss the checkpoint was trained with
    header: dict[str, Any]
    checkpoint: Path


KEYS_ADDED = {"model": {"match_params": None},  # keys newer than some checkpoints, with the value they then had
              "trainer": {"fast_relu": False}}  # before fast_relu: PyTorch's ReLU


def saved_config(state: dict[str, Any]) -> DictConfig:
    """The config a checkpoint was trained with, over ``KEYS_ADDED`` (the keys added since, with the value they
    then had), so that an older checkpoint rebuilds the network it trained and the runtime it ran
    (bench/dice_thresholds.py reads both); a key the run recorded wins."""
    return OmegaConf.merge(KEYS_ADDED, state["config"])


def build_inference(cfg: DictConfig) -> InferenceParts:
    """Rebuild the checkpoint's own network (its model and depth config), load its weights, read the data."""
    runtime = _runtime(cfg.trainer)
    inference = Inference.from_config(cfg.predict)
    state = load_checkpoint(cfg.checkpoint)  # check_config made sure there is one
    saved = saved_config(state)
    spec = data_spec(cfg.dataset)
    model = build_model(saved.model, saved.depth, spec.in_channels)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise UserError(f"checkpoint {cfg.checkpoint} does not fit dataset.in_channels={spec.in_channels} "
                        f"({str(err).splitlines()[0]}).") from err
    model = runtime.prepare(model)
    data = build_data(spec)
    return InferenceParts(runtime=runtime, model=model, data=data, inference=inference,
                          loss_fn=get_loss(saved.trainer.loss), header=run_header(cfg.mode, model, runtime, data.name),
                          checkpoint=Path(cfg.checkpoint).resolve())


def build_summary(cfg: DictConfig) -> tuple[FCResNet, dict[str, Any]]:
    """The network alone (no data read) and its results.json header."""
    runtime = _runtime(cfg.trainer)
    spec = data_spec(cfg.dataset)
    model = build_model(cfg.model, cfg.depth, spec.in_channels)
    return model, run_header("summary", model, runtime, spec.name)


def run_header(mode: str, model: FCResNet, runtime: Runtime, dataset: str) -> dict[str, Any]:
    """The fields every results.json starts with; variant, depth and parameters are read off the built model."""
    return {
        "mode": mode,
        "model": variant_name(model.spec.long_skip, model.spec.short_skip),
        "long_skip": model.spec.long_skip,
        "short_skip": model.spec.short_skip,
        "block": model.spec.plan.block,
        "width": model.spec.width,
        "n_simple_blocks": model.spec.plan.n_simple_blocks,
        "depth_layers": len(main_path_layers(model)),
        "params": count_parameters(model),
        "match_params": model.spec.match_params,  # a variant whose parameter count the width was matched to
        "reference_params": model.spec.reference_params,  # that variant's count at the configured width
        "dataset": dataset,
        "device": str(runtime.device),
        "precision": "fp32" if runtime.amp_dtype is None else str(runtime.amp_dtype).removeprefix("torch."),
        "channels_last": runtime.channels_last,
        "threads": runtime.threads,
        "seed": runtime.seed,
    }
