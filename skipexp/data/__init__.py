"""Data sets by name: ``build_data(cfg.dataset, crop)`` is the one place the dataset node is read."""

from __future__ import annotations

from omegaconf import DictConfig

from skipexp.data.augment import Augmenter
from skipexp.data.common import DataSplits, SegmentationSet
from skipexp.data.synthetic import make_stack
from skipexp.errors import UserError

DATASETS = ("synthetic",)


class DataError(UserError):
    """Data that cannot be used as it is; the message names the value and the fix."""


def build_data(dataset: DictConfig, crop: int) -> DataSplits:
    """Build the training, validation and prediction data that ``dataset`` describes."""
    if dataset.name == "synthetic":
        train_x, train_y = make_stack(dataset.seed, 0, dataset.n_train, dataset.size, dataset.cell_size)
        val_x, val_y = make_stack(dataset.seed, 1, dataset.n_val, dataset.size, dataset.cell_size)
        train_images, val_images = list(train_x[:, None]), list(val_x[:, None])
        train_labels, val_labels = list(train_y), list(val_y)
    else:
        raise DataError(f"dataset={dataset.name!r} is not one of {', '.join(DATASETS)}")
    smallest = min(min(im.shape[-2:]) for im in train_images)
    if crop > smallest:
        raise DataError(f"trainer.crop={crop} is larger than the smallest training image ({smallest} px); "
                        f"use trainer.crop={smallest} or less (0 = whole image).")
    if crop < 0:
        raise DataError(f"trainer.crop={crop} must be 0 (whole image) or a positive size.")
    return DataSplits(
        train=SegmentationSet(train_images, train_labels, Augmenter(crop=crop)),
        val=SegmentationSet(val_images, val_labels),
        predict_images=val_images,
        name=dataset.name,
        in_channels=dataset_channels(dataset),
    )


def dataset_channels(dataset: DictConfig) -> int:
    """Input channels of the images ``dataset`` yields (what the network's first conv reads)."""
    return int(dataset.in_channels)
