import pytest

from skipexp.models.depth import DepthError, count_layers, plan_depth, reachable_depths, split_blocks


def test_paper_depth_is_the_table():
    plan = plan_depth(140)
    assert plan.n_simple_blocks == 1
    assert plan.stage_repeats == {"down2": 1, "down3": 3, "down4": 8, "down5": 10, "across": 3,
                                  "up1": 10, "up2": 8, "up3": 3, "up4": 1}


def test_102_uses_three_simple_blocks_and_31_bottlenecks():
    plan = plan_depth(102)
    assert plan.n_simple_blocks == 3
    assert sum(v for k, v in plan.stage_repeats.items() if k not in ("down2", "up4")) == 31


@pytest.mark.parametrize("n_blocks", range(7, 200))
def test_split_is_symmetric_and_complete(n_blocks):
    (d3, d4, d5), across = split_blocks(n_blocks)
    assert 2 * (d3 + d4 + d5) + across == n_blocks
    assert min(d3, d4, d5, across) >= 1


def test_smallest_bottleneck_depth_is_26_and_27_is_not_reachable():
    assert reachable_depths("bottleneck", None, 40)[:3] == [26, 28, 29]
    with pytest.raises(DepthError, match="nearest reachable depths are 26 and 28"):
        plan_depth(27)


def test_every_depth_from_28_up_is_reachable_with_bottlenecks():
    for n in range(28, 400):
        plan = plan_depth(n)
        blocks = sum(plan.stage_repeats.values()) - 2 * plan.n_simple_blocks
        assert count_layers("bottleneck", plan.n_simple_blocks, blocks) == n


def test_basic_blocks_reach_odd_depths_only():
    with pytest.raises(DepthError, match="139 and 141"):
        plan_depth(140, "basic")
    assert plan_depth(141, "basic").layers == 141


def test_pinned_simple_blocks_are_respected():
    assert plan_depth(140, n_simple_blocks=1).n_simple_blocks == 1
    with pytest.raises(DepthError, match="n_simple_blocks=2"):
        plan_depth(140, n_simple_blocks=2)  # 140 - 3 - 4 = 133 is not a multiple of 3
