"""Model construction: ``net_spec`` is the one place the ``model`` and ``depth`` nodes are read and checked.

``net_spec`` builds nothing (the CLI calls it to refuse a bad value before a
run folder exists); ``build_model`` builds the network it describes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from skipexp import checks
from skipexp.models.blocks import BLOCKS, NORMS, UPSAMPLE_MODES
from skipexp.models.depth import DepthError, plan_depth
from skipexp.models.fcresnet import (
    MERGES,
    FCResNet,
    NetSpec,
    count_parameters,
    main_path_layers,
)

__all__ = ["MODEL_KEYS", "DepthError", "FCResNet", "NetSpec", "build_model", "count_parameters", "main_path_layers",
           "net_spec"]

MODEL_KEYS = ("long_skip", "short_skip", "block", "width", "n_simple_blocks", "merge", "upsample", "dropout", "norm",
              "checkpointing")  # what net_spec reads (conf/model/both.yaml)


def net_spec(model: Mapping[str, Any], depth: Mapping[str, Any], in_channels: int) -> NetSpec:
    """The network the ``model`` and ``depth`` nodes describe, every value checked (type, range, option) and
    the depth planned; a bad value raises a ConfigError (or DepthError) naming it and the fix. Cheap: no
    module is built."""
    flag = functools.partial(checks.boolean, "model", model)
    option = functools.partial(checks.one_of, "model", model)
    long_skip, short_skip, checkpointing = flag("long_skip"), flag("short_skip"), flag("checkpointing")
    block = option("block", tuple(BLOCKS))
    merge, upsample, norm = option("merge", MERGES), option("upsample", UPSAMPLE_MODES), option("norm", NORMS)
    width = checks.positive_int("model", model, "width", example=32)
    dropout = checks.rate("model", model, "dropout", example=0.1)
    n_simple_blocks = checks.optional(checks.positive_int, "model", model, "n_simple_blocks", example=1,
                                      need="null (chosen by the depth rule) or a positive whole number")
    layers = checks.positive_int("depth", depth, "layers", example=26)
    plan = plan_depth(layers, block, n_simple_blocks)
    return NetSpec(plan=plan, long_skip=long_skip, short_skip=short_skip, width=width, in_channels=in_channels,
                   merge=merge, upsample=upsample, dropout=dropout, norm=norm, checkpointing=checkpointing)


def build_model(model: Mapping[str, Any], depth: Mapping[str, Any], in_channels: int) -> FCResNet:
    """The FC-ResNet that the ``model`` and ``depth`` config nodes describe (checked by ``net_spec``)."""
    return FCResNet(net_spec(model, depth, in_channels))
