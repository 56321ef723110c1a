"""build_optimizer and FusedRMSprop: the fused update is RMSprop's, its state is RMSprop's, and it steps aside
where the fused kernel does not apply."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from skipexp.config import compose_config
from skipexp.optim import FusedRMSprop, build_optimizer, check_optimizer, decay_groups

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
    net = _net(torch.float32)
    for name in ("rmsprop", "adam", "sgd"):
        cfg = compose_config([f"optimizer={name}"]).optimizer
        plain, _ = build_optimizer(cfg, net, 1)
        fused, _ = build_optimizer(cfg, net, 1, fused=True)
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
    ref_opt, _ = build_optimizer(cfg, ref, 1)
    fused_opt, _ = build_optimizer(cfg, fused, 1, fused=True)
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


WRONG = {  # optimizer: key: values a user might type, each of which must be refused
    "rmsprop": {"name": ["5", "adamw"], "lr": ["abc", "true", "0", "-1.0"], "weight_decay": ["abc", "true", "-1.0"],
                "weight_decay_on": ["5", "norms", "null"],
                "alpha": ["abc", "true", "-1.0", "1.0", "1.5"], "eps": ["abc", "true", "0", "-1.0"],
                "momentum": ["abc", "true", "-1.0", "1"], "schedule": ["5", "linear", "null"],
                "step_epochs": ["abc", "1.5", "true", "0", "-1"], "gamma": ["abc", "true", "0", "-1.0"]},
    "adam": {"betas": ["abc", "0.9", "[0.9]", "[0.9,0.99,0.9]", "[0.9,1.0]", "[-0.1,0.9]", "[abc,0.9]",
                       "[true,0.9]"], "eps": ["abc", "0"]},
    "sgd": {"momentum": ["abc", "-1.0", "1.0"], "nesterov": ["abc", "3", "null"]},
}
CASES = [(name, key, text) for name, keys in WRONG.items() for key, texts in keys.items() for text in texts]


def test_every_key_of_every_optimizer_is_covered():
    for name in WRONG:
        keys = set(compose_config([f"optimizer={name}"]).optimizer)
        assert keys - {"name"} <= set(WRONG[name]) | set(WRONG["rmsprop"])
        assert set(WRONG[name]) <= keys


@pytest.mark.parametrize("name,key,text", CASES, ids=[f"{n}:{k}={t}" for n, k, t in CASES])
def test_a_wrong_value_is_one_sentence_naming_the_key(name, key, text):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from skipexp.errors import ConfigError

    cfg = compose_config([f"optimizer={name}"]).optimizer
    OmegaConf.update(cfg, key, OverridesParser.create().parse_override(f"x={text}").value(), merge=False)
    with pytest.raises(ConfigError) as err:
        check_optimizer(cfg)
    message = str(err.value)
    assert f"optimizer.{key}" in message and "\n" not in message and message.endswith("."), message
    with pytest.raises(ConfigError):
        build_optimizer(cfg, _net(), 1)  # the same check, before anything is built


def test_keys_of_another_optimizer_and_nesterov_without_momentum_are_refused():
    from skipexp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"optimizer\.betas is not a key of optimizer=rmsprop"):
        check_optimizer(compose_config(["+optimizer.betas=[0.9,0.999]"]).optimizer)
    with pytest.raises(ConfigError, match=r"optimizer\.nesterov=true needs optimizer\.momentum above 0"):
        check_optimizer(compose_config(["optimizer=sgd", "optimizer.momentum=0"]).optimizer)


@pytest.mark.parametrize("name", ["rmsprop", "adam", "sgd"])
def test_the_checked_settings_are_what_the_optimizer_gets(name):
    cfg = compose_config([f"optimizer={name}", "optimizer.schedule=cosine", "optimizer.step_epochs=abc"]).optimizer
    settings = check_optimizer(cfg)  # step_epochs is read by the step schedule only
    assert settings.schedule == "cosine" and settings.hyper["lr"] == cfg.lr
    opt, sched = build_optimizer(cfg, _net(torch.float32), 5)
    assert all(opt.defaults[key] == value for key, value in settings.hyper.items())
    assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR)


@pytest.mark.parametrize("schedule, expected", [
    ("cosine", {0.0: 1.0, 0.25: 0.5 * (1 + 2 ** -0.5), 0.5: 0.5, 1.0: 0.0, 2.0: 0.0}),
    ("step", {0.0: 1.0, 0.49: 1.0, 0.5: 0.1, 0.99: 0.1, 1.0: 0.01}),  # epochs 10, lr/10 every 5: at half and end
    ("none", {0.0: 1.0, 0.7: 1.0}),
])
def test_a_budget_spreads_the_schedule_over_the_fraction_spent(schedule, expected):
    cfg = compose_config([f"optimizer.schedule={schedule}", "optimizer.step_epochs=5", "optimizer.gamma=0.1"])
    net = _net()
    opt, sched = build_optimizer(cfg.optimizer, net, epochs=10, budget=True)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    for fraction, factor in expected.items():
        _train(net, opt, 1)
        sched.advance(fraction)
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * factor, abs=1e-15), fraction
    state = sched.state_dict()
    assert torch.load(_saved(state), weights_only=True)["progress"] == min(fraction, 1.0)  # a checkpoint holds it


def test_a_budget_schedule_resumed_with_more_epochs_drops_by_them():
    cfg = compose_config(["optimizer.schedule=step", "optimizer.step_epochs=2", "optimizer.gamma=0.1"])
    net = _net()
    first, before = build_optimizer(cfg.optimizer, net, epochs=4, budget=True)
    _train(net, first, 1)
    before.advance(0.5)
    opt, after = build_optimizer(cfg.optimizer, net, epochs=8, budget=True)  # the same run, resumed with 8 epochs
    after.load_state_dict(torch.load(_saved(before.state_dict()), weights_only=True))
    assert after.epochs == 8 and after.progress == 0.5
    _train(net, opt, 1)
    after.advance(1.0)  # 8 epochs, lr/10 every 2: four drops by the end, not the 4-epoch run's two
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.1 ** 4, abs=1e-15)


def _saved(state: dict) -> object:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def _moved_by_decay_alone(name: str, decay_on: str, fused: bool) -> set[str]:
    """The parameters one step moves when every gradient is 0: those weight decay applies to."""
    cfg = compose_config([f"optimizer={name}", "optimizer.weight_decay=0.1",
                          f"optimizer.weight_decay_on={decay_on}"]).optimizer
    net = _net()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5)  # no parameter at 0, where decay would not move it (BatchNorm's bias starts there)
    opt, _ = build_optimizer(cfg, net, 1, fused=fused)
    before = copy.deepcopy(dict(net.named_parameters()))
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    return {key for key, value in net.named_parameters() if not torch.equal(value, before[key])}


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("name", ["rmsprop", "adam", "sgd"])
def test_weight_decay_on_kernels_leaves_biases_and_norm_weights_alone(name, fused):
    assert _moved_by_decay_alone(name, "kernels", fused) == {"0.weight", "3.weight"}  # the two convs' kernels only


@pytest.mark.parametrize("fused", [False, True])
def test_weight_decay_on_all_moves_every_parameter(fused):
    assert _moved_by_decay_alone("rmsprop", "all", fused) == {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight",
                                                             "3.bias"}


def test_the_decay_groups_split_the_parameters_once():
    net = _net()
    kernels, rest = decay_groups(net, "kernels")
    assert (len(kernels["params"]), len(rest["params"]), rest["weight_decay"]) == (2, 4, 0.0)  # 2 conv weights
    assert "weight_decay" not in kernels  # it takes optimizer.weight_decay
    everything = decay_groups(net, "all")
    assert len(everything) == 1 and everything[0]["params"] == list(net.parameters())
