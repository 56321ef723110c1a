"""Your own images and masks: folders of image files or TIFF stacks, paired by name, number or sorted order.

Each of ``images``, ``masks``, ``valid`` (and their ``val_`` twins, and
``predict_images``) is a folder of image files (.tif .tiff .png .gif .jpg
.jpeg, one image per file) or one image file, a TIFF stack giving one image per
page. Folders pair with each other by file name: ``name`` (same stem),
``number`` (the first number in the name, as an integer, so ``21_training.tif``
pairs with ``21_manual1.gif`` as in DRIVE), ``sorted`` (position in the
name-sorted listing, numbers compared as numbers) or ``auto`` (name, else
number). A stack pairs by position. Images may differ in size; each mask must
match its image. Masks are two-valued, with ``foreground`` marking the object
(membrane, vessel...) and the other value the rest; valid-region masks mark
scored pixels with any nonzero value. Relative paths start from the current
working directory (the folder ``skipexp`` was run from).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from skipexp import checks
from skipexp.data.common import RawSplits
from skipexp.data.io import (
    SUFFIX_LIST,
    DataError,
    describe_values,
    is_image_file,
    list_images,
    read_frames,
    some,
    to_channels,
    to_mask,
)

PAIR_BY = ("auto", "name", "number", "sorted")
PathLike = str | Path


@dataclass
class _Entry:
    """One image of a source: a file, or one page of a stack (``index``); read on first use."""

    path: Path
    index: int | None
    name: str
    frame: np.ndarray | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return str(self.path) if self.index is None else f"{self.path} (slice {self.index})"

    def load(self) -> np.ndarray:
        if self.frame is None:
            frames = read_frames(self.path)
            if len(frames) != 1:
                raise DataError(f"{self.path} holds {len(frames)} images but a folder needs one image per file; "
                                "give a multi-page stack as its own path (dataset.images=STACK.tif) instead.")
            self.frame = frames[0]
        return self.frame


@dataclass
class _Source:
    """The images that one config key names, in order."""

    key: str
    path: Path
    entries: list[_Entry]

    @property
    def is_stack(self) -> bool:
        return not self.path.is_dir()


def _resolve(value: PathLike, key: str) -> Path:
    path = Path(str(value)).expanduser()
    where = "" if path.is_absolute() else f" (looked for {Path.cwd() / path}, as relative paths start from the " \
                                          "folder you ran from)"
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.exists():
        raise DataError(f"{key}={value} does not exist{where}; give an existing folder of images or an image/TIFF "
                        "stack file.")
    return path


def _read_source(value: PathLike, key: str) -> _Source:
    """List a folder's image files (read later), or read a stack file's pages now."""
    path = _resolve(value, key)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise DataError(f"{key}={value}: the folder {path} holds no image files ({SUFFIX_LIST}); point {key} at "
                            "the folder with the images.")
        seen: dict[str, Path] = {}
        for file in files:
            if file.stem in seen:
                raise DataError(f"{seen[file.stem]} and {file} in {key} share the name {file.stem!r}; keep one of "
                                "them so that every image has a name of its own.")
            seen[file.stem] = file
        return _Source(key, path, [_Entry(file, None, file.stem) for file in files])
    if not is_image_file(path):
        raise DataError(f"{key}={value} is neither a folder nor an image file ({SUFFIX_LIST}); give a folder of "
                        "images or a TIFF stack.")
    frames = read_frames(path)
    if not frames:
        raise DataError(f"{path} ({key}) holds no images; give a stack with at least one slice.")
    if len(frames) == 1:
        return _Source(key, path, [_Entry(path, None, path.stem, frames[0])])
    width = len(str(len(frames) - 1))
    return _Source(key, path, [_Entry(path, i, f"{path.stem}-{i:0{width}d}", f) for i, f in enumerate(frames)])


def _key(entry: _Entry, mode: str) -> str | int | None:
    if mode == "name":
        return entry.path.stem
    found = re.search(r"\d+", entry.path.stem)
    return int(found.group()) if found else None


def _pair_by_key(images: _Source, other: _Source, mode: str) -> tuple[list[_Entry] | None, str]:
    """``other``'s entries in the order of ``images`` when every file has exactly one partner; else why not."""
    keyed: list[dict] = []
    for source in (images, other):
        table: dict = {}
        for entry in source.entries:
            key = _key(entry, mode)
            if key is None:
                return None, f"{entry.path.name} in {source.key} has no number in its name"
            if key in table:
                return None, f"{table[key].path.name} and {entry.path.name} in {source.key} share the {mode} {key}"
            table[key] = entry
        keyed.append(table)
    lonely_images = [e.path.name for k, e in keyed[0].items() if k not in keyed[1]]
    lonely_other = [e.path.name for k, e in keyed[1].items() if k not in keyed[0]]
    if lonely_images:
        return None, f"no partner in {other.key} for {some(lonely_images)}"
    if lonely_other:
        return None, f"no partner in {images.key} for {some(lonely_other)}"
    return [keyed[1][_key(e, mode)] for e in images.entries], ""


def _pair(images: _Source, other: _Source, pair_by: str) -> list[_Entry]:
    """Entries of ``other`` (masks or valid-region masks), one per image, in the order of ``images``."""
    if images.is_stack or other.is_stack or pair_by == "sorted":
        if len(images.entries) != len(other.entries):
            how = "by position (a stack pairs slice by slice)" if pair_by != "sorted" else "in sorted order"
            raise DataError(f"{images.key} has {len(images.entries)} images but {other.key} has "
                            f"{len(other.entries)}; to pair them {how} give one per image.")
        return other.entries
    modes = ("name", "number") if pair_by == "auto" else (pair_by,)
    problems = []
    for mode in modes:
        paired, problem = _pair_by_key(images, other, mode)
        if paired is not None:
            return paired
        problems.append(f"by {mode}: {problem}")
    alternatives = " or ".join(f"dataset.pair_by={m}" for m in ("name", "number", "sorted") if m not in modes)
    raise DataError(f"could not pair {other.key} ({other.path}) with {images.key} ({images.path}) "
                    f"{'; '.join(problems)}; rename the files so that they pair, or set {alternatives}.")


def _check_size(image: _Entry, image_frame: np.ndarray, other: _Entry, other_frame: np.ndarray, what: str) -> None:
    if image_frame.shape[:2] != other_frame.shape[:2]:
        (h, w), (oh, ow) = image_frame.shape[:2], other_frame.shape[:2]
        raise DataError(f"image {image.label} is {h} x {w} (height x width) but its {what} {other.label} is "
                        f"{oh} x {ow}; an image and its {what} must be the same size.")


def _binary(mask: np.ndarray, entry: _Entry, foreground: int, key: str) -> np.ndarray:
    """A two-valued mask as uint8 with 1 where it equals ``foreground``."""
    values = np.unique(mask)
    if len(values) > 2:
        raise DataError(f"mask {entry.label} ({key}) holds {len(values)} values ({describe_values(values)}), not "
                        "two; masks must be two-valued (e.g. 0 and 255) and saved losslessly (PNG, GIF or TIFF, "
                        "not JPEG).")
    if len(values) == 2 and foreground not in values:
        raise DataError(f"mask {entry.label} ({key}) holds the values {describe_values(values[:1])} and "
                        f"{describe_values(values[1:])}, neither of which is dataset.foreground={foreground}; set "
                        "dataset.foreground to the value that marks the object.")
    return (mask == foreground).astype(np.uint8)


def _valid_region(mask: np.ndarray, entry: _Entry, image: _Entry) -> np.ndarray:
    region = (mask != 0).astype(np.uint8)
    if not region.any():
        raise DataError(f"valid-region mask {entry.label} is zero everywhere, so nothing in image {image.label} "
                        "would be scored; fix the mask (nonzero = scored) or remove the image.")
    return region


def _labelled(spec: FolderSpec, prefix: str
              ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray] | None, list[str]]:
    """Images (C x H x W), binary labels, valid regions (or None) and names of one labelled set: the training
    set (``prefix`` "") or the separate validation set ("val_")."""
    keys = [f"dataset.{prefix}{key}" for key in ("images", "masks", "valid")]
    images, masks, valid = (getattr(spec, f"{prefix}{key}") for key in ("images", "masks", "valid"))
    pair_by, in_channels, foreground = spec.pair_by, spec.in_channels, spec.foreground
    image_src = _read_source(images, keys[0])
    mask_entries = _pair(image_src, _read_source(masks, keys[1]), pair_by)
    valid_entries = _pair(image_src, _read_source(valid, keys[2]), pair_by) if valid is not None else None
    out_images, out_labels, out_valid = [], [], []
    for i, entry in enumerate(image_src.entries):
        frame = entry.load()
        mask_entry = mask_entries[i]
        mask = to_mask(mask_entry.load(), mask_entry.label)
        _check_size(entry, frame, mask_entry, mask, "mask")
        out_images.append(to_channels(frame, in_channels, entry.label))
        out_labels.append(_binary(mask, mask_entry, foreground, keys[1]))
        if valid_entries is not None:
            region_entry = valid_entries[i]
            region = to_mask(region_entry.load(), region_entry.label)
            _check_size(entry, frame, region_entry, region, "valid-region mask")
            out_valid.append(_valid_region(region, region_entry, entry))
    names = [entry.name for entry in image_src.entries]
    return out_images, out_labels, (out_valid if valid_entries is not None else None), names


PATH_KEYS = ("images", "masks", "valid", "val_images", "val_masks", "val_valid", "predict_images")


@dataclass(frozen=True)
class FolderSpec:
    """The checked ``dataset=folder`` node (see the module docstring); ``read`` reads the files."""

    images: PathLike | None
    masks: PathLike | None
    valid: PathLike | None = None
    val_images: PathLike | None = None
    val_masks: PathLike | None = None
    val_valid: PathLike | None = None
    predict_images: PathLike | None = None
    pair_by: str = "auto"
    in_channels: int = 1
    foreground: int = 255
    val_count: int | None = None
    name: ClassVar[str] = "folder"

    def __post_init__(self) -> None:
        """The options and the keys that go together, checked for a spec from the config and from
        ``load_folder`` alike; what needs the files (pairing, sizes, ``val_count`` against the image count)
        is checked as they are read."""
        for key in ("images", "masks"):
            if getattr(self, key) is None or str(getattr(self, key)) == "":
                raise DataError(f"dataset.{key} is not set; give dataset.{key}=PATH (a folder of images or a TIFF "
                                "stack).")
        checks.one_of("dataset", vars(self), "pair_by", PAIR_BY)
        checks.one_of("dataset", vars(self), "in_channels", (1, 3), "use 1 (grayscale) or 3 (RGB)")
        if (self.val_images is None) != (self.val_masks is None):
            given, missing = ("val_images", "val_masks") if self.val_masks is None else ("val_masks", "val_images")
            raise DataError(f"dataset.{given} is set but dataset.{missing} is not; give both for a separate "
                            "validation set, or neither to validate on the last dataset.val_count images.")
        if self.val_valid is not None and self.val_images is None:
            raise DataError("dataset.val_valid is set without dataset.val_images; give dataset.val_images and "
                            "dataset.val_masks too, or put the valid-region masks in dataset.valid.")

    @classmethod
    def from_config(cls, dataset: Mapping[str, Any]) -> FolderSpec:
        """Read and check every key of the node; cheap (no path is looked up)."""
        node = "dataset"
        checks.known_keys(node, dataset, ("name", *(f.name for f in fields(cls))), "dataset=folder")
        paths = {key: checks.optional(checks.text, node, dataset, key, "a path", "PATH") for key in PATH_KEYS}
        return cls(**paths, pair_by=checks.value(node, dataset, "pair_by"),
                   in_channels=checks.value(node, dataset, "in_channels"),
                   foreground=checks.non_negative_int(node, dataset, "foreground", example=255,
                                                      need="a mask value (a whole number of 0 or more)"),
                   val_count=checks.optional(checks.positive_int, node, dataset, "val_count", example=1))

    def read(self) -> RawSplits:
        """Read and pair the files into training, validation and prediction images (see ``load_folder``)."""
        train_x, train_y, train_v, names = _labelled(self, "")
        if self.val_images is not None:
            val_x, val_y, val_v, val_names = _labelled(self, "val_")
        else:
            count = len(train_x)
            if count < 2:
                raise DataError(f"dataset.images={self.images} holds only {count} image, too few to split off "
                                "validation; add images or give a separate validation set with dataset.val_images "
                                "and dataset.val_masks.")
            n_val = max(1, count // 10) if self.val_count is None else self.val_count
            if not 1 <= n_val < count:
                raise DataError(f"dataset.val_count={self.val_count} is out of range for {count} images in "
                                f"dataset.images; use 1 to {count - 1}, or null for a tenth of them.")
            cut = count - n_val
            train_x, val_x = train_x[:cut], train_x[cut:]
            train_y, val_y = train_y[:cut], train_y[cut:]
            names, val_names = names[:cut], names[cut:]
            train_v, val_v = (train_v[:cut], train_v[cut:]) if train_v is not None else (None, None)
        if self.predict_images is not None:
            source = _read_source(self.predict_images, "dataset.predict_images")
            predict_x = [to_channels(e.load(), self.in_channels, e.label) for e in source.entries]
            predict_names = [e.name for e in source.entries]
        else:
            predict_x, predict_names = list(val_x), list(val_names)
        return RawSplits(
            train_images=train_x,
            train_labels=train_y,
            val_images=val_x,
            val_labels=val_y,
            predict_images=predict_x,
            predict_names=predict_names,
            train_valid=train_v,
            val_valid=val_v,
        )


def load_folder(
    images: PathLike | None,
    masks: PathLike | None,
    valid: PathLike | None = None,
    val_images: PathLike | None = None,
    val_masks: PathLike | None = None,
    val_valid: PathLike | None = None,
    predict_images: PathLike | None = None,
    pair_by: str = "auto",
    in_channels: int = 1,
    foreground: int = 255,
    val_count: int | None = None,
) -> RawSplits:
    """Read a folder data set (see the module docstring) into training, validation and prediction images.

    Validation is ``val_images``/``val_masks`` (and ``val_valid``) when given;
    otherwise the last ``val_count`` images of ``images`` in sorted order
    (default: a tenth of them, at least one), as ISBI holds out its last
    slices. Prediction images are ``predict_images`` when given, else the
    validation images; ``predict_names`` are their file stems
    (``STEM-07`` for slice 7 of a stack).
    """
    return FolderSpec(images, masks, valid, val_images, val_masks, val_valid, predict_images, pair_by, in_channels,
                      foreground, val_count).read()
