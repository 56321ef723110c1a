import numpy as np
import pytest
import torch
from torch import nn

from skipexp.errors import ConfigError
from skipexp.evaluate import Inference, _blend_window, _starts, membrane_probability
from skipexp.runtime import Runtime
from tests.conftest import compose_config

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
