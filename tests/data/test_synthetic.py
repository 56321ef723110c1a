import numpy as np

from skipexp.data import build_data
from skipexp.data.augment import Augmenter
from skipexp.data.synthetic import make_stack
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
    data = build_data(cfg.dataset, Augmenter(crop=32))
    assert len(data.train) == 3 and len(data.val) == 2 and data.in_channels == 1
    sample = data.train[0]
    assert sample["image"].shape == (1, 32, 32) and sample["label"].shape == (1, 32, 32)
    full = data.val[0]["image"]
    assert full.shape == (1, 48, 48)
    assert abs(float(full.mean())) < 1e-4 and abs(float(full.std()) - 1) < 1e-2
