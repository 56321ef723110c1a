"""Reading image files: TIFF stacks and single images, PNG/GIF/JPEG, channel conversion and the errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from skipexp.data.io import DataError, list_images, natural_key, read_frames, to_channels, to_mask

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def one_sentence(message: str) -> str:
    """Assert that an error message is one sentence (no line break, no inner full stop + capital) and return it."""
    assert "\n" not in message, message
    assert message.endswith("."), message
    assert re.search(r"\.\s+[A-Z]", message) is None, message
    return message


def rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_list_images_filters_suffixes_case_insensitively_and_sorts_numbers_as_numbers(tmp_path):
    for name in ("10.png", "2.PNG", "b.TIFF", "a.tif", "c.JPEG", "d.jpg", "e.Gif", "notes.txt", "._2.png", ".x.tif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "1.png").write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["2.PNG", "10.png", "a.tif", "b.TIFF", "c.JPEG", "d.jpg",
                                                       "e.Gif"]
    assert sorted(["img_10", "img_9", "img_1"], key=natural_key) == ["img_1", "img_9", "img_10"]


def test_tiff_stack_single_tiff_and_rgb_tiff(tmp_path):
    stack = np.random.default_rng(0).integers(0, 256, (3, 5, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    frames = read_frames(tmp_path / "stack.tif")
    assert len(frames) == 3 and all(np.array_equal(f, s) for f, s in zip(frames, stack, strict=True))
    single = np.arange(35, dtype=np.uint16).reshape(5, 7)
    tifffile.imwrite(tmp_path / "one.TIFF", single)
    (frame,) = read_frames(tmp_path / "one.TIFF")
    assert frame.dtype == np.uint16 and np.array_equal(frame, single)
    colour = rgb(5, 7)
    tifffile.imwrite(tmp_path / "rgb.tif", colour, photometric="rgb")
    (frame,) = read_frames(tmp_path / "rgb.tif")
    assert np.array_equal(frame, colour)


def test_compressed_tiff_falls_back_to_pillow(tmp_path):
    colour = rgb(9, 11)
    Image.fromarray(colour).save(tmp_path / "lzw.tif", compression="tiff_lzw")  # as DRIVE's images are stored
    (frame,) = read_frames(tmp_path / "lzw.tif")
    assert np.array_equal(frame, colour)


def test_png_gif_jpeg_and_palette(tmp_path):
    gray = np.random.default_rng(1).integers(0, 256, (6, 4), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert np.array_equal(read_frames(tmp_path / "g.png")[0], gray)
    mask = np.where(gray > 128, 255, 0).astype(np.uint8)
    Image.fromarray(mask).save(tmp_path / "m.gif")
    assert np.array_equal(to_mask(read_frames(tmp_path / "m.gif")[0], "m.gif"), mask)
    palette = Image.fromarray((mask > 0).astype(np.uint8), mode="P")
    palette.putpalette([3, 3, 3, 250, 250, 250] + [0] * 762)  # like DRIVE's 2nd_manual: indices 0/1, near-black/white
    palette.save(tmp_path / "p.gif")
    assert set(np.unique(to_mask(read_frames(tmp_path / "p.gif")[0], "p.gif"))) == {3, 250}  # colours, not indices
    Image.fromarray(rgb(8, 8)).save(tmp_path / "c.jpg", quality=95)
    (frame,) = read_frames(tmp_path / "c.jpg")
    assert frame.shape == (8, 8, 3) and frame.dtype == np.uint8


def test_to_channels_repeats_gray_keeps_rgb_drops_alpha():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_channels(gray, 1, "g").shape == (1, 3, 4)
    three = to_channels(gray, 3, "g")
    assert three.shape == (3, 3, 4) and all(np.array_equal(c, gray) for c in three)
    colour = rgb(3, 4)
    assert np.array_equal(to_channels(colour, 3, "c"), colour.transpose(2, 0, 1))
    rgba = np.concatenate([colour, np.full((3, 4, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(to_channels(rgba, 3, "c"), colour.transpose(2, 0, 1))
    grey_as_rgb = np.repeat(gray[..., None], 3, axis=2)
    assert np.array_equal(to_channels(grey_as_rgb, 1, "g")[0], gray)  # equal channels count as grayscale
    la = np.stack([gray, np.full_like(gray, 255)], axis=2)
    assert np.array_equal(to_channels(la, 1, "la")[0], gray)


def test_colour_refused_for_one_channel_and_bad_channel_counts():
    with pytest.raises(DataError) as err:
        to_channels(rgb(3, 4), 1, "photo.png")
    assert "photo.png" in one_sentence(str(err.value)) and "dataset.in_channels=3" in str(err.value)
    with pytest.raises(DataError) as err:
        to_channels(np.zeros((3, 4), np.uint8), 2, "x.png")
    assert "dataset.in_channels=2" in one_sentence(str(err.value))
    with pytest.raises(DataError) as err:
        to_channels(np.zeros((3, 4, 5), np.uint8), 1, "odd.tif")
    assert "odd.tif" in one_sentence(str(err.value)) and "(3, 4, 5)" in str(err.value)
    with pytest.raises(DataError) as err:
        to_mask(rgb(3, 4), "mask.png")
    assert "mask.png" in one_sentence(str(err.value)) and "grayscale" in str(err.value)


def test_damaged_files_are_named(tmp_path):
    tifffile.imwrite(tmp_path / "full.tif", np.zeros((4, 32, 32), np.uint8), photometric="minisblack")
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        read_frames(tmp_path / "cut.tif")
    message = one_sentence(str(err.value))
    assert str(tmp_path / "cut.tif") in message and "not a readable TIFF" in message
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError) as err:
        read_frames(tmp_path / "junk.png")
    assert str(tmp_path / "junk.png") in one_sentence(str(err.value)) and "not a readable image" in str(err.value)


def test_real_drive_tiff_reads_without_imagecodecs():
    path = SHARED_DATA / "drive" / "training" / "images" / "21_training.tif"
    if not path.is_file():
        pytest.skip(f"shared DRIVE data not found at {path}")
    (frame,) = read_frames(path)
    assert frame.shape == (584, 565, 3) and frame.dtype == np.uint8
