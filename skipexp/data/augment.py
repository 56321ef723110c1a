"""Training-time augmentation (docs/data.md), applied identically to image, label and valid mask.

One random affine map per sample (rotation up to ``rotate_deg``, shear up to
``shear_rad``, horizontal and vertical flips, and with ``rot90`` a random
multiple of 90 degrees: with the flips, all eight symmetries of the square,
which keep membranes exactly as thick as they are), optionally followed by an
elastic warp, is sampled only over the output crop, so a 256 x 256 crop of a
512 x 512 section costs a 256 x 256 resampling. Images are resampled
bilinearly, labels and valid masks by nearest neighbour; the outside is
filled by reflection. Random numbers come from the generator passed in:
the trainer gives every sample of its stream its own generator, seeded
from (seed, epoch, position), so the augmentation of a sample does not
depend on worker processes, ranks, or where a run was resumed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from skipexp import checks
from skipexp.errors import ConfigError

AUGMENT_KEYS = ("rotate_deg", "shear_rad", "flips", "rot90", "elastic", "elastic_alpha", "elastic_spacing")


class Augmenter:
    """Random affine (+ elastic) warp and a random ``crop`` x ``crop`` window (crop 0 = whole image)."""

    def __init__(self, crop: int = 0, rotate_deg: float = 0.0, shear_rad: float = 0.0, flips: bool = True,
                 elastic: bool = False, elastic_alpha: float = 0.0, elastic_spacing: int = 32,
                 rot90: bool = False) -> None:
        self.crop = crop
        self.rotate = math.radians(rotate_deg)
        self.shear = shear_rad
        self.flips = flips
        self.rot90 = rot90
        self.elastic = elastic and elastic_alpha > 0
        self.elastic_alpha = elastic_alpha
        self.elastic_spacing = max(4, elastic_spacing)

    @classmethod
    def from_config(cls, augment: Mapping[str, Any], crop: int) -> Augmenter:
        """The one place the ``augment`` node and ``trainer.crop`` are read and checked (cheap: no data is
        touched; ``check_fits`` compares the crop with the images once they are read)."""
        node = "augment"
        checks.known_keys(node, augment, AUGMENT_KEYS)
        return cls(crop=checks.non_negative_int("trainer", {"crop": crop}, "crop", example=256,
                                                need="0 (the whole image) or a crop size in pixels"),
                   rotate_deg=checks.non_negative_number(node, augment, "rotate_deg", example=25),
                   shear_rad=checks.non_negative_number(node, augment, "shear_rad", example=0.41),
                   flips=checks.boolean(node, augment, "flips"),
                   rot90=checks.boolean(node, augment, "rot90"),
                   elastic=checks.boolean(node, augment, "elastic"),
                   elastic_alpha=checks.non_negative_number(node, augment, "elastic_alpha", example=6),
                   elastic_spacing=checks.positive_int(node, augment, "elastic_spacing", example=32))

    def check_fits(self, images: Sequence[np.ndarray | torch.Tensor]) -> None:
        """Refuse a crop larger than the smallest image (H x W in the last two axes): every crop window must fit."""
        if not self.crop or not images:
            return
        smallest = min(min(im.shape[-2:]) for im in images)
        if self.crop > smallest:
            raise ConfigError(f"trainer.crop={self.crop} is larger than the smallest training image ({smallest} px); "
                              f"use trainer.crop={smallest} or less (0 = whole image).")

    @property
    def warps(self) -> bool:
        return self.rotate > 0 or self.shear > 0 or self.elastic

    def __call__(self, image: torch.Tensor, label: torch.Tensor, valid: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One random warp and crop of a sample; ``generator`` None draws from torch's global generator."""
        g = generator
        height, width = image.shape[-2:]
        out_h, out_w = (self.crop, self.crop) if self.crop else (height, width)
        flip_x, flip_y = (torch.rand(2, generator=g) < 0.5).tolist() if self.flips else (False, False)
        top = int(torch.randint(0, height - out_h + 1, (), generator=g))
        left = int(torch.randint(0, width - out_w + 1, (), generator=g))
        quarter = 0
        if self.rot90:  # a non-square output turns by 0 or 180 degrees only, so that its shape is kept
            quarter = int(torch.randint(0, 4, (), generator=g)) if out_h == out_w else 2 * int(
                torch.randint(0, 2, (), generator=g))
        if not self.warps:  # flips, quarter turns and crop only: plain indexing, no resampling
            window = (..., slice(top, top + out_h), slice(left, left + out_w))
            image, label, valid = image[window], label[window], valid[window]
            dims = [d for d, flip in ((-1, flip_x), (-2, flip_y)) if flip]
            if dims:
                image, label, valid = image.flip(dims), label.flip(dims), valid.flip(dims)
            if quarter:
                image, label, valid = (x.rot90(quarter, dims=(-2, -1)) for x in (image, label, valid))
            return image, label, valid

        angle = (2 * float(torch.rand((), generator=g)) - 1) * self.rotate + quarter * math.pi / 2
        shear = (2 * float(torch.rand((), generator=g)) - 1) * self.shear
        cos, sin = math.cos(angle), math.sin(angle)
        # output -> input map around the image centre: flips, then shear along x, then rotation
        matrix = torch.tensor([[cos, -sin], [sin, cos]]) @ torch.tensor([[1.0, math.tan(shear)], [0.0, 1.0]])
        matrix = matrix @ torch.diag(torch.tensor([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0]))
        ys = torch.arange(top, top + out_h, dtype=torch.float32) - (height - 1) / 2
        xs = torch.arange(left, left + out_w, dtype=torch.float32) - (width - 1) / 2
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        src_x = matrix[0, 0] * grid_x + matrix[0, 1] * grid_y + (width - 1) / 2
        src_y = matrix[1, 0] * grid_x + matrix[1, 1] * grid_y + (height - 1) / 2
        if self.elastic:
            dx, dy = self._displacement(out_h, out_w, g)
            src_x, src_y = src_x + dx, src_y + dy
        grid = torch.stack([2 * src_x / max(width - 1, 1) - 1, 2 * src_y / max(height - 1, 1) - 1], dim=-1)[None]
        image = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="reflection", align_corners=True)[0]
        masks = torch.cat([label, valid])[None]
        masks = F.grid_sample(masks, grid, mode="nearest", padding_mode="reflection", align_corners=True)[0]
        return image, masks[:1], masks[1:]

    def _displacement(self, height: int, width: int, generator: torch.Generator | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """A smooth random displacement field (pixels): coarse Gaussian noise, bicubic upsampled."""
        coarse = torch.randn(1, 2, height // self.elastic_spacing + 2, width // self.elastic_spacing + 2,
                             generator=generator)
        field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)[0]
        return self.elastic_alpha * field[0], self.elastic_alpha * field[1]
