"""What every data set hands the trainer: standardised images, float membrane labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from skipexp.data.augment import Augmenter


def standardise(image: np.ndarray) -> np.ndarray:
    """Per-image standardisation (SPEC section 3): zero mean, unit variance over all pixels and channels."""
    image = image.astype(np.float32)
    return (image - image.mean()) / max(float(image.std()), 1e-6)


class SegmentationSet(Dataset):
    """Pairs of (image C x H x W, membrane label 1 x H x W); augmented and cropped when ``augment`` is given."""

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray], augment: Augmenter | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = [torch.from_numpy(standardise(im)) for im in images]
        self.labels = [torch.from_numpy(lb.astype(np.float32)[None]) for lb in labels]
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, label = self.images[index], self.labels[index]
        if self.augment is not None:
            image, label = self.augment(image, label)
        return {"image": image, "label": label}


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
    name: str
    in_channels: int
