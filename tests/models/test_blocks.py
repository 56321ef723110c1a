import pytest
import torch
import torch.nn.functional as F

from skipexp.models.blocks import Basic, Bottleneck, Simple, make_norm, norm_relu
from skipexp.models.fastdropout import FastDropout, use_fast_dropout


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
    """With nn.Dropout and with FastDropout (whose ``forward_add`` does both in one op): the same draw, the same
    output as dropout of the main path plus the shortcut."""
    x = torch.randn(2, 8, 8, 8)
    block = Bottleneck(8, 2, dropout=0.3).train()
    for fast in (False, True):
        if fast:
            use_fast_dropout(block)
        torch.manual_seed(1)
        out = block(x)
        torch.manual_seed(1)
        expected = block.dropout(block.main_path(x)) + block.shortcut(x)
        torch.testing.assert_close(out, expected)
        assert isinstance(block.dropout, FastDropout) == fast
        assert (out == block.shortcut(x)).float().mean() > 0.2  # where the main path was dropped


def test_upsampling_shortcut_is_a_nearest_repeat():
    block = Basic(4, 4, upsample=True).eval()
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(1, 4, 1, 1)
    up = block.shortcut(x)
    assert up.shape[-2:] == (8, 8)
    assert torch.equal(up[..., ::2, ::2], x) and torch.equal(up[..., 1::2, 1::2], x)


def test_upsampling_gradient_sums_each_block_and_keeps_the_layout():
    from skipexp.models.blocks import upsample2x

    for memory_format in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 3, 4, 5).contiguous(memory_format=memory_format).requires_grad_()
        ref = x.detach().clone().requires_grad_()
        grad = torch.randn(2, 3, 8, 10).contiguous(memory_format=memory_format)
        out = upsample2x(x)
        assert torch.equal(out, torch.nn.functional.interpolate(ref, scale_factor=2.0, mode="nearest"))
        out.backward(grad)
        torch.nn.functional.interpolate(ref, scale_factor=2.0, mode="nearest").backward(grad)
        torch.testing.assert_close(x.grad, ref.grad)
        torch.testing.assert_close(x.grad[1, 2, 3, 4], grad[1, 2, 6:8, 8:10].sum())
        assert x.grad.is_contiguous(memory_format=memory_format)


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


def test_decimation_keeps_the_gradient_in_the_input_layout():
    """Same values and gradient as slicing, but a channels-last input gets a channels-last gradient (not NCHW)."""
    from skipexp.models.blocks import decimate2x

    x = torch.randn(2, 5, 8, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = decimate2x(x)
    assert torch.equal(y, x.detach()[..., ::2, ::2])
    g = torch.randn_like(y)
    (grad,) = torch.autograd.grad(y, x, g)
    expected = torch.zeros(2, 5, 8, 6)
    expected[..., ::2, ::2] = g
    assert torch.equal(grad, expected)
    assert grad.is_contiguous(memory_format=torch.channels_last)
    plain = torch.randn(1, 2, 4, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(decimate2x(plain), plain, torch.ones(1, 2, 2, 2))
    assert grad.is_contiguous() and grad.sum().item() == 8


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
