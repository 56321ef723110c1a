"""Where and how tensors run: device, precision, memory format, threads, seeding, and the process's rank.

``Runtime.from_config`` is the one place ``trainer.device``, ``trainer.precision``,
``trainer.channels_last``, ``trainer.fast_dropout``, ``trainer.fast_resample``, ``trainer.fast_norm``,
``trainer.fast_relu``, ``trainer.fused_optimizer``, ``trainer.allocator``, ``trainer.compile``, ``trainer.threads``
and ``trainer.seed`` are read and checked; ``Runtime.apply`` sets the process's threads and malloc mode, and
``Runtime.rebalance`` moves the threads with the runs sharing the machine's cores (cores.py).
``trainer=plain`` turns every speed-up off: plain eager fp32 PyTorch.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import random
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
from omegaconf import DictConfig

from skipexp import checks, cores, rundir
from skipexp.distributed import Distributed
from skipexp.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def auto_precision(device: torch.device) -> str:
    """bf16 where the hardware runs it natively (CPUs with AVX-512 BF16 or AMX, Ampere and later GPUs),
    fp16 on older GPUs, fp32 on other CPUs (where bf16 would be emulated, and slower)."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


ALLOCATORS = ("retain", "system", "release")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # glibc mallopt parameters


def set_allocator(mode: str) -> bool:
    """Tune glibc's malloc, which serves every CPU tensor (PyTorch has no caching allocator on CPU).

    ``retain``: keep freed memory for reuse, never unmapping or trimming it. By
    default glibc serves each large activation with a fresh mmap and returns it
    on free, so every step pays for zeroing and faulting its whole activation
    memory in again (at batch 4 on the paper's net that made a step 40% slower).
    Resident memory then stays at the heap's high-water mark, fragmentation included.
    ``release``: give every freed block of 64 KiB or more back at once, so resident
    memory follows the live tensors (the CPU reading of CUDA's "max allocated");
    each step faults its activations in again, which on this project's 2-core VM
    made a checkpointed step 2.3x slower. ``system``: glibc's defaults.
    Returns False where there is no glibc (the setting is then ignored).
    """
    if mode == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    if mode == "retain":
        return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))  # -1: never trim
    return (bool(mallopt(_M_MMAP_MAX, 65536)) and bool(mallopt(_M_MMAP_THRESHOLD, 64 * 1024))
            and bool(mallopt(_M_TRIM_THRESHOLD, 128 * 1024)))


@dataclass(frozen=True)
class Runtime:
    """Device, autocast dtype (None = fp32), memory format, speed-ups, threads, seed and rank of a run."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    seed: int
    threads: int = 0  # intra-op threads this process uses on CPU
    dist: Distributed = field(default_factory=Distributed)
    fast_dropout: bool = False
    fast_resample: bool = False  # up/downsampling whose gradients keep their memory format (models/speed.py)
    fast_norm: bool = False  # instance norm as a batch norm per image, in the input's memory format (models/speed.py)
    fast_relu: bool = False  # the norms' ReLUs as an int16 clamp of bf16 bits on CPU (models/speed.py)
    fused_optimizer: bool = False  # one-pass optimizer updates (optim.build_optimizer's ``fused``)
    compile_mode: str | None = None  # torch.compile mode, None = eager
    share_cores: bool = False  # trainer.threads=0 on CPU: the threads follow the runs sharing the cores (cores.py)

    allocator: str = "system"  # CPU malloc mode (set_allocator), applied by ``apply``

    KEYS = ("device", "precision", "channels_last", "fast_dropout", "fast_resample", "fast_norm", "fast_relu",
            "fused_optimizer", "allocator", "compile", "threads", "seed")  # the trainer keys from_config reads

    @classmethod
    def from_config(cls, trainer: DictConfig) -> Runtime:
        """Read and check the runtime's ``trainer`` keys and resolve ``auto`` device, precision and threads for
        this machine; changes nothing in the process (``apply`` does)."""
        name = checks.one_of("trainer", trainer, "device", DEVICES)
        if name == "cuda" and not torch.cuda.is_available():
            raise ConfigError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu.")
        name = "cuda" if name == "auto" and torch.cuda.is_available() else name
        dist = Distributed.from_env()
        device = dist.device("cpu" if name == "auto" else name)
        precision = checks.one_of("trainer", trainer, "precision", ("auto", *PRECISIONS))
        precision = auto_precision(device) if precision == "auto" else precision
        if precision == "fp16" and device.type != "cuda":
            raise ConfigError("trainer.precision=fp16 needs a CUDA device; use trainer.precision=bf16 on CPU.")
        asked = checks.non_negative_int("trainer", trainer, "threads", need="0 (one share of this process's "
                                        "cores) or a count of threads")
        threads = asked or cores.thread_share(usable_cores(), dist.local_world_size * parallel_jobs())
        compile_flag = checks.one_of("trainer", trainer, "compile", (False, True, *COMPILE_MODES))  # 1 is not true
        compile_mode = rundir.compile_mode(compile_flag)
        flag = functools.partial(checks.boolean, "trainer", trainer)
        return cls(device=device, amp_dtype=PRECISIONS[precision], channels_last=flag("channels_last"),
                   seed=checks.non_negative_int("trainer", trainer, "seed"), threads=threads, dist=dist,
                   fast_dropout=flag("fast_dropout"), fast_resample=flag("fast_resample"),
                   fast_norm=flag("fast_norm"), fast_relu=flag("fast_relu"), fused_optimizer=flag("fused_optimizer"),
                   compile_mode=compile_mode,
                   allocator=checks.one_of("trainer", trainer, "allocator", ALLOCATORS),
                   share_cores=not asked and device.type == "cpu")

    def apply(self) -> None:
        """Set this process's intra-op threads (``threads``, or its share of the cores among the runs on this
        machine, when it shares them) and (on CPU) malloc mode."""
        torch.set_num_threads(cores.join(usable_cores(), self.threads).current if self.share_cores else self.threads)
        if self.device.type == "cpu":
            set_allocator(self.allocator)

    def release_cores(self) -> None:
        """Leave the machine's core share at the end of training, so that an idle process (a notebook, a
        sequential sweep between jobs) does not count as a run."""
        if self.share_cores and (share := cores.process_share()) is not None:
            share.leave()

    def rebalance(self) -> None:
        """Between steps: follow the runs that started or ended on this machine since the last look (at most one
        look a second), when this run shares the cores."""
        share = cores.process_share() if self.share_cores else None
        if share is not None and (threads := share.update()) is not None:
            torch.set_num_threads(threads)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """Move a batch to the device in the run's memory format."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def network_speedups(self) -> dict[str, bool]:
        """The module swaps this run's network gets (``models.speed.apply_speedups``' flags). A compiled net
        keeps ``nn.Dropout`` and ``nn.InstanceNorm2d``, which inductor fuses (FastDropout's NumPy generator is
        opaque to the compiler), so fast_dropout and fast_norm hold for eager nets only; so does fast_relu,
        whose ReLU inductor fuses into the norm's kernel."""
        eager = self.compile_mode is None
        return {"fast_dropout": self.fast_dropout and eager, "fast_resample": self.fast_resample,
                "fast_norm": self.fast_norm and eager and fast_norm_exact(self.device),
                "fast_relu": self.fast_relu and eager}

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move the model to the device in the run's memory format."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def compile(self, model: torch.nn.Module) -> torch.nn.Module:
        """``torch.compile`` the step's model when asked for (it compiles lazily, at the first step).

        Dynamo's in-process caches are cleared first: a sweep's worker that trains nets of other widths one
        after the other would otherwise compile each as a recompile of the same forward code, and past dynamo's
        recompile limit (8) run it eager. (Inductor's on-disk cache stays, so a net compiled before compiles in
        seconds.)
        On CPU the generated kernels take the thread count when they run (inductor's ``cpp.dynamic_threads``),
        not the one at compile time, so a compiled run still follows the core share (``rebalance``); and the
        code that calls them is C++ (``cpp_wrapper``), not Python: a step of the CPU study's deep net launches
        thousands of small kernels, and that made it 12-14% faster, for a cold compile about a minute
        longer (docs/performance-notes.md).
        """
        if self.compile_mode is None:
            return model
        torch._dynamo.reset()
        if self.device.type == "cpu":
            import torch._inductor.config as inductor_config

            inductor_config.cpp.dynamic_threads = True
            inductor_config.cpp_wrapper = True
        return torch.compile(model, mode=self.compile_mode)

    def seed_everything(self) -> None:
        """Seed Python, NumPy and torch so the same seed and config give the same run on CPU."""
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)


def fast_norm_exact(device: torch.device) -> bool:
    """Whether ``trainer.fast_norm`` gives instance norm's gradients here: on CPUs whose kernels are AVX2 (no
    AVX-512), the per-image batch norm's input gradients came out 0.6% off PyTorch's instance norm on
    2026-12-02 (tests/models/test_speed.py), so such CPUs keep PyTorch's instance norm."""
    return device.type != "cpu" or torch.backends.cpu.get_cpu_capability().startswith("AVX512")


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
