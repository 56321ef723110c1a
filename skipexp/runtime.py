"""Where and how tensors run: device, precision, memory format, threads, seeding, and the process's rank.

``Runtime.from_config`` is the one place ``trainer.device``, ``trainer.precision``,
``trainer.channels_last``, ``trainer.threads`` and ``trainer.seed`` are read.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from omegaconf import DictConfig

from skipexp.distributed import Distributed
from skipexp.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Runtime:
    """Device, autocast dtype (None = fp32), memory format, intra-op threads, seed and rank of a run."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    seed: int
    threads: int = 0  # intra-op threads this process uses on CPU
    dist: Distributed = field(default_factory=Distributed)

    @classmethod
    def from_config(cls, trainer: DictConfig) -> Runtime:
        """Resolve ``trainer.device=auto`` to CUDA when present, else CPU, and check the precision."""
        if trainer.device not in DEVICES:
            raise ConfigError(f"trainer.device={trainer.device!r} is not one of {', '.join(DEVICES)}")
        if trainer.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu.")
        name = "cuda" if trainer.device == "auto" and torch.cuda.is_available() else trainer.device
        dist = Distributed.from_env()
        device = dist.device("cpu" if name == "auto" else name)
        if trainer.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision={trainer.precision!r} is not one of {', '.join(PRECISIONS)}")
        if trainer.precision == "fp16" and device.type != "cuda":
            raise ConfigError("trainer.precision=fp16 needs a CUDA device; use trainer.precision=bf16 on CPU.")
        threads = int(trainer.threads)
        if threads < 0:
            raise ConfigError(f"trainer.threads={threads} must be 0 (one share of this process's cores) or a count.")
        threads = threads or thread_share(usable_cores(), dist.local_world_size * parallel_jobs())
        torch.set_num_threads(threads)
        return cls(device, PRECISIONS[trainer.precision], bool(trainer.channels_last), int(trainer.seed),
                   threads, dist)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """Move a batch to the device in the run's memory format."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move the model to the device in the run's memory format."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def seed_everything(self) -> None:
        """Seed Python, NumPy and torch so the same seed and config give the same run on CPU."""
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (taskset, SLURM, cgroups), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine: the joblib launcher's ``n_jobs``, else 1."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return 1
    n_jobs = HydraConfig.get().launcher.get("n_jobs")
    if not isinstance(n_jobs, int) or n_jobs == 0:
        return 1
    return usable_cores() if n_jobs < 0 else n_jobs  # joblib: -1 = one job per core


def thread_share(cores: int, processes: int) -> int:
    """Intra-op threads for one of ``processes`` processes sharing ``cores`` cores, never oversubscribing."""
    return max(1, cores // max(1, processes))
