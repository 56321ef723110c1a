"""What every data set hands the trainer: standardised images, float membrane labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from skipexp.data.augment import Augmenter


def standardise(image: np.ndarray) -> np.ndarray:
    """Per-image standardisation (SPEC section 3): zero mean, unit variance over all pixels and channels."""
    image = image.astype(np.float32)
    return (image - image.mean()) / max(float(image.std()), 1e-6)


class SegmentationSet(Dataset):
    """Samples {image C x H x W, label 1 x H x W (1 = membrane), valid 1 x H x W (1 = scored)}.

    Augmented and cropped when ``augment`` is given; without valid masks every pixel is scored.
    """

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray], valids: list[np.ndarray] | None = None,
                 augment: Augmenter | None = None) -> None:
        if len(images) != len(labels) or (valids is not None and len(valids) != len(images)):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = [torch.from_numpy(standardise(im)) for im in images]
        self.labels = [torch.from_numpy(lb.astype(np.float32)[None]) for lb in labels]
        self.valids = None if valids is None else [torch.from_numpy(v.astype(np.float32)[None]) for v in valids]
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, label = self.images[index], self.labels[index]
        valid = torch.ones_like(label) if self.valids is None else self.valids[index]
        if self.augment is not None:
            image, label, valid = self.augment(image, label, valid)
        return {"image": image, "label": label, "valid": valid}


def pad_collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch, padding smaller ones at the bottom/right with valid = 0 (not scored)."""
    height = max(s["image"].shape[-2] for s in samples)
    width = max(s["image"].shape[-1] for s in samples)
    batch = {}
    for key in samples[0]:
        batch[key] = torch.stack([F.pad(s[key], (0, width - s[key].shape[-1], 0, height - s[key].shape[-2]))
                                  for s in samples])
    return batch


@dataclass
class RawSplits:
    """What a data-set reader returns, before standardisation and augmentation.

    Images are C x H x W arrays of raw values (any numeric dtype); labels are
    H x W uint8 with 1 = membrane, 0 = not membrane; valid masks (optional, one
    per image or None) are H x W uint8 with 1 = scored, 0 = ignored by loss and
    metrics. Image sizes may differ between images.
    """

    train_images: list[np.ndarray]
    train_labels: list[np.ndarray]
    val_images: list[np.ndarray]
    val_labels: list[np.ndarray]
    predict_images: list[np.ndarray]
    predict_names: list[str]  # file stem per prediction image, for writing one map per input where sizes differ
    train_valid: list[np.ndarray] | None = None
    val_valid: list[np.ndarray] | None = None


@dataclass
class DataSplits:
    """The data a run needs: training and validation sets, and the stack ``mode=predict`` writes maps for."""

    train: SegmentationSet
    val: SegmentationSet
    predict_images: list[np.ndarray]  # raw C x H x W images, standardised at prediction time
    predict_names: list[str]
    name: str
    in_channels: int
