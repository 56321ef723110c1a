"""FastDropout: the rate, the scale, the gradient, reproducibility, and the swap into a built network."""

from __future__ import annotations

import torch
from torch import nn

from skipexp.models.fastdropout import QUANTUM, FastDropout, dropout_mask, use_fast_dropout


def test_drops_at_the_rate_and_keeps_the_mean():
    x = torch.ones(4, 8, 128, 128)
    y = FastDropout(0.1).train()(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.003  # 524,288 draws: the std of the rate is 0.0004
    keep = 1 - round(0.1 * QUANTUM) / QUANTUM
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / keep))
    assert abs(y.mean().item() - 1.0) < 0.005


def test_gradient_is_the_mask():
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    torch.manual_seed(0)
    y = FastDropout(0.3).train()(x)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, torch.where(y == 0, 0.0, 1 / (1 - round(0.3 * QUANTUM) / QUANTUM)))


def test_identity_in_eval_mode_and_reproducible_from_the_seed():
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(FastDropout(0.5).eval()(x), x)
    torch.manual_seed(3)
    a = FastDropout(0.5).train()(x)
    torch.manual_seed(3)
    assert torch.equal(FastDropout(0.5).train()(x), a)


def test_mask_follows_the_channels_last_layout():
    x = torch.randn(2, 5, 8, 8).contiguous(memory_format=torch.channels_last).bfloat16()
    mask = dropout_mask(x, 0.1)
    assert mask.dtype == torch.bfloat16 and mask.is_contiguous(memory_format=torch.channels_last)


def test_swap_replaces_every_dropout_and_keeps_the_state_dict():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.2), nn.Sequential(nn.Dropout(0.1), nn.ReLU()))
    keys = set(net.state_dict())
    use_fast_dropout(net)
    assert [type(m).__name__ for m in net.modules()].count("FastDropout") == 2
    assert net[1].p == 0.2 and set(net.state_dict()) == keys


def test_sixteen_bit_masks_are_zero_or_the_rounded_scale():
    """bf16/fp16 masks are built from the scale's bit pattern: exactly 0 or the scale rounded to the dtype."""
    for dtype in (torch.bfloat16, torch.float16):
        mask = dropout_mask(torch.ones(3, 64, 64, dtype=dtype), 0.25)
        scale = torch.tensor(1 / (1 - round(0.25 * QUANTUM) / QUANTUM), dtype=dtype)
        assert set(mask.unique().tolist()) == {0.0, scale.item()}
        assert abs((mask == 0).float().mean().item() - 0.25) < 0.01


def test_a_rate_below_one_quantum_keeps_everything():
    x = torch.randn(4, 4)
    assert torch.equal(dropout_mask(x, 1e-6), torch.ones(4, 4))


def test_forward_add_is_dropout_then_add_in_one_op():
    """``forward_add`` gives what dropout and then the add give, from the same draw, with the same gradients."""
    x = torch.randn(2, 4, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_()
    skip = torch.randn(2, 4, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_()
    drop = FastDropout(0.2).train()
    torch.manual_seed(5)
    two_ops = drop(x) + skip
    (two_ops * torch.arange(1, two_ops.numel() + 1).view_as(two_ops)).sum().backward()
    grads = x.grad.clone(), skip.grad.clone()
    x.grad = skip.grad = None
    torch.manual_seed(5)
    one_op = drop.forward_add(x, skip)
    (one_op * torch.arange(1, one_op.numel() + 1).view_as(one_op)).sum().backward()
    torch.testing.assert_close(one_op, two_ops)
    assert one_op.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close((x.grad, skip.grad), grads)
    assert (x.grad == 0).any() and not (skip.grad == 0).any()  # the mask reaches x's gradient only
    assert torch.equal(drop.eval().forward_add(x, skip), x + skip)
