"""Dropout that draws a quarter of the random numbers PyTorch's does, from a faster generator.

A profile of the paper's net (512 x 512, bf16, channels-last, 2-core CPU)
shows ``aten::bernoulli_``, the mask of ``nn.Dropout``, taking a third of the
training step: one random float per element from a serial Mersenne Twister.
``FastDropout`` draws one 64-bit random word per four elements instead and
compares each 16-bit quarter against a threshold, so an element is dropped
with probability round(p * 65536) / 65536 (0.100006 for p = 0.1), scaled by
the inverse of its keep probability (rounded to the activation's dtype) as
usual. On the CPU the words come from NumPy's SFC64, four times faster than
torch's generator, seeded by one draw from torch's global generator: runs
stay reproducible from their seed, and activation checkpointing (which saves
and restores that generator) recomputes the same mask. The quarters become
the mask in three in-place integer passes (clamp to {T-1, T}, shift to {0, 1},
times the bit pattern of the scale), which for 16-bit activations is the mask
itself, viewed as bf16/fp16: a tenth of the cost of a compare and a select.
``speed.apply_speedups`` swaps it in for ``nn.Dropout`` when ``trainer.fast_dropout``
is on; it holds no parameters, so checkpoints are the same either way.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from skipexp.tensors import layout_of

QUANTUM = 1 << 16


def random_quarters(n: int, device: torch.device) -> torch.Tensor:
    """``n`` uniformly random int16s, four to each 64-bit word, drawn as a function of torch's generator state."""
    words = (n + 3) // 4
    if device.type == "cpu":
        seed = int(torch.randint(0, 2**62, (1,)).item())
        raw = torch.from_numpy(np.random.SFC64(seed).random_raw(words).view(np.int64))
    else:
        raw = torch.randint(-(2**63), 2**63 - 1, (words,), dtype=torch.int64, device=device)
    return raw.view(torch.int16)[:n]


def dropout_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """Multipliers shaped, typed and laid out like ``like``: 0 with probability ~p, else 1 / (keep rate)."""
    drops = round(p * QUANTUM)  # of the 65,536 values of a quarter, this many drop the element
    if drops == 0:
        return torch.ones_like(like)
    threshold = drops - QUANTUM // 2  # a quarter below it (as int16) is dropped
    scale = torch.tensor(QUANTUM / (QUANTUM - drops), dtype=like.dtype)
    keep = random_quarters(like.numel(), like.device).clamp_(threshold - 1, threshold).sub_(threshold - 1)
    if like.dtype.is_floating_point and like.dtype.itemsize == 2:
        mask = keep.mul_(int(scale.view(torch.int16))).view(like.dtype)  # {0, 1} times the scale's bits
    else:
        mask = keep.to(like.dtype).mul_(scale.to(like.device))
    if layout_of(like) == torch.channels_last:
        batch, channels, height, width = like.shape  # the mask in the same (channels-last) memory order
        return mask.view(batch, height, width, channels).permute(0, 3, 1, 2)
    return mask.view(like.shape)


class _Scale(torch.autograd.Function):
    """x * mask, saving only the mask for the backward pass (nothing of x)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class _ScaleAdd(torch.autograd.Function):
    """skip + x * mask in one pass (``addcmul``), saving only the mask for the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mask)
        return torch.addcmul(skip, x, mask)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, torch.Tensor]:
        (mask,) = ctx.saved_tensors
        return grad * mask, None, grad


class FastDropout(nn.Module):
    """Element-wise dropout with a cheap mask (see module docstring); identity in eval mode or at p = 0."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability {p} is not in [0, 1)")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return _Scale.apply(x, dropout_mask(x, self.p))

    def forward_add(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``self(x) + skip`` in one pass (``speed.FusedBottleneck``)."""
        if not self.training or self.p == 0.0:
            return x + skip
        return _ScaleAdd.apply(x, dropout_mask(x, self.p), skip)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Dropout`` in ``model`` by a ``FastDropout`` of the same rate, in place."""
    for name, child in model.named_children():
        if isinstance(child, nn.Dropout):
            setattr(model, name, FastDropout(child.p))
        else:
            use_fast_dropout(child)
    return model
