"""Data-parallel training across processes, GPUs and nodes, set up from what ``torchrun`` puts in the environment.

``torchrun --nproc_per_node=N -m skipexp.cli ...`` (or ``torchrun ... $(which skipexp) ...``)
starts N copies of skipexp with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; multi-node runs
add ``--nnodes`` and ``--rdzv_endpoint``. Every process builds the same model
from the same seed and walks the same global sample stream; each takes its
share of every global batch (``trainer.batch_size`` is the global batch), the
losses are computed over the global batch (their sums are all-reduced), and
DistributedDataParallel averages the gradients, so N processes take the same
steps as one process with the whole batch. Only rank 0 validates and writes
results, checkpoints and events.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from skipexp.errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_env(cls) -> Distributed:
        """Read the variables torchrun sets; a plain ``skipexp`` sees none and runs alone."""
        def env(name: str, default: int) -> int:
            value = os.environ.get(name, "")
            try:
                return int(value) if value else default
            except ValueError as err:
                raise ConfigError(f"environment variable {name}={value!r} is not an integer; "
                                  "launch with torchrun, which sets it.") from err

        world = env("WORLD_SIZE", 1)
        return cls(rank=env("RANK", 0), world_size=world, local_rank=env("LOCAL_RANK", 0),
                   local_world_size=env("LOCAL_WORLD_SIZE", world))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 validates and writes; the others only train."""
        return self.rank == 0

    def device(self, kind: str) -> torch.device:
        """This process's device: its own GPU (``cuda:LOCAL_RANK``) or the CPU."""
        return torch.device(f"cuda:{self.local_rank}") if kind == "cuda" else torch.device("cpu")

    def init(self, device: torch.device) -> None:
        """Join the process group: NCCL between GPUs, gloo between CPU processes."""
        if not self.enabled or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=self.rank,
                                world_size=self.world_size)

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """DistributedDataParallel around ``model`` (the model itself when running alone).

        On CUDA, BatchNorm becomes SyncBatchNorm so normalisation sees the global
        batch; PyTorch's SyncBatchNorm has no CPU kernel, so on CPU each process
        normalises with its own share's statistics.
        """
        if not self.enabled:
            return model
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def shard(self, batch: list) -> list:
        """This rank's contiguous share of a global batch (sizes differ by at most one)."""
        if not self.enabled:
            return batch
        size, extra = divmod(len(batch), self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return batch[start:start + size + (self.rank < extra)]

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over all processes, differentiable (its backward sums the gradients too)."""
        return _AllSum.apply(tensor) if self.enabled else tensor

    def broadcast(self, value: object) -> object:
        """Rank 0's ``value`` on every rank (for decisions only rank 0 can make, such as early stopping)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


class _AllSum(torch.autograd.Function):
    """all_reduce(SUM) with a backward that sums the incoming gradients over processes as well.

    Every rank computes the same global loss from the summed statistics, so each
    rank's gradient of its own share comes out ``world_size`` times too large;
    DistributedDataParallel's averaging divides that back out.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad
