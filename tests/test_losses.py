import pytest
import torch

from skipexp.errors import ConfigError
from skipexp.losses import bce_loss, get_loss, soft_dice_loss


def test_soft_dice_by_hand():
    logits = torch.tensor([[0.0, 0.0]])  # p = 0.5, 0.5
    target = torch.tensor([[1.0, 0.0]])
    # 1 - (2 * 0.5 + 1) / (1 + 1 + 1)
    assert soft_dice_loss(logits, target).item() == pytest.approx(1 - 2 / 3)


def test_perfect_prediction_has_near_zero_dice_loss():
    target = torch.tensor([[1.0, 0.0, 1.0]])
    assert soft_dice_loss(target * 40 - 20, target).item() == pytest.approx(0.0, abs=1e-6)


def test_bce_by_hand():
    assert bce_loss(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(0.693147, abs=1e-6)


def test_unknown_loss_names_the_choices():
    with pytest.raises(ConfigError, match="dice, bce"):
        get_loss("focal")


LOSS_TOLERANCE = 0.01  # bf16 autocast keeps about 3 significant digits; the Dice loss of one step agrees to ~1e-3


def test_fast_settings_give_the_fp32_loss_of_a_step():
    """One training step's loss under the default speed-ups (bf16 where native, channels-last) vs plain fp32."""
    from skipexp.build import build_network
    from skipexp.runtime import Runtime
    from tests.conftest import compose_config

    losses = []
    for trainer in ("default", "plain"):
        cfg = compose_config([f"trainer={trainer}", "model.width=8", "model.dropout=0"])
        runtime = Runtime.from_config(cfg.trainer)
        torch.manual_seed(0)
        model = build_network(cfg.model, cfg.depth, 1, runtime).train()
        image = torch.randn(2, 1, 96, 96)
        label = (torch.rand(2, 1, 96, 96) < 0.3).float()
        with runtime.autocast():
            logits = model(runtime.to_device(image))
        losses.append(soft_dice_loss(logits, runtime.to_device(label)).item())
    assert abs(losses[0] - losses[1]) < LOSS_TOLERANCE, losses
