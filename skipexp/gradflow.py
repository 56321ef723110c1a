"""Gradient flow (docs/gradient-flow.md): per-layer gradient norms and weight updates, drawn by report.figures.

Two measures, both per weight layer in depth order (input to output):

- the L2 norm of each layer's weight gradient, every ``gradflow.every`` steps
  (and ``grad_rms``, the same divided by sqrt(the layer's size): the RMS of
  its entries, which layer size does not stripe);
- the authors' measure, per epoch: the mean absolute weight change
  |W_end - W_start| of each layer, with its std, max and min.

Rows of the main arrays are the main-path convs, exactly the layers that count
towards depth, named by stage, block and position (``down4.b3.conv2``). Norm
weights and the 1x1 projections on shortcuts and long skips are tracked too,
in separate ``aux_*`` arrays whose ``aux_kinds`` say which is which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from skipexp import checks
from skipexp.files import atomic_write
from skipexp.models import FCResNet, main_path_layers
from skipexp.report.figures import MEASURES, save_heatmap
from skipexp.rundir import GRADFLOW, HEATMAP_GRAD, HEATMAP_UPDATE

UPDATE_STATS = ("mean", "std", "max", "min")


@dataclass(frozen=True)
class TrackedLayer:
    """One weight tensor whose gradient and updates are recorded."""

    name: str  # e.g. down4.b3.conv2, down4.b1.shortcut.proj, long_skips.up1.proj, down4.b3.norm2
    kind: str  # "conv" (main path, counts towards depth), "norm", or "skip" (a projection on a skip)
    stage: str  # down1 ... up5, classifier
    weight: nn.Parameter


def tracked_layers(model: FCResNet) -> tuple[list[TrackedLayer], list[TrackedLayer]]:
    """(main-path convs in depth order, auxiliary layers: norms and skip projections, in depth order)."""
    main_names = {name for name, _ in main_path_layers(model)}
    by_stage: dict[str, list[TrackedLayer]] = {}
    long_skip: dict[str, list[TrackedLayer]] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or name == "":
            continue
        if name.startswith("long_skips."):
            stage = name.split(".")[1]
            long_skip.setdefault(stage, []).append(TrackedLayer(name, "skip", stage, weight))
            continue
        stage = name.split(".")[0]
        kind = "conv" if name in main_names else "skip" if ".shortcut." in f".{name}." else "norm"
        by_stage.setdefault(stage, []).append(TrackedLayer(name, kind, stage, weight))
    ordered: list[TrackedLayer] = []
    for stage, layers in by_stage.items():  # a long skip's projection feeds the decoder stage it merges into
        ordered += long_skip.get(stage, []) + layers
    return [t for t in ordered if t.kind == "conv"], [t for t in ordered if t.kind != "conv"]


class GradFlow:
    """Records gradient norms every ``every`` steps and weight updates every epoch; draws and saves them."""

    def __init__(self, model: FCResNet, every: int, enabled: bool = True) -> None:
        self.enabled = enabled and every > 0
        self.every = every
        self.main, self.aux = tracked_layers(model)
        self.steps: list[int] = []
        self.grad_norm: list[np.ndarray] = []  # per logged step: [main layers]
        self.aux_grad_norm: list[np.ndarray] = []
        self.epochs: list[int] = []
        self.update: dict[str, list[np.ndarray]] = {s: [] for s in UPDATE_STATS}
        self.aux_update_mean: list[np.ndarray] = []
        self._start: list[torch.Tensor] | None = None

    @staticmethod
    def settings(gradflow: DictConfig) -> tuple[bool, int]:
        """The one place the ``gradflow`` node is read and checked: (enabled, every)."""
        return checks.boolean("gradflow", gradflow, "enabled"), checks.positive_int("gradflow", gradflow, "every")

    @classmethod
    def from_config(cls, gradflow: DictConfig, model: FCResNet, writes: bool = True) -> GradFlow:
        """Gradient flow as the ``gradflow`` node asks; off on processes that do not write (ranks other than 0)."""
        enabled, every = cls.settings(gradflow)
        return cls(model, every, enabled and writes)

    @property
    def layer_names(self) -> list[str]:
        return [t.name for t in self.main]

    @property
    def stages(self) -> list[str]:
        return [t.stage for t in self.main]

    def due(self, step: int) -> bool:
        """Whether ``step`` (1-based) is one whose gradients are recorded."""
        return self.enabled and step % self.every == 0

    @torch.no_grad()
    def record_gradients(self, step: int) -> np.ndarray:
        """L2 norm of each tracked weight's gradient (call after backward, before the optimizer step)."""
        layers = self.main + self.aux
        grads = [t.weight.grad if t.weight.grad is not None else torch.zeros_like(t.weight) for t in layers]
        norms = torch.stack(torch._foreach_norm(grads)).float().cpu().numpy()
        self.steps.append(step)
        self.grad_norm.append(norms[: len(self.main)])
        self.aux_grad_norm.append(norms[len(self.main):])
        return norms[: len(self.main)]

    @torch.no_grad()
    def start_epoch(self) -> None:
        """Remember the weights at the start of an epoch."""
        if self.enabled:
            self._start = [t.weight.detach().clone() for t in self.main + self.aux]

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> None:
        """Mean, std, max and min of |W_end - W_start| per layer over the epoch (the authors' measure)."""
        if not self.enabled or self._start is None:
            return
        stats = {s: [] for s in UPDATE_STATS}
        aux_mean = []
        for i, (layer, start) in enumerate(zip(self.main + self.aux, self._start, strict=True)):
            change = (layer.weight.detach() - start).abs().float().flatten()
            if i < len(self.main):
                stats["mean"].append(change.mean())
                stats["std"].append(change.std(correction=0))
                stats["max"].append(change.max())
                stats["min"].append(change.min())
            else:
                aux_mean.append(change.mean())
        for key in UPDATE_STATS:
            self.update[key].append(torch.stack(stats[key]).cpu().numpy())
        self.aux_update_mean.append(torch.stack(aux_mean).cpu().numpy() if aux_mean else np.zeros(0, np.float32))
        self.epochs.append(epoch)
        self._start = None

    def stage_medians(self) -> dict[str, float]:
        """Median gradient norm of each stage at the last recorded step."""
        if not self.grad_norm:
            return {}
        last = self.grad_norm[-1]
        stages = np.array(self.stages)
        return {s: float(np.median(last[stages == s])) for s in dict.fromkeys(self.stages)}

    def first_last_ratio(self) -> float | None:
        """Gradient norm of the first layer over that of the last, at the last recorded step (None before any).

        Far below 1: gradients vanish on their way to the input; far above 1: they explode.
        """
        if not self.grad_norm or not self.grad_norm[-1][-1] > 0:
            return None
        last = self.grad_norm[-1]
        return float(last[0] / last[-1])

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything recorded, as the arrays of gradflow.npz."""
        n_main, n_aux = len(self.main), len(self.aux)
        out = {
            "layers": np.array(self.layer_names),
            "stages": np.array(self.stages),
            "steps": np.array(self.steps, dtype=np.int64),
            "grad_norm": np.array(self.grad_norm, dtype=np.float32).reshape(-1, n_main),
            "epochs": np.array(self.epochs, dtype=np.int64),
            "aux_layers": np.array([t.name for t in self.aux]),
            "aux_kinds": np.array([t.kind for t in self.aux]),
            "aux_grad_norm": np.array(self.aux_grad_norm, dtype=np.float32).reshape(-1, n_aux),
            "aux_update_mean": np.array(self.aux_update_mean, dtype=np.float32).reshape(-1, n_aux),
        }
        for key in UPDATE_STATS:
            out[f"update_{key}"] = np.array(self.update[key], dtype=np.float32).reshape(-1, n_main)
        # the same norms per weight, so that a layer's size does not stripe the picture: L2 / sqrt(size) is the
        # RMS of its gradient entries (and of its update entries' mean |dW| needs no such scaling)
        out["numel"] = np.array([t.weight.numel() for t in self.main], dtype=np.int64)
        out["grad_rms"] = (out["grad_norm"] / np.sqrt(out["numel"])).astype(np.float32)
        return out

    def state_dict(self) -> dict[str, object]:
        """What a checkpoint keeps so a resumed run continues these arrays (tensors only: weights_only loading)."""
        arrays = self.arrays()
        state: dict[str, object] = {key: torch.from_numpy(value) for key, value in arrays.items()
                                    if value.dtype.kind in "fiu"}
        state["epoch_start"] = self._start
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Continue from a checkpoint's ``state_dict``."""
        self.steps = [int(s) for s in state["steps"]]
        self.grad_norm = list(state["grad_norm"].numpy())
        self.aux_grad_norm = list(state["aux_grad_norm"].numpy())
        self.epochs = [int(e) for e in state["epochs"]]
        self.update = {key: list(state[f"update_{key}"].numpy()) for key in UPDATE_STATS}
        self.aux_update_mean = list(state["aux_update_mean"].numpy())
        self._start = state["epoch_start"]

    def save(self, run_dir: Path) -> list[tuple[str, Path]]:
        """Write gradflow.npz (atomically) and the latest heat maps as PNG; return (measure, PNG) pairs written."""
        arrays = self.arrays()
        atomic_write(run_dir / GRADFLOW, lambda handle: np.savez(handle, **arrays))
        written = []
        for key, png in (("grad_norm", HEATMAP_GRAD), ("update_mean", HEATMAP_UPDATE)):
            if len(arrays[MEASURES[key][0]]):
                save_heatmap(arrays, key, run_dir / png)
                written.append((key, run_dir / png))
        return written

    def log_step(self, writer, step: int, norms: np.ndarray) -> None:
        """TensorBoard: one scalar per layer, grouped by stage (``grad_norm/<stage>/<layer>``), and a histogram."""
        for name, stage, value in zip(self.layer_names, self.stages, norms, strict=True):
            writer.add_scalar(f"grad_norm/{stage}/{name.removeprefix(stage + '.')}", float(value), step)
        if np.isfinite(norms).all():  # a histogram of inf/nan would fail (trainer.on_nan=skip runs can have them)
            writer.add_histogram("gradflow/layer_grad_norm", norms, step)
        for stage, median in self.stage_medians().items():
            writer.add_scalar(f"gradflow/median_grad_norm/{stage}", median, step)
        ratio = self.first_last_ratio()
        if ratio is not None:
            writer.add_scalar("gradflow/first_last_ratio", ratio, step)

    def log_epoch(self, writer, step: int) -> None:
        """TensorBoard: per-layer mean |dW| of the last epoch, grouped by stage, and its histogram."""
        if not self.epochs:
            return
        mean = self.update["mean"][-1]
        for name, stage, value in zip(self.layer_names, self.stages, mean, strict=True):
            writer.add_scalar(f"update/{stage}/{name.removeprefix(stage + '.')}", float(value), step)
        if np.isfinite(mean).all():
            writer.add_histogram("gradflow/layer_update_mean", mean, step)

    @staticmethod
    def log_heatmaps(writer, step: int, pngs: list[tuple[str, Path]]) -> None:
        """TensorBoard: the heat-map PNGs just saved, as images (refreshed every validation)."""
        from PIL import Image

        for key, png in pngs:
            with Image.open(png) as image:
                writer.add_image(f"gradflow/heatmap_{key.removesuffix('_mean')}", np.asarray(image.convert("RGB")),
                                 step, dataformats="HWC")

    def custom_scalars_layout(self) -> dict:
        """One chart per stage, so 140+ layers stay readable in TensorBoard's Custom Scalars tab."""
        stages = list(dict.fromkeys(self.stages))
        return {
            "gradient norm per stage": {s: ["Multiline", [f"grad_norm/{s}/"]] for s in stages},
            "weight update per stage": {s: ["Multiline", [f"update/{s}/"]] for s in stages},
            "gradient flow summary": {
                "median gradient norm": ["Multiline", ["gradflow/median_grad_norm/"]],
                "first / last layer": ["Multiline", ["gradflow/first_last_ratio"]],
            },
        }

