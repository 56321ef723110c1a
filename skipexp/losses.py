"""Training losses on membrane logits."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from skipexp.errors import ConfigError

LOSSES = ("dice", "bce")


Reduce = Callable[[torch.Tensor], torch.Tensor]


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
                   reduce: Reduce | None = None) -> torch.Tensor:
    """1 - (2 sum(y p) + 1) / (sum(y) + sum(p) + 1) over the whole batch (docs/data.md).

    Pixels where ``valid`` is 0 are left out of every sum. ``reduce`` sums the
    sums over processes (data-parallel training), so the loss is the global batch's.
    """
    prob = torch.sigmoid(logits.float())
    target = target.float()
    if valid is not None:
        prob, target = prob * valid, target * valid
    sums = torch.stack([(prob * target).sum(), target.sum() + prob.sum()])
    if reduce is not None:
        sums = reduce(sums)
    return 1 - (2 * sums[0] + 1) / (sums[1] + 1)


def bce_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
             reduce: Reduce | None = None) -> torch.Tensor:
    """Binary cross-entropy on membrane logits, averaged over valid pixels (of all processes, with ``reduce``)."""
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    if valid is None:
        valid = torch.ones_like(per_pixel)
    sums = torch.stack([(per_pixel * valid).sum(), valid.sum()])
    if reduce is not None:
        sums = reduce(sums)
    return sums[0] / sums[1].clamp_min(1)


def get_loss(name: str):
    """The loss function called ``name`` (``trainer.loss``)."""
    if name == "dice":
        return soft_dice_loss
    if name == "bce":
        return bce_loss
    raise ConfigError(f"trainer.loss={name!r} is not one of {', '.join(LOSSES)}")
