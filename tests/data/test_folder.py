"""Folder data sets: pairing by name, number and order, odd image sizes, masks, valid regions, and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from skipexp.data.folder import load_folder
from skipexp.data.io import DataError
from skipexp.errors import UserError
from tests.data.test_io import one_sentence

DRIVE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "drive"
SIZES = [(37, 45), (50, 33), (41, 39)]  # height x width: odd, differing, not multiples of 32


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def drive_like(root: Path, sizes=SIZES, first: int = 21) -> dict[str, Path]:
    """RGB PNG images ``21_training.png``, GIF masks ``21_manual1.gif`` (0/255) and ``21_training_mask.gif``."""
    rng = np.random.default_rng(first)
    for i, (h, w) in enumerate(sizes):
        number = first + i
        write_png(root / "images" / f"{number}_training.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        vessels = np.zeros((h, w), np.uint8)
        vessels[h // 3: h // 2] = 255
        write_png(root / "manual" / f"{number}_manual1.gif", vessels)
        fov = np.zeros((h, w), np.uint8)
        fov[2:-2, 3:-3] = 255
        write_png(root / "fov" / f"{number}_training_mask.gif", fov)
    return {"images": root / "images", "masks": root / "manual", "valid": root / "fov"}


def error_for(**kwargs) -> str:
    with pytest.raises(UserError) as err:  # DataError for the files, ConfigError for an option's value
        load_folder(**kwargs)
    return one_sentence(str(err.value))


def test_number_pairing_odd_sizes_valid_masks_and_default_split(tmp_path):
    paths = drive_like(tmp_path)
    raw = load_folder(**paths, in_channels=3)
    assert [im.shape for im in raw.train_images] == [(3, 37, 45), (3, 50, 33)]
    assert [im.shape for im in raw.val_images] == [(3, 41, 39)]  # the last image validates (a tenth, at least 1)
    original = np.asarray(Image.open(paths["images"] / "22_training.png"))
    assert np.array_equal(raw.train_images[1], original.transpose(2, 0, 1))
    for label, region, (h, w) in zip(raw.train_labels + raw.val_labels, raw.train_valid + raw.val_valid, SIZES,
                                     strict=True):
        assert label.shape == region.shape == (h, w) and label.dtype == region.dtype == np.uint8
        assert label[h // 3].all() and not label[0].any()
        assert region[2:-2, 3:-3].all() and region.sum() == (h - 4) * (w - 6)
    assert raw.predict_names == ["23_training"] and raw.predict_images[0] is raw.val_images[0]


def test_foreground_value_and_grayscale_to_rgb(tmp_path):
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6)
    label = np.where(gray % 2 == 0, 0, 255).astype(np.uint8)  # ISBI style: 0 = membrane
    for name in ("a", "b"):
        write_png(tmp_path / "im" / f"{name}.png", gray)
        write_png(tmp_path / "lb" / f"{name}.png", label)
    raw = load_folder(tmp_path / "im", tmp_path / "lb", pair_by="name", in_channels=3, foreground=0)
    assert raw.train_images[0].shape == (3, 5, 6) and np.array_equal(raw.train_images[0][2], gray)
    assert np.array_equal(raw.train_labels[0], (label == 0).astype(np.uint8)) and raw.train_valid is None


def test_separate_validation_and_prediction_folders_and_stacks(tmp_path):
    train = drive_like(tmp_path / "train")
    val = drive_like(tmp_path / "val", sizes=[(20, 30), (21, 31)], first=1)
    stack = np.random.default_rng(0).integers(0, 256, (3, 16, 24), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "scan.tif", stack, photometric="minisblack")
    raw = load_folder(**train, val_images=val["images"], val_masks=val["masks"], val_valid=val["valid"],
                      predict_images=tmp_path / "scan.tif", in_channels=3, val_count=99)  # val_count unused here
    assert len(raw.train_images) == 3 and len(raw.val_images) == 2 and len(raw.val_valid) == 2
    assert raw.predict_names == ["scan-0", "scan-1", "scan-2"]
    assert raw.predict_images[1].shape == (3, 16, 24) and np.array_equal(raw.predict_images[1][0], stack[1])
    # stacks as training data: images and masks pair slice by slice
    tifffile.imwrite(tmp_path / "labels.tif", (stack > 128).astype(np.uint8) * 255, photometric="minisblack")
    raw = load_folder(tmp_path / "scan.tif", tmp_path / "labels.tif", val_count=1)
    assert len(raw.train_images) == 2 and raw.predict_names == ["scan-2"]
    assert np.array_equal(raw.val_labels[0], (stack[2] > 128).astype(np.uint8))


def test_sorted_pairing_and_relative_paths(tmp_path, monkeypatch):
    for i, name in enumerate(("x2.png", "x10.png", "x1.png")):
        write_png(tmp_path / "data" / "im" / name, np.full((4, 5), i, np.uint8))
        write_png(tmp_path / "data" / "lb" / f"label_{name}", np.full((4, 5), 255 * (i % 2), np.uint8))
    monkeypatch.chdir(tmp_path)
    raw = load_folder("data/im", "data/lb", pair_by="sorted", val_count=1)
    assert [int(im[0, 0, 0]) for im in raw.train_images] == [2, 0]  # x1, x2 (numbers sort as numbers), x10 validates
    assert [int(lb[0, 0]) for lb in raw.train_labels] == [0, 0] and raw.val_labels[0].all()


def test_real_drive_pairs_by_number():
    if not (DRIVE / "training" / "images").is_dir():
        pytest.skip(f"shared DRIVE data not found at {DRIVE}")
    raw = load_folder(DRIVE / "training" / "images", DRIVE / "training" / "1st_manual", DRIVE / "training" / "mask",
                      val_images=DRIVE / "test" / "images", val_masks=DRIVE / "test" / "1st_manual",
                      val_valid=DRIVE / "test" / "mask", in_channels=3)
    assert len(raw.train_images) == len(raw.val_images) == 20
    assert all(im.shape == (3, 584, 565) and im.dtype == np.uint8 for im in raw.train_images + raw.val_images)
    labels, regions = np.stack(raw.train_labels + raw.val_labels), np.stack(raw.train_valid + raw.val_valid)
    assert 0.12 < labels[regions == 1].mean() < 0.135  # about 12.6 % vessel inside the FOV (DRIVE README)
    assert 0.67 < regions.mean() < 0.71  # the FOV covers about 69 %
    assert raw.predict_names == [f"{i:02d}_test" for i in range(1, 21)]
    with pytest.raises(DataError) as err:  # DRIVE is colour: one channel is refused, not silently converted
        load_folder(DRIVE / "test" / "images", DRIVE / "test" / "1st_manual", in_channels=1)
    assert "01_test.tif" in one_sentence(str(err.value))


def test_unpaired_files_are_named(tmp_path):
    paths = drive_like(tmp_path)
    (paths["masks"] / "22_manual1.gif").rename(paths["masks"] / "24_manual1.gif")
    message = error_for(**paths)
    assert "dataset.masks" in message and "22_training.png" in message and "24_manual1.gif" not in message
    assert "by name" in message and "by number" in message and "dataset.pair_by=sorted" in message
    (paths["masks"] / "24_manual1.gif").rename(paths["masks"] / "22_manual1.gif")
    write_png(paths["masks"] / "30_manual1.gif", np.zeros((3, 3), np.uint8))
    message = error_for(**paths, pair_by="number")
    assert "30_manual1.gif" in message and "no partner in dataset.images" in message
    message = error_for(**paths, pair_by="name")
    assert "by name" in message and "21_training.png" in message and "by number" not in message
    assert "dataset.pair_by=number" in message
    message = error_for(**paths, pair_by="sorted")
    assert "dataset.images has 3 images but dataset.masks has 4" in message


def test_number_pairing_problems(tmp_path):
    paths = drive_like(tmp_path)
    write_png(paths["masks"] / "21_manual2.gif", np.zeros((37, 45), np.uint8))
    message = error_for(**paths, pair_by="number")
    assert "21_manual1.gif and 21_manual2.gif" in message and "share the number 21" in message
    (paths["masks"] / "21_manual2.gif").unlink()
    write_png(paths["images"] / "extra.png", np.zeros((3, 3, 3), np.uint8))
    assert "extra.png in dataset.images has no number in its name" in error_for(**paths, pair_by="number")


def test_size_mismatch_names_both_files_and_shapes(tmp_path):
    paths = drive_like(tmp_path)
    write_png(paths["masks"] / "22_manual1.gif", np.zeros((50, 34), np.uint8))
    message = error_for(**paths, in_channels=3)
    assert "22_training.png is 50 x 33" in message and "22_manual1.gif is 50 x 34" in message
    paths = drive_like(tmp_path / "fov")
    write_png(paths["valid"] / "23_training_mask.gif", np.full((40, 39), 255, np.uint8))
    message = error_for(**paths, in_channels=3)
    assert "23_training.png is 41 x 39" in message and "valid-region mask" in message and "40 x 39" in message


def test_masks_must_be_two_valued_with_the_foreground_value(tmp_path):
    paths = drive_like(tmp_path)
    three = np.zeros((50, 33), np.uint8)
    three[:10], three[10:20] = 128, 255
    write_png(paths["masks"] / "22_manual1.gif", three)
    message = error_for(**paths, in_channels=3)
    assert "22_manual1.gif" in message and "3 values (0, 128, 255)" in message and "two-valued" in message
    write_png(paths["masks"] / "22_manual1.gif", (three > 0).astype(np.uint8))
    message = error_for(**paths, in_channels=3)
    assert "22_manual1.gif" in message and "values 0 and 1" in message and "dataset.foreground=255" in message
    write_png(paths["masks"] / "22_manual1.gif", np.zeros((50, 33), np.uint8))
    raw = load_folder(**paths, in_channels=3, pair_by="number", val_count=2)
    assert raw.val_labels[0].sum() == 0  # a one-valued mask is all background (or all object) and is fine
    paths = drive_like(tmp_path / "jpeg")
    (paths["masks"] / "21_manual1.gif").unlink()
    noisy = np.random.default_rng(0).integers(0, 256, (37, 45), dtype=np.uint8)
    Image.fromarray(noisy).save(paths["masks"] / "21_manual1.jpg")
    message = error_for(**paths, in_channels=3)
    assert "21_manual1.jpg" in message and "not JPEG" in message


def test_path_and_folder_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = error_for(images="nope", masks="also_nope")
    assert "dataset.images=nope does not exist" in message and str(tmp_path / "nope") in message
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    message = error_for(images="empty", masks="empty")
    assert "dataset.images=empty" in message and "holds no image files" in message
    assert "dataset.images is not set" in error_for(images=None, masks="empty")
    (tmp_path / "table.csv").write_text("1,2")
    assert "neither a folder nor an image file" in error_for(images="table.csv", masks="empty")
    paths = drive_like(tmp_path / "d")
    message = error_for(**{**paths, "valid": tmp_path / "missing_fov"})
    assert "dataset.valid=" in message and "does not exist" in message


def test_folder_content_errors(tmp_path):
    paths = drive_like(tmp_path)
    write_png(paths["images"] / "21_training.gif", np.zeros((3, 3), np.uint8))
    message = error_for(**paths)
    assert "21_training.gif" in message and "21_training.png" in message and "share the name" in message
    paths = drive_like(tmp_path / "pages")
    (paths["images"] / "21_training.png").unlink()
    tifffile.imwrite(paths["images"] / "21_training.tif", np.zeros((2, 37, 45), np.uint8), photometric="minisblack")
    message = error_for(**paths)
    assert "21_training.tif holds 2 images" in message and "one image per file" in message
    paths = drive_like(tmp_path / "zero")
    write_png(paths["valid"] / "22_training_mask.gif", np.zeros((50, 33), np.uint8))
    message = error_for(**paths, in_channels=3)
    assert "22_training_mask.gif is zero everywhere" in message and "22_training.png" in message


def test_option_errors(tmp_path):
    paths = drive_like(tmp_path)
    assert "dataset.pair_by=stem is not one of auto, name, number, sorted" in error_for(**paths, pair_by="stem")
    assert "dataset.in_channels=4" in error_for(**paths, in_channels=4)
    message = error_for(**paths, val_images=paths["images"])
    assert "dataset.val_images is set but dataset.val_masks is not" in message
    assert "dataset.val_valid is set without dataset.val_images" in error_for(**paths, val_valid=paths["valid"])
    for bad in (0, 3, -1):
        message = error_for(**paths, in_channels=3, val_count=bad)
        assert f"dataset.val_count={bad} is out of range for 3 images" in message and "1 to 2" in message
    single = tmp_path / "single"
    write_png(single / "im" / "1.png", np.zeros((4, 4), np.uint8))
    write_png(single / "lb" / "1.png", np.zeros((4, 4), np.uint8))
    assert "holds only 1 image" in error_for(images=single / "im", masks=single / "lb")
    message = error_for(**paths, in_channels=1)
    assert "21_training.png is a colour (RGB) image but dataset.in_channels=1" in message
