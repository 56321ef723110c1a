"""What a correct ISBI 2012 stack is, and where public copies of it live: the table shipped beside this module.

``isbi2012_sources.json`` lists the public mirrors of the challenge's
multi-page TIFFs (checked by their git blob id), the per-section PNGs of one
of them (a sha256 per file) and, for each stack, the sha256 of its decoded
pixels and of each section. The decoded-pixel sum is the check that holds
whatever the file format; the per-section sums say what differs in a copy
that does not match (order, inversion, a wrong section, another stack).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from skipexp.data.io import describe_values

SHIPPED = Path(__file__).with_name("isbi2012_sources.json")
STACKS = ("train-volume", "train-labels", "test-volume")  # the challenge's file stems, in fetch order
HEX = {"sha256": re.compile(r"[0-9a-f]{64}"), "sha1": re.compile(r"[0-9a-f]{40}")}


class SourcesError(ValueError):
    """A sources table that does not have the shape ``isbi2012_sources.json`` has (a bug or a hand edit)."""


@dataclass(frozen=True)
class Stack:
    """One of the three stacks: its checksums and the PNG slices (path, sha256) it can be assembled from."""

    name: str
    pixels_sha256: str
    sections_sha256: tuple[str, ...]
    tiff_git_blob_sha1: str
    png_slices: tuple[tuple[str, str], ...]

    @property
    def png_folder(self) -> PurePosixPath:
        """The folder of the stack's PNG slices in the mirror (``data/membrane/train/image``)."""
        return PurePosixPath(self.png_slices[0][0]).parent

    @property
    def file(self) -> str:
        """The multi-page TIFF ``dataset=isbi2012`` reads, e.g. ``train-volume.tif``."""
        return f"{self.name}.tif"


@dataclass(frozen=True)
class Sources:
    """The table: the stacks' shape, the TIFF mirror URL templates (``{name}``), the PNG URL template
    (``{path}``) and the three stacks."""

    shape: tuple[int, int, int]
    tiff_mirrors: tuple[str, ...]
    png_url: str
    stacks: tuple[Stack, ...]

    @classmethod
    def shipped(cls) -> Sources:
        """The table that ships with skipexp."""
        return cls.from_json(json.loads(SHIPPED.read_text()))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sources:
        """Read and check a table of ``isbi2012_sources.json``'s shape."""
        try:
            shape = tuple(int(n) for n in data["shape"])
            mirrors = tuple(str(m["url"]) for m in data["tiff_mirrors"])
            png_url = str(data["png_slices"]["url"])
            stacks = tuple(_stack(name, data["stacks"][name], shape) for name in STACKS)
        except (KeyError, TypeError, ValueError) as err:
            raise SourcesError(f"the ISBI 2012 sources table is malformed ({type(err).__name__}: {err}); reinstall "
                               "skipexp to restore skipexp/data/isbi2012_sources.json.") from err
        if len(shape) != 3 or min(shape) < 1:
            raise SourcesError(f"the ISBI 2012 sources table gives the shape {shape}; it must be Z, H, W.")
        if not all("{name}" in url for url in mirrors) or "{path}" not in png_url:
            raise SourcesError("the ISBI 2012 sources table's URL templates must hold {name} (TIFF mirrors) and "
                               "{path} (PNG slices).")
        return cls(shape=shape, tiff_mirrors=mirrors, png_url=png_url, stacks=stacks)  # type: ignore[arg-type]

    def stack(self, name: str) -> Stack:
        """The stack called ``name`` (``train-volume`` ...)."""
        return next(stack for stack in self.stacks if stack.name == name)


def _digest(value: Any, kind: str, what: str) -> str:
    text = str(value)
    if not HEX[kind].fullmatch(text):
        raise ValueError(f"{what} is {text!r}, not a {kind}")
    return text


def _stack(name: str, entry: dict[str, Any], shape: tuple[int, ...]) -> Stack:
    sections = tuple(_digest(s, "sha256", f"{name} section sum") for s in entry["sections_sha256"])
    pngs = tuple((str(p["path"]), _digest(p["sha256"], "sha256", f"{name} PNG sum")) for p in entry["png_slices"])
    if len(sections) != shape[0] or len(pngs) != shape[0]:
        raise ValueError(f"{name} lists {len(sections)} section sums and {len(pngs)} PNG slices for {shape[0]} "
                         "sections")
    return Stack(name=name, pixels_sha256=_digest(entry["pixels_sha256"], "sha256", f"{name} pixel sum"),
                 sections_sha256=sections, png_slices=pngs,
                 tiff_git_blob_sha1=_digest(entry["tiff_git_blob_sha1"], "sha1", f"{name} blob id"))


def pixels_sha256(array: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (the decoded-pixel checksum)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of ``data``: sha1 of ``b"blob <size>\\0" + data``, so a file fetched from a git host can be
    checked against the id of the object it was committed as."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def decode_tiff(data: bytes) -> np.ndarray:
    """The pixels of a (multi-page) TIFF held in memory; ValueError with tifffile's reason when it is not one."""
    import tifffile

    try:
        return np.asarray(tifffile.imread(io.BytesIO(data)))
    except Exception as err:  # tifffile raises many types for a damaged file
        raise ValueError(f"not a readable TIFF ({err})") from err


def decode_png(data: bytes) -> np.ndarray:
    """The pixels of one PNG held in memory; ValueError with PIL's reason when it is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"not a readable PNG ({err})") from err


def mismatch(stack: Stack, array: np.ndarray, sources: Sources) -> str | None:
    """None when ``array`` is the challenge's ``stack``; otherwise what differs, in words, for one sentence."""
    shape = " x ".join(map(str, sources.shape))
    if array.dtype != np.uint8 or array.shape != sources.shape:
        return (f"it holds a {array.dtype} stack of {' x '.join(map(str, array.shape)) or 'one value'}, where the "
                f"challenge's {stack.name} is uint8 {shape}")
    got = pixels_sha256(array)
    if got == stack.pixels_sha256:
        return None
    sections = [pixels_sha256(section) for section in array]
    expected = list(stack.sections_sha256)
    if sections == expected[::-1]:
        return "it holds the same sections in reverse order; stack them as section 0 first"
    if sorted(sections) == sorted(expected):
        moved = [(i, expected.index(s)) for i, s in enumerate(sections) if s != expected[i]]
        shown = ", ".join(f"position {i} holds section {j}" for i, j in moved[:4]) + (", ..." if len(moved) > 4 else "")
        return (f"it holds the same sections in another order ({shown}); stack them in section order 0 to "
                f"{len(expected) - 1}")
    for other in sources.stacks:
        if other is not stack and sections == list(other.sections_sha256):
            return f"it holds the {other.name} stack, not {stack.name}"
    values = np.unique(array)
    variants = [(255 - array, "its values are inverted (0 and 255 swapped)")]
    if values.max() <= 1:
        variants += [(array * 255, "it stores 0/1 where the challenge stores 0/255"),
                     ((1 - array) * 255, "it stores 0/1 with 1 = membrane where the challenge stores 0 = membrane, "
                                         "255 = cell")]
    for variant, words in variants:
        if pixels_sha256(variant.astype(np.uint8)) == stack.pixels_sha256:
            return words
    wrong = [i for i, s in enumerate(sections) if s != expected[i]]
    listed = ", ".join(map(str, wrong[:8])) + (", ..." if len(wrong) > 8 else "")
    odd = stack.name.endswith("labels") and not np.isin(values, (0, 255)).all()
    label_hint = f" (it holds the values {describe_values(values)}; the challenge's labels are 0 and 255)" * odd
    plural = "s" if len(wrong) > 1 else ""
    return (f"{len(wrong)} of its {len(expected)} sections differ from the challenge's (section{plural} {listed})"
            f"{label_hint}: decoded-pixel sha256 expected {stack.pixels_sha256}, got {got}")
