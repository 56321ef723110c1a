"""MONAI's UNet trained by skipexp's own loop: the network researchers would pick instead, compared on this machine.

Everything but the network is skipexp's, built from the same config by
``skipexp.build.build_training``: the ISBI 2012 slices and the held-out block
(26-29), the crops and augmentation, the loss (the preset's cross-entropy), the optimizer, the
precision and threads, the wall-clock budget (``trainer.budget_min``) with its
schedule, and the validation that scores Dice, V_rand and V_info with
``skipexp.metrics`` without test-time flips. The run folder is a skipexp run
folder (results.json, checkpoints, TensorBoard), so ``skipexp-report`` and a
side-by-side reading of results.json need nothing else.

The network: ``monai.networks.nets.UNet(spatial_dims=2, channels=(16, 32, 64,
128, 256), strides=(2, 2, 2, 2), num_res_units=2)``, one output channel
(membrane logits), as MONAI's tutorials build it. Two switches take its block apart, to find what of it
makes its Dice (docs/isbi-cpu.md): ``--act relu`` for its PReLU activations, ``--norm-affine`` for instance
norm with learned per-channel weights and biases (skipexp's; MONAI's has none). MONAI is not a dependency of
skipexp; install it for this measurement only:

    .venv/bin/pip install -e '.[baseline]'
    python bench/monai_baseline.py [--budget-min 20] [--out outputs/baseline/monai] [OVERRIDES...]

OVERRIDES are skipexp config overrides on top of ``experiment=isbi_cpu``
(e.g. ``trainer.precision=fp32``); ``model.*`` and ``depth.*`` have no
effect, and gradient flow is off (it reads FC-ResNet's layers). After
training, the final weights are scored once more with the four flips
averaged (``final_tta`` in results.json), as ``skipexp mode=eval`` does with
``predict.tta=true``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from skipexp.build import build_training
from skipexp.config import compose_config
from skipexp.evaluate import Inference, evaluate
from skipexp.files import write_json
from skipexp.models import count_parameters
from skipexp.optim import build_optimizer
from skipexp.rundir import RESULTS
from skipexp.train import train

CHANNELS = (16, 32, 64, 128, 256)
STRIDES = (2, 2, 2, 2)
RES_UNITS = 2
ACTS = ("prelu", "relu")  # MONAI's own first


def monai_unet(in_channels: int, act: str = ACTS[0], norm_affine: bool = False) -> torch.nn.Module:
    """The baseline network (issue 16): MONAI's UNet with the tutorials' widths and two residual units a level;
    by default its own PReLU and instance norm without affine weights."""
    try:
        from monai.networks.nets import UNet
    except ImportError:
        sys.exit("bench/monai_baseline.py: MONAI is not installed; install it with `.venv/bin/pip install -e "
                 "'.[baseline]'` (it is used for this measurement only).")
    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=1, channels=CHANNELS, strides=STRIDES,
                num_res_units=RES_UNITS, act=act.upper(), norm=("instance", {"affine": norm_affine}))


def saved_unet(in_channels: int, results: dict) -> torch.nn.Module:
    """The network a baseline run's results.json describes (runs from before the switches: MONAI's defaults)."""
    baseline = results.get("baseline", {})
    return monai_unet(in_channels, **{key: baseline[key] for key in ("act", "norm_affine") if key in baseline})


def run(budget_min: float, out: Path, overrides: list[str], act: str, norm_affine: bool) -> dict:
    """Train the baseline (``monai_unet``'s ``act`` and ``norm_affine``) in ``out`` under skipexp's loop; return its
    results.json."""
    cfg = compose_config(["experiment=isbi_cpu", f"trainer.budget_min={budget_min}", "gradflow.enabled=false",
                          *overrides])
    parts = build_training(cfg)  # the data, loss, runtime, budget and header of the skipexp run
    net = monai_unet(parts.data.in_channels, act, norm_affine).to(parts.runtime.device)
    if parts.runtime.channels_last:
        net = net.to(memory_format=torch.channels_last)
    parts.model = net
    parts.optimizer, parts.scheduler = build_optimizer(cfg.optimizer, net, parts.loop.epochs,
                                                       parts.runtime.fused_optimizer, budget=budget_min > 0)
    parts.header = {**parts.header, "model": "monai_unet", "long_skip": True, "short_skip": True,
                    "block": f"monai residual units x{RES_UNITS}", "width": CHANNELS[0], "n_simple_blocks": None,
                    "depth_layers": None, "params": count_parameters(net),
                    "baseline": {"network": "monai.networks.nets.UNet", "channels": list(CHANNELS),
                                 "strides": list(STRIDES), "num_res_units": RES_UNITS, "act": act,
                                 "norm_affine": norm_affine, "monai": __import__("monai").__version__}}
    parts.config = {**parts.config, "baseline": parts.header["baseline"]}
    out.mkdir(parents=True, exist_ok=True)
    results = train(parts, out)
    # the final weights scored again with the four flips averaged, as skipexp's mode=eval does with predict.tta
    scores, _ = evaluate(parts.model, parts.data.val, parts.loss_fn, parts.runtime, Inference(tta=True))
    results = {**results, "final_tta": scores}
    write_json(out / RESULTS, results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-min", type=float, default=20.0, help="wall-clock budget (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("outputs/baseline/monai"), help="run folder")
    parser.add_argument("--act", choices=ACTS, default=ACTS[0], help="the activation (MONAI's: %(default)s)")
    parser.add_argument("--norm-affine", action="store_true",
                        help="instance norm with learned per-channel weights and biases (MONAI's has none)")
    parser.add_argument("overrides", nargs="*", help="skipexp config overrides on top of experiment=isbi_cpu")
    args = parser.parse_args()
    if args.budget_min <= 0:
        parser.error(f"--budget-min={args.budget_min} must be above 0; give e.g. --budget-min 20")
    results = run(args.budget_min, args.out, args.overrides, args.act, args.norm_affine)
    final = results["final"]
    print(json.dumps({"run": str(args.out), "steps": results["steps_completed"], "wall_s": results["wall_s"],
                      "params": results["params"], "precision": results["precision"],
                      **{k: round(final[k], 4) for k in ("val_dice", "val_vrand", "val_vinfo")},
                      **{f"{k}_tta": round(results["final_tta"][k], 4) for k in ("val_vrand", "val_vinfo")}}))


if __name__ == "__main__":
    main()
