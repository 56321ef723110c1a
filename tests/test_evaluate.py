import copy
import time

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from skipexp.errors import ConfigError
from skipexp.evaluate import Inference, _blend_window, _starts, membrane_probability
from skipexp.runtime import Runtime
from tests.conftest import compose_config
from tests.data.test_io import one_sentence

CPU = Runtime(torch.device("cpu"), None, False, 0)


class Shifted(nn.Module):
    """A per-pixel model: tiled, blended and flipped predictions of it must equal the whole-image one."""

    def forward(self, x):
        return 2 * x - 1


@pytest.mark.parametrize("tile,overlap", [(32, 8), (48, 16), (64, 0)])
def test_tiled_inference_of_a_pointwise_model_equals_whole_image(tile, overlap):
    image = torch.randn(1, 100, 77)
    whole = membrane_probability(Shifted(), image, CPU)
    tiled = membrane_probability(Shifted(), image, CPU, Inference(tile, overlap, False))
    assert np.allclose(whole, tiled, atol=1e-6)


def test_flip_tta_of_an_equivariant_model_changes_nothing_and_of_another_averages():
    image = torch.randn(1, 40, 40)
    plain = membrane_probability(Shifted(), image, CPU)
    assert np.allclose(plain, membrane_probability(Shifted(), image, CPU, Inference(0, 0, True)), atol=1e-6)

    class LeftEdge(nn.Module):  # marks column 0 only; of the four flips, two put the mark on each edge
        def forward(self, x):
            out = torch.full_like(x, -30.0)
            out[..., :, 0] = 30.0
            return out

    tta = membrane_probability(LeftEdge(), image, CPU, Inference(0, 0, True))
    assert np.allclose(tta[:, 0], 0.5, atol=1e-6) and np.allclose(tta[:, -1], 0.5, atol=1e-6)


def test_tiles_cover_the_image():
    assert _starts(100, 32, 24) == [0, 24, 48, 68]
    assert _starts(20, 32, 24) == [0]
    window = _blend_window(32, 32, 8)
    assert window.min() > 0 and window[16, 16] == 1


def test_bad_tiling_is_refused():
    with pytest.raises(ConfigError, match="overlap"):
        Inference.from_config(compose_config(["predict.tile=32", "predict.overlap=32"]).predict)
    with pytest.raises(ConfigError) as err:
        Inference.from_config(compose_config(["predict.tile=32", "predict.overlap=40"]).predict)
    assert str(err.value) == ("predict.overlap=40 must be less than predict.tile=32, or tiles would not advance; "
                              "give e.g. predict.overlap=8, or predict.tile=0 for whole images.")
    assert Inference.from_config(compose_config(["predict.overlap=100"]).predict) == Inference(0, 100, False)
    assert Inference.from_config(compose_config(["predict.tile=64", "predict.tta=true"]).predict) == \
        Inference(64, 32, True)


PREDICT_BAD = {  # every key of the predict node: values of the wrong kind and out of range
    "tile": ["abc", True, 1.5, -1, None, 256.0],
    "overlap": ["abc", True, 1.5, -1, None],
    "tta": ["abc", "true", 1, 0, None],
}


def test_every_predict_key_refuses_wrong_kinds_and_ranges():
    predict = compose_config([]).predict
    assert set(PREDICT_BAD) == set(predict), "list bad values for every key of the node"
    for key, values in PREDICT_BAD.items():
        for value in values:
            node = copy.deepcopy(predict)
            node[key] = value
            started = time.perf_counter()
            with pytest.raises(ConfigError) as err:
                Inference.from_config(node)
            assert time.perf_counter() - started < 0.5
            message = one_sentence(str(err.value))
            assert message.startswith(f"predict.{key}=") and " must be " in message, message
    OmegaConf.set_struct(predict, False)
    predict["tiles"] = 2
    with pytest.raises(ConfigError, match=r"predict\.tiles is not a key of predict"):
        Inference.from_config(predict)


def test_vrand_vinfo_of_perfect_maps_of_differing_sizes_is_one():
    from skipexp.evaluate import vrand_vinfo

    membranes, probs = [], []
    for h, w in [(40, 52), (47, 33)]:
        membrane = np.zeros((h, w), np.uint8)
        membrane[:, w // 2] = 1
        membrane[h // 3, :] = 1
        membranes.append(membrane)
        probs.append(membrane.astype(np.float32))
    rand, info = vrand_vinfo(probs, membranes, [np.ones_like(m) for m in membranes])
    assert rand == pytest.approx(1.0) and info == pytest.approx(1.0)


def test_vrand_vinfo_list_path_matches_the_stack_path():
    from skipexp.evaluate import vrand_vinfo
    from skipexp.metrics import challenge_scores

    rng = np.random.default_rng(0)
    membranes = [(rng.random((30, 30)) < 0.3).astype(np.uint8) for _ in range(2)]
    probs = [np.clip(m + rng.normal(0, 0.3, m.shape), 0, 1).astype(np.float32) for m in membranes]
    ones = [np.ones_like(m) for m in membranes]
    stack = challenge_scores(1 - np.stack(probs), np.where(np.stack(membranes) > 0, 0, 255))
    assert vrand_vinfo(probs, membranes, ones) == pytest.approx((stack.v_rand, stack.v_info), abs=1e-12)
    # valid = 0 turns pixels into ground-truth membrane, which the scores leave out
    masked = vrand_vinfo(probs, membranes, [np.pad(np.ones((30, 20)), ((0, 0), (0, 10))) for _ in membranes])
    assert masked != pytest.approx((stack.v_rand, stack.v_info))
