"""Optimizer and lr schedule: ``check_optimizer`` is the one place the ``optimizer`` node is read and checked,
``build_optimizer`` builds what it describes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from skipexp import checks
from skipexp.errors import ConfigError
from skipexp.tensors import layout_of

OPTIMIZERS = ("rmsprop", "adam", "sgd")
SCHEDULES = ("step", "cosine", "none")
DECAY_ON = ("kernels", "all")  # optimizer.weight_decay_on: the weights of convolutions only, or every parameter
KERNEL_MODULES = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d,
                  torch.nn.ConvTranspose3d, torch.nn.Linear)  # whose ``weight`` weight_decay_on=kernels decays
_COMMON_KEYS = ("name", "lr", "weight_decay", "weight_decay_on", "schedule", "step_epochs", "gamma")
OPTIMIZER_KEYS = {  # what each optimizer reads (conf/optimizer/NAME.yaml)
    "rmsprop": (*_COMMON_KEYS, "alpha", "eps", "momentum"),
    "adam": (*_COMMON_KEYS, "betas", "eps"),
    "sgd": (*_COMMON_KEYS, "momentum", "nesterov"),
}


class FusedRMSprop(torch.optim.RMSprop):
    """``torch.optim.RMSprop`` whose update runs as one pass over each CPU parameter instead of six.

    PyTorch has no fused RMSprop, and on the CPU its ``foreach`` one is a loop of
    six element-wise ops per tensor (weight decay, square average, sqrt, eps,
    divide, update): 30 ms a step over the paper's net's 574 tensors (11.4 M
    parameters) on the 2-core bench machine, 5% of a 512 x 512 batch-1 step.
    RMSprop's update is Adam's with beta1 = 0 and no bias correction, so the
    step calls PyTorch's fused CPU Adam kernel (``torch._fused_adam_``) with
    beta1 = 0, beta2 = alpha and a step count so large that alpha**step is 0,
    which makes both bias corrections exactly 1: 6-8 ms a step. The gradient
    doubles as Adam's first moment (with beta1 = 0 that is the gradient plus
    weight decay), so no extra buffer is held; afterwards ``p.grad`` holds that
    sum. Tensors go in as 1-D views in memory order (``_flat``). The state and
    ``state_dict`` are RMSprop's own, so checkpoints load into either class.
    Groups with momentum, ``centered``, ``alpha`` >= 1, tensors off the CPU or in
    other layouts take ``torch.optim.RMSprop``'s own step.
    """

    _NO_BIAS_CORRECTION = 2.0**62  # alpha**(2**62) underflows to 0 for every alpha < 1

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[int, tuple] = {}  # per group (a new group has a new id): flat views, built once (``_plan``)

    @torch.no_grad()
    def step(self, closure=None):
        """One RMSprop update of every parameter with a gradient (fused where it can be; see the class)."""
        plans = [self._plan(group) for group in self.param_groups]
        if any(plan is None for plan in plans):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        no_bias_correction = torch.tensor(self._NO_BIAS_CORRECTION)
        for group, (params, flat_params, flat_square_avgs, state_steps) in zip(self.param_groups, plans, strict=True):
            if not params:
                continue
            torch._foreach_add_(state_steps, 1)
            grads = [_flat(p.grad) for p in params]
            torch._fused_adam_(flat_params, grads, grads, flat_square_avgs, [], [no_bias_correction] * len(params),
                               amsgrad=False, lr=group["lr"], beta1=0.0, beta2=group["alpha"],
                               weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"])
        return loss

    def _plan(self, group: dict) -> tuple | None:
        """The group's parameters with gradients, flat views of them and their square averages, and step counts;
        None where the fused kernel does not compute this group's update (then RMSprop's own step runs).

        Built once and reused while the same parameters, in the same memory, have gradients (rebuilding it every
        step took 5 ms of the paper's net's step, nearly as long as the kernel itself).
        """
        if (group["momentum"] or group["centered"] or group["differentiable"] or group["capturable"]
                or group["alpha"] >= 1):
            return None
        with_grad = [p for p in group["params"] if p.grad is not None]
        plan = self._plans.get(id(group))
        if plan is None or len(plan[0]) != len(with_grad) or not all(
                p is q and p.data_ptr() == flat.data_ptr()  # ``p.data = ...`` would move it
                for p, q, flat in zip(plan[0], with_grad, plan[1], strict=True)):
            params, grads, square_avgs, state_steps = [], [], [], []
            self._init_group(group, params, grads, square_avgs, [], [], state_steps)
            if not all(p.device.type == "cpu" and p.is_floating_point() and _flat(p) is not None
                       and s.stride() == p.stride() for p, s in zip(params, square_avgs, strict=True)):
                self._plans.pop(id(group), None)
                return None  # e.g. a loaded state keeps the strides it was saved with
            plan = (params, [_flat(p) for p in params], [_flat(s) for s in square_avgs], state_steps)
            self._plans[id(group)] = plan
        return plan if all(p.grad.stride() == p.stride() for p in plan[0]) else None

    def load_state_dict(self, state_dict: dict) -> None:
        """RMSprop's ``load_state_dict``; the loaded state replaces the one the cached views point into."""
        self._plans.clear()
        super().load_state_dict(state_dict)


def _flat(tensor: torch.Tensor) -> torch.Tensor | None:
    """A 1-D view of a contiguous or channels-last tensor, in memory order (None for other layouts).

    The fused kernel walks its tensors' memory as one flat array, but first copies
    any gradient that is not contiguous: 1-D views of the channels-last weights
    (and of their gradients and square averages, laid out alike) spare that copy.
    """
    if tensor.layout != torch.strided:
        return None
    if tensor.is_contiguous():
        return tensor.view(-1)
    if layout_of(tensor) == torch.channels_last:
        return tensor.permute(0, 2, 3, 1).view(-1)
    return None


@dataclass(frozen=True)
class OptimizerSettings:
    """The checked ``optimizer`` node: which optimizer, its PyTorch keyword arguments, and the lr schedule."""

    name: str
    hyper: dict[str, Any]  # lr, weight_decay and the optimizer's own: alpha, betas, eps, momentum, nesterov
    schedule: str
    decay_on: str  # which parameters weight_decay applies to (DECAY_ON; ``decay_groups``)
    step_epochs: int = 0  # step schedule only
    gamma: float = 1.0  # step schedule only


def check_optimizer(cfg: Mapping[str, Any]) -> OptimizerSettings:
    """Read and check every key of the ``optimizer`` node (type, range, option, keys of another optimizer),
    building nothing; a bad value raises a ConfigError naming it and the fix."""
    name = checks.one_of("optimizer", cfg, "name", OPTIMIZERS, "pick one with optimizer=NAME")
    checks.known_keys("optimizer", cfg, OPTIMIZER_KEYS[name], f"optimizer={name}")
    hyper: dict[str, Any] = {
        "lr": checks.positive_number("optimizer", cfg, "lr", example=1e-3),
        "weight_decay": checks.non_negative_number("optimizer", cfg, "weight_decay", example=1e-4),
    }
    decay_on = checks.one_of("optimizer", cfg, "weight_decay_on", DECAY_ON)
    if name == "rmsprop":
        hyper.update(alpha=_rate(cfg, "alpha", 0.9), eps=_eps(cfg), momentum=_rate(cfg, "momentum", 0.9))
    elif name == "adam":
        hyper.update(betas=_betas(cfg), eps=_eps(cfg))
    else:
        hyper.update(momentum=_rate(cfg, "momentum", 0.9), nesterov=checks.boolean("optimizer", cfg, "nesterov"))
        if hyper["nesterov"] and hyper["momentum"] == 0:
            raise ConfigError("optimizer.nesterov=true needs optimizer.momentum above 0; give e.g. "
                              "optimizer.momentum=0.9, or optimizer.nesterov=false.")
    schedule = checks.one_of("optimizer", cfg, "schedule", SCHEDULES)
    if schedule != "step":
        return OptimizerSettings(name, hyper, schedule, decay_on)
    return OptimizerSettings(name, hyper, schedule, decay_on,
                             checks.positive_int("optimizer", cfg, "step_epochs", example=200),
                             checks.positive_number("optimizer", cfg, "gamma", example=0.1))


def _rate(cfg: Any, key: str | int, example: float, node: str = "optimizer") -> float:
    """A number in [0, 1): a moving-average decay or a momentum."""
    return checks.rate(node, cfg, key, example=example)


def _eps(cfg: Mapping[str, Any]) -> float:
    """The term added to the denominator of RMSprop's and Adam's update: above 0, so it never divides by 0."""
    return checks.positive_number("optimizer", cfg, "eps", example=1e-8)


def _betas(cfg: Mapping[str, Any]) -> tuple[float, float]:
    """Adam's two moving-average decays, each in [0, 1)."""
    need = f"a list of two numbers, each {checks.RATE.removeprefix('a number ')}"
    betas = checks.value("optimizer", cfg, "betas")
    if not isinstance(betas, Sequence) or isinstance(betas, str) or len(betas) != 2:
        raise checks.refuse("optimizer.betas", betas, need, "give e.g. optimizer.betas=[0.9,0.999]")
    return _rate(betas, 0, 0.9, "optimizer.betas"), _rate(betas, 1, 0.999, "optimizer.betas")


class BudgetLR(torch.optim.lr_scheduler.LRScheduler):
    """The lr schedule of a run with a wall-clock budget (``trainer.budget_min``): the schedule's curve over the
    fraction of the run done, in place of its curve over ``epochs`` epochs, so a run that ends at a fixed time
    still anneals. The loop calls ``advance(fraction)`` after every step, with the fraction of the budget spent or
    of the epochs' steps done, whichever is further (the run ends at whichever limit comes first).

    cosine: ``0.5 (1 + cos(pi p))``; step: ``gamma ** floor(p * epochs / step_epochs)`` (the same boundaries, as
    fractions of the run); none: 1.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, settings: OptimizerSettings, epochs: int) -> None:
        self.schedule, self.step_epochs, self.gamma = settings.schedule, settings.step_epochs, settings.gamma
        self.epochs, self.progress = epochs, 0.0
        super().__init__(optimizer)

    def factor(self) -> float:
        """The lr multiplier at the current fraction of the run done."""
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * self.progress))
        if self.schedule == "step":
            return self.gamma ** math.floor(self.progress * self.epochs / self.step_epochs + 1e-9)
        return 1.0

    def get_lr(self) -> list[float]:
        return [base * self.factor() for base in self.base_lrs]

    def advance(self, fraction: float) -> None:
        """Set the lr for the next step from the fraction of the run done (clamped to [0, 1])."""
        self.progress = min(max(fraction, 0.0), 1.0)
        self.step()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A checkpoint's progress and lrs; the epoch count stays this run's, so a run resumed with more
        epochs places the step schedule's drops by them."""
        super().load_state_dict({key: value for key, value in state_dict.items() if key != "epochs"})


def decay_groups(model: torch.nn.Module, decay_on: str) -> list[dict[str, Any]]:
    """``model``'s parameters as the optimizer's groups: with ``decay_on="kernels"`` the weights of its
    convolutions (and linear layers) in the first group, which takes ``weight_decay``, and every other parameter
    (biases, norm weights) in a second with none; with ``"all"`` one group, every parameter decayed.

    The authors put Keras' ``l2(1e-4)`` on conv kernels only. Decaying norm weights and biases too, under
    RMSprop, pulls them to 0 wherever the loss's own gradient on them is small (RMSprop divides the decay term
    by its own size, so it moves them by about the lr a step); a norm whose weight and bias are 0 outputs 0, the
    ReLU after it passes no gradient, and the channel stays dead (docs/isbi-cpu.md measures it).
    """
    params = list(model.parameters())
    if decay_on == "all":
        return [{"params": params}]
    kernels = {id(m.weight) for m in model.modules() if isinstance(m, KERNEL_MODULES)}
    return [{"params": [p for p in params if id(p) in kernels]},
            {"params": [p for p in params if id(p) not in kernels], "weight_decay": 0.0}]


def build_optimizer(cfg: Mapping[str, Any], model: torch.nn.Module, epochs: int, fused: bool = False,
                    budget: bool = False) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer of ``model``'s parameters and its per-epoch lr scheduler; ``fused``
    (``trainer.fused_optimizer``) picks a one-pass update; ``budget`` (a run with ``trainer.budget_min``) spreads
    the schedule over the budget, or over the epochs where they end the run first (``BudgetLR``).

    Weight decay is added to the gradient (PyTorch's ``weight_decay``), which is
    an L2 penalty of weight_decay/2 * |w|^2 on the loss, on the parameters
    ``optimizer.weight_decay_on`` names (``decay_groups``).
    """
    settings = check_optimizer(cfg)
    params = decay_groups(model, settings.decay_on)
    if settings.name == "rmsprop":
        opt = (FusedRMSprop if fused else torch.optim.RMSprop)(params, **settings.hyper, foreach=True)
    elif settings.name == "adam":
        opt = torch.optim.Adam(params, **settings.hyper, foreach=not fused, fused=fused or None)
    else:
        opt = torch.optim.SGD(params, **settings.hyper, foreach=not fused, fused=fused or None)
    if budget:
        sched: torch.optim.lr_scheduler.LRScheduler = BudgetLR(opt, settings, epochs)
    elif settings.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=settings.step_epochs, gamma=settings.gamma)
    elif settings.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0)
    return opt, sched
