"""The building blocks of the FC-ResNet (docs/network.md), all pre-activation, in plain PyTorch.

Every block reads like the paper's figure: norm -> ReLU -> conv, repeated (its
``main_path``), with the short skip added in one line at the end of its
``forward``. A block that opens an encoder stage downsamples (stride-2
first conv, decimation before the bottleneck's first 1x1 conv, or max-pool for
the simple block); a block that closes a decoder stage upsamples (nearest
repeat before its last conv, or a transposed conv). Convolutions on the main
path are named ``conv1``, ``conv2``, ...; 1x1 projections on the shortcut live
in ``shortcut`` so that depth counting and gradient tracking can tell them
apart. Resampling and dropout are small parameter-free modules, so that
``skipexp.models.speed`` can swap in faster versions without touching this file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skipexp.errors import ConfigError

NORMS = ("batch", "group", "instance", "none")
UPSAMPLE_MODES = ("repeat", "transposed")


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer over ``channels`` feature maps.

    BatchNorm uses PyTorch momentum 0.1, which is Keras' 0.9 (docs/network.md).
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels, momentum=0.1)
    if kind == "group":
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"model.norm={kind!r} is not one of {', '.join(NORMS)}")


def norm_relu(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ReLU(norm(x)), the ReLU in place on the norm's fresh output (no second activation-sized tensor).

    BatchNorm, GroupNorm and InstanceNorm keep their input, not their output,
    for the backward pass, so overwriting the output is safe; ``nn.Identity``
    (``model.norm=none``) returns ``x`` itself, which the short skip still
    reads, so there the ReLU makes a new tensor. A norm that ``models.speed``
    gave a faster in-place ReLU of the same values (its ``relu_``) uses that.
    """
    if isinstance(norm, nn.Identity):
        return F.relu(x)
    relu_ = norm.__dict__.get("relu_")
    return relu_(norm(x)) if relu_ is not None else F.relu(norm(x), inplace=True)


class Upsample2x(nn.Module):
    """Nearest-neighbour repeat x2, the paper's upsampling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


class Decimate2x(nn.Module):
    """Keep every second row and column: the paper's downsampling shortcut."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., ::2, ::2]


def _dropout(p: float) -> nn.Module:
    """Dropout at rate ``p``; an identity at 0 (no random draw)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


class Shortcut(nn.Module):
    """The short skip: identity, decimated or repeated, with a 1x1 conv only where widths differ."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, upsample: bool) -> None:
        super().__init__()
        self.decimate = Decimate2x() if downsample else nn.Identity()
        self.proj = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.upsample = Upsample2x() if upsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a 1x1 conv commutes with repeat, so project at the lower resolution
        return self.upsample(self.proj(self.decimate(x)))


class Block(nn.Module):
    """Common skeleton: a main path, an optional short skip added at the end."""

    main_convs: int = 0

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, upsample: bool, short_skip: bool) -> None:
        super().__init__()
        self.in_ch, self.out_ch = in_ch, out_ch
        self.shortcut = Shortcut(in_ch, out_ch, downsample, upsample) if short_skip else None

    def main_path(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.main_path(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)  # the short skip
        return out


def _up_conv(in_ch: int, out_ch: int, kernel: int, upsample: bool, mode: str) -> nn.Module:
    """The conv that upsamples when ``upsample``: repeat-then-conv, or one transposed conv."""
    if upsample and mode == "transposed":
        if kernel == 1:
            return nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        return nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=2, padding=kernel // 2, output_padding=1)
    return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)


def _repeat(upsample: bool, mode: str) -> nn.Module:
    """The nearest repeat before a block's last conv, where it upsamples that way (else nothing)."""
    return Upsample2x() if upsample and mode == "repeat" else nn.Identity()


class Bottleneck(Block):
    """BN-ReLU-1x1(k) -> BN-ReLU-3x3(k) -> BN-ReLU-1x1(4k) -> dropout; output width 4k."""

    main_convs = 3
    expansion = 4

    def __init__(self, in_ch: int, k: int, *, downsample: bool = False, upsample: bool = False,
                 short_skip: bool = True, dropout: float = 0.0, norm: str = "batch",
                 upsample_mode: str = "repeat") -> None:
        super().__init__(in_ch, 4 * k, downsample, upsample, short_skip)
        self.norm1 = make_norm(norm, in_ch)
        # a stride-2 1x1 conv is decimation then a 1x1 conv; spelled that way because PyTorch 2.13's
        # channels-last CPU backward of a strided 1x1 conv with fewer than 16 input channels corrupts the heap
        self.decimate = Decimate2x() if downsample else nn.Identity()
        self.conv1 = nn.Conv2d(in_ch, k, 1)
        self.norm2 = make_norm(norm, k)
        self.conv2 = nn.Conv2d(k, k, 3, padding=1)
        self.norm3 = make_norm(norm, k)
        self.upsample = _repeat(upsample, upsample_mode)
        self.conv3 = _up_conv(k, 4 * k, 1, upsample, upsample_mode)
        self.dropout = _dropout(dropout)

    def convs(self, x: torch.Tensor) -> torch.Tensor:
        """The three pre-activated convs: the main path before its closing dropout."""
        out = self.conv1(self.decimate(norm_relu(self.norm1, x)))
        out = self.conv2(norm_relu(self.norm2, out))
        return self.conv3(self.upsample(norm_relu(self.norm3, out)))

    def main_path(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.convs(x))


class Basic(Block):
    """BN-ReLU-3x3(k) -> dropout -> BN-ReLU-3x3(k); output width k."""

    main_convs = 2
    expansion = 1

    def __init__(self, in_ch: int, k: int, *, downsample: bool = False, upsample: bool = False,
                 short_skip: bool = True, dropout: float = 0.0, norm: str = "batch",
                 upsample_mode: str = "repeat") -> None:
        super().__init__(in_ch, k, downsample, upsample, short_skip)
        self.norm1 = make_norm(norm, in_ch)
        self.conv1 = nn.Conv2d(in_ch, k, 3, stride=2 if downsample else 1, padding=1)
        self.dropout = _dropout(dropout)
        self.norm2 = make_norm(norm, k)
        self.upsample = _repeat(upsample, upsample_mode)
        self.conv2 = _up_conv(k, k, 3, upsample, upsample_mode)

    def main_path(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(norm_relu(self.norm1, x)))
        return self.conv2(self.upsample(norm_relu(self.norm2, out)))


class Simple(Block):
    """BN-ReLU-[2x2 max-pool]-3x3 conv-dropout-[upsample]: one conv; output width k."""

    main_convs = 1
    expansion = 1

    def __init__(self, in_ch: int, k: int, *, downsample: bool = False, upsample: bool = False,
                 short_skip: bool = True, dropout: float = 0.0, norm: str = "batch",
                 upsample_mode: str = "repeat") -> None:
        super().__init__(in_ch, k, downsample, upsample, short_skip)
        self.norm1 = make_norm(norm, in_ch)
        self.pool = nn.MaxPool2d(2) if downsample else nn.Identity()
        self.conv1 = _up_conv(in_ch, k, 3, upsample, upsample_mode)
        self.dropout = _dropout(dropout)
        self.upsample = _repeat(upsample, upsample_mode)

    def main_path(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(norm_relu(self.norm1, x))
        return self.upsample(self.dropout(self.conv1(out)))


BLOCKS: dict[str, type[Block]] = {"bottleneck": Bottleneck, "basic": Basic, "simple": Simple}
