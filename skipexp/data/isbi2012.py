"""The ISBI 2012 EM stacks: 30 labelled training slices (the last ``val_slices`` validate) and 30 test slices.

The challenge's labels are 255 = cell interior, 0 = membrane; the network
learns membrane, so labels are returned with 1 = membrane. Neighbouring
sections are 50 nm apart and strongly correlated, so validation is a
contiguous block at the end of the stack, not a random sample (docs/data.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from skipexp import checks
from skipexp.config import data_folder
from skipexp.data.common import RawSplits
from skipexp.data.io import DataError, describe_values, read_tiff
from skipexp.data.isbi2012_sources import STACKS

TRAIN_VOLUME, TRAIN_LABELS, TEST_VOLUME = FILES = tuple(f"{stem}.tif" for stem in STACKS)
MEMBRANE, CELL = 0, 255  # the challenge's label values
TRAIN_SLICES = 30  # the challenge's training stack


def fetch_command(root: Path) -> str:
    """The command that puts the stacks in ``root``: no path when it is the default folder."""
    default = Path(data_folder("isbi2012")).expanduser().absolute()
    return "skipexp-data isbi2012" + ("" if Path(root).absolute() == default else f" {root}")


def _read_stack(path: Path, root: Path) -> np.ndarray:
    """A Z x H x W stack, or a DataError naming the file and what is wrong with it."""
    if not path.is_file():
        raise DataError(f"ISBI 2012 file {path} is missing; download the stacks with `{fetch_command(root)}`, "
                        f"or point dataset.root=PATH at a folder holding {', '.join(FILES)}.")
    stack, _ = read_tiff(path)
    if stack.size == 0:
        raise DataError(f"{path} holds no slices; replace it with the challenge's "
                        f"{path.name} (`{fetch_command(root)}`).")
    if stack.ndim != 3:
        raise DataError(f"{path} has shape {tuple(stack.shape)} but ISBI 2012 stacks must be Z x H x W (grayscale "
                        f"slices); replace it with the challenge's {path.name}.")
    return stack


def load_isbi2012(root: Path, val_slices: int) -> RawSplits:
    """Read the three ISBI 2012 stacks under ``root``; the last ``val_slices`` training slices validate.

    Images are 1 x H x W as stored (uint8); labels are H x W uint8 with 1 =
    membrane; the prediction images are the test slices, named
    ``test-volume-00`` ... so that one map per slice has a name of its own.
    """
    root = Path(root).expanduser().absolute()
    volume = _read_stack(root / TRAIN_VOLUME, root)
    labels = _read_stack(root / TRAIN_LABELS, root)
    test = _read_stack(root / TEST_VOLUME, root)
    if volume.shape != labels.shape:
        raise DataError(f"{root / TRAIN_VOLUME} has {volume.shape[0]} slices of {volume.shape[1]} x {volume.shape[2]} "
                        f"but {root / TRAIN_LABELS} has {labels.shape[0]} slices of {labels.shape[1]} x "
                        f"{labels.shape[2]}; the labels must match the images slice for slice.")
    values = np.unique(labels)
    if not np.isin(values, (MEMBRANE, CELL)).all():
        raise DataError(f"{root / TRAIN_LABELS} holds the values {describe_values(values)} but ISBI 2012 labels are "
                        f"two-valued ({MEMBRANE} = membrane, {CELL} = cell); use the challenge's labels, or the folder "
                        "dataset with dataset.foreground for another convention.")
    count = volume.shape[0]
    if not 1 <= val_slices < count:
        raise DataError(f"dataset.val_slices={val_slices} is out of range for {count} training slices in "
                        f"{root / TRAIN_VOLUME}; use 1 to {count - 1}.")
    membrane = (labels == MEMBRANE).astype(np.uint8)
    cut = count - val_slices
    width = len(str(test.shape[0] - 1))
    stem = Path(TEST_VOLUME).stem
    return RawSplits(
        train_images=[volume[i][None] for i in range(cut)],
        train_labels=[membrane[i] for i in range(cut)],
        val_images=[volume[i][None] for i in range(cut, count)],
        val_labels=[membrane[i] for i in range(cut, count)],
        predict_images=[test[i][None] for i in range(test.shape[0])],
        predict_names=[f"{stem}-{i:0{width}d}" for i in range(test.shape[0])],
    )


@dataclass(frozen=True)
class Isbi2012Spec:
    """The checked ``dataset=isbi2012`` node: where the stacks are and how many slices validate."""

    root: Path = Path("data/isbi2012")
    val_slices: int = 4
    in_channels: int = 1
    name: ClassVar[str] = "isbi2012"

    @classmethod
    def from_config(cls, dataset: Mapping[str, Any]) -> Isbi2012Spec:
        """Read and check every key of the node; cheap (the stacks are neither opened nor looked for)."""
        node = "dataset"
        checks.known_keys(node, dataset, ("name", "root", "in_channels", "val_slices"), "dataset=isbi2012")
        checks.one_of(node, dataset, "in_channels", (1,),
                      "ISBI 2012 sections are grayscale, so give dataset.in_channels=1")
        root = checks.text(node, dataset, "root", "a folder path", example="data/isbi2012")
        val_slices = checks.integer(node, dataset, "val_slices", minimum=1, maximum=TRAIN_SLICES - 1, example=4)
        return cls(root=Path(root).expanduser(), val_slices=val_slices)

    def read(self) -> RawSplits:
        """Read the three stacks (see ``load_isbi2012``)."""
        return load_isbi2012(self.root, self.val_slices)
