import numpy as np
import pytest
import tifffile

from skipexp.data import build_data, data_spec
from skipexp.data.augment import Augmenter
from skipexp.data.io import DataError
from skipexp.data.synthetic import make_stack
from skipexp.datacli import main
from tests.conftest import compose_config


def test_same_seed_same_sections_and_splits_are_independent():
    a_img, a_lab = make_stack(3, 0, 3, 64, 20)
    b_img, b_lab = make_stack(3, 0, 5, 64, 20)
    assert np.array_equal(a_img, b_img[:3]) and np.array_equal(a_lab, b_lab[:3])
    c_img, _ = make_stack(4, 0, 3, 64, 20)
    assert not np.array_equal(a_img, c_img)


def test_sections_look_like_em():
    images, labels = make_stack(0, 0, 4, 128, 24)
    assert images.dtype == np.float32 and labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1}
    fraction = labels.mean()
    assert 0.08 < fraction < 0.35  # membranes are a minority class, as in ISBI 2012 (about 22 %)
    # membranes are darker than cell interiors, by a clear margin
    assert images[labels == 1].mean() < images[labels == 0].mean() - 0.2


def test_build_data_standardises_and_sizes():
    cfg = compose_config(["dataset.size=48", "dataset.n_train=3", "dataset.n_val=2"])
    data = build_data(data_spec(cfg.dataset), Augmenter(crop=32))
    assert len(data.train) == 3 and len(data.val) == 2 and data.in_channels == 1
    sample = data.train[0]
    assert sample["image"].shape == (1, 32, 32) and sample["label"].shape == (1, 32, 32)
    full = data.val[0]["image"]
    assert full.shape == (1, 48, 48)
    assert abs(float(full.mean())) < 1e-4 and abs(float(full.std()) - 1) < 1e-2


def test_make_stack_refuses_what_it_cannot_generate():
    for args in [(0, 0, 0, 64, 20), (0, 0, 1, 7, 20), (0, 0, 1, 64, 3), (-1, 0, 1, 64, 20)]:
        with pytest.raises(DataError, match="synthetic data needs size >= 8"):
            make_stack(*args)


def test_skipexp_data_synthetic_writes_stacks_and_refuses_bad_flags_before_making_dest(tmp_path, capsys):
    main(["synthetic", str(tmp_path / "out"), "--count", "2", "--size", "16"])
    volume = tifffile.imread(tmp_path / "out" / "synthetic-volume.tif")
    assert volume.shape == (2, 16, 16) and volume.dtype == np.uint8
    assert set(np.unique(tifffile.imread(tmp_path / "out" / "synthetic-labels.tif"))) == {0, 255}
    capsys.readouterr()
    for flags, words in [(["--count", "0"], "--count=0 must be a positive whole number; give e.g. --count=64."),
                         (["--size", "4"], "--size=4 must be a whole number of 8 or more"),
                         (["--seed", "-1"], "--seed=-1 must be a whole number of 0 or more"),
                         (["--cell-size", "nan"], "--cell-size=nan must be a number of 4 or more")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["synthetic", str(tmp_path / "never"), *flags])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err == f"skipexp-data: error: {err.split('error: ', 1)[1]}"
        assert words in err and err.count("\n") == 1
    assert not (tmp_path / "never").exists()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        main(["synthetic", str(tmp_path / "file" / "sub"), "--count", "1", "--size", "8"])
    assert exit_info.value.code == 2 and "could not write the synthetic stacks" in capsys.readouterr().err
