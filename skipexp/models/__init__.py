"""Model construction: ``build_model`` is the one place the ``model`` and ``depth`` nodes are read."""

from __future__ import annotations

from omegaconf import DictConfig

from skipexp.models.depth import DepthError, plan_depth
from skipexp.models.fcresnet import (
    FCResNet,
    NetSpec,
    count_parameters,
    main_path_layers,
)

__all__ = ["DepthError", "FCResNet", "NetSpec", "build_model", "count_parameters", "main_path_layers"]


def build_model(model: DictConfig, depth: DictConfig, in_channels: int) -> FCResNet:
    """The FC-ResNet that the ``model`` and ``depth`` config nodes describe."""
    plan = plan_depth(int(depth.layers), model.block, model.n_simple_blocks)
    spec = NetSpec(plan=plan, long_skip=bool(model.long_skip), short_skip=bool(model.short_skip),
                   width=int(model.width), in_channels=in_channels, merge=model.merge,
                   upsample=model.upsample, dropout=float(model.dropout), norm=model.norm,
                   checkpointing=bool(model.checkpointing))
    return FCResNet(spec)
