"""Small torch-only helpers shared by the model's speed-ups and the optimizer (no skipexp imports)."""

from __future__ import annotations

import torch


def layout_of(x: torch.Tensor) -> torch.memory_format:
    """The memory format ``x`` is laid out in: channels-last or contiguous."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
