"""Speed-only changes to a built network, applied by the run builder when ``trainer`` asks for them.

The network itself (fcresnet.py, blocks.py) reads like the paper in plain
PyTorch; everything here only makes it faster. ``apply_speedups`` swaps, in
place and without touching a parameter or buffer (checkpoints load either way):

* ``nn.Dropout`` -> ``FastDropout`` (fastdropout.py): a quarter of the random
  numbers, from a faster generator; a different mask from the same seed.
* ``Upsample2x`` -> ``FastUpsample2x``: the same forward, a cheaper backward
  (bf16: two rounded adds where PyTorch's kernel sums in fp32 and rounds once).
* ``Decimate2x`` -> ``FastDecimate2x``: the same values and gradient, laid out
  like the input.
* ``Bottleneck`` -> ``FusedBottleneck``: the closing dropout and the short skip
  in one ``addcmul``; the same values and gradients as the two ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skipexp.models.blocks import Bottleneck, Decimate2x, Upsample2x
from skipexp.models.fastdropout import FastDropout, use_fast_dropout
from skipexp.tensors import layout_of


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


class FastUpsample2x(Upsample2x):
    """``Upsample2x`` with the cheaper, layout-keeping backward of ``_Upsample2x``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Upsample2x.apply(x)


class FastDecimate2x(Decimate2x):
    """``Decimate2x`` whose output and gradient keep the input's memory format (``_Decimate``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Decimate.apply(x)


class FusedBottleneck(Bottleneck):
    """A bottleneck whose closing ``FastDropout`` and short skip run as one pass (``FastDropout.forward_add``).

    As two ops the dropped-out tensor is written and read back once more than
    needed: 1% of a batch-1 step of the paper's net on the 2-core bench machine.
    The skip is computed first, as before the split into this module.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            return self.main_path(x)
        skip = self.shortcut(x)
        return self.dropout.forward_add(self.convs(x), skip)  # dropout(convs(x)) + skip, in one addcmul


SWAPS: dict[type[nn.Module], type[nn.Module]] = {Upsample2x: FastUpsample2x, Decimate2x: FastDecimate2x}
"""Plain module class -> its fast subclass (same state, only ``forward`` differs)."""


def apply_speedups(model: nn.Module, *, fast_dropout: bool, fast_resample: bool) -> nn.Module:
    """Swap in the fast modules that were asked for, in place; returns ``model``.

    ``fast_dropout`` (``trainer.fast_dropout`` on an eager net): FastDropout, and a bottleneck's closing
    dropout and short skip in one pass; ``fast_resample`` (``trainer.fast_resample``): the upsampling and
    decimation whose gradients keep their memory format.
    """
    if fast_dropout:
        use_fast_dropout(model)
    for module in model.modules():
        fast = SWAPS.get(type(module)) if fast_resample else None
        if fast is not None:
            module.__class__ = fast
        elif type(module) is Bottleneck and isinstance(module.dropout, FastDropout):
            module.__class__ = FusedBottleneck
    return model
