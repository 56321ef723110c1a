import torch

from skipexp.data.augment import Augmenter
from tests.conftest import compose_config


def blocks(size=96):
    """A label of large squares, and an image equal to it, so any warp must move both alike."""
    label = torch.zeros(1, size, size)
    label[:, 10:40, 20:60] = 1
    label[:, 55:90, 5:30] = 1
    return label.clone(), label, torch.ones_like(label)


def test_flips_and_crop_move_image_label_and_valid_together():
    torch.manual_seed(0)
    image, label, valid = blocks()
    aug = Augmenter(crop=48, flips=True)
    for _ in range(20):
        out_image, out_label, out_valid = aug(image, label, valid)
        assert out_image.shape == (1, 48, 48) and torch.equal(out_image, out_label)
        assert torch.equal(out_valid, torch.ones(1, 48, 48))


def test_rotation_and_shear_warp_image_and_label_alike():
    torch.manual_seed(1)
    image, label, valid = blocks()
    aug = Augmenter(crop=64, rotate_deg=25, shear_rad=0.41, flips=True)
    changed = 0
    for _ in range(20):
        out_image, out_label, _ = aug(image, label, valid)
        assert set(out_label.unique().tolist()) <= {0.0, 1.0}  # nearest neighbour: labels stay binary
        agree = ((out_image > 0.5) == (out_label > 0.5)).float().mean()
        assert agree > 0.97  # bilinear image and nearest label differ only on boundary pixels
        changed += int(not torch.equal(out_label, label[:, :64, :64]))
    assert changed >= 18


def test_reflect_fill_leaves_no_empty_corners():
    torch.manual_seed(2)
    image = torch.full((1, 64, 64), 3.0)
    aug = Augmenter(rotate_deg=25, shear_rad=0.41, elastic=True, elastic_alpha=6)
    out, _, valid = aug(image, torch.zeros(1, 64, 64), torch.ones(1, 64, 64))
    assert torch.allclose(out, torch.full_like(out, 3.0))  # zero fill would show up as dark corners
    assert torch.equal(valid, torch.ones_like(valid))


def test_same_seed_same_stream():
    image, label, valid = blocks()
    aug = Augmenter.from_config(compose_config(["augment.elastic=true"]).augment, crop=32)
    torch.manual_seed(5)
    first = [aug(image, label, valid)[0] for _ in range(3)]
    torch.manual_seed(5)
    second = [aug(image, label, valid)[0] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_rot90_gives_all_eight_symmetries_and_keeps_labels_exact():
    image = torch.arange(16.0).reshape(1, 4, 4)
    label, valid = (image > 7).float(), torch.ones(1, 4, 4)
    aug = Augmenter(crop=0, flips=True, rot90=True)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        out_image, out_label, _ = aug(image, label, valid, generator=g)
        assert torch.equal(out_label, (out_image > 7).float())  # moved alike, not resampled
        seen.add(tuple(out_image.flatten().tolist()))
    assert len(seen) == 8  # the dihedral group of the square
    wide = torch.arange(8.0).reshape(1, 2, 4)
    shapes = {Augmenter(flips=False, rot90=True)(wide, wide, wide, generator=g)[0].shape for _ in range(20)}
    assert shapes == {(1, 2, 4)}  # a non-square image turns by 0 or 180 degrees only
    warped = Augmenter(crop=4, rotate_deg=1e-9, flips=False, rot90=True)  # the warp path turns by quarters too
    outs = {tuple(warped(image, label, valid, generator=g)[1].flatten().tolist()) for _ in range(50)}
    assert len(outs) == 4


def test_rot90_is_off_by_default():
    cfg = compose_config([])
    aug = Augmenter.from_config(cfg.augment, 0)
    assert aug.rot90 is False
