"""build_optimizer and FusedRMSprop: the fused update is RMSprop's, its state is RMSprop's, and it steps aside
where the fused kernel does not apply."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from skipexp.config import compose_config
from skipexp.optim import FusedRMSprop, build_optimizer

HYPER = dict(lr=1e-2, alpha=0.9, eps=1e-8, weight_decay=1e-3, foreach=True)


def _net(dtype: torch.dtype = torch.float64) -> nn.Module:
    """Channels-last 3x3 and 1x1 convs (4-D weights whose memory order is not NCHW), BN and biases."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 5, 1))
    return net.to(dtype).to(memory_format=torch.channels_last)


def _train(net: nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(2, 3, 12, 12, generator=gen, dtype=next(net.parameters()).dtype)
        opt.zero_grad(set_to_none=True)
        net(x.contiguous(memory_format=torch.channels_last)).square().mean().backward()
        opt.step()


def _assert_same(a: nn.Module, b: nn.Module, **tol) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, msg=name, **tol)


def test_fused_update_is_rmsprop():
    """In float64 the fused kernel's update is RMSprop's to rounding; in float32 within a small tolerance."""
    for dtype, tol in ((torch.float64, dict(rtol=1e-10, atol=1e-13)), (torch.float32, dict(rtol=1e-4, atol=1e-5))):
        ref, fused = _net(dtype), _net(dtype)
        ref_opt, fused_opt = torch.optim.RMSprop(ref.parameters(), **HYPER), FusedRMSprop(fused.parameters(), **HYPER)
        _train(ref, ref_opt, 10)
        _train(fused, fused_opt, 10)
        _assert_same(ref, fused, **tol)
        for p, q in zip(ref.parameters(), fused.parameters(), strict=True):
            torch.testing.assert_close(ref_opt.state[p]["square_avg"], fused_opt.state[q]["square_avg"], **tol)
            assert fused_opt.state[q]["step"].item() == 10
        assert fused_opt._plans  # it did take the fused path


def test_state_dicts_load_both_ways():
    """A checkpoint of either class resumes in the other, and they go on identically (float64)."""
    ref, fused = _net(), _net()
    ref_opt, fused_opt = torch.optim.RMSprop(ref.parameters(), **HYPER), FusedRMSprop(fused.parameters(), **HYPER)
    _train(ref, ref_opt, 3)
    _train(fused, fused_opt, 3)
    assert set(ref_opt.state_dict()["state"][0]) == set(fused_opt.state_dict()["state"][0]) == {"step", "square_avg"}
    swapped_ref, swapped_fused = copy.deepcopy(fused), copy.deepcopy(ref)
    to_ref = torch.optim.RMSprop(swapped_ref.parameters(), **HYPER)
    to_ref.load_state_dict(copy.deepcopy(fused_opt.state_dict()))  # load_state_dict shares tensors
    to_fused = FusedRMSprop(swapped_fused.parameters(), **HYPER)
    to_fused.load_state_dict(copy.deepcopy(ref_opt.state_dict()))
    for net, opt in ((ref, ref_opt), (fused, fused_opt), (swapped_ref, to_ref), (swapped_fused, to_fused)):
        _train(net, opt, 3, seed=2)
    tol = dict(rtol=1e-10, atol=1e-13)
    _assert_same(ref, swapped_fused, **tol)
    _assert_same(fused, swapped_ref, **tol)
    _assert_same(ref, fused, **tol)


def test_a_loaded_state_replaces_the_cached_views():
    """After load_state_dict the fused step updates the loaded square averages, not the ones it cached."""
    net = _net()
    opt = FusedRMSprop(net.parameters(), **HYPER)
    _train(net, opt, 2)
    saved = copy.deepcopy(opt.state_dict())
    _train(net, opt, 2)
    opt.load_state_dict(saved)
    before = [opt.state[p]["square_avg"].clone() for p in net.parameters()]
    _train(net, opt, 1)
    after = [opt.state[p]["square_avg"] for p in net.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("change", ["momentum", "centered", "contiguous state"])
def test_steps_aside_where_the_kernel_does_not_apply(change: str):
    """Momentum, centered RMSprop and a state laid out unlike its parameter run RMSprop's own step, exactly."""
    hyper = dict(HYPER, momentum=0.9) if change == "momentum" else dict(HYPER, centered=change == "centered")
    ref, fused = _net(), _net()
    ref_opt, fused_opt = torch.optim.RMSprop(ref.parameters(), **hyper), FusedRMSprop(fused.parameters(), **hyper)
    if change == "contiguous state":  # e.g. a state saved by a run without channels-last
        _train(ref, ref_opt, 1)
        state = ref_opt.state_dict()
        for entry in state["state"].values():
            entry["square_avg"] = entry["square_avg"].contiguous()
        fused.load_state_dict(ref.state_dict())
        fused_opt.load_state_dict(copy.deepcopy(state))
        ref_opt.load_state_dict(copy.deepcopy(state))
    _train(ref, ref_opt, 3)
    _train(fused, fused_opt, 3)
    _assert_same(ref, fused, rtol=0, atol=0)
    assert not fused_opt._plans


def test_build_optimizer_fuses_on_request():
    params = list(_net(torch.float32).parameters())
    for name in ("rmsprop", "adam", "sgd"):
        cfg = compose_config([f"optimizer={name}"]).optimizer
        plain, _ = build_optimizer(cfg, params, 1)
        fused, _ = build_optimizer(cfg, params, 1, fused=True)
        assert not isinstance(plain, FusedRMSprop) and plain.defaults["foreach"]
        if name == "rmsprop":
            assert isinstance(fused, FusedRMSprop)
        else:
            assert fused.defaults["fused"] and not fused.defaults["foreach"]



def test_a_parameter_given_new_memory_is_updated_there():
    """``p.data = ...`` between steps: the step updates the new memory, not the cached view of the old."""
    ref, fused = _net(), _net()
    ref_opt, fused_opt = torch.optim.RMSprop(ref.parameters(), **HYPER), FusedRMSprop(fused.parameters(), **HYPER)
    _train(ref, ref_opt, 1)
    _train(fused, fused_opt, 1)
    for net in (ref, fused):
        weight = net[0].weight
        weight.data = weight.data.clone(memory_format=torch.channels_last)
    _train(ref, ref_opt, 2, seed=3)
    _train(fused, fused_opt, 2, seed=3)
    _assert_same(ref, fused, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_fused_adam_and_sgd_update_channels_last_weights_as_foreach_does(name: str):
    """PyTorch's fused kernels walk memory; on channels-last weights they must still match the foreach update."""
    cfg = compose_config([f"optimizer={name}"]).optimizer
    ref, fused = _net(), _net()
    ref_opt, _ = build_optimizer(cfg, ref.parameters(), 1)
    fused_opt, _ = build_optimizer(cfg, fused.parameters(), 1, fused=True)
    _train(ref, ref_opt, 5)
    _train(fused, fused_opt, 5)
    _assert_same(ref, fused, rtol=1e-10, atol=1e-13)


def test_a_group_added_later_is_updated_as_rmsprop_does():
    ref, fused = _net(), _net()
    ref_opt = torch.optim.RMSprop(list(ref.parameters())[:2], **HYPER)
    fused_opt = FusedRMSprop(list(fused.parameters())[:2], **HYPER)
    _train(ref, ref_opt, 2)
    _train(fused, fused_opt, 2)
    ref_opt.add_param_group({"params": list(ref.parameters())[2:]})
    fused_opt.add_param_group({"params": list(fused.parameters())[2:]})
    _train(ref, ref_opt, 3, seed=4)
    _train(fused, fused_opt, 3, seed=4)
    _assert_same(ref, fused, rtol=1e-10, atol=1e-13)
    assert len(fused_opt._plans) == 2
