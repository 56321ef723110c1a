"""Data sets by name. ``data_spec`` is the one place the ``dataset`` node is read and checked: cheap, it returns
a frozen spec (``SyntheticSpec``, ``Isbi2012Spec`` or ``FolderSpec``) before any data is generated or read;
``read_splits`` and ``build_data`` then work from the spec alone, checking only what needs the files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skipexp import checks
from skipexp.data.augment import Augmenter
from skipexp.data.common import DataSplits, RawSplits, SegmentationSet
from skipexp.data.folder import FolderSpec
from skipexp.data.io import DataError
from skipexp.data.isbi2012 import Isbi2012Spec
from skipexp.data.synthetic import SyntheticSpec

__all__ = ["DataError", "DataSpec", "FolderSpec", "Isbi2012Spec", "SyntheticSpec", "build_data", "data_spec",
           "dataset_channels", "read_splits"]
DataSpec = SyntheticSpec | Isbi2012Spec | FolderSpec
SPECS: dict[str, type[DataSpec]] = {spec.name: spec for spec in (SyntheticSpec, Isbi2012Spec, FolderSpec)}
DATASETS = tuple(SPECS)


def data_spec(dataset: Mapping[str, Any]) -> DataSpec:
    """Read and check every key of the ``dataset`` node (type, sign, range, options, keys that go together),
    without touching the disk; a bad value raises a ConfigError (or DataError) naming it and the fix."""
    name = checks.one_of("dataset", dataset, "name", DATASETS, "pick a data set with dataset=NAME")
    return SPECS[name].from_config(dataset)


def _spec(dataset: DataSpec | Mapping[str, Any]) -> DataSpec:
    """A spec as it is, or the spec of a ``dataset`` node (for callers that still pass the node)."""
    return dataset if isinstance(dataset, DataSpec) else data_spec(dataset)


def read_splits(spec: DataSpec | Mapping[str, Any]) -> RawSplits:
    """Read (or generate) the raw images and labels of a data set."""
    return _spec(spec).read()


def build_data(spec: DataSpec | Mapping[str, Any], augment: Augmenter | None = None) -> DataSplits:
    """Training (augmented when ``augment`` is given), validation and prediction data of a data set; the
    augmenter's crop is checked against the training images once they are read."""
    spec = _spec(spec)
    raw = spec.read()
    if augment is not None:
        augment.check_fits(raw.train_images)
    return DataSplits(
        train=SegmentationSet(raw.train_images, raw.train_labels, raw.train_valid, augment),
        val=SegmentationSet(raw.val_images, raw.val_labels, raw.val_valid),
        predict_images=raw.predict_images,
        predict_names=raw.predict_names,
        name=spec.name,
        in_channels=spec.in_channels,
    )


def dataset_channels(spec: DataSpec | Mapping[str, Any]) -> int:
    """Input channels of the images a data set yields (what the network's first conv reads)."""
    return _spec(spec).in_channels
