"""ISBI 2012 reader: the real stacks (26 / 4 / 30 slices) and every error a damaged copy can cause."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from skipexp.data.io import DataError
from skipexp.data.isbi2012 import load_isbi2012
from tests.data.test_io import one_sentence

ISBI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "isbi2012"


def fake_root(root: Path, volume=None, labels=None, test=None) -> Path:
    """Write small ISBI-like stacks (6 slices of 8 x 10) into ``root``; pass an array to replace one of them."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    volume = rng.integers(0, 256, (6, 8, 10), dtype=np.uint8) if volume is None else volume
    labels = np.where(rng.random((6, 8, 10)) < 0.25, 0, 255).astype(np.uint8) if labels is None else labels
    test = rng.integers(0, 256, (3, 8, 10), dtype=np.uint8) if test is None else test
    for name, data in (("train-volume.tif", volume), ("train-labels.tif", labels), ("test-volume.tif", test)):
        tifffile.imwrite(root / name, data, photometric="minisblack")
    return root


def error_for(root: Path, val_slices: int = 2) -> str:
    with pytest.raises(DataError) as err:
        load_isbi2012(root, val_slices)
    return one_sentence(str(err.value))


def test_real_stacks_split_26_4_with_membrane_as_one():
    if not (ISBI / "train-volume.tif").is_file():
        pytest.skip(f"shared ISBI 2012 data not found at {ISBI}")
    raw = load_isbi2012(ISBI, 4)
    assert (len(raw.train_images), len(raw.val_images), len(raw.predict_images)) == (26, 4, 30)
    assert len(raw.train_labels) == 26 and len(raw.val_labels) == 4 and len(raw.predict_names) == 30
    for image in raw.train_images + raw.val_images + raw.predict_images:
        assert image.shape == (1, 512, 512) and image.dtype == np.uint8
    labels = np.stack(raw.train_labels + raw.val_labels)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}
    assert 0.20 < labels.mean() < 0.24  # about 22 % membrane (data README)
    volume = tifffile.imread(ISBI / "train-volume.tif")
    assert np.array_equal(raw.val_images[0][0], volume[26]) and np.array_equal(raw.val_images[-1][0], volume[29])
    # membrane (1) is the dark boundary: darker on average than cell interiors
    assert volume[labels == 1].mean() < volume[labels == 0].mean()
    assert raw.predict_names[0] == "test-volume-00" and raw.predict_names[-1] == "test-volume-29"
    assert raw.train_valid is None and raw.val_valid is None


def test_small_stack_split_and_label_conversion(tmp_path):
    root = fake_root(tmp_path / "isbi")
    raw = load_isbi2012(root, 2)
    labels = tifffile.imread(root / "train-labels.tif")
    assert len(raw.train_images) == 4 and len(raw.val_images) == 2 and len(raw.predict_images) == 3
    assert np.array_equal(raw.val_labels[1], (labels[5] == 0).astype(np.uint8))
    assert raw.predict_names == ["test-volume-0", "test-volume-1", "test-volume-2"]


def test_missing_file_says_how_to_get_it(tmp_path):
    root = fake_root(tmp_path / "isbi")
    (root / "train-labels.tif").unlink()
    message = error_for(root)
    assert str(root / "train-labels.tif") in message and "missing" in message
    assert f"skipexp-data isbi2012 {root}" in message and "dataset.root=PATH" in message
    assert "does not exist" not in error_for(tmp_path / "nowhere")  # a missing root names its first file
    assert "train-volume.tif" in error_for(tmp_path / "nowhere")


def test_truncated_tiff(tmp_path):
    root = fake_root(tmp_path / "isbi")
    data = (root / "train-volume.tif").read_bytes()
    (root / "train-volume.tif").write_bytes(data[:300])  # cut inside the pixel data (a download stopped early)
    message = error_for(root)
    assert str(root / "train-volume.tif") in message and "not a readable TIFF" in message


def test_wrong_dimensions(tmp_path):
    root = fake_root(tmp_path / "isbi", volume=np.zeros((8, 10), np.uint8))
    message = error_for(root)
    assert "train-volume.tif" in message and "(8, 10)" in message and "Z x H x W" in message
    root = fake_root(tmp_path / "rgb", test=np.zeros((3, 8, 10, 3), np.uint8))
    message = error_for(root)
    assert "test-volume.tif" in message and "(3, 8, 10, 3)" in message


def test_images_and_labels_differ_in_count_or_shape(tmp_path):
    root = fake_root(tmp_path / "count", labels=np.full((5, 8, 10), 255, np.uint8))
    message = error_for(root)
    assert "train-volume.tif has 6 slices of 8 x 10" in message and "train-labels.tif has 5 slices of 8 x 10" in message
    root = fake_root(tmp_path / "shape", labels=np.full((6, 8, 9), 255, np.uint8))
    assert "6 slices of 8 x 9" in error_for(root)


def test_labels_must_be_two_valued(tmp_path):
    labels = np.zeros((6, 8, 10), np.uint8)
    labels[:, :4] = 128
    labels[:, :2] = 255
    message = error_for(fake_root(tmp_path / "three", labels=labels))
    assert "train-labels.tif" in message and "0, 128, 255" in message and "two-valued" in message
    message = error_for(fake_root(tmp_path / "binary01", labels=(labels > 0).astype(np.uint8)))
    assert "0, 1" in message and "dataset.foreground" in message


def test_empty_stack(tmp_path):
    root = fake_root(tmp_path / "isbi")
    (root / "test-volume.tif").write_bytes(b"II*\x00\x00\x00\x00\x00")  # a TIFF header with no pages
    message = error_for(root)
    assert str(root / "test-volume.tif") in message and "no slices" in message


@pytest.mark.parametrize("val_slices", [0, -1, 6, 7])
def test_val_slices_out_of_range(tmp_path, val_slices):
    message = error_for(fake_root(tmp_path / "isbi"), val_slices)
    assert f"dataset.val_slices={val_slices}" in message and "6 training slices" in message and "1 to 5" in message
