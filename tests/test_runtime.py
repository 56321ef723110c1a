"""Runtime: the CPU allocator modes and the compiled path (``skipexp/runtime.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from skipexp.build import build_network
from skipexp.config import compose_config
from skipexp.models.blocks import Bottleneck
from skipexp.models.fastdropout import FastDropout
from skipexp.models.speed import FusedBottleneck
from skipexp.runtime import Runtime, fast_norm_exact


def test_bad_allocator_is_one_sentence():
    from skipexp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"trainer\.allocator=jemalloc is not one of retain, system, release"):
        Runtime.from_config(compose_config(["trainer.allocator=jemalloc"]).trainer)


@pytest.mark.parametrize(("mode", "returned"), [("retain", False), ("release", True)])
def test_allocator_modes_keep_or_return_freed_tensor_memory(mode, returned):
    """In a fresh process (mallopt is process-wide): after a 256 MB tensor is freed, resident memory stays up
    under ``retain`` and falls back under ``release``."""
    import subprocess
    import sys

    code = (
        "import os, torch\n"
        "from skipexp.runtime import set_allocator\n"
        f"assert set_allocator({mode!r})\n"
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20\n"
        "before = rss()\n"
        "x = torch.ones(64 * 2**20)\n"
        "del x\n"
        "print(rss() - before)\n")
    kept_mb = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert (kept_mb < 64) if returned else (kept_mb > 200)


def test_the_dropout_and_norm_swaps_are_for_eager_nets_only():
    """An eager net gets FastDropout (with the fused bottleneck) and the per-image norm; a compiled one keeps
    nn.Dropout, whose mask inductor fuses, nn.InstanceNorm2d, which inductor fuses, and the plain bottleneck."""
    from skipexp.models.speed import FastInstanceNorm2d

    base = ["model.width=4", "model.norm=instance", "model.dropout=0.1"]  # dropout pinned on
    configs = (compose_config([*base, *extra]) for extra in ([], ["trainer.compile=true"]))
    eager, compiled = ({type(m) for m in build_network(cfg.model, cfg.depth, 1, Runtime.from_config(cfg.trainer))
                        .modules()} for cfg in configs)
    assert {FastDropout, FusedBottleneck} <= eager and nn.Dropout not in eager
    exact = fast_norm_exact(torch.device("cpu"))  # else PyTorch's instance norm stays (AVX2 CPUs)
    assert (FastInstanceNorm2d in eager, nn.InstanceNorm2d in eager) == (exact, not exact)
    assert {nn.Dropout, nn.InstanceNorm2d, Bottleneck} <= compiled
    assert not {FastDropout, FastInstanceNorm2d, FusedBottleneck} & compiled


@pytest.mark.parametrize(("extra", "swaps"), [
    ([], (True, True, True, True)), (["trainer.compile=true"], (False, True, False, False)),
    (["trainer=plain"], (False,) * 4)])
def test_network_speedups_say_which_swaps_the_net_gets(extra, swaps):
    """What build_network applies and results.json records: fast_dropout, fast_norm and fast_relu only on eager
    nets."""
    runtime = Runtime.from_config(compose_config(extra).trainer)
    swaps = (*swaps[:2], swaps[2] and fast_norm_exact(torch.device("cpu")), swaps[3])  # no fast_norm on AVX2 CPUs
    assert tuple(runtime.network_speedups().values()) == swaps
    assert list(runtime.network_speedups()) == ["fast_dropout", "fast_resample", "fast_norm", "fast_relu"]


@pytest.mark.slow
def test_compiled_net_matches_the_eager_one():
    """trainer.compile=true: one forward and backward of a small net agree with eager (no dropout, fp32)."""
    overrides = ["model.width=4", "model.dropout=0", "trainer.precision=fp32"]
    results = []
    with _inductor_settings_restored():  # Runtime.compile sets them for the whole process
        for compile_flag in ("false", "true"):
            results.append(_one_step(overrides, compile_flag))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-3, atol=1e-5)


def _inductor_settings_restored():
    """A context in which Runtime.compile's inductor settings may change, put back as they were at its end."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch({"cpp_wrapper": inductor_config.cpp_wrapper,
                                  "cpp.dynamic_threads": inductor_config.cpp.dynamic_threads})


def _one_step(overrides: list[str], compile_flag: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The output and first conv's weight gradient of one forward and backward of a small net."""
    cfg = compose_config([*overrides, f"trainer.compile={compile_flag}"])
    runtime = Runtime.from_config(cfg.trainer)
    torch.manual_seed(0)
    model = build_network(cfg.model, cfg.depth, 1, runtime).train()
    image = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    out = runtime.compile(model)(runtime.to_device(image))
    out.mean().backward()
    return out.detach(), model.down1.conv1.weight.grad


def test_a_compiled_cpu_net_takes_its_threads_when_it_runs():
    """On CPU, trainer.compile=true asks inductor for kernels that read the thread count at run time, so that a
    compiled run still follows the core share, called from C++; an eager net is returned as it is."""
    import torch._inductor.config as inductor_config

    model = nn.Linear(2, 2)
    with inductor_config.patch({"cpp_wrapper": False, "cpp.dynamic_threads": False}):
        assert Runtime.from_config(compose_config(["trainer.device=cpu"]).trainer).compile(model) is model
        assert not inductor_config.cpp.dynamic_threads and not inductor_config.cpp_wrapper
        Runtime.from_config(compose_config(["trainer.device=cpu", "trainer.compile=true"]).trainer).compile(model)
        assert inductor_config.cpp.dynamic_threads and inductor_config.cpp_wrapper


class _Widths(nn.Module):
    """Two convolutions of a given width: nets of one class (one forward code object) that differ in shape."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, width, 3, padding=1), nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_compiling_nets_of_other_widths_one_after_the_other_compiles_each(monkeypatch):
    """A sweep's worker compiles nets of other widths one after the other: Runtime.compile clears dynamo's caches
    first, so each net runs through a graph of its own. Without that reset (the control) each new net is a
    recompile of the same forward code, and past dynamo's recompile limit (8; 2 here) it runs eager."""
    graph_calls: list[int] = []  # per compiled graph: how many forward calls ran through it

    def recorder(gm: torch.fx.GraphModule, example_inputs: list) -> Callable[..., Any]:
        index = len(graph_calls)
        graph_calls.append(0)

        def counted(*args: Any) -> Any:
            graph_calls[index] += 1
            return gm.forward(*args)

        return counted

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: real(model, backend=recorder))
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 2)
    runtime = Runtime.from_config(compose_config(["trainer.device=cpu", "trainer.compile=true"]).trainer)
    x = torch.randn(1, 1, 8, 8)
    try:
        with _inductor_settings_restored():
            for width in (2, 3, 4, 5):
                runtime.compile(_Widths(width))(x)
            assert graph_calls == [1, 1, 1, 1]
            torch._dynamo.reset()
            graph_calls.clear()
            for width in (2, 3, 4, 5):  # the control: torch.compile without the reset
                torch.compile(_Widths(width))(x)
            assert graph_calls == [1, 1]  # the last two nets ran eager, through no graph
    finally:
        torch._dynamo.reset()
