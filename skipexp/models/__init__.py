"""Model construction: ``net_spec`` is the one place the ``model`` and ``depth`` nodes are read and checked.

``net_spec`` builds nothing (the CLI calls it to refuse a bad value before a
run folder exists); ``build_model`` builds the network it describes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import torch

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
           "matched_width", "net_spec"]

MODEL_KEYS = ("long_skip", "short_skip", "block", "width", "n_simple_blocks", "merge", "upsample", "dropout", "norm",
              "checkpointing", "match_params")  # what net_spec reads (conf/model/both.yaml)
SKIPS = {"both": (True, True), "long_only": (True, False), "short_only": (False, True), "none": (False, False)}


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
    match = checks.optional(checks.one_of, "model", model, "match_params", tuple(SKIPS),
                            fix=f"give null (keep model.width) or one of {', '.join(SKIPS)}")
    layers = checks.positive_int("depth", depth, "layers", example=26)
    plan = plan_depth(layers, block, n_simple_blocks)
    return NetSpec(plan=plan, long_skip=long_skip, short_skip=short_skip, width=width, in_channels=in_channels,
                   merge=merge, upsample=upsample, dropout=dropout, norm=norm, checkpointing=checkpointing,
                   match_params=match)


def _params(spec: NetSpec) -> int:
    """The parameter count of ``spec``'s network, built on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return count_parameters(FCResNet(spec))


def matched_width(spec: NetSpec) -> NetSpec:
    """``spec`` with the base width whose parameter count is nearest that of the ``spec.match_params`` variant
    at ``spec.width`` (the same depth and every other key), so variants are compared at equal size as closely as
    integer widths allow; the counts are kept in the spec for results.json. Parameters grow about as width
    squared, so the search starts at ``width * sqrt(reference / own)``."""
    if spec.match_params is None:
        return spec
    long_skip, short_skip = SKIPS[spec.match_params]
    reference = _params(dataclasses.replace(spec, long_skip=long_skip, short_skip=short_skip))
    own = _params(spec)
    guess = max(1, round(spec.width * (reference / own) ** 0.5))
    counts = {w: _params(dataclasses.replace(spec, width=w)) for w in range(max(1, guess - 2), guess + 3)}
    width = min(counts, key=lambda w: (abs(counts[w] - reference), w))
    return dataclasses.replace(spec, width=width, reference_params=reference)


def build_model(model: Mapping[str, Any], depth: Mapping[str, Any], in_channels: int) -> FCResNet:
    """The FC-ResNet that the ``model`` and ``depth`` config nodes describe (checked by ``net_spec``), its width
    matched to another variant's parameter count when ``model.match_params`` asks."""
    return FCResNet(matched_width(net_spec(model, depth, in_channels)))
