"""What this machine could do at best, for `make bench`: the CPU's kind, the peak of the net's own 3x3
convolutions (forward and backward), the memory bandwidth, and a roofline lower bound of a training step.

The bound is a simple roofline: every aten op the step runs (forward, backward and optimizer, as the
trainer runs them) costs at least its FLOPs over the measured convolution peak of its dtype, or its bytes
(tensors read and written) over the measured bandwidth, whichever is larger; the bound of the step is the
sum. It ignores overlap between ops, caches and the cost of starting an op, so a step can never beat it and
the gap says how much of the time is neither arithmetic nor memory traffic at full speed.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where it is not readable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_kind(flags: set[str] | None = None) -> str:
    """The kind of CPU as far as skipexp's speed goes: whether bf16 runs natively (what precision=auto picks)."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "native bf16 (AMX)"
    if "avx512_bf16" in flags:
        return "native bf16 (AVX-512 BF16)"
    if "avx512f" in flags:
        return "AVX-512 without bf16 (bf16 emulated)"
    if "avx2" in flags:
        return "AVX2 only (bf16 emulated)"
    return "unknown (no /proc/cpuinfo flags)" if not flags else "no AVX2"


def call_times(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls (the first call of a shape is
    where oneDNN or cuDNN picks its kernel)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    return statistics.median(call_times(fn, repeats, warmup))


def _synced(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """``fn`` followed by waiting for the GPU, so that its time is the kernels' and not their launch."""
    def run() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


def conv_shapes(model: torch.nn.Module, image: torch.Tensor) -> list[tuple[int, ...]]:
    """The distinct 3x3 convolutions one forward pass of ``model`` on ``image`` runs, as
    (batch, in_channels, height, width, out_channels, stride), largest work first."""
    shapes: set[tuple[int, ...]] = set()

    def record(conv: torch.nn.Conv2d, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        n, c, h, w = args[0].shape
        shapes.add((n, c, h, w, conv.out_channels, conv.stride[0]))

    hooks = [m.register_forward_hook(record) for m in model.modules()
             if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) and m.groups == 1]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for hook in hooks:
            hook.remove()
    return sorted(shapes, key=lambda s: -s[0] * s[1] * s[4] * (s[2] // s[5]) * (s[3] // s[5]))


def conv_rates(shape: tuple[int, ...], dtype: torch.dtype, repeats: int, device: torch.device) -> dict[str, float]:
    """FLOP/s of one channels-last 3x3 convolution of ``shape`` in ``dtype``: forward, and backward (the
    input's and the weight's gradients, twice the forward's FLOPs)."""
    n, c, h, w, k, stride = shape
    cl = torch.channels_last
    x = torch.randn(n, c, h, w, device=device).to(dtype).contiguous(memory_format=cl)
    weight = torch.randn(k, c, 3, 3, device=device).to(dtype).contiguous(memory_format=cl)
    y = torch.nn.functional.conv2d(x, weight, stride=stride, padding=1)
    grad = torch.randn_like(y).contiguous(memory_format=cl)
    flops = 2 * n * k * c * 9 * y.shape[2] * y.shape[3]
    with torch.no_grad():
        forward = median_time(_synced(lambda: torch.nn.functional.conv2d(x, weight, stride=stride, padding=1),
                                      device), repeats)
        backward = median_time(_synced(lambda: torch.ops.aten.convolution_backward(
            grad, x, weight, None, [stride] * 2, [1, 1], [1, 1], False, [0, 0], 1, [c > 1, True, False]),
            device), repeats)
    return {"forward": flops / forward, "backward": (2 if c > 1 else 1) * flops / backward}


def shape_peak(shapes: list[tuple[int, ...]], dtype: torch.dtype, repeats: int, device: torch.device) -> dict:
    """The best FLOP/s over ``shapes`` and both directions: the practical peak of this machine for the net."""
    rates = {shape: conv_rates(shape, dtype, repeats, device) for shape in shapes}
    best = max(((rate, shape, way) for shape, r in rates.items() for way, rate in r.items()))
    return {"flops": best[0], "shape": list(best[1]), "direction": best[2],
            "rates": [[list(shape), r["forward"], r["backward"]] for shape, r in rates.items()]}


def bandwidth(repeats: int, device: torch.device, mib: int = 256) -> float:
    """Bytes/s of a large copy (read plus write), this machine's practical memory bandwidth."""
    src = torch.randn(mib * 2**18, device=device)
    dst = torch.empty_like(src)
    return 2 * src.nbytes / median_time(_synced(lambda: dst.copy_(src), device), repeats)


_NO_DATA = {torch.ops.aten.detach, torch.ops.aten.alias, torch.ops.aten.lift_fresh}


class OpCosts(TorchDispatchMode):
    """Records every aten op run under it: its FLOPs (PyTorch's flop formulas), bytes read and written, and
    the dtype of its first floating-point input."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, int, int, torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.is_view or func._overloadpacket in _NO_DATA:  # aliases move no memory
            return out
        packet = func._overloadpacket
        flops = flop_registry[packet](*args, **kwargs, out_val=out) if packet in flop_registry else 0
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
        self.ops.append((str(packet).replace("aten.", "aten::"), int(flops), nbytes, dtype))
        return out


def roofline(step: Callable[[], object], peaks: dict[torch.dtype, float], bytes_per_s: float) -> dict:
    """The roofline lower bound of one call of ``step``: per op name its count, FLOPs, bytes and bound (s),
    and the total. FLOPs of a dtype with no measured peak are bounded by the fp32 peak."""
    with OpCosts() as costs:
        step()
    per_op: dict[str, dict] = defaultdict(lambda: {"count": 0, "flops": 0, "bytes": 0, "bound_s": 0.0})
    for name, flops, nbytes, dtype in costs.ops:
        peak = peaks.get(dtype, peaks[torch.float32])
        entry = per_op[name]
        entry["count"] += 1
        entry["flops"] += flops
        entry["bytes"] += nbytes
        entry["bound_s"] += max(flops / peak, nbytes / bytes_per_s)
    return {"bound_s": sum(e["bound_s"] for e in per_op.values()),
            "flops": sum(e["flops"] for e in per_op.values()), "bytes": sum(e["bytes"] for e in per_op.values()),
            "ops": sum(e["count"] for e in per_op.values()), "per_op": dict(per_op)}


CONV = ("aten::convolution", "aten::convolution_backward", "aten::mkldnn_convolution", "aten::_convolution")


def where_time_goes(profile_ms: dict[str, float], bound: dict, step_s: float) -> list[tuple[str, float, float]]:
    """The step's time by kind of work against its roofline bound: (kind, measured ms, bound ms) for the
    convolutions (forward and backward), everything else, and what no op accounts for (Python, dispatch,
    waiting threads). ``profile_ms`` holds the profiler's self times per op name for the same step."""
    conv_ms = sum(ms for name, ms in profile_ms.items() if name.startswith(CONV))
    other_ms = sum(profile_ms.values()) - conv_ms
    conv_bound = 1000 * sum(e["bound_s"] for name, e in bound["per_op"].items() if name.startswith(CONV))
    other_bound = 1000 * bound["bound_s"] - conv_bound
    return [("convolutions, forward and backward", conv_ms, conv_bound), ("all other ops", other_ms, other_bound),
            ("outside any op", max(0.0, 1000 * step_s - conv_ms - other_ms), 0.0)]
