"""Reading image files into numpy arrays, and the error a user's data files can cause.

TIFF goes through tifffile (any page count, any dtype); PNG, GIF and JPEG, and
TIFFs whose compression tifffile cannot decode without the optional
``imagecodecs`` package (LZW, as in DRIVE), go through Pillow. A file becomes a
list of frames, each H x W (grayscale) or H x W x C (colour, C = 3, or 2 and 4
with alpha); ``to_channels`` and ``to_mask`` turn a frame into what a data set
needs and refuse what would silently change the data.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageSequence

from skipexp.errors import UserError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".gif", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")
SUFFIX_LIST = ", ".join(IMAGE_SUFFIXES)


class DataError(UserError):
    """Data that cannot be used as it is; the message names the file or value and the fix."""


def natural_key(name: str) -> tuple:
    """Sort key that compares the numbers in a name as numbers, so ``2.png`` comes before ``10.png``."""
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part)


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has one of the image suffixes (case-insensitive) and is not hidden (like ``._x.tif``)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (not in sub-folders), sorted by name with numbers compared as numbers."""
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p)), key=lambda p: natural_key(p.name))


def some(items: list[str], limit: int = 3) -> str:
    """``a, b and 4 more``: a short list for error messages."""
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])} and {len(items) - limit} more"


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's own log warnings about a broken file; the DataError we raise says it in one sentence."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_tiff(path: Path) -> tuple[np.ndarray, str]:
    """The first image series of a TIFF file as stored, with its tifffile axes (e.g. ``QYX``, ``YXS``)."""
    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            if not tif.series:
                return np.zeros((0, 0, 0), np.uint8), "QYX"
            series = tif.series[0]
            return series.asarray(), series.axes
    except Exception as err:  # a damaged file can fail in many ways; all of them mean "not readable"
        raise DataError(f"{path} is not a readable TIFF ({_reason(err)}); replace it with a complete copy.") from err


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _tiff_frames(data: np.ndarray, axes: str) -> list[np.ndarray]:
    """Split a tifffile array into H x W (or H x W x S) frames: every axis other than Y, X and S counts frames."""
    if "Y" not in axes or "X" not in axes:
        return [data] if data.ndim in (2, 3) else []
    order = [i for i, a in enumerate(axes) if a not in "YXS"] + [axes.index("Y"), axes.index("X")]
    if "S" in axes:
        order.append(axes.index("S"))
    data = np.transpose(data, order)
    tail = data.shape[-3:] if "S" in axes else data.shape[-2:]
    data = data.reshape((-1, *tail))
    return [np.ascontiguousarray(frame) for frame in data]


def _pillow_frame(frame: Image.Image) -> np.ndarray:
    """One Pillow frame as H x W or H x W x C; palette images become their colours, 1-bit becomes 0/255."""
    if frame.mode in ("P", "PA"):
        frame = frame.convert("RGBA" if frame.mode == "PA" or "transparency" in frame.info else "RGB")
    elif frame.mode == "1":
        frame = frame.convert("L")
    elif frame.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        frame = frame.convert("RGB")
    elif frame.mode in ("RGBa", "La"):
        frame = frame.convert("RGBA" if frame.mode == "RGBa" else "LA")
    return np.array(frame)


def _read_pillow(path: Path) -> list[np.ndarray]:
    try:
        with Image.open(path) as image:
            return [_pillow_frame(frame) for frame in ImageSequence.Iterator(image)]
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError... for damaged files
        raise DataError(f"{path} is not a readable image ({_reason(err)}); replace it with a complete copy.") from err


def read_frames(path: Path) -> list[np.ndarray]:
    """Every image in a file, in order: the pages of a TIFF stack, a GIF's frames, or a PNG/JPEG's one image."""
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return _read_pillow(path)
    try:
        data, axes = read_tiff(path)
    except DataError as err:
        if "imagecodecs" not in str(err):
            raise
        return _read_pillow(path)  # compressed TIFF (LZW, deflate...) that tifffile needs imagecodecs for
    if data.size == 0:
        return []
    return _tiff_frames(data, axes)


def _split_colour(frame: np.ndarray, path: object) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(grayscale H x W, None) or (None, RGB H x W x 3) of a frame; alpha dropped; equal RGB is gray."""
    if frame.ndim == 2:
        return frame, None
    if frame.ndim == 3 and frame.shape[2] in (1, 2):
        return frame[..., 0], None
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        rgb = frame[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0], None
        return None, rgb
    raise DataError(f"{path} holds an image of shape {tuple(frame.shape)}, which is neither H x W (grayscale) nor "
                    "H x W x 3 (RGB); save it as a grayscale or RGB image.")


def to_channels(frame: np.ndarray, channels: int, path: object) -> np.ndarray:
    """An image as C x H x W with ``channels`` = 1 (grayscale) or 3 (RGB), keeping its dtype and values.

    Grayscale becomes RGB by repeating it; alpha is dropped; an RGB image whose
    three channels are equal counts as grayscale. A colour image is refused for
    ``channels`` = 1 rather than converted, since the choice of conversion
    (luminance, one channel such as DRIVE's green) belongs to the user.
    """
    if channels not in (1, 3):
        raise DataError(f"dataset.in_channels={channels} is not supported; use 1 (grayscale) or 3 (RGB).")
    gray, rgb = _split_colour(frame, path)
    if channels == 1:
        if gray is None:
            raise DataError(f"{path} is a colour (RGB) image but dataset.in_channels=1; set dataset.in_channels=3, "
                            "or convert the images to grayscale yourself.")
        return np.ascontiguousarray(gray[None])
    if gray is not None:
        return np.ascontiguousarray(np.repeat(gray[None], 3, axis=0))
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def to_mask(frame: np.ndarray, path: object) -> np.ndarray:
    """A mask frame as H x W: grayscale as it is, RGB(A) only when its three channels are equal (alpha dropped)."""
    gray, _ = _split_colour(frame, path)
    if gray is None:
        raise DataError(f"mask {path} is a colour image (its red, green and blue differ); save masks as grayscale "
                        "images with one value for the object and one for the rest.")
    return np.ascontiguousarray(gray)


def describe_values(values: np.ndarray, limit: int = 6) -> str:
    """``0, 3, 128 and 5 more``: the distinct values of an array, for error messages."""
    shown = [f"{v:g}" if isinstance(v, float | np.floating) else str(v) for v in values.tolist()]
    return some(shown, limit)
