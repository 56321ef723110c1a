"""Segmentation scores, each a pure function of arrays.

Conventions: ``membrane_prob`` is the network's membrane probability (1 = membrane);
``membrane_truth`` is a binary membrane mask (1 = membrane).

The ISBI 2012 challenge scores :func:`v_rand` and :func:`v_info` use the challenge's own convention
instead (high = cell interior, as in the label images and the submission format); see their docstrings.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage


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


# --------------------------------------------------------------------------------------------------
# ISBI 2012 challenge scores: V_rand and V_info after border thinning, as Fiji computes them
# --------------------------------------------------------------------------------------------------


class ThresholdSweep(NamedTuple):
    """A challenge score with its per-threshold values (``per_threshold=True``)."""

    score: float  #: the challenge's score: max(0, the largest non-NaN entry of ``scores``)
    thresholds: np.ndarray  #: the thresholds t, in the order they were evaluated (float64)
    scores: np.ndarray  #: at each t, the per-slice F-scores averaged over the slices (may hold NaN)


class ChallengeScores(NamedTuple):
    """Both challenge scores from one thinning pass (see :func:`challenge_scores`)."""

    v_rand: float
    v_info: float
    thresholds: np.ndarray
    v_rand_per_threshold: np.ndarray
    v_info_per_threshold: np.ndarray


def fiji_thresholds(max_threshold: float = 1.0, *, min_threshold: float = 0.0, step: float = 0.1) -> np.ndarray:
    """The thresholds Fiji's loop ``for (th = min; th <= max; th += step)`` visits, accumulated in doubles.

    ``fiji_thresholds()`` gives the challenge's 11 values 0, 0.1, 0.2, 0.30000000000000004, ...,
    0.7999999999999999, 0.8999999999999999, 0.9999999999999999 (1.0 itself is never reached);
    ``fiji_thresholds(0.0)`` gives [0.0], what the challenge uses for a binary proposal.
    """
    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    values = []
    th = float(min_threshold)
    while th <= max_threshold:
        values.append(th)
        th += step
    return np.array(values, dtype=np.float64)


def v_rand(
    proposal: np.ndarray,
    truth: np.ndarray,
    *,
    thresholds: Sequence[float] | np.ndarray | None = None,
    per_threshold: bool = False,
) -> float | ThresholdSweep:
    """Foreground-restricted Rand score after border thinning (V_rand), the ISBI 2012 challenge's main score.

    Inputs: ``proposal`` is a probability or binary map, (H, W) or (Z, H, W), high = cell interior (the
    challenge's submission convention: invert a membrane probability first). ``truth`` has the same
    shape, 0 = membrane, 1 or 255 (any value >= 1) = cell. Both are read as 32-bit floats, as ImageJ
    holds the challenge's TIFFs, and compared raw: an 8-bit map is not divided by 255.

    Definition, for each threshold t and each slice (slices are independent 2D images):

    1. binarize: a pixel is cell iff its value > t (strictly, float32 value against the double t); the
       truth is binarized the same way (so 0 is membrane and any value >= 1 is cell at every t);
    2. ground-truth segments: the 4-connected components of its cell pixels; its membrane pixels are
       left out of everything; n = number of ground-truth cell pixels;
    3. proposal segments: the 4-connected cell components, grown over the membrane by Fiji's flooding
       watershed (4-connectivity, Fiji's visiting order), so that a one-pixel boundary line remains only
       where two segments meet (isolated membrane blobs, dead ends and membrane along the image edge
       vanish); a slice that is all cell or all membrane is a single segment;
    4. contingency table over the ground-truth cell pixels: p_ij = fraction of the n pixels in ground-truth
       segment i and proposal segment j, s_i = sum_j p_ij (boundary-line pixels included), t_j = sum_i p_ij;
       each boundary-line pixel inside a ground-truth cell is a singleton segment (aux = their fraction of
       n). sumAB2 = sum_ij p_ij^2 + aux/n, sumB2 = sum_j t_j^2 + aux/n, sumA2 = sum_i s_i^2;
       precision = sumAB2 / sumB2, recall = sumAB2 / sumA2 (Fiji forms them from the pair counts
       tp = n^2 sumAB2, fp = n^2 sumB2 - tp, fn = n^2 sumA2 - tp, taking 1 where fp or fn is exactly 0);
       F = 2 precision recall / (precision + recall), 0 unless precision + recall > 0. A slice without
       ground-truth cells scores 0;
    5. the slices' F-scores are averaged.

    The score is the largest of these per-threshold averages, starting from 0 (NaN would be skipped).

    ``thresholds``: the values of t, used as given; default :func:`fiji_thresholds` ``()``, the challenge's
    11 values from 0 to 0.9999999999999999. Pass ``[0.0]`` (= ``fiji_thresholds(0.0)``) for a binary
    proposal, as the challenge does. Returns the score as a float or, with ``per_threshold=True``, a
    :class:`ThresholdSweep` ``(score, thresholds, scores)`` with ``scores[k]`` the slice-averaged F-score
    at ``thresholds[k]``.

    Computes exactly what Fiji's Trainable_Segmentation computes for the challenge (agreement to about
    1e-15): ``trainableSegmentation.metrics.RandError.getMaximalVRandAfterThinning(0, max, 0.1, true)``,
    max = 1 for probability maps (0 for binary maps), thinning by ``utils.WatershedTransform2D``.
    Arganda-Carreras et al. (2015), "Crowdsourcing the creation of image segmentation algorithms for
    connectomics", Front. Neuroanat. 9:142. :func:`challenge_scores` gives V_rand and V_info together.
    """
    thr, rand, _ = _cached_sweep(proposal, truth, thresholds)
    return _finish(thr, rand, per_threshold)


def v_info(
    proposal: np.ndarray,
    truth: np.ndarray,
    *,
    thresholds: Sequence[float] | np.ndarray | None = None,
    per_threshold: bool = False,
) -> float | ThresholdSweep:
    """Foreground-restricted information-theoretic score after border thinning (V_info), ISBI 2012.

    Inputs, binarization, segments, thinning, contingency table (p_ij, s_i, t_j, aux, n), slice averaging,
    threshold sweep and return value as for :func:`v_rand`. Per slice, in natural logarithms:
    H(truth) = -sum_i s_i ln s_i; H(proposal) = -sum_j t_j ln t_j + aux ln n (each boundary-line pixel
    inside a ground-truth cell is its own segment of probability 1/n); H(truth, proposal) =
    -sum_ij p_ij ln p_ij + aux ln n; mutual information I = H(truth) + H(proposal) - H(truth, proposal);
    precision = I / H(truth), recall = I / H(proposal), except precision 0 and recall 1 when H(truth) == 0,
    and precision 1 and recall 0 when H(proposal) == 0 (so a slice with a single ground-truth cell, or a
    proposal that is one segment, scores 0); F = 2 precision recall / (precision + recall) (NaN when
    precision + recall == 0). A slice without ground-truth cells scores 0.

    Computes exactly what Fiji's Trainable_Segmentation computes for the challenge (agreement to about
    1e-15): ``trainableSegmentation.metrics.VariationOfInformation.getMaximalVInfoAfterThinning(0, max,
    0.1)``, max = 1 for probability maps (0 for binary maps). Arganda-Carreras et al. (2015),
    "Crowdsourcing the creation of image segmentation algorithms for connectomics", Front. Neuroanat.
    9:142. :func:`challenge_scores` gives V_rand and V_info together.
    """
    thr, _, info = _cached_sweep(proposal, truth, thresholds)
    return _finish(thr, info, per_threshold)


def challenge_scores(
    proposal: np.ndarray,
    truth: np.ndarray,
    *,
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> ChallengeScores:
    """V_rand and V_info (see :func:`v_rand`, :func:`v_info`) from one thinning pass per slice and threshold.

    Returns ``(v_rand, v_info, thresholds, v_rand_per_threshold, v_info_per_threshold)``. ``v_rand`` and
    ``v_info`` called one after the other on the same arrays share this work too, through a small cache
    keyed by the arrays' contents.
    """
    thr, rand, info = _cached_sweep(proposal, truth, thresholds)
    r = _finish(thr, rand, True)
    i = _finish(thr, info, True)
    return ChallengeScores(r.score, i.score, thr, r.scores, i.scores)


def best_threshold_score(scores: Sequence[float] | np.ndarray) -> float:
    """The challenge's score from its per-threshold scores: Fiji starts from 0 and keeps f if f > best
    (false for NaN), so the best threshold's score, never below 0 and never NaN."""
    best = 0.0
    for f in scores:
        if f > best:
            best = float(f)
    return best


def _finish(thresholds: np.ndarray, per_slice: np.ndarray, per_threshold: bool) -> float | ThresholdSweep:
    # per-threshold mean over the slices, summed in slice order as Fiji does
    scores = np.array([_ordered_sum(row) / row.size for row in per_slice], dtype=np.float64)
    best = best_threshold_score(scores)
    if per_threshold:
        return ThresholdSweep(best, thresholds.copy(), scores)
    return best


def _ordered_sum(values: np.ndarray) -> float:
    total = 0.0
    for v in values.tolist():
        total += v
    return total


# ---- inputs and caching ---------------------------------------------------------------------------

_CACHE: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
_CACHE_SIZE = 2
_CACHE_LOCK = threading.Lock()


def _as_stack(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be (H, W) or (Z, H, W), got shape {np.shape(a)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    # ImageJ holds the challenge's stacks as 32-bit floats (convertToFloat): emulate that conversion
    return np.ascontiguousarray(arr, dtype=np.float32)


def _as_thresholds(thresholds: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if thresholds is None:
        return fiji_thresholds()
    thr = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if thr.ndim != 1 or thr.size == 0 or not np.all(np.isfinite(thr)):
        raise ValueError(f"thresholds must be a non-empty 1-D sequence of finite numbers, got {thresholds!r}")
    return thr


def _cached_sweep(
    proposal: np.ndarray, truth: np.ndarray, thresholds: Sequence[float] | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prop = _as_stack(proposal, "proposal")
    gt = _as_stack(truth, "truth")
    if prop.shape != gt.shape:
        raise ValueError(f"proposal and truth shapes differ: {np.shape(proposal)} vs {np.shape(truth)}")
    thr = _as_thresholds(thresholds)
    digest = hashlib.blake2b(digest_size=32)
    for part in (np.array(prop.shape, np.int64), thr, prop, gt):
        digest.update(memoryview(part).cast("B"))
    key = digest.digest()
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is None:
        hit = _sweep(prop, gt, thr)
        with _CACHE_LOCK:
            while len(_CACHE) >= _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = hit
    thr_c, rand, info = hit
    return thr_c.copy(), rand.copy(), info.copy()


def _sweep(prop: np.ndarray, gt: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slice F-scores, arrays of shape (len(thresholds), Z) for V_rand and V_info."""
    n_thr, depth = thresholds.size, prop.shape[0]
    rand = np.empty((n_thr, depth), dtype=np.float64)
    info = np.empty((n_thr, depth), dtype=np.float64)
    for z in range(depth):
        p64 = prop[z].astype(np.float64)  # Java compares float pixels with a double threshold
        g64 = gt[z].astype(np.float64)
        last_cells: np.ndarray | None = None
        gt_seg: tuple[np.ndarray, np.ndarray] | None = None
        for k, th in enumerate(thresholds.tolist()):
            cells = g64 > th
            if gt_seg is None or last_cells is None or not np.array_equal(cells, last_cells):
                labels, _ = ndimage.label(cells)  # 4-connectivity
                gt_seg = (cells, labels[cells])
                last_cells = cells
            thinned = _thin_borders(p64 > th)
            rand[k, z], info[k, z] = _slice_scores(gt_seg[1], thinned[gt_seg[0]])
    return thresholds.copy(), rand, info


# ---- border thinning: Fiji's WatershedTransform2D on a binary map ---------------------------------

_WSHED = -1  # boundary line (0 in the result)
_MASK = -2  # membrane pixel not yet flooded
_OUT = -3  # padding around the image
_RANK0 = -10  # pixels of the layer being flooded hold _RANK0 - (their rank in the queue)
_BIG = np.iinfo(np.int32).max


def _thin_borders(cell: np.ndarray) -> np.ndarray:
    """Segments of a binary cell mask after Fiji's watershed thinning: labels >= 1, boundary line 0.

    Fiji inverts the binarized proposal (cell 0, membrane 255) and floods it (Vincent & Soille) with
    4-connectivity. Level 0 makes one basin per 4-connected cell component. At level 255 the membrane
    pixels touching a basin enter a FIFO queue in the order (x outer, y inner) and the queue is
    processed breadth first: each pixel taken from it receives the label of its already finished
    4-neighbours (basin pixels, pixels taken earlier) if exactly one label occurs among them, and
    becomes boundary (0) otherwise; its unvisited membrane neighbours join the queue in the order
    (x-1, y), (x, y-1), (x+1, y), (x, y+1). (This is what the Java state machine with INQUEUE, WSHED
    and its ``flag`` amounts to for a two-level image.) The queue thus runs through distance layers;
    within a layer only the neighbours taken earlier matter. Here each layer is processed at once with
    numpy, the few pixels whose result depends on an unfinished earlier neighbour of the same layer
    being settled in rounds (or, when rounds stop paying, one by one in queue order).
    """
    h, w = cell.shape
    if cell.all() or not cell.any():
        return np.ones((h, w), dtype=np.int32)
    basins, _ = ndimage.label(cell)
    stride = h + 2
    # transposed and padded, so that the flat index follows Fiji's column-major visiting order
    grid = np.full((w + 2, stride), _OUT, dtype=np.int32)
    inner = grid[1:-1, 1:-1]
    inner[...] = np.where(cell, basins, _MASK).T
    flat = grid.ravel()
    offsets = np.array([-stride, -1, stride, 1], dtype=np.intp)  # (x-1,y), (x,y-1), (x+1,y), (x,y+1)

    is_cell = np.zeros(grid.shape, dtype=bool)
    is_cell[1:-1, 1:-1] = cell.T
    touches = np.zeros(grid.shape, dtype=bool)
    touches[1:, :] |= is_cell[:-1, :]
    touches[:-1, :] |= is_cell[1:, :]
    touches[:, 1:] |= is_cell[:, :-1]
    touches[:, :-1] |= is_cell[:, 1:]
    layer = np.flatnonzero(touches.ravel() & (flat == _MASK))

    first = np.full(flat.size, _BIG, dtype=np.int32)  # scratch: first time a pixel is queued
    while layer.size:
        result, candidates = _flood_layer(flat, layer, offsets)
        flat[layer] = np.where(result > 0, result, _WSHED)
        # the next layer in queue order: unvisited neighbours, by pixel then neighbour, first time only
        order = np.arange(candidates.size, dtype=np.int32)
        np.minimum.at(first, candidates, order)
        layer = candidates[first[candidates] == order]
        first[layer] = _BIG
    out = np.ascontiguousarray(inner.T)
    out[out == _WSHED] = 0
    return out


def _flood_layer(flat: np.ndarray, layer: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels of one distance layer given in queue order (0 = boundary; see :func:`_thin_borders`).

    Also returns the pixels this layer puts in the queue, in queue order and possibly repeated.
    Neighbour arrays are (4, n): one row per neighbour direction, in Fiji's order.
    """
    n = layer.size
    rank = np.arange(n, dtype=np.int32)
    flat[layer] = _RANK0 - rank
    neighbours = offsets[:, None] + layer
    state = flat[neighbours]  # > 0: label of a finished pixel; < 0: boundary, unvisited, outside or this layer
    earlier = (state <= _RANK0) & (state > _RANK0 - rank)  # this layer, taken from the queue before
    queued = state == _MASK
    hi = np.maximum.reduce(state, axis=0)  # largest / smallest label among the finished neighbours
    lo = np.minimum.reduce(state.view(np.uint32), axis=0).view(np.int32)  # negative codes are huge unsigned

    result = np.full(n, -1, dtype=np.int32)  # -1: not settled yet
    conflict = (hi > 0) & (lo != hi)
    result[conflict] = 0
    alone = ~conflict & ~np.logical_or.reduce(earlier, axis=0)
    result[alone] = np.maximum(hi[alone], 0)
    todo = np.flatnonzero(result < 0)
    if todo.size:
        npos = _RANK0 - state  # rank of the neighbours in this layer (where ``earlier``)
        while todo.size:
            e = earlier[:, todo]
            ep = np.where(e, npos[:, todo], 0)
            value = result[ep]
            got = np.where(e & (value > 0), value, 0)
            h2 = np.maximum(np.maximum(hi[todo], 0), np.maximum.reduce(got, axis=0))
            l2 = np.minimum(np.where(hi[todo] > 0, lo[todo], _BIG), np.where(got > 0, got, _BIG).min(axis=0))
            clash = (h2 > 0) & (l2 != h2)
            pending = e & (value < 0)
            # a pending neighbour whose finished neighbours all carry label h2 ends as h2 or as boundary,
            # which cannot change this pixel's outcome
            harmless = ~pending | ((hi[ep] == h2) & (h2 > 0))
            done = clash | np.logical_and.reduce(harmless, axis=0)
            result[todo[done]] = np.where(clash, 0, h2)[done]
            left = todo[~done]
            if left.size and todo.size - left.size < 16:
                _flood_in_order(result, left, hi, lo, earlier, npos)
                break
            todo = left
    return result, neighbours.T[queued.T]


def _flood_in_order(
    result: np.ndarray, todo: np.ndarray, hi: np.ndarray, lo: np.ndarray, earlier: np.ndarray, npos: np.ndarray
) -> None:
    """Settle the remaining pixels of a layer one by one in queue order (their earlier neighbours first)."""
    res = result.tolist()
    for p in todo.tolist():
        top = int(hi[p])
        bottom = int(lo[p]) if top > 0 else _BIG
        top = max(top, 0)
        for k in range(4):
            if earlier[k, p]:
                v = res[npos[k, p]]
                if v > 0:
                    top, bottom = max(top, v), min(bottom, v)
        res[p] = 0 if top > 0 and bottom != top else top
    result[todo] = np.asarray(res, dtype=np.int32)[todo]


# ---- contingency table and the two F-scores -------------------------------------------------------


def _slice_scores(gt_labels: np.ndarray, prop_labels: np.ndarray) -> tuple[float, float]:
    """(V_rand F, V_info F) of one slice from the labels of the ground-truth cell pixels.

    ``gt_labels`` (>= 1) and ``prop_labels`` (>= 0, 0 = boundary line) are given at the same pixels,
    the ground truth's cell pixels.
    """
    n = gt_labels.size
    if n == 0:  # no ground-truth cell: Fiji's arithmetic ends at 0 for both scores
        return 0.0, 0.0
    gi = gt_labels.astype(np.int64)
    pj = prop_labels.astype(np.int64)
    width = int(pj.max()) + 1
    rows = int(gi.max()) + 1
    key = gi * width + pj
    if rows * width <= 1 << 24:
        counts = np.bincount(key, minlength=rows * width)
        nz = np.flatnonzero(counts)
        cnt = counts[nz]
    else:
        nz, cnt = np.unique(key, return_counts=True)
    i, j = np.divmod(nz, width)
    cnt = cnt.astype(np.float64)
    nf = float(n)

    row = np.bincount(i, weights=cnt)  # ground-truth segment sizes (boundary pixels included)
    inside = j > 0
    col = np.bincount(j[inside], weights=cnt[inside])  # proposal segment sizes within gt cells
    a = row[row > 0] / nf
    b = col[col > 0] / nf
    p = cnt[inside] / nf
    aux = float(cnt[~inside].sum()) / nf  # boundary-line pixels inside gt cells, as a fraction of n

    # V_rand (Fiji: RandError.getForegroundRestrictedRandIndexStatsN2 and ClassificationStatistics)
    sum_a2 = float(np.sum(a * a))
    sum_b2 = float(np.sum(b * b)) + aux / nf
    sum_ab2 = float(np.sum(p * p)) + aux / nf
    n2 = nf * nf
    tp = n2 * sum_ab2
    fp = n2 * sum_b2 - tp
    fn = n2 * sum_a2 - tp
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    rand_f = 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0

    # V_info (Fiji: VariationOfInformation.foregroundRestrictedFscore)
    log_n = float(np.log(nf))
    sum_a = float(np.sum(a * np.log(a)))
    sum_b = float(np.sum(b * np.log(b))) - aux * log_n
    sum_ab = float(np.sum(p * np.log(p))) - aux * log_n
    ha, hb = -sum_a, -sum_b
    hab, hba = sum_b - sum_ab, sum_a - sum_ab
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = float(np.float64(ha - hab) / np.float64(ha))
        rec = float(np.float64(hb - hba) / np.float64(hb))
        if ha == 0:
            prec, rec = 0.0, 1.0
        if hb == 0:
            prec, rec = 1.0, 0.0
        info_f = float(np.float64(2.0 * prec * rec) / np.float64(prec + rec))
    return rand_f, info_f
