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
* ``nn.InstanceNorm2d`` -> ``FastInstanceNorm2d``: one batch norm per image, in
  the input's memory format; the same statistics, no copy to NCHW and back.
* the ReLU after every norm -> ``relu_bits_`` (the norm's ``relu_``, which
  ``blocks.norm_relu`` calls): on a bf16 CPU tensor, a clamp of its bits read
  as int16; the same values and gradients, about 4x faster than PyTorch's bf16 ReLU.
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


class _InstanceNorm(torch.autograd.Function):
    """Affine instance norm as one batch norm per image of the batch, each on its own slice, in the input's layout.

    PyTorch's ``instance_norm`` folds the batch into the channels (1 x N*C x H x W), which a channels-last tensor
    cannot do as a view, so it copies the input to NCHW and the output and gradient back: 90 ms of a 0.29 s step
    of ``experiment=isbi_cpu`` in one profile on the 2-core bench machine; 1.04-1.25x faster steps with this
    (docs/performance-notes.md). A batch norm of one image (1 x C x H x W) has the same per-channel mean and
    biased variance over H x W, and runs in either layout.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        out = torch.empty_like(x)
        means, invstds = [], []
        for i in range(x.shape[0]):
            y, mean, invstd = torch.ops.aten.native_batch_norm(x[i:i + 1], weight, bias, None, None, True, 0.0, eps)
            out[i:i + 1] = y
            means.append(mean)
            invstds.append(invstd)
        ctx.save_for_backward(x, weight, torch.stack(means), torch.stack(invstds))
        ctx.eps = eps
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, means, invstds = ctx.saved_tensors
        mask = list(ctx.needs_input_grad[:3])
        grad_x = torch.empty_like(x) if mask[0] else None
        total = torch.promote_types(weight.dtype, torch.float32)  # sum bf16 weights' gradients in fp32
        grad_w = torch.zeros_like(weight, dtype=total) if mask[1] else None
        grad_b = torch.zeros_like(weight, dtype=total) if mask[2] else None
        for i in range(x.shape[0]):
            gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
                grad[i:i + 1], x[i:i + 1], weight, None, None, means[i], invstds[i], True, ctx.eps, mask)
            if grad_x is not None:
                grad_x[i:i + 1] = gx
            if grad_w is not None:
                grad_w += gw
            if grad_b is not None:
                grad_b += gb
        grad_w = grad_w.to(weight.dtype) if grad_w is not None else None
        grad_b = grad_b.to(weight.dtype) if grad_b is not None else None
        return grad_x, grad_w, grad_b, None


class _ReLUBits(torch.autograd.Function):
    """In-place ReLU of a bf16 tensor as ``clamp_min_(0)`` of its bits read as int16.

    A bf16 number is negative exactly when its sign bit, the int16's, is set, so
    the clamp zeroes the negatives and keeps the rest bit for bit; -0.0 becomes
    +0.0 (the same value). PyTorch 2.13's CPU kernels convert bf16 to fp32 and back
    for the ReLU: on the 2-core bench machine (Xeon with AMX) its in-place ReLU
    took 0.65 ms for 4 M elements, the int16 clamp 0.17 (docs/performance-notes.md).
    A NaN whose sign bit is set becomes 0 here, where PyTorch keeps it; a norm's
    output holds a NaN only where its input or weights do, and its backward
    meets those, so the trainer's gradient-norm check stops the run as before.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x.view(torch.int16).clamp_min_(0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, out, 0)  # what ReLU's own backward runs


def relu_bits_(x: torch.Tensor) -> torch.Tensor:
    """``F.relu(x, inplace=True)``; on a bf16 CPU tensor as ``_ReLUBits`` (the same values, a faster kernel)."""
    if x.dtype == torch.bfloat16 and x.device.type == "cpu":
        return _ReLUBits.apply(x)
    return F.relu(x, inplace=True)


NORMS_WITH_RELU = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)
"""The norms ``blocks.make_norm`` builds, each followed by a ReLU in ``blocks.norm_relu``."""


class FastInstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` (affine, no running statistics) as ``_InstanceNorm``: a batch norm per image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or not self.affine or self.track_running_stats:
            return super().forward(x)
        return _InstanceNorm.apply(x, self.weight, self.bias, self.eps)


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


def apply_speedups(model: nn.Module, *, fast_dropout: bool, fast_resample: bool, fast_norm: bool = False,
                   fast_relu: bool = False) -> nn.Module:
    """Swap in the fast modules that were asked for, in place; returns ``model``.

    ``fast_dropout`` (``trainer.fast_dropout`` on an eager net): FastDropout, and a bottleneck's closing
    dropout and short skip in one pass; ``fast_resample`` (``trainer.fast_resample``): the upsampling and
    decimation whose gradients keep their memory format; ``fast_norm`` (``trainer.fast_norm`` on an eager
    net): instance norm as a batch norm per image; ``fast_relu`` (``trainer.fast_relu`` on an eager net):
    every norm's ReLU as ``relu_bits_`` (an attribute, not a module: the state dict stays the same).
    """
    if fast_dropout:
        use_fast_dropout(model)
    for module in model.modules():
        if fast_relu and isinstance(module, NORMS_WITH_RELU):
            module.relu_ = relu_bits_
        fast = SWAPS.get(type(module)) if fast_resample else None
        if fast is not None:
            module.__class__ = fast
        elif type(module) is nn.InstanceNorm2d and fast_norm:
            module.__class__ = FastInstanceNorm2d
        elif type(module) is Bottleneck and isinstance(module.dropout, FastDropout):
            module.__class__ = FusedBottleneck
    return model
