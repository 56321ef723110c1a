"""Segmentation scores, each a pure function of arrays.

Conventions: ``membrane_prob`` is the network's membrane probability (1 = membrane);
``membrane_truth`` is a binary membrane mask (1 = membrane).
"""

from __future__ import annotations

import numpy as np


def dice(membrane_pred: np.ndarray, membrane_truth: np.ndarray) -> float:
    """Dice coefficient of the membrane class, 2|A & B| / (|A| + |B|), pooled over all pixels given.

    Both masks empty counts as perfect agreement (1.0). Sorensen (1948), Dice (1945).
    """
    pred = np.asarray(membrane_pred).astype(bool)
    truth = np.asarray(membrane_truth).astype(bool)
    total = int(pred.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, truth).sum()) / total


def pixel_error(membrane_pred: np.ndarray, membrane_truth: np.ndarray) -> float:
    """Fraction of pixels whose binary label differs from the truth (the ISBI 2012 challenge's pixel error)."""
    pred = np.asarray(membrane_pred).astype(bool)
    truth = np.asarray(membrane_truth).astype(bool)
    return float(np.mean(pred != truth))
