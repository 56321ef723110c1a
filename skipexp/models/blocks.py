"""The building blocks of the FC-ResNet (SPEC section 2), all pre-activation.

Every block reads like the paper's figure: norm -> ReLU -> conv, repeated,
with the short skip added in one line at the end of ``forward``. A block that
opens an encoder stage downsamples (stride-2 first conv, or max-pool for the
simple block); a block that closes a decoder stage upsamples (nearest repeat
before its last conv, or a transposed conv). Convolutions on the main path are
named ``conv1``, ``conv2``, ...; 1x1 projections on the shortcut live in
``shortcut`` so that depth counting and gradient tracking can tell them apart.
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

    BatchNorm uses PyTorch momentum 0.1, which is Keras' 0.9 (SPEC section 2).
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
    reads, so there the ReLU makes a new tensor.
    """
    return F.relu(norm(x), inplace=not isinstance(norm, nn.Identity))


class _Upsample2x(torch.autograd.Function):
    """Nearest-neighbour repeat x2 whose backward sums each 2 x 2 block with two adds of strided halves.

    PyTorch's ``upsample_nearest2d_backward`` took 2.2 ms for a 32 x 512 x 512
    bf16 channels-last gradient on the 2-core bench machine; the two adds take
    0.8 ms and keep the gradient's memory format. In bf16 each add rounds, where
    PyTorch's kernel sums the four in fp32 and rounds once.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        rows = grad[..., 0::2, :] + grad[..., 1::2, :]
        return rows[..., 0::2] + rows[..., 1::2]


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour repeat x2, the paper's upsampling."""
    return _Upsample2x.apply(x)


def layout_of(x: torch.Tensor) -> torch.memory_format:
    """The memory format ``x`` is laid out in: channels-last or contiguous."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class _Decimate(torch.autograd.Function):
    """``x[..., ::2, ::2]`` whose gradient keeps ``x``'s memory format.

    PyTorch's slicing backward scatters into a new contiguous (NCHW) tensor; in a
    channels-last net that gradient then meets channels-last ones in the adds
    and ReLU/norm backward of the stage above, where a mixed-layout elementwise
    op ran 5-8x slower than a matched one.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape, ctx.layout = x.shape, layout_of(x)
        return x[..., ::2, ::2].contiguous(memory_format=ctx.layout)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.layout).zero_()
        out[..., ::2, ::2] = grad
        return out


def decimate2x(x: torch.Tensor) -> torch.Tensor:
    """Keep every second row and column: the paper's downsampling shortcut."""
    return _Decimate.apply(x)


def dropout_then_add(dropout: nn.Module, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    """``dropout(x) + skip`` (``dropout(x)`` without a skip), in one pass where the dropout has ``forward_add``.

    A bottleneck block ends with dropout and then adds its short skip. As two ops
    the dropped-out tensor is written and read back once more than needed: 1% of
    a batch-1 step of the paper's net on the 2-core bench machine, which
    ``FastDropout.forward_add`` (one ``addcmul``) saves.
    """
    if skip is None:
        return dropout(x)
    fused = getattr(dropout, "forward_add", None)
    return fused(x, skip) if fused is not None else dropout(x) + skip


class Shortcut(nn.Module):
    """The short skip: identity, decimated or repeated, with a 1x1 conv only where widths differ."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, upsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        self.upsample = upsample
        self.proj = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            x = decimate2x(x)
        if self.proj is not None:
            x = self.proj(x)  # a 1x1 conv commutes with repeat, so project at the lower resolution
        if self.upsample:
            x = upsample2x(x)
        return x


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


class Bottleneck(Block):
    """BN-ReLU-1x1(k) -> BN-ReLU-3x3(k) -> BN-ReLU-1x1(4k) -> dropout; output width 4k."""

    main_convs = 3
    expansion = 4

    def __init__(self, in_ch: int, k: int, *, downsample: bool = False, upsample: bool = False,
                 short_skip: bool = True, dropout: float = 0.0, norm: str = "batch",
                 upsample_mode: str = "repeat") -> None:
        super().__init__(in_ch, 4 * k, downsample, upsample, short_skip)
        self.repeat_up = upsample and upsample_mode == "repeat"
        self.downsample = downsample
        self.norm1 = make_norm(norm, in_ch)
        # a stride-2 1x1 conv is decimation then a 1x1 conv; spelled that way because PyTorch 2.13's
        # channels-last CPU backward of a strided 1x1 conv with fewer than 16 input channels corrupts the heap
        self.conv1 = nn.Conv2d(in_ch, k, 1)
        self.norm2 = make_norm(norm, k)
        self.conv2 = nn.Conv2d(k, k, 3, padding=1)
        self.norm3 = make_norm(norm, k)
        self.conv3 = _up_conv(k, 4 * k, 1, upsample, upsample_mode)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def main_path(self, x: torch.Tensor) -> torch.Tensor:
        """The main path up to the closing dropout, which ``forward`` applies together with the short skip."""
        out = norm_relu(self.norm1, x)
        out = self.conv1(decimate2x(out) if self.downsample else out)
        out = self.conv2(norm_relu(self.norm2, out))
        out = norm_relu(self.norm3, out)
        if self.repeat_up:
            out = upsample2x(out)
        return self.conv3(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.shortcut(x) if self.shortcut is not None else None  # the short skip
        return dropout_then_add(self.dropout, self.main_path(x), skip)  # one pass for FastDropout


class Basic(Block):
    """BN-ReLU-3x3(k) -> dropout -> BN-ReLU-3x3(k); output width k."""

    main_convs = 2
    expansion = 1

    def __init__(self, in_ch: int, k: int, *, downsample: bool = False, upsample: bool = False,
                 short_skip: bool = True, dropout: float = 0.0, norm: str = "batch",
                 upsample_mode: str = "repeat") -> None:
        super().__init__(in_ch, k, downsample, upsample, short_skip)
        self.repeat_up = upsample and upsample_mode == "repeat"
        self.norm1 = make_norm(norm, in_ch)
        self.conv1 = nn.Conv2d(in_ch, k, 3, stride=2 if downsample else 1, padding=1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm2 = make_norm(norm, k)
        self.conv2 = _up_conv(k, k, 3, upsample, upsample_mode)

    def main_path(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(norm_relu(self.norm1, x)))
        out = norm_relu(self.norm2, out)
        if self.repeat_up:
            out = upsample2x(out)
        return self.conv2(out)


class Simple(Block):
    """BN-ReLU-[2x2 max-pool]-3x3 conv-dropout-[upsample]: one conv; output width k."""

    main_convs = 1
    expansion = 1

    def __init__(self, in_ch: int, k: int, *, downsample: bool = False, upsample: bool = False,
                 short_skip: bool = True, dropout: float = 0.0, norm: str = "batch",
                 upsample_mode: str = "repeat") -> None:
        super().__init__(in_ch, k, downsample, upsample, short_skip)
        self.downsample = downsample
        self.repeat_up = upsample and upsample_mode == "repeat"
        self.norm1 = make_norm(norm, in_ch)
        self.conv1 = _up_conv(in_ch, k, 3, upsample, upsample_mode)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def main_path(self, x: torch.Tensor) -> torch.Tensor:
        out = norm_relu(self.norm1, x)
        if self.downsample:
            out = F.max_pool2d(out, 2)
        out = self.dropout(self.conv1(out))
        if self.repeat_up:
            out = upsample2x(out)
        return out


BLOCKS: dict[str, type[Block]] = {"bottleneck": Bottleneck, "basic": Basic, "simple": Simple}
