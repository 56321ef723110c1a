"""The FC-ResNet builder: one network for all four skip variants (docs/network.md).

Down 1 (3x3 conv) -> Down 2 (simple) -> Down 3-5 (bottleneck) -> Across ->
Up 1-3 (bottleneck) -> Up 4 (simple) -> Up 5 (3x3 conv) -> classifier.
Each encoder stage's output is merged into the input of the decoder stage at
the same resolution (the long skip); each block may add its input to its
output (the short skip). Inputs of any size are padded to a multiple of the
total stride (32) and the output is cropped back.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from skipexp.models.blocks import BLOCKS, Simple, make_norm, norm_relu
from skipexp.models.depth import DepthPlan

TOTAL_STRIDE = 32
MIN_PADDED = 64  # keeps the Across stage at least 2x2 so batch norm has more than one value
MERGES = ("sum", "concat")


@dataclass(frozen=True)
class NetSpec:
    """Everything the builder needs; filled from the ``model`` and ``depth`` config nodes."""

    plan: DepthPlan
    long_skip: bool = True
    short_skip: bool = True
    width: int = 32
    in_channels: int = 1
    merge: str = "sum"
    upsample: str = "repeat"
    dropout: float = 0.1
    norm: str = "batch"
    checkpointing: bool = False  # recompute each stage's activations in the backward pass instead of keeping them
    match_params: str | None = None  # a variant whose parameter count the width was matched to (model.match_params)
    reference_params: int | None = None  # that variant's count at the configured width


class LongSkip(nn.Module):
    """Merges an encoder stage's output into the decoder: sum (1x1 projection where widths differ) or concat."""

    def __init__(self, decoder_ch: int, encoder_ch: int, merge: str) -> None:
        super().__init__()
        self.merge = merge
        self.proj = nn.Conv2d(decoder_ch, encoder_ch, 1) if merge == "sum" and decoder_ch != encoder_ch else None
        self.out_ch = encoder_ch if merge == "sum" else decoder_ch + encoder_ch

    def forward(self, decoder: torch.Tensor, encoder: torch.Tensor) -> torch.Tensor:
        if self.merge == "concat":
            return torch.cat([decoder, encoder], dim=1)
        if self.proj is not None:
            decoder = self.proj(decoder)
        return decoder + encoder


class ConvLayer(nn.Module):
    """A single main-path conv, pre-activated unless it reads the raw input (Down 1)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, norm: str | None) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, in_ch) if norm is not None else None
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm1 is not None:
            x = norm_relu(self.norm1, x)
        return self.conv1(x)


class FCResNet(nn.Module):
    """Fully convolutional residual network with switchable long and short skips.

    ``forward`` returns membrane logits of shape (N, 1, H, W) for any H, W.
    """

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        f = spec.width
        block_cls = BLOCKS[spec.plan.block]
        repeats = spec.plan.stage_repeats
        common = dict(short_skip=spec.short_skip, dropout=spec.dropout, norm=spec.norm, upsample_mode=spec.upsample)

        def stage(cls: type, in_ch: int, k: int, n: int, down: bool, up: bool) -> tuple[nn.Sequential, int]:
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for i in range(n):
                blk = cls(in_ch, k, downsample=down and i == 0, upsample=up and i == n - 1, **common)
                blocks[f"b{i + 1}"] = blk
                in_ch = blk.out_ch
            return nn.Sequential(blocks), in_ch

        self.down1 = ConvLayer(spec.in_channels, f, 3, norm=None)
        self.down2, ch = stage(Simple, f, f, repeats["down2"], True, False)
        encoder_ch = [f, ch]
        self.down3, ch = stage(block_cls, ch, f, repeats["down3"], True, False)
        encoder_ch.append(ch)
        self.down4, ch = stage(block_cls, ch, 2 * f, repeats["down4"], True, False)
        encoder_ch.append(ch)
        self.down5, ch = stage(block_cls, ch, 4 * f, repeats["down5"], True, False)
        encoder_ch.append(ch)
        self.across, ch = stage(block_cls, ch, 8 * f, repeats["across"], True, True)

        long_skips: OrderedDict[str, nn.Module] = OrderedDict()
        decoder: list[tuple[str, type, int]] = [("up1", block_cls, 4 * f), ("up2", block_cls, 2 * f),
                                                ("up3", block_cls, f), ("up4", Simple, f)]
        for (name, cls, k), enc_ch in zip(decoder, reversed(encoder_ch[1:]), strict=True):
            if spec.long_skip:
                long_skips[name] = LongSkip(ch, enc_ch, spec.merge)
                ch = long_skips[name].out_ch
            module, ch = stage(cls, ch, k, repeats[name], False, True)
            setattr(self, name, module)
        if spec.long_skip:
            long_skips["up5"] = LongSkip(ch, encoder_ch[0], spec.merge)
            ch = long_skips["up5"].out_ch
        self.up5 = ConvLayer(ch, f, 3, norm=spec.norm)
        self.classifier = ConvLayer(f, 1, 1, norm=spec.norm)
        self.long_skips = nn.ModuleDict(long_skips)
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convs (Keras' he_normal: fan-in), zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = pad_to_stride(x)
        skips = []
        x = self.down1(x)
        skips.append(x)
        for name in ("down2", "down3", "down4", "down5"):
            x = self._stage(name, x)
            skips.append(x)
        x = self._stage("across", x)
        for name in ("up1", "up2", "up3", "up4", "up5"):
            encoder_out = skips.pop()
            if self.spec.long_skip:
                x = self.long_skips[name](x, encoder_out)  # the long skip
            x = self._stage(name, x)
        return self.classifier(x)[..., :height, :width]

    def _stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Run one stage; with ``checkpointing`` while training, keep only the stage's input for backward and
        recompute its blocks then (per stage, not per block: keeping every block's input, a bottleneck's widest
        tensor, measured a higher peak, 711 vs 648 MB for the paper's net at 512 x 512, batch 1)."""
        stage = getattr(self, name)
        if not (self.spec.checkpointing and self.training and torch.is_grad_enabled()):
            return stage(x)
        return checkpoint(stage, x, use_reentrant=False,
                          context_fn=lambda: (contextlib.nullcontext(), _frozen_norm_stats(stage)))


@contextlib.contextmanager
def _frozen_norm_stats(module: nn.Module) -> Iterator[None]:
    """While a checkpointed stage is recomputed, BatchNorm must not update its running statistics a second time."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum


def pad_to_stride(x: torch.Tensor) -> torch.Tensor:
    """Pad H and W at the bottom/right to a multiple of the total stride (at least 64), reflecting where possible."""
    height, width = x.shape[-2:]
    pad_h = max(MIN_PADDED, -(-height // TOTAL_STRIDE) * TOTAL_STRIDE) - height
    pad_w = max(MIN_PADDED, -(-width // TOTAL_STRIDE) * TOTAL_STRIDE) - width
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def main_path_layers(model: FCResNet) -> list[tuple[str, nn.Module]]:
    """The weight layers that count towards depth, in forward order, named like ``down4.b3.conv2``.

    Shortcut and long-skip 1x1 projections are left out (docs/network.md).
    """
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
            and ".shortcut." not in f".{name}." and not name.startswith("long_skips.")]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
