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
