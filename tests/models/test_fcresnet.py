import copy
import dataclasses

import pytest
import torch
from torch import nn

from skipexp.models import build_model
from skipexp.models.blocks import Block
from skipexp.models.depth import plan_depth
from skipexp.models.fcresnet import FCResNet, NetSpec, count_parameters, main_path_layers
from tests.conftest import compose_config

VARIANTS = {"both": (True, True), "long_only": (True, False), "short_only": (False, True), "none": (False, False)}


def tiny(layers=26, long_skip=True, short_skip=True, **kw) -> FCResNet:
    return FCResNet(NetSpec(plan_depth(layers, kw.pop("block", "bottleneck")), long_skip, short_skip,
                            width=kw.pop("width", 2), **kw)).eval()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [(37, 101), (64, 64), (1, 1), (97, 33), (130, 70)])
def test_any_input_size_gives_the_same_output_size(variant, size):
    model = tiny(26, *VARIANTS[variant])
    out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 1, *size)


@pytest.mark.parametrize("merge,upsample,norm,block", [("concat", "repeat", "batch", "bottleneck"),
                                                       ("sum", "transposed", "group", "basic"),
                                                       ("sum", "repeat", "instance", "simple"),
                                                       ("concat", "transposed", "none", "simple")])
def test_model_options_build_and_run(merge, upsample, norm, block):
    layers = {"bottleneck": 26, "basic": 21, "simple": 14}[block]
    model = tiny(layers, merge=merge, upsample=upsample, norm=norm, block=block)
    assert model(torch.randn(1, 1, 50, 45)).shape == (1, 1, 50, 45)
    assert len(main_path_layers(model)) == layers


@pytest.mark.parametrize("preset,layers", [("26", 26), ("50", 50), ("102", 102), ("paper", 140)])
def test_presets_build_their_exact_depth(preset, layers):
    cfg = compose_config([f"depth={preset}"])
    model = build_model(cfg.model, cfg.depth, 1)
    assert len(main_path_layers(model)) == layers


@pytest.mark.parametrize("layers", [26, 28, 29, 30, 31, 44, 65, 77, 101, 160])
def test_counted_depth_equals_requested_depth(layers):
    assert len(main_path_layers(tiny(layers))) == layers


def test_layer_names_follow_the_network():
    names = [name for name, _ in main_path_layers(tiny(26))]
    assert names[:3] == ["down1.conv1", "down2.b1.conv1", "down3.b1.conv1"]
    assert names[-2:] == ["up5.conv1", "classifier.conv1"]
    assert "down4.b1.conv2" in names and not any("shortcut" in n or "long_skips" in n for n in names)


class _Zeros(nn.Module):
    """Stands in for the Across stage: cuts the path through the bottom of the net."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x):
        return x.new_zeros(x.shape[0], self.channels, x.shape[2], x.shape[3])


@pytest.mark.parametrize("long_skip", [True, False])
def test_without_long_skips_only_the_bottom_connects_encoder_and_decoder(long_skip):
    torch.manual_seed(0)
    model = tiny(26, long_skip=long_skip)
    model.across = _Zeros(model.across[-1].out_ch)
    a, b = model(torch.randn(1, 1, 64, 64)), model(torch.randn(1, 1, 64, 64))
    assert torch.equal(a, b) != long_skip  # with the bottom cut, only a long skip carries the input


def test_without_long_skips_there_are_no_merges():
    assert len(tiny(26, long_skip=False).long_skips) == 0
    assert list(tiny(26, long_skip=True).long_skips) == ["up1", "up2", "up3", "up4", "up5"]


@pytest.mark.parametrize("short_skip", [True, False])
def test_short_skip_switch_adds_or_removes_every_shortcut(short_skip):
    torch.manual_seed(0)
    model = tiny(29, short_skip=short_skip)
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    assert blocks and all((b.shortcut is not None) == short_skip for b in blocks)
    seen = []

    def check(block, inputs, output):
        seen.append(torch.equal(output, block.main_path(inputs[0])))

    handles = [b.register_forward_hook(check) for b in blocks]
    model(torch.randn(1, 1, 64, 64))
    for h in handles:
        h.remove()
    assert len(seen) == len(blocks) and all(s != short_skip for s in seen)


def _simple_net(long_skip: bool, short_skip: bool) -> FCResNet:
    return FCResNet(NetSpec(plan_depth(12, "simple"), long_skip, short_skip, width=1, norm="none", dropout=0.0))


def test_parameter_counts_match_a_hand_count():
    # 12 layers of simple blocks, width 1, no norm: each conv is k*k*in*out weights + out biases.
    # down1 10, down2 10, down3 10, down4 1->2 20, down5 2->4 76, across 4->8 296,
    # up1 8->4 292, up2 4->2 74, up3 2->1 19, up4 10, up5 10, classifier 2
    assert count_parameters(_simple_net(False, False)) == 829
    # + shortcut 1x1s where widths change: 1->2 4, 2->4 12, 4->8 40, 8->4 36, 4->2 10, 2->1 3
    assert count_parameters(_simple_net(False, True)) == 829 + 105
    # long skips: 1x1 projections 8->4 36, 4->2 10, 2->1 3; decoder convs then read the encoder widths:
    # up1 4->4 148, up2 2->2 38, up3 1->1 10
    assert count_parameters(_simple_net(True, False)) == 10 + 10 + 10 + 20 + 76 + 296 + 36 + 148 + 10 + 38 + 3 + 10 \
        + 10 + 10 + 2


def test_activation_checkpointing_gives_the_same_step():
    """Same loss, gradients and BatchNorm running statistics with and without checkpointing (dropout included)."""
    cfg = compose_config(["model.width=4"])
    torch.manual_seed(0)
    plain = build_model(cfg.model, cfg.depth, 1).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.spec = dataclasses.replace(plain.spec, checkpointing=True)
    x = torch.randn(2, 1, 64, 64)
    results = []
    for net in (plain, checkpointed):
        torch.manual_seed(1)
        out = net(x)
        out.square().mean().backward()
        results.append((out, {n: p.grad for n, p in net.named_parameters()}, net.state_dict()))
    (out_a, grads_a, state_a), (out_b, grads_b, state_b) = results
    torch.testing.assert_close(out_b, out_a)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-4, atol=1e-6)
    for name, value in state_a.items():
        if "running" in name:
            torch.testing.assert_close(state_b[name], value)


def test_the_long_skip_is_one_visible_line_of_the_forward():
    """The network reads like the paper: each decoder stage's input is merged with the encoder's in one line."""
    import inspect

    lines = [line.strip() for line in inspect.getsource(FCResNet.forward).splitlines()]
    assert lines.count("x = self.long_skips[name](x, encoder_out)  # the long skip") == 1


def test_match_params_picks_the_width_nearest_the_reference_count():
    from skipexp.config import compose_config
    from skipexp.models import build_model, count_parameters

    counts = {}
    for variant in ("both", "long_only", "short_only", "none"):
        cfg = compose_config([f"model={variant}", "depth=26", "model.width=16", "model.match_params=both"])
        net = build_model(cfg.model, cfg.depth, 1)
        counts[variant] = count_parameters(net)
        assert net.spec.reference_params == 777_681 and net.spec.match_params == "both"
        for other in (net.spec.width - 1, net.spec.width + 1):  # no integer width comes nearer
            cfg_other = compose_config([f"model={variant}", "depth=26", f"model.width={other}"])
            assert abs(count_parameters(build_model(cfg_other.model, cfg_other.depth, 1)) - 777_681) >= abs(
                counts[variant] - 777_681)
    assert counts["both"] == 777_681
    spread = (max(counts.values()) - min(counts.values())) / counts["both"]
    assert spread < 0.06  # 5.7% after matching (each within 4% of both), from 41% (none 459,553 vs short_only 807,089)
    plain = compose_config(["model=none", "depth=26", "model.width=16"])
    assert build_model(plain.model, plain.depth, 1).spec.width == 16  # off by default
