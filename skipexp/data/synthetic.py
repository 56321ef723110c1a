"""A built-in EM-like data set: no files, exact labels, deterministic from a seed.

Each section is a Voronoi tessellation of cells whose borders are warped into
curves; the borders are membranes of varied thickness. Cell interiors get a
grey level of their own, organelle-like texture (fine speckle and dark round
vesicles), then the whole section is blurred, given a slow intensity drift and
noise, like a transmission EM image. The label is the membrane mask drawn
before any of that, so it is exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from skipexp import checks
from skipexp.data.common import RawSplits
from skipexp.data.io import DataError

MIN_SIZE, MIN_CELL_SIZE = 8, 4  # smaller sections or cells would not look like EM


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> torch.Tensor:
    """Random field in about [-1, 1] that varies over ``size / cells`` pixels (bicubic upsampled noise)."""
    coarse = torch.from_numpy(rng.standard_normal((1, 1, cells + 3, cells + 3)).astype(np.float32))
    fine = F.interpolate(coarse, size=(size + 3 * size // cells,) * 2, mode="bicubic", align_corners=False)
    return fine[0, 0, :size, :size] / 1.5


def _gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    out = F.conv2d(F.pad(img[None, None], (radius,) * 4, mode="reflect"), k.view(1, 1, 1, -1))
    out = F.conv2d(out, k.view(1, 1, -1, 1))
    return out[0, 0]


def make_section(rng: np.random.Generator, size: int, cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    """One EM-like section: (image float32 HxW, membrane uint8 HxW with 1 = membrane)."""
    n_cells = max(4, int(rng.poisson(size * size / cell_size**2)))
    margin = cell_size
    seeds = torch.from_numpy(rng.uniform(-margin, size + margin, (n_cells, 2)).astype(np.float32))
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    warp = cell_size / 4
    ys = ys + warp * _smooth_field(rng, size, max(2, size // 32))
    xs = xs + warp * _smooth_field(rng, size, max(2, size // 32))
    points = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    dist2 = torch.cdist(points, seeds).square()
    d2, idx = dist2.topk(2, dim=1, largest=False)
    gap = (seeds[idx[:, 1]] - seeds[idx[:, 0]]).norm(dim=1).clamp_min(1e-3)
    to_border = (d2[:, 1] - d2[:, 0]) / (2 * gap)  # distance to the bisector of the two nearest seeds
    half_thickness = 0.9 + 0.7 * (1 + _smooth_field(rng, size, max(2, size // 24)).flatten())  # 0.9 .. 2.3 px
    membrane = (to_border < half_thickness).view(size, size)
    cell_id = idx[:, 0].view(size, size)

    cell_grey = torch.from_numpy(rng.uniform(0.55, 0.8, n_cells).astype(np.float32))
    image = cell_grey[cell_id]
    image = image + 0.06 * _smooth_field(rng, size, max(4, size // 3))  # cytoplasm texture
    speckle = torch.from_numpy(rng.standard_normal((size, size)).astype(np.float32))
    image = image + 0.05 * _gaussian_blur(speckle, 1.2) / 0.25
    n_vesicles = int(rng.poisson(size * size / (cell_size * cell_size) * 1.5))
    for _ in range(n_vesicles):  # dark round organelles, a harder negative than plain cytoplasm
        cy, cx = rng.uniform(0, size, 2)
        radius = rng.uniform(1.5, cell_size / 7)
        ring = ((ys - cy).square() + (xs - cx).square()).sqrt()
        image = torch.where(ring < radius, image - float(rng.uniform(0.15, 0.3)), image)
    membrane_grey = 0.12 + 0.08 * _smooth_field(rng, size, max(2, size // 16))
    image = torch.where(membrane, membrane_grey, image)
    image = _gaussian_blur(image, float(rng.uniform(0.7, 1.3)))
    drift = 1 + 0.2 * _smooth_field(rng, size, 2)
    image = image * drift + float(rng.uniform(0.03, 0.07)) * torch.from_numpy(
        rng.standard_normal((size, size)).astype(np.float32))
    return image.clamp(0, 1).numpy(), membrane.numpy().astype(np.uint8)


def make_stack(seed: int, split: int, count: int, size: int, cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    """``count`` sections of a split: (images float32 ZxHxW, membranes uint8 ZxHxW).

    Section ``i`` of split ``split`` depends only on (seed, split, i), so changing
    the count of one split never changes the sections of another.
    """
    if size < MIN_SIZE or count < 1 or not math.isfinite(cell_size) or cell_size < MIN_CELL_SIZE or seed < 0:
        raise DataError(f"synthetic data needs size >= {MIN_SIZE}, count >= 1, cell_size >= {MIN_CELL_SIZE} and "
                        f"seed >= 0; got size={size}, count={count}, cell_size={cell_size}, seed={seed}.")
    pairs = [make_section(np.random.default_rng([seed, split, i]), size, cell_size) for i in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


@dataclass(frozen=True)
class SyntheticSpec:
    """The checked ``dataset=synthetic`` node: what ``read`` generates (split 0 trains, split 1 validates)."""

    size: int = 128  # height and width of each section, pixels
    n_train: int = 64  # training sections
    n_val: int = 16  # validation sections
    cell_size: float = 24.0  # mean cell diameter, pixels
    seed: int = 0  # data seed, apart from trainer.seed
    in_channels: int = 1  # grayscale
    name: ClassVar[str] = "synthetic"

    @classmethod
    def from_config(cls, dataset: Mapping[str, Any]) -> SyntheticSpec:
        """Read and check every key of the node; cheap (nothing is generated)."""
        node = "dataset"
        checks.known_keys(node, dataset, ("name", "in_channels", "size", "n_train", "n_val", "cell_size", "seed"),
                          "dataset=synthetic")
        checks.one_of(node, dataset, "in_channels", (1,),
                      "synthetic sections are grayscale, so give dataset.in_channels=1")
        return cls(size=checks.integer(node, dataset, "size", minimum=MIN_SIZE, example=cls.size),
                   n_train=checks.positive_int(node, dataset, "n_train", example=16),
                   n_val=checks.positive_int(node, dataset, "n_val", example=cls.n_val),
                   cell_size=checks.number(node, dataset, "cell_size", minimum=MIN_CELL_SIZE, example=24),
                   seed=checks.non_negative_int(node, dataset, "seed", example=cls.seed))

    def read(self) -> RawSplits:
        """Generate the sections (seconds for the defaults); the validation sections are also predicted."""
        train_x, train_y = make_stack(self.seed, 0, self.n_train, self.size, self.cell_size)
        val_x, val_y = make_stack(self.seed, 1, self.n_val, self.size, self.cell_size)
        return RawSplits(list(train_x[:, None]), list(train_y), list(val_x[:, None]), list(val_y),
                         predict_images=list(val_x[:, None]),
                         predict_names=[f"val-{i}" for i in range(len(val_x))])
