"""Dropout that draws a quarter of the random numbers PyTorch's does, for CPUs.

A profile of the paper's net (512 x 512, bf16, channels-last, 2-core CPU)
shows ``aten::bernoulli_``, the mask of ``nn.Dropout``, taking a third of the
training step: one random float per element. ``FastDropout`` draws one 64-bit
random integer per four elements instead and compares each 16-bit quarter
against a threshold, so an element is dropped with probability
round(p * 65536) / 65536 (0.100006 for p = 0.1), scaled by the exact inverse of
its keep probability as usual. The mask comes from torch's global generator,
so runs stay reproducible from their seed, and activation checkpointing
(which saves and restores that generator) recomputes the same mask.
``Runtime.prepare`` swaps it in for ``nn.Dropout`` when ``trainer.fast_dropout``
is on; it holds no parameters, so checkpoints are the same either way.
"""

from __future__ import annotations

import torch
from torch import nn

QUANTUM = 1 << 16


def dropout_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """Multipliers shaped, typed and laid out like ``like``: 0 with probability ~p, else 1 / (keep rate)."""
    threshold = round(p * QUANTUM)
    n = like.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=like.device)
    quarters = words.view(torch.int16)[:n]
    if like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        batch, channels, height, width = like.shape  # the mask in the same (channels-last) memory order
        quarters = quarters.view(batch, height, width, channels).permute(0, 3, 1, 2)
    else:
        quarters = quarters.view(like.shape)
    scale = torch.tensor(QUANTUM / (QUANTUM - threshold), dtype=like.dtype, device=like.device)
    return torch.where(quarters >= threshold - QUANTUM // 2, scale, torch.zeros((), dtype=like.dtype,
                                                                                  device=like.device))


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
