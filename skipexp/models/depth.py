"""Depth -> repeats per stage: the rule that turns ``depth.layers=N`` into a network.

Depth is counted as ResNet counts it (docs/network.md): weight layers on the main
path, input to output. The network has a 3x3 conv (Down 1), ``r`` simple blocks
on each side (Down 2, Up 4), seven stages of ``B`` blocks in all (Down 3-5,
Across, Up 1-3) with ``c`` convs each, a 3x3 conv (Up 5) and the classifier:

    layers = 3 + 2r + c*B        (c = 3 bottleneck, 2 basic, 1 simple)

``B`` is spread over the stages in the paper's proportions 3:8:10:3:10:8:3,
each stage at least one block, the decoder mirroring the encoder. ``r`` is the
smallest value in 1..3 that makes ``N`` reachable unless ``model.n_simple_blocks``
pins it. 140 = 3 + 2*1 + 3*45 gives the paper's table exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from skipexp.errors import UserError

PAPER_PROPORTIONS = (3, 8, 10)  # Down 3, Down 4, Down 5 (Up 3, Up 2, Up 1 mirror them)
PAPER_ACROSS = 3
MAX_SIMPLE_BLOCKS = 3
MIN_STAGE_BLOCKS = 7  # one block in each of the seven block stages
CONVS_PER_BLOCK = {"bottleneck": 3, "basic": 2, "simple": 1}


class DepthError(UserError):
    """A depth that no network of the chosen block type has."""


@dataclass(frozen=True)
class DepthPlan:
    """How many blocks each stage gets for a requested depth."""

    layers: int
    block: str
    n_simple_blocks: int
    encoder_repeats: tuple[int, int, int]  # Down 3, Down 4, Down 5
    across_repeats: int

    @property
    def stage_repeats(self) -> dict[str, int]:
        """Blocks per stage, in forward order (simple-block stages included)."""
        d3, d4, d5 = self.encoder_repeats
        return {"down2": self.n_simple_blocks, "down3": d3, "down4": d4, "down5": d5,
                "across": self.across_repeats, "up1": d5, "up2": d4, "up3": d3,
                "up4": self.n_simple_blocks}


def count_layers(block: str, n_simple_blocks: int, n_blocks: int) -> int:
    """Layers of a network with ``n_blocks`` blocks in the seven block stages."""
    return 3 + 2 * n_simple_blocks + CONVS_PER_BLOCK[block] * n_blocks


def split_blocks(n_blocks: int) -> tuple[tuple[int, int, int], int]:
    """Spread ``n_blocks`` over Down 3-5, Across and the mirrored Up 1-3 as 3:8:10:3:10:8:3."""
    if n_blocks < MIN_STAGE_BLOCKS:
        raise DepthError(f"{n_blocks} blocks cannot give each of the 7 block stages one block")
    target = n_blocks * PAPER_ACROSS / (2 * sum(PAPER_PROPORTIONS) + PAPER_ACROSS)
    candidates = [d for d in range(1, n_blocks + 1)
                  if (n_blocks - d) % 2 == 0 and (n_blocks - d) // 2 >= len(PAPER_PROPORTIONS)]
    across = min(candidates, key=lambda d: (abs(d - target), d))
    per_side = (n_blocks - across) // 2
    quotas = [per_side * p / sum(PAPER_PROPORTIONS) for p in PAPER_PROPORTIONS]
    repeats = [max(1, int(q)) for q in quotas]
    while sum(repeats) < per_side:  # largest remainder first
        i = max(range(3), key=lambda j: quotas[j] - repeats[j])
        repeats[i] += 1
    while sum(repeats) > per_side:  # only when the floor of 1 overshot
        i = min((j for j in range(3) if repeats[j] > 1), key=lambda j: quotas[j] - repeats[j])
        repeats[i] -= 1
    return (repeats[0], repeats[1], repeats[2]), across


def _plan_for(layers: int, block: str, n_simple_blocks: int) -> DepthPlan | None:
    convs = CONVS_PER_BLOCK[block]
    rest = layers - 3 - 2 * n_simple_blocks
    if rest % convs or rest // convs < MIN_STAGE_BLOCKS:
        return None
    encoder, across = split_blocks(rest // convs)
    return DepthPlan(layers, block, n_simple_blocks, encoder, across)


def reachable_depths(block: str, n_simple_blocks: int | None, upto: int) -> list[int]:
    """All depths up to ``upto`` that ``block`` can reach (with ``n_simple_blocks`` pinned or free)."""
    rs = [n_simple_blocks] if n_simple_blocks is not None else range(1, MAX_SIMPLE_BLOCKS + 1)
    return sorted({n for n in range(1, upto + 1) for r in rs if _plan_for(n, block, r) is not None})


def plan_depth(layers: int, block: str = "bottleneck", n_simple_blocks: int | None = None) -> DepthPlan:
    """The stage repeats for exactly ``layers`` layers, or a DepthError naming the nearest reachable depths."""
    if block not in CONVS_PER_BLOCK:
        raise DepthError(f"model.block={block!r} is not one of {', '.join(CONVS_PER_BLOCK)}")
    if n_simple_blocks is not None and n_simple_blocks < 1:
        raise DepthError(f"model.n_simple_blocks={n_simple_blocks} must be at least 1 (or null to let depth choose)")
    rs = [n_simple_blocks] if n_simple_blocks is not None else range(1, MAX_SIMPLE_BLOCKS + 1)
    for r in rs:
        plan = _plan_for(layers, block, r)
        if plan is not None:
            return plan
    smallest = count_layers(block, max(rs), MIN_STAGE_BLOCKS)  # a depth below it has no reachable depth below
    reach = reachable_depths(block, n_simple_blocks, max(layers, smallest) + 2 * CONVS_PER_BLOCK[block] + 8)
    below = [n for n in reach if n < layers]
    above = [n for n in reach if n > layers]
    near = ([str(below[-1])] if below else []) + ([str(above[0])] if above else [])
    nearest = f"the nearest reachable depths are {near[0]} and {near[1]}" if len(near) == 2 else \
        f"the nearest reachable depth is {near[0]}"
    pinned = f" with model.n_simple_blocks={n_simple_blocks}" if n_simple_blocks is not None else ""
    raise DepthError(
        f"depth.layers={layers} cannot be built from {block} blocks{pinned}; {nearest} "
        f"(layers = 3 + 2r + {CONVS_PER_BLOCK[block]}B, r simple blocks per side, B >= 7 blocks)."
    )
