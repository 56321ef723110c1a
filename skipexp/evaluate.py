"""Inference and validation: membrane probabilities for images, and the scores of a data set."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from skipexp import checks
from skipexp.data.common import SegmentationSet
from skipexp.errors import ConfigError
from skipexp.metrics import best_threshold_score, challenge_scores, dice, pixel_error
from skipexp.runtime import Runtime


@dataclass(frozen=True)
class Inference:
    """How whole images are predicted: tiles (0 = the whole image at once), their overlap, flip TTA."""

    tile: int = 0
    overlap: int = 0
    tta: bool = False

    @classmethod
    def from_config(cls, predict: Mapping[str, Any]) -> Inference:
        """The one place the ``predict`` node is read and checked (cheap: nothing is loaded)."""
        node = "predict"
        checks.known_keys(node, predict, ("tile", "overlap", "tta"))
        tile = checks.non_negative_int(node, predict, "tile", example=256,
                                       need="0 (the whole image at once) or a tile size in pixels")
        overlap = checks.non_negative_int(node, predict, "overlap", example=32)
        if tile and overlap >= tile:
            raise ConfigError(f"predict.overlap={overlap} must be less than predict.tile={tile}, or tiles would not "
                              f"advance; give e.g. predict.overlap={tile // 4}, or predict.tile=0 for whole images.")
        return cls(tile, overlap, checks.boolean(node, predict, "tta"))


def _blend_window(height: int, width: int, overlap: int) -> torch.Tensor:
    """Weights that ramp up over ``overlap`` pixels at each tile edge, so neighbouring tiles blend smoothly."""

    def ramp(n: int) -> torch.Tensor:
        w = torch.ones(n)
        if overlap:
            edge = (torch.arange(min(overlap, n), dtype=torch.float32) + 1) / (overlap + 1)
            w[: len(edge)] = torch.minimum(w[: len(edge)], edge)
            w[n - len(edge):] = torch.minimum(w[n - len(edge):], edge.flip(0))
        return w

    return ramp(height)[:, None] * ramp(width)[None, :]


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    return sorted({*range(0, size - tile, stride), size - tile})


@torch.no_grad()
def _logits(model: torch.nn.Module, batch: torch.Tensor, runtime: Runtime, tta: bool) -> torch.Tensor:
    """Membrane probability of an N x C x H x W batch, averaged over the four flips when ``tta``."""
    flips = [[], [-1], [-2], [-2, -1]] if tta else [[]]
    total = None
    for dims in flips:
        x = batch.flip(dims) if dims else batch
        with runtime.autocast():
            prob = torch.sigmoid(model(runtime.to_device(x)).float())
        prob = prob.flip(dims) if dims else prob
        total = prob if total is None else total + prob
    return total / len(flips)


@torch.no_grad()
def membrane_probability(model: torch.nn.Module, image: torch.Tensor, runtime: Runtime,
                         inference: Inference = Inference()) -> np.ndarray:
    """Membrane probability (H x W, float32) of one standardised C x H x W image, tiled when it is large."""
    model.eval()
    height, width = image.shape[-2:]
    tile = inference.tile
    if not tile or (height <= tile and width <= tile):
        return _logits(model, image[None], runtime, inference.tta)[0, 0].cpu().numpy()
    stride = tile - inference.overlap
    total = torch.zeros(height, width)
    weight = torch.zeros(height, width)
    for top in _starts(height, tile, stride):
        for left in _starts(width, tile, stride):
            window = image[:, top:top + tile, left:left + tile]
            prob = _logits(model, window[None], runtime, inference.tta)[0, 0].cpu()
            w = _blend_window(*prob.shape, inference.overlap)
            total[top:top + prob.shape[0], left:left + prob.shape[1]] += w * prob
            weight[top:top + prob.shape[0], left:left + prob.shape[1]] += w
    return (total / weight).numpy()


def vrand_vinfo(membrane_probs: list[np.ndarray], membranes: list[np.ndarray], valids: list[np.ndarray]
                ) -> tuple[float, float]:
    """The challenge's V_rand and V_info of membrane probability maps against binary membrane labels.

    Maps are scored in the challenge's convention (1 - membrane probability, high = cell); pixels outside
    the valid region are treated as ground-truth membrane, which the metrics leave out. Slices of
    differing sizes are scored one by one and their F-scores averaged per threshold, as for a stack.
    """
    proposals = [1.0 - p for p in membrane_probs]
    truths = [np.where((m > 0.5) | (v < 0.5), 0, 255).astype(np.uint8) for m, v in zip(membranes, valids, strict=True)]
    if len({p.shape for p in proposals}) == 1:
        scores = challenge_scores(np.stack(proposals), np.stack(truths))
        return scores.v_rand, scores.v_info
    per_slice = [challenge_scores(p, t) for p, t in zip(proposals, truths, strict=True)]
    rand = np.mean([s.v_rand_per_threshold for s in per_slice], axis=0)
    info = np.mean([s.v_info_per_threshold for s in per_slice], axis=0)
    return best_threshold_score(rand), best_threshold_score(info)


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: SegmentationSet, loss_fn: Callable, runtime: Runtime,
             inference: Inference = Inference()) -> tuple[dict[str, float], list[np.ndarray]]:
    """Validation loss (mean over images), Dice and pixel error (pooled over valid pixels, threshold 0.5),
    and the challenge's V_rand and V_info (threshold sweep, see skipexp.metrics).

    Returns the scores and the membrane probability map of every image, in order.
    """
    model.eval()
    losses, probs, predicted, truth, labels, valids = [], [], [], [], [], []
    for index in range(len(dataset)):
        sample = dataset[index]
        prob = membrane_probability(model, sample["image"], runtime, inference)
        prob_t = torch.from_numpy(prob)[None, None]
        # the loss of the probabilities: logit(p) fed back through the loss keeps one definition of the loss
        logits = torch.logit(prob_t.clamp(1e-7, 1 - 1e-7))
        losses.append(float(loss_fn(logits, sample["label"][None], sample["valid"][None])))
        probs.append(prob)
        label, valid = sample["label"][0].numpy(), sample["valid"][0].numpy()
        labels.append(label)
        valids.append(valid)
        predicted.append((prob > 0.5)[valid > 0.5])
        truth.append((label > 0.5)[valid > 0.5])
    predicted_all, truth_all = np.concatenate(predicted), np.concatenate(truth)
    v_rand, v_info = vrand_vinfo(probs, labels, valids)
    scores = {"val_loss": float(np.mean(losses)), "val_dice": dice(predicted_all, truth_all),
              "val_pixel_error": pixel_error(predicted_all, truth_all), "val_vrand": v_rand, "val_vinfo": v_info}
    return scores, probs
