"""Speed-only changes to a built network, applied by the run builder when ``trainer`` asks for them.

None of them changes what the network computes beyond rounding; the network
itself (fcresnet.py, blocks.py) reads like the paper without them.
"""

from __future__ import annotations

from torch import nn

from skipexp.models.fastdropout import use_fast_dropout


def apply_speedups(model: nn.Module, *, fast_dropout: bool) -> nn.Module:
    """Swap in the fast modules that were asked for, in place; returns ``model``."""
    if fast_dropout:
        use_fast_dropout(model)
    return model
