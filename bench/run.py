"""`make bench`: skipexp's hot paths measured side by side in one run on this machine.

Each figure is a median over several repetitions after warm-up. Peak memory is
measured in a child process per configuration (RSS on CPU, max allocated on
CUDA), so one measurement's peak never hides another's. The train steps run in
two rounds of every configuration, so a slow spell of a shared machine hits
them all. Activation checkpointing's memory is compared with
``trainer.allocator=release`` in both arms, where resident memory follows the
live tensors. Prints a table, writes bench/results.json and renders docs/performance.md from it.

    python bench/run.py [--quick] [--out bench/results.json] [--page docs/performance.md]
    python bench/run.py --page-only     # re-render docs/performance.md from bench/results.json, measure nothing
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from skipexp.build import build_network
from skipexp.config import compose_config
from skipexp.data.augment import Augmenter
from skipexp.data.common import SegmentationSet, standardise
from skipexp.evaluate import Inference, membrane_probability
from skipexp.gradflow import GradFlow
from skipexp.losses import get_loss
from skipexp.metrics import challenge_scores
from skipexp.runtime import Runtime, usable_cores

sys.path.insert(0, str(Path(__file__).parent))
import limits  # bench/limits.py, beside this script
from limits import call_times, median_time

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012"
SIZE = 512


def isbi_volume(name: str) -> np.ndarray:
    import tifffile

    path = ISBI / name
    if path.is_file():
        return tifffile.imread(path)
    rng = np.random.default_rng(0)  # shape-alike stand-in where the shared data are absent
    return (rng.random((30, SIZE, SIZE)) * 255).astype(np.uint8)


def measuring_runtime(trainer) -> Runtime:
    """The configured runtime, outside the machine's core share (skipexp/cores.py): the bench's own processes
    are not runs, and the one that waits for a child must not halve the child's threads."""
    runtime = Runtime.from_config(trainer)
    if "share_cores" not in {f.name for f in dataclasses.fields(runtime)}:
        return runtime  # an earlier commit's (--before), from before the share
    return dataclasses.replace(runtime, share_cores=False)


def train_step_fn(cfg, batch: int, size: int = SIZE):
    """One training step of the configured net (forward, the configured loss, backward, optimizer) on ``size`` x
    ``size`` inputs, as the trainer runs it."""
    from skipexp import optim

    runtime = measuring_runtime(cfg.trainer)
    runtime.apply()  # threads and malloc mode, as a run alone sets them
    torch.manual_seed(0)
    model = build_network(cfg.model, cfg.depth, 1, runtime)
    model.train()
    net = runtime.compile(model)
    # an earlier commit's (--before) takes the parameters: it predates optimizer.weight_decay_on's groups
    optimizer, _ = optim.build_optimizer(cfg.optimizer, model if hasattr(optim, "decay_groups") else
                                         model.parameters(), 1, runtime.fused_optimizer)
    image = runtime.to_device(torch.randn(batch, 1, size, size))
    label = runtime.to_device((torch.rand(batch, 1, size, size) < 0.22).float())
    loss_fn = get_loss(cfg.trainer.loss)

    def step() -> torch.Tensor:
        with runtime.autocast():
            logits = net(image)
        loss = loss_fn(logits, label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        return loss.detach()

    return step, model, image, runtime


COMPILED_GRAPH = "## Call CompiledFxGraph"  # how torch.profiler names a call of one of inductor's compiled graphs


def graph_names(events: Iterable[Any]) -> dict[str, str]:
    """Readable names for the compiled graphs among a profile's ``events``: inductor names each by a hash, so
    each is named "compiled forward graph" or "compiled backward graph" by whether it ran inside autograd's
    backward pass (numbered in the order they ran where a direction has more than one)."""
    found: dict[str, str] = {}
    for event in events:
        if event.name.startswith(COMPILED_GRAPH) and event.name not in found:
            parent, backward = event.cpu_parent, False
            while parent is not None and not backward:
                backward, parent = "Backward" in parent.name, parent.cpu_parent
            found[event.name] = "backward" if backward else "forward"
    names = {}
    for direction in ("forward", "backward"):
        graphs = [name for name, d in found.items() if d == direction]
        for i, name in enumerate(graphs, 1):
            names[name] = f"compiled {direction} graph" + (f" {i}" if len(graphs) > 1 else "")
    return names


def self_times(step) -> dict[str, float]:
    """Self time (ms) per op name in one call of ``step``, from torch.profiler, most first; a compiled step's
    graphs are named by ``graph_names``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        step()
    device_time = torch.cuda.is_available()
    names = graph_names(prof.events())
    times = {names.get(e.key, e.key): (e.self_device_time_total if device_time else e.self_cpu_time_total) / 1000
             for e in prof.key_averages()}
    return dict(sorted(times.items(), key=lambda kv: -kv[1]))


def top_ops(step, n: int = 6) -> list[tuple[str, float]]:
    """The ``n`` ops with the most self time in one step (ms), from torch.profiler."""
    return [(name, round(ms, 1)) for name, ms in list(self_times(step).items())[:n]]


def rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def child(kind: str, overrides: list[str], batch: int, repeats: int, size: int = SIZE) -> dict:
    """Run one train-step measurement in this (child) process; report times, peak memory, FLOPs and a profile.

    ``peak_mb`` is the whole process's peak (RSS on CPU, max allocated on CUDA); ``step_mb`` is the part of it
    the training steps added on top of what the process held before its first step (interpreter, libraries,
    the built model): activations, gradients, optimizer state and temporaries.
    """
    from torch.utils.flop_counter import FlopCounterMode

    cfg = compose_config(overrides)
    step, model, image, runtime = train_step_fn(cfg, batch, size)
    before_mb = torch.cuda.memory_allocated() / 2**20 if runtime.device.type == "cuda" else rss_mb()
    started = time.perf_counter()
    first_loss = float(step())  # warm-up (and the compile, when trainer.compile is on)
    first_s = time.perf_counter() - started
    times = call_times(step, repeats)
    if runtime.device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"kind": kind, "batch": batch, "step_s": statistics.median(times), "times": times, "first_step_s": first_s,
           "first_loss": first_loss,
           "peak_mb": peak_mb, "step_mb": peak_mb - before_mb,
           "precision": "fp32" if runtime.amp_dtype is None else str(runtime.amp_dtype).removeprefix("torch.")}
    if (batch == 1 and kind in ("plain", "default")) or kind.startswith("study"):
        # the profile first: a compiled step run under the FLOP counter's dispatch mode may leave dynamo running
        # later steps through other code than the compiled graphs timed above
        out["profile"] = top_ops(step)
        with FlopCounterMode(display=False) as counter:
            step()
        out["flops"] = counter.get_total_flops()
    if kind == "avx2-default":  # the ceiling of the AVX2 arm: its roofline bound under the same capped kernels
        dtypes = {"fp32": torch.float32} | ({"bf16": torch.bfloat16} if out["precision"] == "bfloat16" else {})
        peaks, _, bound = step_limits(step, model, image, dtypes, repeats, runtime.device)
        out["bound_s"] = bound["bound_s"]
        out["peak_gflops_fp32"] = peaks["fp32"]["flops"] / 1e9
    return out


def step_limits(step, model, image, dtypes: dict[str, torch.dtype], repeats: int,
                device: torch.device) -> tuple[dict, float, dict]:
    """This machine's limits for ``step`` (limits.py): the peak of the net's own 3x3 convolutions per dtype, the
    memory bandwidth, and the step's roofline bound from both."""
    shapes = limits.conv_shapes(model, image)
    peaks = {name: limits.shape_peak(shapes, dtype, repeats, device) for name, dtype in dtypes.items()}
    bytes_per_s = limits.bandwidth(repeats, device)
    bound = limits.roofline(step, {dtypes[name]: p["flops"] for name, p in peaks.items()}, bytes_per_s)
    return peaks, bytes_per_s, bound


def run_child(kind: str, overrides: list[str], batch: int, repeats: int, size: int = SIZE,
              pythonpath: Path | None = None, extra_env: dict[str, str] | None = None) -> dict:
    """One child measurement; ``pythonpath`` runs it against another checkout's skipexp (a baseline commit),
    ``extra_env`` with more environment variables (e.g. ``AVX2_ENV``)."""
    env = dict(os.environ, **(extra_env or {}), **({"PYTHONPATH": str(pythonpath)} if pythonpath else {}))
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--batch", str(batch), "--repeats",
                          str(repeats), "--size", str(size), "--", *overrides], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise RuntimeError(f"bench child {kind} batch {batch} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def pooled(runs: tuple[dict, ...]) -> dict:
    """Children of one configuration as one measurement: the median over all their steps, the highest peak."""
    times = [t for run in runs for t in run["times"]]
    return dict(runs[0], times=times, step_s=statistics.median(times), peak_mb=max(run["peak_mb"] for run in runs))


def sweep_wall(parallel: bool, cwd: Path) -> float:
    """Wall time of a 2-job sweep (two seeds of a small synthetic run), in parallel (joblib) or in sequence.

    24 epochs, about 20 s of compute a job, so that the jobs' compute is compared and not their start: at 8
    epochs the sweep was mostly process start-up and imports (a 1-epoch sweep takes 9 s), which the parallel
    launcher pays in fresh worker processes, and the ratio wandered between 0.90 and 1.21.
    """
    exe = Path(sys.executable).with_name("skipexp")
    args = [str(exe), "-m", "trainer.seed=0,1", "model.width=16", "dataset.n_train=32", "dataset.n_val=4",
            "trainer.epochs=24", "gradflow.enabled=false", f"hydra.sweep.dir={cwd / ('par' if parallel else 'seq')}"]
    if parallel:
        args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    cwd.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def cpuinfo_field(name: str, path: Path = Path("/proc/cpuinfo")) -> str | None:
    """The first CPU's ``name`` field in /proc/cpuinfo (Linux), or None where it is absent or not readable."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo, or None where it is not readable."""
    return cpuinfo_field("model name")


def cpu_generation(path: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's family and model numbers, e.g. "family 26 model 2": what tells two generations apart where the
    model name does not (both Zen 4 and Zen 5 EPYCs read "AMD EPYC" in a VM), or None where not readable."""
    family, model = cpuinfo_field("cpu family", path), cpuinfo_field("model", path)
    return f"family {family} model {model}" if family and model else None


AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
"""PyTorch's and oneDNN's kernels capped at AVX2: on a CPU with AVX-512, the kernels an AVX2-only CPU runs (and no
native bf16, so ``precision=auto`` is fp32), on this machine's cores, caches and memory."""


def avx2_class(overrides: list[str], repeats: int) -> dict:
    """The paper net's step at batch 1 and 4, default against plain, with the kernels capped at AVX2 (``AVX2_ENV``):
    where the machine has AVX-512, the nearest this bench gets to an AVX2-only CPU."""
    out: dict = {}
    for batch in (1, 4):
        plain = run_child("avx2-plain", [*overrides, "trainer=plain"], batch, repeats, extra_env=AVX2_ENV)
        default = run_child("avx2-default", overrides, batch, repeats, extra_env=AVX2_ENV)
        out[f"avx2_plain_s_per_img_b{batch}"] = plain["step_s"] / batch
        out[f"avx2_default_s_per_img_b{batch}"] = default["step_s"] / batch
        out[f"avx2_speedup_b{batch}"] = plain["step_s"] / default["step_s"]
        out[f"avx2_bound_s_per_img_b{batch}"] = default["bound_s"] / batch
        out[f"avx2_ceiling_b{batch}"] = plain["step_s"] / default["bound_s"]
        out[f"avx2_peak_gflops_fp32_b{batch}"] = default["peak_gflops_fp32"]
        out["avx2_precision"] = default["precision"]
    return out


STUDY = ["experiment=study_cpu", "model=both", "gradflow.enabled=false"]
STUDY_DEPTHS = (26, 104)  # the study preset's shallow and deep nets


def plain_overrides() -> list[str]:
    """trainer=plain's keys as overrides, so that they win over a preset's own trainer keys."""
    plain = OmegaConf.load(ROOT / "conf" / "trainer" / "plain.yaml")
    return [f"trainer.{key}={str(value).lower() if isinstance(value, bool) else value}"
            for key, value in plain.items() if key != "defaults"]


def study_shapes(repeats: int, before: Path | None, cache: Path) -> dict:
    """Training steps at the CPU study preset's crop, batch and width, for its shallow and its deep net: the
    preset (compiled) against the same eager and plain fp32, and against ``before`` (a checkout of an earlier
    commit) when given; two rounds of every arm, each figure the median over all their steps. Each depth's
    inductor cache starts empty (a folder of its own under ``cache``: the two nets share kernels of the same
    width), so the first round's first step is a compile from nothing (a net's first run on a machine) and the
    second round's one from the cache (every later run)."""
    cfg = compose_config(STUDY)
    batch, crop = int(cfg.trainer.batch_size), int(cfg.trainer.crop)
    out: dict = {"study_batch": batch, "study_crop": crop, "study_width": int(cfg.model.width),
                 "study_precision": str(cfg.trainer.precision), "study_compile": str(cfg.trainer.compile).lower(),
                 "study_steps": int(cfg.trainer.epochs) * int(cfg.trainer.samples_per_epoch) // batch}
    for layers in STUDY_DEPTHS:
        env = {"TORCHINDUCTOR_CACHE_DIR": str(cache / f"d{layers}")}
        base = [*STUDY, f"depth.layers={layers}"]
        arms = {"default": (base, None), "eager": ([*base, "trainer.compile=false"], None),
                "plain": ([*base, *plain_overrides()], None)}
        if before is not None:
            arms["before"] = (base, before)
        rounds = [{arm: run_child(f"study-{arm}", overrides, batch, repeats, crop, path, env)
                   for arm, (overrides, path) in arms.items()} for _ in range(2)]
        merged = {arm: pooled(tuple(r[arm] for r in rounds)) for arm in arms}
        key = f"study_d{layers}"
        step_s, eager_s = merged["default"]["step_s"], merged["eager"]["step_s"]
        out[f"{key}_compile_cold_s"], out[f"{key}_compile_warm_s"] = (
            max(0.0, r["default"]["first_step_s"] - step_s) for r in rounds)
        out[f"{key}_vs_eager"] = eager_s / step_s
        for cache_kind in ("cold", "warm"):  # one study run's training steps, its compile included, against eager
            out[f"{key}_run_vs_eager_{cache_kind}"] = (out["study_steps"] * eager_s) / (
                out[f"{key}_compile_{cache_kind}_s"] + out["study_steps"] * step_s)
        for arm, m in merged.items():
            suffix = "" if arm == "default" else f"_{arm}"
            out[f"{key}{suffix}_img_per_s"] = batch / m["step_s"]
            out[f"{key}{suffix}_profile_ms"] = m["profile"]
        out[f"{key}_gflop_per_step"] = merged["default"]["flops"] / 1e9
        out[f"{key}_speedup"] = merged["plain"]["step_s"] / merged["default"]["step_s"]
        out[f"{key}_loss_rel_diff"] = abs(merged["default"]["first_loss"] / merged["plain"]["first_loss"] - 1)
        if before is not None:
            out[f"{key}_vs_before"] = merged["before"]["step_s"] / merged["default"]["step_s"]
    return out


OPENMP_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def run_walls(n: int, overrides: list[str], cwd: Path) -> list[float]:
    """Wall times of ``n`` default runs (`skipexp trainer.epochs=4`, plus ``overrides``) started together."""
    exe = Path(sys.executable).with_name("skipexp")
    cwd.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_ENV}  # OpenMP as a user's shell has it
    start = time.perf_counter()
    procs = [subprocess.Popen([str(exe), "trainer.epochs=4", *overrides, f"hydra.run.dir={cwd / str(i)}"], cwd=cwd,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]
    walls: dict[int, float] = {}
    while len(walls) < n:
        for i, proc in enumerate(procs):
            if i not in walls and proc.poll() is not None:
                if proc.returncode != 0:
                    raise RuntimeError(f"a default run for the shared-CPU bench failed (exit {proc.returncode})")
                walls[i] = time.perf_counter() - start
        time.sleep(0.05)
    return [walls[i] for i in range(n)]


def shared_cpu(tmp: Path) -> dict:
    """Two default runs started together against one alone: under skipexp's default (each run's threads follow
    the runs sharing the machine, skipexp/cores.py), and with every run taking all the cores (what it did before,
    ``trainer.threads`` = the cores) for comparison."""
    out: dict = {}
    for name, overrides in (("default", []), ("all_cores", [f"trainer.threads={usable_cores()}"])):
        alone = run_walls(1, overrides, tmp / name / "alone")[0]
        pair = run_walls(2, overrides, tmp / name / "pair")
        out[f"shared_{name}_alone_s"] = alone
        out[f"shared_{name}_pair_s"] = max(pair)
        out[f"shared_{name}_slowdown"] = max(pair) / alone
    return out


PAPER_RUNS = {"own": ["experiment=paper", "gradflow.enabled=false"],
              "auto": ["experiment=paper", "gradflow.enabled=false", "trainer.precision=auto"]}


def paper_recipe() -> tuple[int, int]:
    """`experiment=paper`'s image-steps (epochs x training sections) and batch size, from its config."""
    from skipexp.data.isbi2012 import TRAIN_SLICES

    cfg = compose_config(PAPER_RUNS["own"])
    return int(cfg.trainer.epochs) * (TRAIN_SLICES - int(cfg.dataset.val_slices)), int(cfg.trainer.batch_size)


def paper_minutes_at_default_b4(r: dict) -> float | None:
    """`experiment=paper`'s projected minutes at the default's batch-4 step, a second measurement of the same
    step (same net, batch and precision); None where the bench has no such pair."""
    if not ("paper_auto_hours" in r and "train_s_per_img_b4" in r and r.get("precision") == r["paper_auto_precision"]
            and r.get("paper_image_steps")):
        return None
    return r["paper_image_steps"] * r["train_s_per_img_b4"] / 60


def paper_projection(measured: dict[str, dict]) -> dict:
    """The projected wall time of `experiment=paper` here: its image-steps times the measured time per image of
    its step at its batch, in its own precision (fp32, ``measured["own"]``) and with trainer.precision=auto
    (``measured["auto"]``) where that is another. The steps are measured in the train step's rounds (main), so
    that a slow spell of a shared machine does not fall on the projection alone: in one child of its own, on
    2026-12-03, it read 0.473 s per image where the default's batch-4 step, the same net and precision, read
    0.420 in the rounds."""
    image_steps, batch = paper_recipe()
    out: dict = {"paper_image_steps": image_steps, "paper_batch": batch}
    seen = set()
    for name in ("own", "auto"):
        m = measured[name]
        if m["precision"] in seen:
            continue  # auto is fp32 on this machine: the same figure
        seen.add(m["precision"])
        out[f"paper_{name}_precision"] = m["precision"]
        out[f"paper_{name}_s_per_img"] = m["step_s"] / batch
        out[f"paper_{name}_hours"] = image_steps * m["step_s"] / batch / 3600
    return out


def checkout(ref: str, dest: Path) -> tuple[Path, str]:
    """The tree of commit ``ref`` unpacked into ``dest`` (for PYTHONPATH), and its full hash."""
    sha = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest, sha


def head_commit() -> str | None:
    """The short hash of the checkout the bench runs (with "+changes" where the tree differs), or None outside git."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "")


def committed_results() -> dict:
    """bench/results.json as last committed (the figures of today's code), or {} where there is none."""
    out = subprocess.run(["git", "show", "HEAD:bench/results.json"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        return {}
    results = json.loads(out.stdout)
    if "date" not in results:  # a run from before the bench recorded its date: the commit that last wrote it
        log = subprocess.run(["git", "log", "-1", "--format=%h %ad", "--date=short", "--", "bench/results.json"],
                             cwd=ROOT, capture_output=True, text=True).stdout.split()
        if len(log) == 2:
            results["committed_in"], results["date"] = log
    return results


PAGE_HEADER = """\
<!-- Generated by `make bench` (bench/run.py) from bench/results.json. Do not edit by hand. -->
# Performance

This page is written by `make bench` (`bench/run.py`) from the figures it
stores in `bench/results.json`. Do not edit it by hand: rerun `make bench`,
or render it again from an existing `bench/results.json` with
`.venv/bin/python bench/run.py --page-only`. What the figures mean, where the
time goes and what was tried and not adopted is in
[performance-notes.md](performance-notes.md).
"""

PAGE_METHOD = """\
## How it is measured

Each figure is a median over repetitions after warm-up, all from one run of
the bench. Each train-step configuration runs in its own child process, so
that its peak memory is its own (resident memory on CPU, max allocated on
CUDA). The train steps run in two rounds of every configuration (plain,
default and default with checkpointing, at batch 1 and batch 4), and each
figure is the median over all their steps, so that a slow spell of a shared
machine hits every configuration alike. The baseline, *plain*, is the same
model as plain eager fp32 PyTorch (`trainer=plain`: contiguous memory, no
autocast, `nn.Dropout`, glibc's default allocator, no compile); *default* is
skipexp's default `trainer`. Activation checkpointing's memory is compared
with `trainer.allocator=release` in both arms, where resident memory follows
the live tensors; its time under the default allocator. The network is the
paper's: 140 layers, width 32, both skips, on 512 x 512 inputs, gradient flow
off.
"""


def target_rows(r: dict) -> list[tuple[str, str, bool | str]]:
    """Issue 17's targets (and the bench's own) against the figures of one bench run: (target, figure, met)."""
    has = r.__contains__
    targets: list[tuple[str, str, bool | str]] = []
    if has("train_speedup_b1"):
        native = "native bf16" in r.get("cpu_kind", "native bf16")
        goal = 3.4 if native else 2.5  # issue 17's targets, per kind of CPU
        for batch in (1, 4):
            x = r[f"train_speedup_b{batch}"]
            targets.append((f"default at least {goal}x faster per image than plain fp32, batch {batch} (on a "
                            f"{'native bf16 CPU' if native else 'CPU without native bf16'})", f"{x:.2f}x", x >= goal))
        x = r["b4_vs_b1_per_image"]
        targets.append(("per-image time at batch 4 no worse than at batch 1", f"{x:.2f}x", x <= 1))
    for batch in (1, 4):
        if has(f"avx2_speedup_b{batch}"):
            x = r[f"avx2_speedup_b{batch}"]
            ceiling = (f" (at most {r[f'avx2_ceiling_b{batch}']:.2f}x at the default's roofline bound)"
                       if has(f"avx2_ceiling_b{batch}") else "")
            targets.append((f"default at least 2.5x faster per image than plain fp32, batch {batch}, AVX2 kernels "
                            "(emulated on this CPU)", f"{x:.2f}x{ceiling}", x >= 2.5))
    if has("study_d104_vs_before"):
        x = r["study_d104_vs_before"]
        targets.append(("the study's deep-net step at least 2x today's images per second", f"{x:.2f}x", x >= 2))
    if has("shared_default_slowdown"):
        x = r["shared_default_slowdown"]
        targets.append(("two default runs at once within 2x of one alone", f"{x:.2f}x", x <= 2))
    if has("paper_auto_hours") or has("paper_own_hours"):
        name = "auto" if has("paper_auto_hours") else "own"
        minutes = 60 * r[f"paper_{name}_hours"]
        target = f"experiment=paper under 90 minutes ({r[f'paper_{name}_precision']})"
        if name == "auto" and (again := paper_minutes_at_default_b4(r)) is not None:
            under = (minutes < 90) + (again < 90)
            targets.append((target, f"{minutes:.0f} min; {again:.0f} min at the default's batch-4 step",
                            "yes" if under == 2 else "in one of the two measurements" if under else False))
        else:
            targets.append((target, f"{minutes:.0f} min", minutes < 90))
    if has("data_vs_train_b1"):
        targets.append(("data pipeline faster than the train step", f"{r['data_vs_train_b1']:.0f}x",
                        r["data_vs_train_b1"] > 1))
    if has("gradflow_overhead"):
        targets.append(("gradient-flow tracking under 5 % of the step time", f"{100 * r['gradflow_overhead']:.2f} %",
                        r["gradflow_overhead"] < 0.05))
    if has("sweep_parallel_speedup"):
        x = r["sweep_parallel_speedup"]
        targets.append(("a 2-job parallel sweep not slower than the two in sequence", f"{x:.2f}x", x >= 1))
    for batch in (1, 4):
        s = "" if batch == 1 else "_b4"
        if has(f"checkpointing_mem_ratio{s}"):
            whole, own = r[f"checkpointing_mem_ratio{s}"], r[f"checkpointing_step_mem_ratio{s}"]
            targets.append((f"activation checkpointing at least halves peak memory, batch {batch}",
                            f"whole process {whole:.2f}x, the steps' own {own:.2f}x",
                            "yes" if whole <= 0.5 else "the steps' own only" if own <= 0.5 else False))
    if has("deep502_checkpointing_peak_mem_mb"):
        peak = r["deep502_checkpointing_peak_mem_mb"]
        targets.append(("a 500+ layer net at 512 x 512, batch 1, within 24 GiB", f"{peak:,.0f} MB", peak < 24 * 1024))
    return targets


def target_table(r: dict, column: str) -> list[str]:
    """``target_rows`` of one run as markdown table lines (none where the run has no target's figures)."""
    rows = [f"| {name} | {value} | {met if isinstance(met, str) else 'yes' if met else 'no'} |"
            for name, value, met in target_rows(r)]
    return [f"| target | {column} | met? |", "| --- | --- | --- |", *rows] if rows else []


def short_precision(name: str | None) -> str | None:
    """A torch dtype's name as the page writes it (bfloat16 -> bf16, float16 -> fp16)."""
    return {"bfloat16": "bf16", "float16": "fp16"}.get(name, name)


def train_step_table(r: dict) -> list[str]:
    """The paper net's train step, default against plain fp32, at batch 1 and 4: markdown table lines."""
    out = ["| batch | default | images/s | plain fp32 | speed-up | peak memory, default | peak memory, plain |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for batch in (1, 4):
        if f"train_s_per_img_b{batch}" in r:
            out.append(f"| {batch} | {r[f'train_s_per_img_b{batch}']:.3f} s/image | "
                       f"{r[f'train_img_per_s_b{batch}']:.2f} | {r[f'plain_s_per_img_b{batch}']:.3f} s/image | "
                       f"{r[f'train_speedup_b{batch}']:.2f}x | "
                       f"{r[f'peak_mem_mb_b{batch}']:,.0f} MB | {r[f'plain_peak_mem_mb_b{batch}']:,.0f} MB |")
    return out


def performance_page(results: dict) -> str:
    """docs/performance.md rendered from a bench results dict (the keys ``main`` writes; absent keys are skipped)."""
    r = results
    has = r.__contains__

    def mb(key: str) -> str:
        return f"{r[key]:,.0f} MB"

    out = [PAGE_HEADER]
    if r.get("cuda_device"):
        machine = r["cuda_device"]
    elif r.get("cpu"):
        generation = f" {r['cpu_generation']}" if r.get("cpu_generation") else ""
        machine = f"{r['cpu']}{generation} ({r.get('machine', '?')})"
    else:
        machine = f"{r.get('machine', '?')} CPU (model not recorded)"
    kind = f", CPU kind: {r['cpu_kind']}" if r.get("cpu_kind") else ""
    out.append(f"Measured on: {machine}{kind}, device `{r.get('device', '?')}`, {r.get('threads', '?')} threads, "
               f"torch {r.get('torch', '?')}.")
    if r.get("quick"):
        out.append("\n**A `--quick` run** (fewer repetitions): a smoke test of the bench, not figures to quote.")
    out.append("\n" + PAGE_METHOD)

    # which peak the fraction was taken against: recorded as `precision`, else the one the figures agree with
    precision = r.get("precision")
    if precision is None and has("flops_fraction_of_peak"):
        peaks = {k: r[f"peak_conv_gflops_{k}"] for k in ("bf16", "fp32") if has(f"peak_conv_gflops_{k}")}
        precision = min(peaks, key=lambda k: abs(r["achieved_gflops"] / peaks[k] - r["flops_fraction_of_peak"]),
                        default=None)
    precision = short_precision(precision)

    if has("train_s_per_img_b1"):
        out.append("## Train step\n")
        out.append("One training step (forward, soft Dice loss, backward, optimizer update) of the paper's net.\n")
        out.extend(train_step_table(r))
    if has("b4_vs_b1_per_image"):
        out.append(f"\nPer image, batch 4 takes {r['b4_vs_b1_per_image']:.2f}x the time of batch 1."
                   + (f" The default ran in {precision}." if precision else ""))

    if has("avx2_speedup_b1"):
        out.append("\n### With AVX2 kernels only (emulated)\n")
        out.append("The same steps with PyTorch's and oneDNN's kernels capped at AVX2 (`ATEN_CPU_CAPABILITY=avx2 "
                   "ONEDNN_MAX_CPU_ISA=AVX2`): the kernels an AVX2-only CPU runs, without native bf16 (so the "
                   f"default runs {r['avx2_precision']}), but on this machine's cores, caches and memory. It is not a "
                   "measurement of an AVX2 machine.\n")
        bounded = has("avx2_ceiling_b1")
        out.append("| batch | default | plain fp32 | speed-up |" + (" default's roofline bound | ceiling |" if bounded
                                                                     else ""))
        out.append("| ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if bounded else ""))
        for batch in (1, 4):
            out.append(f"| {batch} | {r[f'avx2_default_s_per_img_b{batch}']:.3f} s/image | "
                       f"{r[f'avx2_plain_s_per_img_b{batch}']:.3f} s/image | {r[f'avx2_speedup_b{batch}']:.2f}x |"
                       + (f" {r[f'avx2_bound_s_per_img_b{batch}']:.3f} s/image | {r[f'avx2_ceiling_b{batch}']:.2f}x |"
                          if bounded else ""))
        if bounded:
            out.append(f"\nThe bound is the default step's roofline under the same capped kernels, as in the next "
                       "section: each op costs the larger of its FLOPs over the best fp32 rate of the net's own 3x3 "
                       f"convolutions ({r['avx2_peak_gflops_fp32_b1']:.0f} GFLOP/s at batch 1, "
                       f"{r['avx2_peak_gflops_fp32_b4']:.0f} at batch 4) and its bytes over the memory bandwidth. "
                       "The ceiling is plain's step over that bound: the most any schedule of the default's own ops "
                       "could gain over plain in fp32 with these kernels. Beyond it, only fewer bytes or FLOPs would "
                       "help: element-wise work fused into the convolutions, or other arithmetic.")

    if has("achieved_gflops"):
        out.append("\n## The batch-1 step against this machine's limits\n")
        own_peak = has("conv_shapes")
        out.append("Model FLOPs counted by `torch.utils.flop_counter`. "
                   + (f"The peak is the best FLOP/s of the net's own {r['conv_shapes']} distinct 3x3 convolutions "
                      "(channels-last, forward and backward) measured in the same run; the bandwidth that of a "
                      "256 MiB copy. The roofline bound sums, over every aten op of one step (forward, backward, "
                      "optimizer), the larger of its FLOPs over the peak of its dtype and its bytes read and written "
                      "over the bandwidth: no step can beat it.\n" if own_peak else
                      "The peak is that of a large channels-last 3x3 convolution (forward) on the same machine.\n"))
        out.append("| what | GFLOP/s |")
        out.append("| --- | ---: |")
        out.append(f"| default step ({r['step_gflop_per_image']:.0f} GFLOP per image-step) | "
                   f"{r['achieved_gflops']:.0f} |")
        out.append(f"| plain fp32 step | {r['plain_achieved_gflops']:.0f} |")
        for key in ("fp32", "bf16"):
            if has(f"peak_conv_gflops_{key}"):
                where = ""
                if has(f"peak_conv_shape_{key}"):
                    n, c, h, w, k, stride, way = r[f"peak_conv_shape_{key}"]
                    where = f" ({way}, {n} x {c} x {h} x {w} to {k} channels{', stride 2' if stride == 2 else ''})"
                out.append(f"| measured convolution peak, {key}{where} | {r[f'peak_conv_gflops_{key}']:.0f} |")
        against = f"the measured {precision} peak" if precision else "the measured peak"
        out.append(f"\nThe default step runs at {100 * r['flops_fraction_of_peak']:.0f} % of {against}.")
        if has("roofline_bound_s_b1"):
            out.append(f" Its roofline bound is {1000 * r['roofline_bound_s_b1']:.0f} ms against "
                       f"{1000 * r['roofline_step_s_b1']:.0f} ms measured in the same process "
                       f"({100 * r['roofline_fraction_b1']:.0f} % of the bound's speed; bandwidth "
                       f"{r['bandwidth_gbs']:.0f} GB/s)."
                       + (f" A step at the bound would be {r['plain_s_per_img_b1'] / r['roofline_bound_s_b1']:.1f}x "
                          "plain fp32 at batch 1: the ceiling of any speed-up that keeps this precision and this "
                          "net's arithmetic, at the convolution rates measured here."
                          if has("plain_s_per_img_b1") else "")
                       + " Where the time goes (profiler self times):\n")
            out.append("| work | measured | roofline bound |")
            out.append("| --- | ---: | ---: |")
            out.extend(f"| {kind} | {ms:.0f} ms | {bound:.0f} ms |" for kind, ms, bound in r["where_time_goes_b1_ms"])

    if has("study_d104_img_per_s"):
        out.append("\n## The CPU study's shapes\n")
        out.append(f"One training step at `experiment=study_cpu`'s shape: {r['study_crop']} x {r['study_crop']} "
                   f"crops, batch {r['study_batch']}, width {r['study_width']}, {r['study_precision']} (the preset "
                   "pins it), cross-entropy, both skips, gradient flow off; two rounds of each arm.\n")
        before = r.get("study_before")
        out.append("| net | the preset | plain fp32 | speed-up | GFLOP a step | against today's code | "
                   "first-step loss vs plain |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for layers in (26, 104):
            k = f"study_d{layers}"
            vs = f"{r[f'{k}_vs_before']:.2f}x" if has(f"{k}_vs_before") else "-"
            out.append(f"| {layers} layers | {r[f'{k}_img_per_s']:.1f} img/s | {r[f'{k}_plain_img_per_s']:.1f} img/s "
                       f"| {r[f'{k}_speedup']:.2f}x | {r[f'{k}_gflop_per_step']:.1f} | {vs} | "
                       f"{r[f'{k}_loss_rel_diff']:.1e} |")
        out.append(f"\n*Today's code* is {before}." if before else
                   "\nNo figures of today's code to compare with (none committed; `--before REF` times a commit).")
        if has("study_d104_vs_eager"):
            out.append(f"\nThe preset compiles its step (`trainer.compile={r['study_compile']}`). "
                       "The table gives what the compile costs and what it gives back over one study run "
                       f"({r['study_steps']:,} steps, at the step time of both rounds pooled), against the same "
                       "preset eager (`trainer.compile=false`). *Cold* is each net's first compile, in a fresh "
                       "inductor cache of its own (a net's first run on a machine), *warm* the second, from the "
                       "cache:\n")
            out.append("| net | step, compiled against eager | compile, cold | compile, warm | "
                       "one run against eager, cold | one run against eager, warm |")
            out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
            for layers in (26, 104):
                k = f"study_d{layers}"
                out.append(f"| {layers} layers | {r[f'{k}_vs_eager']:.2f}x | {r[f'{k}_compile_cold_s']:.0f} s | "
                           f"{r[f'{k}_compile_warm_s']:.0f} s | {r[f'{k}_run_vs_eager_cold']:.2f}x | "
                           f"{r[f'{k}_run_vs_eager_warm']:.2f}x |")
        out.append("\nThe ops with the most self time in one step of the deep net, the preset, in the process "
                   "that compiled it (ms; the backward graph's self time includes the convolution backward it calls "
                   "from the generated C++, while the forward's convolutions show as `aten::mkldnn_convolution`): "
                   + ", ".join(f"`{op}` {ms:.0f}" for op, ms in r["study_d104_profile_ms"]) + ".")

    if has("shared_default_slowdown"):
        out.append("\n## A shared CPU\n")
        out.append("Two default runs (`skipexp trainer.epochs=4`) started together, against one alone (wall "
                   "time of the slower of the two, start-up included).\n")
        out.append("| threads | one alone | two at once | slowdown |")
        out.append("| --- | ---: | ---: | ---: |")
        for name, what in (("default", "skipexp's default: the cores shared between the runs"),
                           ("all_cores", "every run on all the cores (`trainer.threads` = the cores)")):
            out.append(f"| {what} | {r[f'shared_{name}_alone_s']:.0f} s | {r[f'shared_{name}_pair_s']:.0f} s | "
                       f"{r[f'shared_{name}_slowdown']:.2f}x |")

    if has("paper_image_steps"):
        out.append("\n## The paper's recipe here\n")
        out.append(f"`experiment=paper` trains {r['paper_image_steps']:,} image-steps (500 epochs of the 26 "
                   f"training sections) at batch {r['paper_batch']}; projected wall time = image-steps x the measured "
                   "time per image of its step (validation not counted)" +
                   (", its steps measured in the train step's two rounds above, pooled like theirs" if
                    has("paper_in_rounds") else "") + ".\n")
        out.append("| precision | s per image | projected |")
        out.append("| --- | ---: | ---: |")
        for name in ("own", "auto"):
            if has(f"paper_{name}_hours"):
                label = r[f"paper_{name}_precision"] + (" (the preset's own)" if name == "own" else
                                                        " (`trainer.precision=auto`)")
                out.append(f"| {label} | {r[f'paper_{name}_s_per_img']:.3f} | {60 * r[f'paper_{name}_hours']:.0f} "
                           "min |")
        if (minutes := paper_minutes_at_default_b4(r)) is not None:
            out.append(f"\nThe default's batch-4 step above is the same net in the same precision (only the weight "
                       f"decay's value differs, which does not change what a step computes): at its "
                       f"{r['train_s_per_img_b4']:.3f} s per image the recipe would take {minutes:.0f} min. The two "
                       f"steps differ by {r['paper_auto_s_per_img'] / r['train_s_per_img_b4'] - 1:+.0%}: how far two "
                       "measurements of one step spread on this machine, and so how uncertain the projection is.")

    if has("checkpointing_mem_ratio"):
        out.append("\n## Activation checkpointing\n")
        out.append("`model.checkpointing=true`: each stage keeps only its input and is recomputed in the backward "
                   "pass. Peak memory of the whole process under `trainer.allocator=release` (where resident memory "
                   "follows the live tensors); *the steps' own* is the peak minus the memory held before the first "
                   "step (interpreter, libraries, model).\n")
        out.append("| batch | peak, off | peak, on | ratio | the steps' own, ratio | time, on vs off | "
                   "peak under the default allocator, off / on |")
        out.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for batch in (1, 4):
            s = "" if batch == 1 else "_b4"
            if not has(f"checkpointing_mem_ratio{s}"):
                continue
            own = f"{r[f'checkpointing_step_mem_ratio{s}']:.2f}x"
            if has(f"release_step_mb_b{batch}"):
                own = (f"{r[f'release_checkpointing_step_mb_b{batch}']:,.0f} vs {r[f'release_step_mb_b{batch}']:,.0f}"
                       f" MB: {own}")
            out.append(f"| {batch} | {mb(f'release_peak_mem_mb_b{batch}')} | "
                       f"{mb(f'release_checkpointing_peak_mem_mb_b{batch}')} | "
                       f"{r[f'checkpointing_mem_ratio{s}']:.2f}x | "
                       f"{own} | {r[f'checkpointing_time_ratio{s}']:.2f}x | {r[f'peak_mem_mb_b{batch}']:,.0f} / "
                       f"{r[f'checkpointing_peak_mem_mb_b{batch}']:,.0f} MB |")
        if has("deep502_checkpointing_peak_mem_mb"):
            out.append(f"\nA 502-layer net (`depth=502`, width 32, 512 x 512, batch 1) with checkpointing: peak "
                       f"{mb('deep502_checkpointing_peak_mem_mb')}, {r['deep502_checkpointing_step_s']:.1f} s a step.")

    rows = []
    if has("gradflow_overhead"):
        every = f"every {r['gradflow_every']} steps" if has("gradflow_every") else "at the default `gradflow.every`"
        detail = (f"; {1000 * r['gradflow_record_s']:.0f} ms per record against {r['gradflow_step_s']:.2f} s a step"
                  if has("gradflow_record_s") else "")
        rows.append((f"gradient-flow tracking, {every}", f"{100 * r['gradflow_overhead']:.2f} % of the step time"
                     f"{detail}; per-epoch update statistics {1000 * r['gradflow_epoch_s']:.0f} ms"))
    if has("data_samples_per_s"):
        rows.append(("augmentation of whole 512 x 512 sections (rotation, shear, flips), main process",
                     f"{r['data_samples_per_s']:.0f} samples/s, {r['data_vs_train_b1']:.0f}x what the batch-1 "
                     f"train step consumes"))
    if has("predict_volume_s"):
        rows.append(("probability maps of the 30 x 512 x 512 test volume (`mode=predict`)",
                     f"{r['predict_volume_s']:.1f} s; with flip TTA {r['predict_volume_tta_s']:.1f} s"))
    if has("metrics_volume_s"):
        rows.append(("V_rand and V_info of a 30 x 512 x 512 volume, all 11 thresholds",
                     f"{r['metrics_volume_s']:.1f} s"))
    if has("sweep_parallel_speedup"):
        rows.append(("a 2-job sweep (two seeds of a small synthetic run, 24 epochs each), "
                     "`hydra/launcher=joblib` against one job after the other (each the mean of two alternated tries)",
                     f"{r['sweep_parallel_s']:.0f} s against {r['sweep_sequential_s']:.0f} s: "
                     f"{r['sweep_parallel_speedup']:.2f}x"))
    if rows:
        out.append("\n## Around the train step\n")
        data = {True: "the ISBI 2012 stacks", False: "random stand-ins of the ISBI 2012 stacks' shape (the stacks "
                "were absent)"}.get(r.get("isbi2012_stacks"), "the ISBI 2012 stacks where present")
        out.append(f"Augmentation, inference and metrics read {data}. Inference runs the default configuration's "
                   "network; the metrics score a noisy copy of the training labels.\n")
        out.append("| what | measured |")
        out.append("| --- | --- |")
        out.extend(f"| {name} | {value} |" for name, value in rows)

    if has("profile_plain_b1_ms") and has("profile_default_b1_ms"):
        out.append("\n## Where the batch-1 step's time goes\n")
        out.append("The six ops with the most self time in one step (`torch.profiler`), in ms.\n")
        out.append("| plain fp32 | ms | default | ms |")
        out.append("| --- | ---: | --- | ---: |")
        for (p, pms), (d, dms) in zip(r["profile_plain_b1_ms"], r["profile_default_b1_ms"], strict=False):
            out.append(f"| `{p}` | {pms:.0f} | `{d}` | {dms:.0f} |")

    if targets := target_table(r, "this run"):
        out.append("\n## Against the targets\n")
        out.extend(targets)
    for kind, other in r.get("other_kinds", {}).items():
        out.extend(other_kind_section(kind, other))
    return "\n".join(out) + "\n"


def other_kind_section(kind: str, r: dict) -> list[str]:
    """The last figures of another machine (kind and generation), kept from an earlier bench (``other_kinds``)."""
    when = f"on {r['date']}" if r.get("date") else "before the bench recorded its date"
    commit = (f" at commit {r['commit']}" if r.get("commit") else
              f" (committed in {r['committed_in']})" if r.get("committed_in") else "")
    generation = ("" if r.get("cuda_device") or r.get("cpu_generation") else
                  " Its CPU generation was not recorded; two generations of one kind can differ by 2x.")
    out = [f"\n## The last figures of another machine: {kind}\n",
           f"This run measured one machine only. The figures below are the last `make bench` on {kind} "
           f"({r.get('cpu') or r.get('cuda_device') or r.get('machine', '?')}, torch {r.get('torch', '?')}), "
           f"measured {when}{commit}, kept in bench/results.json under `other_kinds`.{generation}\n"]
    if "train_s_per_img_b1" in r:
        precision = short_precision(r.get("precision"))
        out.append(f"The paper net's train step (the default ran in {precision}):\n" if precision else
                   "The paper net's train step:\n")
        out.extend(train_step_table(r))
    if targets := target_table(r, "that run"):
        out += ["", *targets]
    return out


def machine_kind(results: dict) -> str | None:
    """What a bench run's figures are figures of: the GPU where one ran them, else the CPU's kind and, where
    recorded, its generation (two CPUs of one kind, e.g. Zen 4 and Zen 5 with native bf16, differ by 2x)."""
    if results.get("cuda_device"):
        return results["cuda_device"]
    kind, generation = results.get("cpu_kind"), results.get("cpu_generation")
    return f"{kind}, {results.get('cpu') or 'CPU'} {generation}" if kind and generation else kind


def other_kinds(committed: dict, kind: str | None) -> dict[str, dict]:
    """The last figures of every kind of machine other than ``kind``: those the committed results carried, and
    the committed run itself where it measured another kind. A bench on one kind so keeps the others' last
    figures instead of overwriting them."""
    kept = {k: v for k, v in committed.get("other_kinds", {}).items() if k != kind}
    own = machine_kind(committed)
    if own and own != kind:
        kept[own] = {k: v for k, v in committed.items() if k != "other_kinds"}
    return kept


def write_performance_page(results: dict, path: Path) -> None:
    """Write docs/performance.md (or ``path``) from a bench results dict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(performance_page(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke test of the bench)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "performance.md",
                        help="the Markdown page written from the results (default docs/performance.md)")
    parser.add_argument("--page-only", action="store_true",
                        help="measure nothing: render --page from an existing --out results.json")
    parser.add_argument("--before", metavar="REF",
                        help="also time the study's shapes on this earlier commit (today's code), side by side")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=SIZE, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.overrides, args.batch, args.repeats, args.size)))
        return
    if args.page_only:
        write_performance_page(json.loads(args.out.read_text()), args.page)
        print(f"wrote {args.page} from {args.out}")
        return

    repeats = 2 if args.quick else 5
    paper = ["depth=paper", "model.width=32", "gradflow.enabled=false"]
    device = Runtime.from_config(compose_config([]).trainer).device
    results: dict = {"machine": platform.processor() or platform.machine(), "device": str(device),
                     "cuda_device": torch.cuda.get_device_name() if device.type == "cuda" else None,
                     "torch": torch.__version__, "threads": torch.get_num_threads()}
    results["cpu"] = cpu_model()
    results["cpu_generation"] = cpu_generation()
    results["cpu_kind"] = limits.cpu_kind()
    results["date"] = time.strftime("%Y-%m-%d")
    results["commit"] = head_commit()
    if args.quick:
        results["quick"] = True
    rows: list[tuple[str, str, str]] = []

    # train step of the paper's net: skipexp's default configuration vs plain eager fp32 (trainer=plain)
    # two rounds of plain, default and default with checkpointing at batch 1 and 4, each figure the median over
    # all their steps: a slow spell of a shared machine then hits every configuration, not one (the speedups, the
    # batch-4-vs-1 ratio and checkpointing's time cost)
    # experiment=paper's own step, in its precision and in auto's, joins the rounds for its projected wall time
    overrides = {"plain": [*paper, "trainer=plain"], "default": paper,
                 "checkpointing": [*paper, "model.checkpointing=true"],
                 **{f"paper-{name}": extra for name, extra in PAPER_RUNS.items()}}
    paper_batch = paper_recipe()[1]
    configs = [(kind, batch) for batch in (1, 4) for kind in overrides if not kind.startswith("paper-")]
    configs += [(f"paper-{name}", paper_batch) for name in PAPER_RUNS]
    rounds = [[run_child(kind, overrides[kind], batch, repeats) for kind, batch in configs] for _ in range(2)]
    merged = dict(zip(configs, (pooled(runs) for runs in zip(*rounds, strict=True)), strict=True))
    steps = {batch: (merged["plain", batch], merged["default", batch]) for batch in (1, 4)}
    for batch in (1, 4):
        plain, default = steps[batch]
        per_image, plain_per_image = default["step_s"] / batch, plain["step_s"] / batch
        results[f"train_s_per_img_b{batch}"] = per_image
        results[f"train_img_per_s_b{batch}"] = 1 / per_image
        results[f"plain_s_per_img_b{batch}"] = plain_per_image
        results[f"train_speedup_b{batch}"] = plain_per_image / per_image
        results[f"peak_mem_mb_b{batch}"] = default["peak_mb"]
        results[f"plain_peak_mem_mb_b{batch}"] = plain["peak_mb"]
        rows.append((f"train step, paper net 512x512, batch {batch}", f"{per_image:.3f} s/image",
                     f"{1 / per_image:.2f} img/s ({default['precision']}); plain fp32 {plain_per_image:.3f} s/image: "
                     f"speedup {results[f'train_speedup_b{batch}']:.2f}x; peak {default['peak_mb']:.0f} MB "
                     f"(plain {plain['peak_mb']:.0f} MB)"))
    results["precision"] = steps[1][1]["precision"]
    results["b4_vs_b1_per_image"] = results["train_s_per_img_b4"] / results["train_s_per_img_b1"]

    # the same against plain with the kernels capped at AVX2, where this CPU has AVX-512: an AVX2-only CPU's kernels
    if device.type == "cpu" and "avx512f" in limits.cpu_flags():
        results.update(avx2_class(paper, max(2, repeats // 2)))
        for batch in (1, 4):
            rows.append((f"train step, AVX2 kernels (emulated), batch {batch}",
                         f"{results[f'avx2_default_s_per_img_b{batch}']:.3f} s/image",
                         f"{results['avx2_precision']}; plain fp32 {results[f'avx2_plain_s_per_img_b{batch}']:.3f} "
                         f"s/image: speedup {results[f'avx2_speedup_b{batch}']:.2f}x; roofline bound "
                         f"{results[f'avx2_bound_s_per_img_b{batch}']:.3f} s/image: at most "
                         f"{results[f'avx2_ceiling_b{batch}']:.2f}x"))

    # honest limits, measured here: the peak of the net's own 3x3 convolutions (forward and backward) in the
    # default's precision and in fp32, the memory bandwidth, and the roofline bound of the default batch-1 step
    plain1, default1 = steps[1]
    flops = default1["flops"]
    dtypes = {"fp32": torch.float32}
    if device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        dtypes["bf16"] = torch.bfloat16
    cfg = compose_config(paper)
    step, model, image, _ = train_step_fn(cfg, 1)  # the default batch-1 step, in this process (gradient flow too)
    peaks, bytes_per_s, bound = step_limits(step, model, image, dtypes, repeats, device)
    step_s = median_time(step, repeats)  # this process's step, profiled beside its bound
    split = limits.where_time_goes(self_times(step), bound, step_s)
    peak = peaks["bf16" if default1["precision"] == "bfloat16" else "fp32"]["flops"]
    results["step_gflop_per_image"] = flops / 1e9
    results["achieved_gflops"] = flops / default1["step_s"] / 1e9
    results["plain_achieved_gflops"] = flops / plain1["step_s"] / 1e9
    for name, p in peaks.items():
        results[f"peak_conv_gflops_{name}"] = p["flops"] / 1e9
        results[f"peak_conv_shape_{name}"] = [*p["shape"], p["direction"]]
    results["conv_shapes"] = len(peaks["fp32"]["rates"])
    results["bandwidth_gbs"] = bytes_per_s / 1e9
    results["flops_fraction_of_peak"] = flops / default1["step_s"] / peak
    results["roofline_bound_s_b1"] = bound["bound_s"]
    results["roofline_fraction_b1"] = bound["bound_s"] / step_s
    results["roofline_step_s_b1"] = step_s
    results["where_time_goes_b1_ms"] = split
    results["profile_plain_b1_ms"] = plain1["profile"]
    results["profile_default_b1_ms"] = default1["profile"]
    rows.append(("model FLOP/s of the batch-1 step", f"{results['achieved_gflops']:.0f} GFLOP/s",
                 f"{flops / 1e9:.0f} GFLOP per image-step; {100 * results['flops_fraction_of_peak']:.0f}% of the "
                 f"{default1['precision']} peak of the net's own 3x3 convolutions ("
                 + ", ".join(f"{k} {p['flops'] / 1e9:.0f}" for k, p in peaks.items()) + " GFLOP/s); plain fp32 "
                 f"{results['plain_achieved_gflops']:.0f} GFLOP/s"))
    rows.append(("roofline bound of the batch-1 step", f"{bound['bound_s']:.3f} s",
                 f"{100 * results['roofline_fraction_b1']:.0f}% of the measured {step_s:.3f} s; bandwidth "
                 f"{bytes_per_s / 1e9:.0f} GB/s; " + "; ".join(f"{k} {m:.0f} ms (bound {b:.0f})" for k, m, b in split)))

    # activation checkpointing: time under the default allocator (from the rounds above); memory under
    # trainer.allocator=release in both arms, where resident memory follows the live tensors (glibc's retained heap
    # would hide what is freed)
    for batch in (1, 4):
        suffix = "" if batch == 1 else "_b4"
        ckpt = merged["checkpointing", batch]
        results[f"checkpointing_time_ratio{suffix}"] = ckpt["step_s"] / steps[batch][1]["step_s"]
        results[f"checkpointing_peak_mem_mb_b{batch}"] = ckpt["peak_mb"]
        results[f"checkpointing_retain_mem_ratio{suffix}"] = ckpt["peak_mb"] / results[f"peak_mem_mb_b{batch}"]
        release = [run_child(kind, [*paper, "trainer.allocator=release", f"model.checkpointing={on}"], batch, 1)
                   for kind, on in (("release", "false"), ("release-checkpointing", "true"))]
        without, with_ = release
        results[f"release_peak_mem_mb_b{batch}"] = without["peak_mb"]
        results[f"release_checkpointing_peak_mem_mb_b{batch}"] = with_["peak_mb"]
        results[f"checkpointing_mem_ratio{suffix}"] = with_["peak_mb"] / without["peak_mb"]
        results[f"checkpointing_step_mem_ratio{suffix}"] = with_["step_mb"] / without["step_mb"]
        results[f"release_step_mb_b{batch}"] = without["step_mb"]
        results[f"release_checkpointing_step_mb_b{batch}"] = with_["step_mb"]
        rows.append((f"activation checkpointing, batch {batch}", f"{with_['peak_mb']:.0f} MB",
                     f"{results[f'checkpointing_mem_ratio{suffix}']:.2f}x the peak memory ({without['peak_mb']:.0f} "
                     f"MB; the steps' own {with_['step_mb']:.0f} vs {without['step_mb']:.0f} MB: "
                     f"{results[f'checkpointing_step_mem_ratio{suffix}']:.2f}x) at "
                     f"{results[f'checkpointing_time_ratio{suffix}']:.2f}x the time; default allocator "
                     f"{ckpt['peak_mb']:.0f} vs {results[f'peak_mem_mb_b{batch}']:.0f} MB"))
    deep = run_child("deep502", ["depth=502", "model.width=32", "gradflow.enabled=false", "model.checkpointing=true"],
                     1, 2)
    results["deep502_checkpointing_peak_mem_mb"] = deep["peak_mb"]
    results["deep502_checkpointing_step_s"] = deep["step_s"]
    rows.append(("502-layer net, 512x512, batch 1, checkpointing", f"{deep['peak_mb']:.0f} MB",
                 f"{deep['step_s']:.1f} s/step"))

    # gradient-flow tracking at the default interval: its own work timed directly, against the default step
    every = int(compose_config([]).gradflow.every)
    t_step = step_s
    from torch.utils.tensorboard import SummaryWriter

    flow = GradFlow(model, every)
    writer = SummaryWriter(tempfile.mkdtemp(prefix="skipexp-bench-tb-"))
    t_record = median_time(lambda: flow.log_step(writer, 1, flow.record_gradients(1)), 3 * repeats)
    t_epoch = median_time(lambda: (flow.start_epoch(), flow.end_epoch(1)), repeats)
    results["gradflow_overhead"] = t_record / (every * t_step)
    results["gradflow_epoch_s"] = t_epoch
    results["gradflow_every"] = every
    results["gradflow_record_s"] = t_record
    results["gradflow_step_s"] = t_step
    rows.append((f"gradient-flow tracking (every {every} steps)", f"{100 * results['gradflow_overhead']:.2f} %",
                 f"{1000 * t_record:.0f} ms per record vs {t_step:.2f} s/step; per-epoch update stats "
                 f"{1000 * t_epoch:.0f} ms"))

    # data pipeline: the paper's augmentation of whole 512 x 512 sections vs what the train step consumes
    results["isbi2012_stacks"] = all((ISBI / name).is_file()
                                     for name in ("train-volume.tif", "train-labels.tif", "test-volume.tif"))
    volume = isbi_volume("train-volume.tif")
    labels = (isbi_volume("train-labels.tif") == 0).astype(np.uint8)
    augment = Augmenter.from_config(cfg.augment, crop=0)
    dataset = SegmentationSet(list(volume[:, None]), list(labels), None, augment)
    n = 26
    per_sample = median_time(lambda: [dataset[i] for i in range(n)], repeats) / n
    results["data_samples_per_s"] = 1 / per_sample
    results["data_vs_train_b1"] = results["data_samples_per_s"] / results["train_img_per_s_b1"]
    rows.append(("augmented samples (the paper's augmentation, 512x512)", f"{1 / per_sample:.0f} samples/s",
                 f"{results['data_vs_train_b1']:.0f}x what the batch-1 train step consumes"))

    # inference on the 30-slice test volume, plain and with flip TTA
    test = isbi_volume("test-volume.tif")
    runtime = measuring_runtime(cfg.trainer)
    runtime.apply()
    images = [torch.from_numpy(standardise(im[None])) for im in test]

    def predict(tta: bool) -> None:
        for image in images:
            membrane_probability(model, image, runtime, Inference(0, 0, tta))

    results["predict_volume_s"] = median_time(lambda: predict(False), max(1, repeats // 2))
    results["predict_volume_tta_s"] = median_time(lambda: predict(True), 1, warmup=0)
    rows.append(("predict 30x512x512 test volume", f"{results['predict_volume_s']:.1f} s",
                 f"flip TTA {results['predict_volume_tta_s']:.1f} s"))

    # the challenge metrics on the 30-slice training volume, all 11 thresholds
    rng = np.random.default_rng(0)
    proposal = np.clip((labels == 0) + rng.normal(0, 0.3, labels.shape), 0, 1).astype(np.float32)
    truth = np.where(labels == 1, 0, 255).astype(np.uint8)
    results["metrics_volume_s"] = median_time(lambda: challenge_scores(proposal, truth), 1, warmup=0)
    rows.append(("V_rand + V_info, 30x512x512, 11 thresholds", f"{results['metrics_volume_s']:.1f} s", ""))

    # a 2-job sweep: in parallel (joblib, cores split between the jobs) vs one job after the other
    if device.type == "cpu":
        # alternated twice, so that a slow spell of the machine hits both
        with tempfile.TemporaryDirectory(prefix="skipexp-bench-sweep-") as tmp:
            walls = [(sweep_wall(False, Path(tmp) / str(i)), sweep_wall(True, Path(tmp) / str(i))) for i in range(2)]
        sequential, parallel = zip(*walls, strict=True)
        results["sweep_sequential_s"] = statistics.mean(sequential)
        results["sweep_parallel_s"] = statistics.mean(parallel)
        results["sweep_parallel_speedup"] = results["sweep_sequential_s"] / results["sweep_parallel_s"]
        rows.append(("2-job sweep, joblib parallel vs sequential", f"{results['sweep_parallel_s']:.0f} s",
                     f"sequential {results['sweep_sequential_s']:.0f} s: {results['sweep_parallel_speedup']:.2f}x"))

    # the CPU study's shapes: the default against plain, and against today's code (a commit run here, with
    # --before REF, else the figures of the last committed bench/results.json)
    committed = committed_results()
    with tempfile.TemporaryDirectory(prefix="skipexp-bench-before-") as tmp:
        before, sha = checkout(args.before, Path(tmp)) if args.before else (None, None)
        results.update(study_shapes(repeats, before, Path(tmp) / "inductor-cache"))
    for layers in STUDY_DEPTHS:
        key = f"study_d{layers}"
        if not args.before and f"{key}_img_per_s" in committed:
            results[f"{key}_vs_before"] = results[f"{key}_img_per_s"] / committed[f"{key}_img_per_s"]
        shape = f"{results['study_crop']}x{results['study_crop']}, batch {results['study_batch']}"
        rows.append((f"study step, {layers} layers, {shape}, width {results['study_width']}",
                     f"{results[f'{key}_img_per_s']:.1f} img/s",
                     f"plain {results[f'{key}_plain_img_per_s']:.1f} img/s: {results[f'{key}_speedup']:.2f}x"
                     + (f"; {results[f'{key}_vs_before']:.2f}x today's code" if f"{key}_vs_before" in results else "")
                     + f"; first-step loss within {results[f'{key}_loss_rel_diff']:.1e} of plain fp32"
                     + f"; compiled {results[f'{key}_vs_eager']:.2f}x eager after a compile of "
                       f"{results[f'{key}_compile_cold_s']:.0f} s cold, {results[f'{key}_compile_warm_s']:.0f} s warm"))
    results["study_before"] = (f"commit {sha[:10]} ({args.before}), run in this bench" if args.before
                               else "the last committed bench/results.json" if "study_d104_img_per_s" in committed
                               else None)

    # a shared CPU: two default runs started together against one alone
    if device.type == "cpu":
        with tempfile.TemporaryDirectory(prefix="skipexp-bench-shared-") as tmp:
            results.update(shared_cpu(Path(tmp)))
        rows.append(("two default runs at once vs one alone", f"{results['shared_default_slowdown']:.2f}x",
                     f"{results['shared_default_pair_s']:.0f} vs {results['shared_default_alone_s']:.0f} s; every run "
                     f"on all cores {results['shared_all_cores_slowdown']:.2f}x "
                     f"({results['shared_all_cores_pair_s']:.0f} vs {results['shared_all_cores_alone_s']:.0f} s)"))

    # the paper's recipe: its projected wall time on this machine
    results.update(paper_projection({name: merged[f"paper-{name}", paper_batch] for name in PAPER_RUNS}))
    results["paper_in_rounds"] = True
    for name in ("own", "auto"):
        if f"paper_{name}_hours" in results:
            rows.append((f"experiment=paper projected, {results[f'paper_{name}_precision']}",
                         f"{60 * results[f'paper_{name}_hours']:.0f} min",
                         f"{results['paper_image_steps']:,} image-steps x {results[f'paper_{name}_s_per_img']:.3f} s"
                         f" per image at batch {results['paper_batch']}"))

    width = max(len(r[0]) for r in rows)
    where = results["cuda_device"] or results["machine"]
    print(f"skipexp bench on {where} ({results['threads']} threads), CPU kind: {results['cpu_kind']}, "
          f"torch {results['torch']}")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>16}  {note}")
    for kind in ("plain", "default"):
        ops = ", ".join(f"{op} {ms:.0f}" for op, ms in results[f"profile_{kind}_b1_ms"])
        print(f"  top ops of the batch-1 step, {kind} (self ms): {ops}")
    if kept := other_kinds(committed, machine_kind(results)):
        results["other_kinds"] = kept
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    write_performance_page(results, args.page)
    print(f"wrote {args.out} and {args.page}")


if __name__ == "__main__":
    main()
