"""Training losses on membrane logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from skipexp.errors import ConfigError

LOSSES = ("dice", "bce")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """1 - (2 sum(y p) + 1) / (sum(y) + sum(p) + 1) over the whole batch (SPEC section 3).

    Pixels where ``valid`` is 0 are left out of every sum.
    """
    prob = torch.sigmoid(logits.float())
    target = target.float()
    if valid is not None:
        prob, target = prob * valid, target * valid
    return 1 - (2 * (prob * target).sum() + 1) / (target.sum() + prob.sum() + 1)


def bce_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy on membrane logits, averaged over valid pixels."""
    if valid is None:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (per_pixel * valid).sum() / valid.sum().clamp_min(1)


def get_loss(name: str):
    """The loss function called ``name`` (``trainer.loss``)."""
    if name == "dice":
        return soft_dice_loss
    if name == "bce":
        return bce_loss
    raise ConfigError(f"trainer.loss={name!r} is not one of {', '.join(LOSSES)}")
