"""Data sets by name: ``read_splits`` and ``dataset_channels`` are the one place the ``dataset`` node is read."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from skipexp.data.augment import Augmenter
from skipexp.data.common import DataSplits, RawSplits, SegmentationSet
from skipexp.data.folder import load_folder
from skipexp.data.io import DataError
from skipexp.data.isbi2012 import load_isbi2012
from skipexp.data.synthetic import make_stack

__all__ = ["DataError", "build_data", "dataset_channels", "read_splits"]
DATASETS = ("synthetic", "isbi2012", "folder")


def _synthetic(dataset: DictConfig) -> RawSplits:
    train_x, train_y = make_stack(dataset.seed, 0, dataset.n_train, dataset.size, dataset.cell_size)
    val_x, val_y = make_stack(dataset.seed, 1, dataset.n_val, dataset.size, dataset.cell_size)
    return RawSplits(list(train_x[:, None]), list(train_y), list(val_x[:, None]), list(val_y),
                     predict_images=list(val_x[:, None]), predict_names=[f"val-{i}" for i in range(len(val_x))])


def read_splits(dataset: DictConfig) -> RawSplits:
    """Read (or generate) the raw images and labels of the configured data set."""
    if dataset.name == "synthetic":
        return _synthetic(dataset)
    if dataset.name == "isbi2012":
        return load_isbi2012(Path(dataset.root), int(dataset.val_slices))
    if dataset.name == "folder":
        return load_folder(images=dataset.images, masks=dataset.masks, valid=dataset.valid,
                           val_images=dataset.val_images, val_masks=dataset.val_masks, val_valid=dataset.val_valid,
                           predict_images=dataset.predict_images, pair_by=dataset.pair_by,
                           in_channels=int(dataset.in_channels), foreground=dataset.foreground,
                           val_count=dataset.val_count)
    raise DataError(f"dataset={dataset.name!r} is not one of {', '.join(DATASETS)}.")


def build_data(dataset: DictConfig, augment: Augmenter | None = None) -> DataSplits:
    """Training (augmented when ``augment`` is given), validation and prediction data of the configured data set."""
    raw = read_splits(dataset)
    crop = augment.crop if augment is not None else 0
    smallest = min(min(im.shape[-2:]) for im in raw.train_images)
    if crop < 0:
        raise DataError(f"trainer.crop={crop} must be 0 (whole image) or a positive size.")
    if crop > smallest:
        raise DataError(f"trainer.crop={crop} is larger than the smallest training image ({smallest} px); "
                        f"use trainer.crop={smallest} or less (0 = whole image).")
    return DataSplits(
        train=SegmentationSet(raw.train_images, raw.train_labels, raw.train_valid, augment),
        val=SegmentationSet(raw.val_images, raw.val_labels, raw.val_valid),
        predict_images=raw.predict_images,
        predict_names=raw.predict_names,
        name=dataset.name,
        in_channels=dataset_channels(dataset),
    )


def dataset_channels(dataset: DictConfig) -> int:
    """Input channels of the images ``dataset`` yields (what the network's first conv reads)."""
    return int(dataset.in_channels)
