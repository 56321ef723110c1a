"""The blocks: parameter counts, the shortcut's resampling, dropout then the short skip, and how they read."""

import inspect
import re

import pytest
import torch
import torch.nn.functional as F

from skipexp.models.blocks import BLOCKS, Basic, Block, Bottleneck, Simple, make_norm, norm_relu
from skipexp.models.fastdropout import FastDropout
from skipexp.models.speed import FusedBottleneck, apply_speedups


def test_bottleneck_parameters_match_a_hand_count():
    block = Bottleneck(3, 2)
    # norm1 2*3 + conv1 (3*2+2) + norm2 2*2 + conv2 (9*2*2+2) + norm3 2*2 + conv3 (2*8+8) + shortcut (3*8+8)
    assert sum(p.numel() for p in block.parameters()) == 6 + 8 + 4 + 38 + 4 + 24 + 32


def test_downsampling_shortcut_is_a_decimation():
    torch.manual_seed(0)
    block = Bottleneck(8, 2, downsample=True).eval()  # 8 -> 8 channels: identity shortcut, decimated
    x = torch.randn(1, 8, 6, 6)
    assert torch.equal(block.shortcut(x), x[..., ::2, ::2])
    assert torch.allclose(block(x), block.main_path(x) + x[..., ::2, ::2])


def test_bottleneck_drops_out_its_main_path_then_adds_the_short_skip():
    """With nn.Dropout and with the speed-ups (FastDropout, fused with the skip in one op): the same draw, the
    same output as dropout of the main path plus the shortcut."""
    x = torch.randn(2, 8, 8, 8)
    block = Bottleneck(8, 2, dropout=0.3).train()
    for fast in (False, True):
        if fast:
            apply_speedups(block, fast_dropout=True, fast_resample=True)
        torch.manual_seed(1)
        out = block(x)
        torch.manual_seed(1)
        expected = block.main_path(x) + block.shortcut(x)
        torch.testing.assert_close(out, expected)
        assert isinstance(block.dropout, FastDropout) == fast and isinstance(block, FusedBottleneck) == fast
        assert (out == block.shortcut(x)).float().mean() > 0.2  # where the main path was dropped


def test_upsampling_shortcut_is_a_nearest_repeat():
    block = Basic(4, 4, upsample=True).eval()
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(1, 4, 1, 1)
    up = block.shortcut(x)
    assert up.shape[-2:] == (8, 8)
    assert torch.equal(up[..., ::2, ::2], x) and torch.equal(up[..., 1::2, 1::2], x)


def test_without_short_skip_a_block_is_its_main_path():
    torch.manual_seed(0)
    for block in (Bottleneck(8, 2, short_skip=False), Basic(8, 8, short_skip=False), Simple(8, 8, short_skip=False)):
        block.eval()
        assert block.shortcut is None
        x = torch.randn(2, 8, 8, 8)
        assert torch.equal(block(x), block.main_path(x))


def test_transposed_upsampling_doubles_the_size():
    for block in (Bottleneck(8, 2, upsample=True, upsample_mode="transposed"),
                  Basic(8, 4, upsample=True, upsample_mode="transposed"),
                  Simple(8, 4, upsample=True, upsample_mode="transposed")):
        assert block(torch.randn(1, 8, 5, 7)).shape[-2:] == (10, 14)


def test_channels_last_training_step_with_narrow_layers_does_not_corrupt_memory():
    """PyTorch 2.13's channels-last CPU backward of a strided 1x1 conv with < 16 input channels corrupts the
    heap (the process dies at exit); the bottleneck decimates first instead. Run in a child process."""
    import subprocess
    import sys

    code = """
import torch
from skipexp.config import compose_config
from skipexp.models import build_model
cfg = compose_config(["model.width=4"])
model = build_model(cfg.model, cfg.depth, 1).to(memory_format=torch.channels_last).train()
for _ in range(2):
    model(torch.randn(3, 1, 128, 128).contiguous(memory_format=torch.channels_last)).sum().backward()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("kind", ["batch", "group", "instance", "none"])
def test_norm_relu_matches_the_out_of_place_relu_and_never_overwrites_its_input(kind):
    """In place on the norm's output: the same values and gradients as ReLU(norm(x)); with ``model.norm=none``
    (the norm returns ``x`` itself, which the short skip still reads) ``x`` is left as it was."""
    torch.manual_seed(0)
    norm = make_norm(kind, 4).train()
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    before = x.detach().clone()
    grad = torch.randn(2, 4, 6, 6)
    out = norm_relu(norm, x)
    (got,) = torch.autograd.grad(out, x, grad)
    assert torch.equal(x.detach(), before)
    expected = F.relu(norm(x))
    (want,) = torch.autograd.grad(expected, x, grad)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(got, want)
    assert (out == 0).any() and (want != 0).any()


SKIP_LINE = re.compile(r"^\s*out = out \+ (self\.shortcut\(x\)|skip)  # the short skip$", re.MULTILINE)


@pytest.mark.parametrize("name", BLOCKS)
def test_each_block_adds_its_short_skip_in_one_visible_line(name):
    """The network reads like the paper: a block's forward is its main path plus, in one line, its shortcut
    (no speed trick hides the sum; those live in skipexp.models.speed)."""
    forward = BLOCKS[name].forward
    source = inspect.getsource(forward)
    assert len(SKIP_LINE.findall(source)) == 1, source
    assert "self.main_path(x)" in source
    assert forward is Block.forward or name == "bottleneck"  # the bottleneck only runs its shortcut first


def test_blocks_use_plain_pytorch_only():
    """No autograd Function, no fast module, nothing from the speed module in blocks.py."""
    import skipexp.models.blocks as blocks

    source = inspect.getsource(blocks)
    for speed_only in ("torch.autograd", "FastDropout", "addcmul", "forward_add", "import skipexp.models.speed"):
        assert speed_only not in source
