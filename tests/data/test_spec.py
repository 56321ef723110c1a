"""The cheap checks of the ``dataset`` and ``augment`` nodes (and ``trainer.crop``): every key of every kind, with
values of the wrong kind and out of range, each refused by name in one sentence before any data is touched."""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import pytest
from omegaconf import OmegaConf

from skipexp import checks
from skipexp.data import FolderSpec, Isbi2012Spec, SyntheticSpec, build_data, data_spec, dataset_channels
from skipexp.data.augment import Augmenter
from skipexp.errors import ConfigError, UserError
from tests.conftest import compose_config
from tests.data.test_io import one_sentence

NAN, INF = math.nan, math.inf
WHOLE = ["abc", True, 1.5, 0, -1, None]  # wrong for a positive whole number: text, a bool, a float, zero, negative
PATH = [5, True, 1.5, "", " ", ["a"]]  # wrong for a path: not text, or blank
BAD = {  # kind -> key -> values that must be refused; every key of each composed node must be listed
    "synthetic": {
        "name": ["nope", 5, True],
        "in_channels": [3, 0, True, "abc", 1.0],
        "size": [*WHOLE, 7],  # below the 8 px the generator needs
        "n_train": WHOLE,
        "n_val": WHOLE,
        "cell_size": ["abc", True, None, 0, -1, 3.5, NAN, INF],
        "seed": ["abc", True, 1.5, -1, None],
    },
    "isbi2012": {
        "name": ["nope", None],
        "root": [*PATH, None],
        "in_channels": [3, True, "abc"],
        "val_slices": [*WHOLE, 30],  # 30 training slices: at least one must train
    },
    "folder": {
        "name": ["nope"],
        "images": [*PATH, None],
        "masks": [*PATH, None],
        "valid": PATH,
        "val_images": PATH,
        "val_masks": PATH,
        "val_valid": PATH,
        "predict_images": PATH,
        "pair_by": ["nope", "", 5, True, None],
        "in_channels": [2, 4, 0, -1, True, "abc", 1.0, None],
        "foreground": ["abc", True, None, NAN, [255], 1.5, -1],
        "val_count": ["abc", True, 1.5, 0, -1],
    },
}
BASES = {"synthetic": [], "isbi2012": ["dataset=isbi2012"],
         "folder": ["dataset=folder", "dataset.images=imgs", "dataset.masks=masks"]}
AUGMENT_BAD = {
    "rotate_deg": ["abc", True, None, -1, -0.5, NAN],
    "shear_rad": ["abc", True, None, -0.41, INF],
    "flips": ["abc", "true", 1, 0, None],
    "rot90": ["abc", "true", 1, 0, None],
    "elastic": ["yes", 1, None],
    "elastic_alpha": ["abc", True, None, -6],
    "elastic_spacing": [*WHOLE, 32.0],
}
CROP_BAD = ["abc", True, 1.5, -1, None, 256.0]


@pytest.fixture(autouse=True)
def no_data(monkeypatch):
    """The checks must not generate or read anything: any such call fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a spec check touched the data")

    for target in ("skipexp.data.synthetic.make_stack", "skipexp.data.isbi2012.read_tiff",
                   "skipexp.data.folder._read_source"):
        monkeypatch.setattr(target, refuse)


def refused(check, *args) -> str:
    """The one sentence with which ``check(*args)`` refuses, timed: a check is quick."""
    started = time.perf_counter()
    with pytest.raises(UserError) as err:
        check(*args)
    assert time.perf_counter() - started < 0.5
    return one_sentence(str(err.value))


def with_value(node, key, value):
    node = copy.deepcopy(node)
    node[key] = value
    return node


@pytest.mark.parametrize("kind", BAD)
def test_every_dataset_key_of_every_kind_refuses_wrong_kinds_and_ranges(kind):
    dataset = compose_config(BASES[kind]).dataset
    assert set(BAD[kind]) == set(dataset), "list bad values for every key of the node"
    for key, values in BAD[kind].items():
        for value in values:
            message = refused(data_spec, with_value(dataset, key, value))
            assert f"dataset.{key}" in message, (key, value, message)


def test_a_number_where_text_goes_says_how_to_quote_it():
    message = refused(data_spec, with_value(compose_config(BASES["folder"]).dataset, "images", 2012))
    assert "dataset.images=2012 must be a path" in message and "'dataset.images=\"2012\"'" in message


def test_messages_name_the_value_and_the_fix():
    dataset = compose_config([]).dataset
    assert refused(data_spec, with_value(dataset, "n_train", 0)) == \
        "dataset.n_train=0 must be a positive whole number; give e.g. dataset.n_train=16."
    assert refused(data_spec, with_value(dataset, "size", True)) == \
        "dataset.size=true must be a whole number of 8 or more; give e.g. dataset.size=128."
    assert "dataset.name=nope is not one of synthetic, isbi2012, folder" in refused(
        data_spec, with_value(dataset, "name", "nope"))
    isbi = compose_config(BASES["isbi2012"]).dataset
    assert refused(data_spec, with_value(isbi, "val_slices", 30)) == \
        "dataset.val_slices=30 must be a whole number from 1 to 29; give e.g. dataset.val_slices=4."
    folder = compose_config(BASES["folder"]).dataset
    assert "dataset.pair_by=stem is not one of auto, name, number, sorted" in refused(
        data_spec, with_value(folder, "pair_by", "stem"))
    assert "dataset.images is not set" in refused(data_spec, compose_config(["dataset=folder"]).dataset)
    message = refused(data_spec, with_value(folder, "val_images", "v"))
    assert "dataset.val_images is set but dataset.val_masks is not" in message


def test_keys_nothing_reads_and_keys_removed_are_named():
    dataset = compose_config([]).dataset
    OmegaConf.set_struct(dataset, False)
    message = refused(data_spec, with_value(dataset, "n_trian", 3))
    assert "dataset.n_trian is not a key of dataset=synthetic" in message and "n_train" in message
    removed = copy.deepcopy(dataset)
    del removed["size"]
    assert "dataset.size is missing from the config; add it back with +dataset.size=VALUE" in refused(
        data_spec, removed)
    unset = with_value(dataset, "seed", "???")
    assert "dataset.seed is not set" in refused(data_spec, unset)


def test_good_values_give_the_spec():
    spec = data_spec(compose_config(["dataset.size=8", "dataset.cell_size=4", "dataset.n_val=1"]).dataset)
    assert spec == SyntheticSpec(size=8, n_train=64, n_val=1, cell_size=4.0, seed=0)
    assert dataset_channels(spec) == 1 and spec.name == "synthetic"
    spec = data_spec(compose_config(["dataset=isbi2012", "dataset.val_slices=29", "dataset.root=x"]).dataset)
    assert isinstance(spec, Isbi2012Spec) and spec.val_slices == 29 and str(spec.root) == "x"
    spec = data_spec(compose_config([*BASES["folder"], "dataset.in_channels=3", "dataset.val_count=2",
                                     "dataset.foreground=0", "dataset.pair_by=number"]).dataset)
    assert spec == FolderSpec(images="imgs", masks="masks", in_channels=3, val_count=2, foreground=0,
                              pair_by="number")
    assert dataset_channels(compose_config([*BASES["folder"], "dataset.in_channels=3"]).dataset) == 3


def test_every_augment_key_and_the_crop_refuse_wrong_kinds_and_ranges():
    augment = compose_config([]).augment
    assert set(AUGMENT_BAD) == set(augment), "list bad values for every key of the node"
    for key, values in AUGMENT_BAD.items():
        for value in values:
            message = refused(Augmenter.from_config, with_value(augment, key, value), 0)
            assert f"augment.{key}=" in message, (key, value, message)
    for crop in CROP_BAD:
        assert "trainer.crop=" in refused(Augmenter.from_config, augment, crop)
    assert refused(Augmenter.from_config, augment, -1) == ("trainer.crop=-1 must be 0 (the whole image) or a crop "
                                                           "size in pixels; give e.g. trainer.crop=256.")
    OmegaConf.set_struct(augment, False)
    assert "augment.rotate is not a key of augment" in refused(Augmenter.from_config,
                                                               with_value(augment, "rotate", 5), 0)
    aug = Augmenter.from_config(compose_config(["augment.elastic=true", "augment.rotate_deg=0"]).augment, 48)
    assert aug.crop == 48 and aug.elastic and aug.rotate == 0


def test_a_crop_larger_than_the_smallest_image_is_refused_once_the_images_are_read():
    images = [np.zeros((1, 64, 80)), np.zeros((1, 90, 70))]
    Augmenter(crop=64).check_fits(images)
    Augmenter(crop=0).check_fits(images)
    message = refused(Augmenter(crop=65).check_fits, images)
    assert message == ("trainer.crop=65 is larger than the smallest training image (64 px); use trainer.crop=64 "
                       "or less (0 = whole image).")


def test_build_data_checks_the_crop(monkeypatch):
    monkeypatch.undo()  # this one reads (generates) two small sections
    spec = data_spec(compose_config(["dataset.size=16", "dataset.n_train=1", "dataset.n_val=1"]).dataset)
    with pytest.raises(ConfigError, match=r"trainer\.crop=17 is larger than the smallest training image"):
        build_data(spec, Augmenter(crop=17))


def test_check_helpers():
    assert [checks.shown(v) for v in (None, True, False, "abc", "", 1.5, 3)] == \
        ["null", "true", "false", "abc", "''", "1.5", "3"]
    assert checks.full_name("dataset", "size") == "dataset.size" and checks.full_name("", "--size") == "--size"
    assert checks.full_name("dataset.sources", 0) == "dataset.sources[0]"
    assert checks.one_of("n", {"k": 3}, "k", (1, 3)) == 3
    with pytest.raises(ConfigError, match=r"n\.k=true is not one of 1, 3"):
        checks.one_of("n", {"k": True}, "k", (1, 3))  # a bool is not taken for 1
    assert checks.probability("n", {"p": 1}, "p") == 1.0
    with pytest.raises(ConfigError, match=r"n\.p=1\.5 must be a number from 0 to 1; give e\.g\. n\.p=0\.5\."):
        checks.probability("n", {"p": 1.5}, "p")
    assert checks.optional(checks.positive_int, "n", {"k": None}, "k") is None
    with pytest.raises(ConfigError, match=r"n\[1\]=x must be a positive whole number"):
        checks.positive_int("n", [1, "x"], 1)
    with pytest.raises(ConfigError, match=r"n\.r=0 must be a positive number"):
        checks.positive_number("n", {"r": 0}, "r")
