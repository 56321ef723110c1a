"""Training-time augmentation, applied identically to image and label.

Draws from torch's global generator, which the trainer seeds (and DataLoader
seeds per worker), so the augmentation stream is reproducible.
"""

from __future__ import annotations

import torch


class Augmenter:
    """Random horizontal and vertical flips, then a random ``crop`` x ``crop`` window (0 = whole image)."""

    def __init__(self, crop: int = 0, flips: bool = True) -> None:
        self.crop = crop
        self.flips = flips

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flips:
            dims = [d for d, flip in zip((-1, -2), torch.rand(2) < 0.5, strict=True) if flip]
            if dims:
                image, label = image.flip(dims), label.flip(dims)
        if self.crop:
            height, width = image.shape[-2:]
            top = int(torch.randint(0, height - self.crop + 1, ()))
            left = int(torch.randint(0, width - self.crop + 1, ()))
            window = (..., slice(top, top + self.crop), slice(left, left + self.crop))
            image, label = image[window], label[window]
        return image, label
