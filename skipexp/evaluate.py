"""Inference and validation: membrane probabilities for images, and the scores of a data set."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from skipexp.data.common import SegmentationSet
from skipexp.metrics import dice, pixel_error
from skipexp.runtime import Runtime


@torch.no_grad()
def membrane_probability(model: torch.nn.Module, image: torch.Tensor, runtime: Runtime) -> np.ndarray:
    """Membrane probability (H x W, float32) of one standardised C x H x W image."""
    model.eval()
    with runtime.autocast():
        logits = model(runtime.to_device(image[None]))
    return torch.sigmoid(logits.float())[0, 0].cpu().numpy()


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: SegmentationSet, loss_fn: Callable, runtime: Runtime
             ) -> tuple[dict[str, float], list[np.ndarray]]:
    """Validation loss (mean over images), Dice and pixel error (pooled over pixels, threshold 0.5).

    Returns the scores and the membrane probability map of every image, in order.
    """
    model.eval()
    losses, probs, truths = [], [], []
    for index in range(len(dataset)):
        sample = dataset[index]
        with runtime.autocast():
            logits = model(runtime.to_device(sample["image"][None]))
        losses.append(float(loss_fn(logits, runtime.to_device(sample["label"][None]))))
        probs.append(torch.sigmoid(logits.float())[0, 0].cpu().numpy())
        truths.append(sample["label"][0].numpy())
    predicted = np.concatenate([(p > 0.5).ravel() for p in probs])
    truth = np.concatenate([t.ravel() for t in truths]) > 0.5
    scores = {"val_loss": float(np.mean(losses)), "val_dice": dice(predicted, truth),
              "val_pixel_error": pixel_error(predicted, truth)}
    return scores, probs
