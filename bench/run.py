"""`make bench`: skipexp's hot paths measured side by side in one run on this machine.

Each figure is a median over several repetitions after warm-up. Peak memory is
measured in a child process per configuration (RSS on CPU, max allocated on
CUDA), so one measurement's peak never hides another's. Prints a table and
writes bench/results.json.

    python bench/run.py [--quick] [--out bench/results.json]
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

from skipexp.cli import compose_config
from skipexp.data.augment import Augmenter
from skipexp.data.common import SegmentationSet, standardise
from skipexp.evaluate import Inference, membrane_probability
from skipexp.gradflow import GradFlow
from skipexp.losses import soft_dice_loss
from skipexp.metrics import challenge_scores
from skipexp.models import build_model
from skipexp.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012"
SIZE = 512


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def isbi_volume(name: str) -> np.ndarray:
    import tifffile

    path = ISBI / name
    if path.is_file():
        return tifffile.imread(path)
    rng = np.random.default_rng(0)  # shape-alike stand-in where the shared data are absent
    return (rng.random((30, SIZE, SIZE)) * 255).astype(np.uint8)


def train_step_fn(cfg, batch: int):
    """One training step of the configured net (forward, Dice loss, backward, RMSprop), as the trainer runs it."""
    runtime = Runtime.from_config(cfg.trainer)
    torch.manual_seed(0)
    model = runtime.prepare(build_model(cfg.model, cfg.depth, 1))
    model.train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-8, weight_decay=1e-4)
    image = runtime.to_device(torch.randn(batch, 1, SIZE, SIZE))
    label = runtime.to_device((torch.rand(batch, 1, SIZE, SIZE) < 0.22).float())

    def step() -> None:
        with runtime.autocast():
            logits = model(image)
        loss = soft_dice_loss(logits, label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()

    return step, model, image, runtime


def child(kind: str, overrides: list[str], batch: int, repeats: int) -> dict:
    """Run one train-step measurement in this (child) process; report time and peak memory."""
    cfg = compose_config(overrides)
    step, _, _, runtime = train_step_fn(cfg, batch)
    seconds = median_time(step, repeats)
    if runtime.device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "batch": batch, "step_s": seconds, "peak_mb": peak_mb}


def run_child(kind: str, overrides: list[str], batch: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--batch", str(batch), "--repeats",
                          str(repeats), "--", *overrides], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke test of the bench)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.overrides, args.batch, args.repeats)))
        return

    repeats = 2 if args.quick else 5
    paper = ["depth=paper", "model.width=32"]
    results: dict[str, float | str] = {"machine": platform.processor() or platform.machine(),
                                       "torch": torch.__version__, "threads": torch.get_num_threads()}
    rows: list[tuple[str, str, str]] = []

    # train step: default configuration (gradient flow off, measured below) at batch 1 and 4
    for batch in (1, 4):
        default = run_child("default", [*paper, "gradflow.enabled=false"], batch, repeats)
        per_image = default["step_s"] / batch
        results[f"train_s_per_img_b{batch}"] = per_image
        results[f"train_img_per_s_b{batch}"] = 1 / per_image
        results[f"peak_mem_mb_b{batch}"] = default["peak_mb"]
        rows.append((f"train step, paper net 512x512, batch {batch}", f"{per_image:.3f} s/image",
                     f"{1 / per_image:.2f} img/s, peak {default['peak_mb']:.0f} MB"))

    # gradient-flow tracking at the default interval: its own work timed directly, against the plain step
    cfg = compose_config(paper)
    every = int(cfg.gradflow.every)
    step, model, _, _ = train_step_fn(cfg, 1)
    t_step = median_time(step, repeats)
    from torch.utils.tensorboard import SummaryWriter

    flow = GradFlow(model, every)
    writer = SummaryWriter(tempfile.mkdtemp(prefix="skipexp-bench-tb-"))
    t_record = median_time(lambda: flow.log_step(writer, 1, flow.record_gradients(1)), 3 * repeats)
    t_epoch = median_time(lambda: (flow.start_epoch(), flow.end_epoch(1)), repeats)
    results["gradflow_overhead"] = t_record / (every * t_step)
    results["gradflow_epoch_s"] = t_epoch
    rows.append((f"gradient-flow tracking (every {every} steps)", f"{100 * results['gradflow_overhead']:.2f} %",
                 f"{1000 * t_record:.0f} ms per record vs {t_step:.2f} s/step; per-epoch update stats "
                 f"{1000 * t_epoch:.0f} ms"))

    # data pipeline: SPEC augmentation of whole 512 x 512 sections vs what the train step consumes
    volume = isbi_volume("train-volume.tif")
    labels = (isbi_volume("train-labels.tif") == 0).astype(np.uint8)
    augment = Augmenter.from_config(cfg.augment, crop=0)
    dataset = SegmentationSet(list(volume[:, None]), list(labels), None, augment)
    n = 26
    per_sample = median_time(lambda: [dataset[i] for i in range(n)], repeats) / n
    results["data_samples_per_s"] = 1 / per_sample
    results["data_vs_train_b1"] = results["data_samples_per_s"] / results["train_img_per_s_b1"]
    rows.append(("augmented samples (SPEC aug, 512x512)", f"{1 / per_sample:.0f} samples/s",
                 f"{results['data_vs_train_b1']:.0f}x what the batch-1 train step consumes"))

    # inference on the 30-slice test volume, plain and with flip TTA
    test = isbi_volume("test-volume.tif")
    runtime = Runtime.from_config(cfg.trainer)
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

    width = max(len(r[0]) for r in rows)
    print(f"skipexp bench on {results['machine']} ({results['threads']} threads), torch {results['torch']}")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>16}  {note}")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
