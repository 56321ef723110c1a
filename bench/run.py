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
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from skipexp.build import build_network
from skipexp.config import compose_config
from skipexp.data.augment import Augmenter
from skipexp.data.common import SegmentationSet, standardise
from skipexp.evaluate import Inference, membrane_probability
from skipexp.gradflow import GradFlow
from skipexp.losses import soft_dice_loss
from skipexp.metrics import challenge_scores
from skipexp.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012"
SIZE = 512


def call_times(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    return statistics.median(call_times(fn, repeats, warmup))


def isbi_volume(name: str) -> np.ndarray:
    import tifffile

    path = ISBI / name
    if path.is_file():
        return tifffile.imread(path)
    rng = np.random.default_rng(0)  # shape-alike stand-in where the shared data are absent
    return (rng.random((30, SIZE, SIZE)) * 255).astype(np.uint8)


def train_step_fn(cfg, batch: int):
    """One training step of the configured net (forward, Dice loss, backward, optimizer), as the trainer runs it."""
    from skipexp.optim import build_optimizer

    runtime = Runtime.from_config(cfg.trainer)
    runtime.apply()  # threads and malloc mode, as a run sets them
    torch.manual_seed(0)
    model = build_network(cfg.model, cfg.depth, 1, runtime)
    model.train()
    net = runtime.compile(model)
    optimizer, _ = build_optimizer(cfg.optimizer, model.parameters(), 1, runtime.fused_optimizer)
    image = runtime.to_device(torch.randn(batch, 1, SIZE, SIZE))
    label = runtime.to_device((torch.rand(batch, 1, SIZE, SIZE) < 0.22).float())

    def step() -> None:
        with runtime.autocast():
            logits = net(image)
        loss = soft_dice_loss(logits, label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()

    return step, model, image, runtime


def top_ops(step, n: int = 6) -> list[tuple[str, float]]:
    """The ``n`` ops with the most self time in one step (ms), from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        step()
    device_time = torch.cuda.is_available()
    events = sorted(prof.key_averages(), key=lambda e: e.self_device_time_total if device_time
                    else e.self_cpu_time_total, reverse=True)
    return [(e.key, round((e.self_device_time_total if device_time else e.self_cpu_time_total) / 1000, 1))
            for e in events[:n]]


def rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def child(kind: str, overrides: list[str], batch: int, repeats: int) -> dict:
    """Run one train-step measurement in this (child) process; report times, peak memory, FLOPs and a profile.

    ``peak_mb`` is the whole process's peak (RSS on CPU, max allocated on CUDA); ``step_mb`` is the part of it
    the training steps added on top of what the process held before its first step (interpreter, libraries,
    the built model): activations, gradients, optimizer state and temporaries.
    """
    from torch.utils.flop_counter import FlopCounterMode

    cfg = compose_config(overrides)
    step, _, _, runtime = train_step_fn(cfg, batch)
    before_mb = torch.cuda.memory_allocated() / 2**20 if runtime.device.type == "cuda" else rss_mb()
    started = time.perf_counter()
    step()  # warm-up (and the compile, when trainer.compile is on)
    first_s = time.perf_counter() - started
    times = call_times(step, repeats)
    if runtime.device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"kind": kind, "batch": batch, "step_s": statistics.median(times), "times": times, "first_step_s": first_s,
           "peak_mb": peak_mb, "step_mb": peak_mb - before_mb,
           "precision": "fp32" if runtime.amp_dtype is None else str(runtime.amp_dtype).removeprefix("torch.")}
    if batch == 1 and kind in ("plain", "default"):
        with FlopCounterMode(display=False) as counter:
            step()
        out["flops"] = counter.get_total_flops()
        out["profile"] = top_ops(step)
    return out


def run_child(kind: str, overrides: list[str], batch: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--batch", str(batch), "--repeats",
                          str(repeats), "--", *overrides], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bench child {kind} batch {batch} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def pooled(runs: tuple[dict, ...]) -> dict:
    """Children of one configuration as one measurement: the median over all their steps, the highest peak."""
    times = [t for run in runs for t in run["times"]]
    return dict(runs[0], times=times, step_s=statistics.median(times), peak_mb=max(run["peak_mb"] for run in runs))


def conv_peak(dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """FLOP/s of a large channels-last 3x3 convolution (forward), this machine's practical peak for ``dtype``."""
    batch, channels, size = 4, 256, 128
    x = torch.randn(batch, channels, size, size, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device, dtype)
    conv = conv.to(memory_format=torch.channels_last)
    flops = 2 * batch * channels * channels * 9 * size * size

    def run() -> None:
        with torch.no_grad():
            conv(x)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return flops / median_time(run, repeats)


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


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), or None where it is not readable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


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
        machine = f"{r['cpu']} ({r.get('machine', '?')})"
    else:
        machine = f"{r.get('machine', '?')} CPU (model not recorded)"
    out.append(f"Measured on: {machine}, device `{r.get('device', '?')}`, {r.get('threads', '?')} threads, "
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
    precision = {"bfloat16": "bf16", "float16": "fp16"}.get(precision, precision)

    if has("train_s_per_img_b1"):
        out.append("## Train step\n")
        out.append("One training step (forward, soft Dice loss, backward, optimizer update) of the paper's net.\n")
        out.append("| batch | default | images/s | plain fp32 | speed-up | peak memory, default | peak memory, plain |")
        out.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in (1, 4):
        if has(f"train_s_per_img_b{batch}"):
            out.append(f"| {batch} | {r[f'train_s_per_img_b{batch}']:.3f} s/image | "
                       f"{r[f'train_img_per_s_b{batch}']:.2f} | {r[f'plain_s_per_img_b{batch}']:.3f} s/image | "
                       f"{r[f'train_speedup_b{batch}']:.2f}x | "
                       f"{mb(f'peak_mem_mb_b{batch}')} | {mb(f'plain_peak_mem_mb_b{batch}')} |")
    if has("b4_vs_b1_per_image"):
        out.append(f"\nPer image, batch 4 takes {r['b4_vs_b1_per_image']:.2f}x the time of batch 1."
                   + (f" The default ran in {precision}." if precision else ""))

    if has("achieved_gflops"):
        out.append("\n## Arithmetic rate of the batch-1 step\n")
        out.append("Model FLOPs counted by `torch.utils.flop_counter`; the peak is that of a large channels-last "
                   "3x3 convolution (forward) on the same machine.\n")
        out.append("| what | GFLOP/s |")
        out.append("| --- | ---: |")
        out.append(f"| default step ({r['step_gflop_per_image']:.0f} GFLOP per image-step) | "
                   f"{r['achieved_gflops']:.0f} |")
        out.append(f"| plain fp32 step | {r['plain_achieved_gflops']:.0f} |")
        for key, name in (("fp32", "fp32"), ("bf16", "bf16")):
            if has(f"peak_conv_gflops_{key}"):
                out.append(f"| measured convolution peak, {name} | {r[f'peak_conv_gflops_{key}']:.0f} |")
        against = f"the measured {precision} peak" if precision else "the measured peak"
        out.append(f"\nThe default step runs at {100 * r['flops_fraction_of_peak']:.0f} % of {against}.")

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

    targets = []
    if has("train_speedup_b1"):
        for batch in (1, 4):
            x = r[f"train_speedup_b{batch}"]
            targets.append((f"default at least 3x faster per image than plain fp32, batch {batch}", f"{x:.2f}x",
                            x >= 3))
        x = r["b4_vs_b1_per_image"]
        targets.append(("per-image time at batch 4 no worse than at batch 1", f"{x:.2f}x", x <= 1))
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
    if targets:
        out.append("\n## Against the targets\n")
        out.append("| target | this run | met? |")
        out.append("| --- | --- | --- |")
        for name, value, met in targets:
            verdict = met if isinstance(met, str) else "yes" if met else "no"
            out.append(f"| {name} | {value} | {verdict} |")
    return "\n".join(out) + "\n"


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
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.overrides, args.batch, args.repeats)))
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
    if args.quick:
        results["quick"] = True
    rows: list[tuple[str, str, str]] = []

    # train step of the paper's net: skipexp's default configuration vs plain eager fp32 (trainer=plain)
    # two rounds of plain, default and default with checkpointing at batch 1 and 4, each figure the median over
    # all their steps: a slow spell of a shared machine then hits every configuration, not one (the speedups, the
    # batch-4-vs-1 ratio and checkpointing's time cost)
    overrides = {"plain": [*paper, "trainer=plain"], "default": paper,
                 "checkpointing": [*paper, "model.checkpointing=true"]}
    configs = [(kind, batch) for batch in (1, 4) for kind in overrides]
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

    # achieved FLOP/s of the step and the fraction of this machine's measured convolution peak
    plain1, default1 = steps[1]
    flops = default1["flops"]
    peak_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(default1["precision"], torch.float32)
    peaks = {"fp32": conv_peak(torch.float32, device, repeats)}
    if device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        peaks["bf16"] = conv_peak(torch.bfloat16, device, repeats)
    peak = peaks["bf16" if peak_dtype == torch.bfloat16 else "fp32"]
    results["step_gflop_per_image"] = flops / 1e9
    results["achieved_gflops"] = flops / default1["step_s"] / 1e9
    results["plain_achieved_gflops"] = flops / plain1["step_s"] / 1e9
    results.update({f"peak_conv_gflops_{k}": v / 1e9 for k, v in peaks.items()})
    results["flops_fraction_of_peak"] = flops / default1["step_s"] / peak
    results["profile_plain_b1_ms"] = plain1["profile"]
    results["profile_default_b1_ms"] = default1["profile"]
    rows.append(("model FLOP/s of the batch-1 step", f"{results['achieved_gflops']:.0f} GFLOP/s",
                 f"{flops / 1e9:.0f} GFLOP per image-step; {100 * results['flops_fraction_of_peak']:.0f}% of the "
                 f"measured {default1['precision']} conv peak ("
                 + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items()) + " GFLOP/s); plain fp32 "
                 f"{results['plain_achieved_gflops']:.0f} GFLOP/s"))

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
    cfg = compose_config(paper)
    every = int(compose_config([]).gradflow.every)
    step, model, _, _ = train_step_fn(cfg, 1)
    t_step = median_time(step, repeats)
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
    runtime = Runtime.from_config(cfg.trainer)
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

    width = max(len(r[0]) for r in rows)
    where = results["cuda_device"] or results["machine"]
    print(f"skipexp bench on {where} ({results['threads']} threads), torch {results['torch']}")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>16}  {note}")
    for kind in ("plain", "default"):
        ops = ", ".join(f"{op} {ms:.0f}" for op, ms in results[f"profile_{kind}_b1_ms"])
        print(f"  top ops of the batch-1 step, {kind} (self ms): {ops}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    write_performance_page(results, args.page)
    print(f"wrote {args.out} and {args.page}")


if __name__ == "__main__":
    main()
