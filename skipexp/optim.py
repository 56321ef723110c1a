"""Optimizer and lr schedule: ``build_optimizer`` is the one place the ``optimizer`` node is read."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from omegaconf import DictConfig

from skipexp.errors import ConfigError

OPTIMIZERS = ("rmsprop", "adam", "sgd")
SCHEDULES = ("step", "cosine", "none")


def build_optimizer(cfg: DictConfig, params: Iterable[torch.nn.Parameter], epochs: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer and its per-epoch lr scheduler.

    Weight decay is added to the gradient (PyTorch's ``weight_decay``), which is
    an L2 penalty of weight_decay/2 * |w|^2 on the loss.
    """
    if cfg.name == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                                  weight_decay=cfg.weight_decay, momentum=cfg.momentum, foreach=True)
    elif cfg.name == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay,
                               foreach=True)
    elif cfg.name == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                              weight_decay=cfg.weight_decay, foreach=True)
    else:
        raise ConfigError(f"optimizer={cfg.name!r} is not one of {', '.join(OPTIMIZERS)}")
    if cfg.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epochs, gamma=cfg.gamma)
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    elif cfg.schedule == "none":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0)
    else:
        raise ConfigError(f"optimizer.schedule={cfg.schedule!r} is not one of {', '.join(SCHEDULES)}")
    return opt, sched
