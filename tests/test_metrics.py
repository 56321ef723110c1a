import math
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from skipexp import metrics
from skipexp.metrics import challenge_scores, dice, fiji_thresholds, pixel_error, v_info, v_rand

FIXTURE = Path(__file__).parent / "data" / "fiji_reference.npz"


def test_dice_by_hand():
    pred = np.array([[1, 1, 0, 0]])
    truth = np.array([[1, 0, 1, 0]])
    assert dice(pred, truth) == 2 * 1 / (2 + 2)
    assert dice(truth, truth) == 1.0
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert dice(np.ones((2, 2)), np.zeros((2, 2))) == 0.0


def test_pixel_error_by_hand():
    assert pixel_error(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == 0.5
    assert pixel_error(np.array([1, 0]), np.array([1, 0])) == 0.0


# ---- V_rand / V_info: hand-computable scenes -------------------------------------------------------
# Two ground-truth cells A (columns 0-2) and B (columns 4-6) split by a membrane column; n = 18 cell pixels.

GT = np.full((3, 7), 255, np.uint8)
GT[:, 3] = 0
PERFECT = (GT > 0).astype(np.float32)  # proposal: 1 = cell, 0 = membrane
MERGED_RAND = 2 / 3  # one proposal segment over A and B: precision 1/2, recall 1
MERGED_INFO = 0.0  # H(proposal) = 0: Fiji sets precision 1, recall 0


def scores(proposal, truth=GT, **kw):
    return challenge_scores(proposal, truth, **kw)


def test_fiji_thresholds_are_accumulated_doubles():
    thr = fiji_thresholds()
    assert len(thr) == 11
    assert [repr(float(t)) for t in thr[[3, 8, 9, 10]]] == [
        "0.30000000000000004",
        "0.7999999999999999",
        "0.8999999999999999",
        "0.9999999999999999",
    ]
    assert thr[-1] < 1.0  # 1.0 itself is never used
    assert not np.array_equal(thr, np.linspace(0, 1, 11))
    assert fiji_thresholds(0.0).tolist() == [0.0]  # the challenge's setting for binary proposals
    assert fiji_thresholds(0.25).tolist() == [0.0, 0.1, 0.2]


def test_perfect_proposal_scores_one():
    s = scores(PERFECT)
    assert (s.v_rand, s.v_info) == (1.0, 1.0)
    assert np.all(s.v_rand_per_threshold == 1.0) and np.all(s.v_info_per_threshold == 1.0)
    # probability map of the same segmentation, as a stack, truth given as bool
    prob = np.where(GT > 0, 0.93, 0.04).astype(np.float32)
    assert v_rand(np.stack([prob, prob]), np.stack([GT > 0, GT > 0])) == 1.0
    assert v_info(prob, GT, thresholds=[0.5]) == 1.0


def test_all_cell_and_all_membrane_proposals_are_one_segment():
    for proposal in (np.ones_like(PERFECT), np.zeros_like(PERFECT)):
        s = scores(proposal)
        assert s.v_rand == pytest.approx(MERGED_RAND, abs=1e-15)
        assert s.v_info == MERGED_INFO
    assert np.array_equal(metrics._thin_borders(np.zeros((3, 4), bool)), np.ones((3, 4)))
    assert np.array_equal(metrics._thin_borders(np.ones((3, 4), bool)), np.ones((3, 4)))


def test_threshold_is_strict():
    prob = np.where(GT > 0, 1.0, 0.5).astype(np.float32)  # membrane exactly 0.5
    r = v_rand(prob, GT, per_threshold=True)
    # t <= 0.4: 0.5 > t makes the membrane cell (one segment); t = 0.5: 0.5 > 0.5 is false
    assert r.scores[:5] == pytest.approx([MERGED_RAND] * 5, abs=1e-15)
    assert r.scores[5:].tolist() == [1.0] * 6
    assert r.thresholds[5] == 0.5 and r.score == 1.0
    i = v_info(prob, GT, per_threshold=True)
    assert i.scores.tolist() == [0.0] * 5 + [1.0] * 6


def test_values_compared_in_double_precision():
    # float32(0.1) = 0.10000000149... > 0.1 (as in Java), although float32 arithmetic would call them equal
    prob = np.where(GT > 0, 1.0, 0.1).astype(np.float32)
    r = v_rand(prob, GT, per_threshold=True)
    assert r.scores[:2] == pytest.approx([MERGED_RAND] * 2, abs=1e-15)
    assert r.scores[2:].tolist() == [1.0] * 9


def test_accumulated_thresholds_never_reach_one():
    r = v_rand(PERFECT, GT, per_threshold=True)
    assert r.scores.tolist() == [1.0] * 11  # 1.0 > 0.9999999999999999: still the perfect segmentation
    # np.linspace would end at 1.0, where nothing is > 1.0: one segment
    lin = v_rand(PERFECT, GT, thresholds=np.linspace(0, 1, 11), per_threshold=True)
    assert lin.scores[-1] == pytest.approx(MERGED_RAND, abs=1e-15)


def test_8bit_maps_compared_raw():
    raw = PERFECT.astype(np.uint8)  # cell = 1, not 255
    assert v_rand(raw, GT, per_threshold=True).scores.tolist() == [1.0] * 11  # 1 > t for every t
    scaled = raw.astype(np.float32) / 255  # what dividing by 255 would give: cell = 0.0039
    s = v_rand(scaled, GT, per_threshold=True).scores
    assert s[0] == 1.0 and s[1:] == pytest.approx([MERGED_RAND] * 10, abs=1e-15)
    assert v_info(raw * 255, GT) == 1.0


def test_ground_truth_membrane_left_out():
    gt = np.full((3, 9), 255, np.uint8)
    gt[:, 2:5] = 0  # three-pixel-wide membrane in the truth
    thin = np.ones((3, 9), np.float32)
    thin[:, 3] = 0  # proposal: one membrane column inside it
    assert scores(thin, gt)[:2] == (1.0, 1.0)
    other = thin.copy()
    other[:, 2] = 0  # differs from `thin` on ground-truth membrane only
    other[0, 4] = 0
    assert scores(other, gt)[:2] == (1.0, 1.0)


def test_thinning_removes_thick_borders_blobs_dead_ends_and_edge_membrane():
    gt = np.full((7, 9), 255, np.uint8)
    gt[:, 4] = 0  # A: columns 0-3, B: columns 5-8
    proposal = (gt > 0).astype(np.float32)
    proposal[0, :] = 0  # membrane along the image edge
    proposal[3, 1] = 0  # isolated blob in A
    proposal[2, 6:8] = 0  # isolated blob in B
    proposal[5, 0:2] = 0  # dead end from the image edge into A
    thinned = metrics._thin_borders(proposal > 0)
    assert np.array_equal(thinned == 0, gt == 0)  # only the line where A and B meet remains
    assert scores(proposal, gt)[:2] == (1.0, 1.0)
    thick = (gt > 0).astype(np.float32)
    thick[:, 3:6] = 0  # three-pixel-wide proposal border, thinned to its middle column
    assert np.array_equal(metrics._thin_borders(thick > 0) == 0, gt == 0)
    assert scores(thick, gt)[:2] == (1.0, 1.0)


def test_thinning_tie_breaking_follows_fiji_visiting_order():
    cell = np.array([[0, 0, 0], [0, 0, 1], [1, 0, 1]], bool)
    # traced by hand through the Java flooding: queue (0,1) (1,1) (1,2) (2,0) then (0,0) (1,0), as (x, y);
    # a row-major visit would put the line elsewhere: [[0, B, B], [A, 0, B], [A, 0, B]]
    labels = metrics._thin_borders(cell)
    a, b = labels[2, 0], labels[1, 2]
    assert a != b and a > 0 and b > 0
    assert np.array_equal(labels, [[a, 0, b], [a, 0, b], [a, 0, b]])
    assert same_partition(labels, reference_thin(cell))


def test_boundary_pixels_inside_cells_are_singletons():
    proposal = PERFECT.copy()
    proposal[1, 0:3] = 0  # splits A into A_top, A_bottom: 3 boundary pixels inside a ground-truth cell
    s = scores(proposal)
    # Rand: p = 1/6 (A_top), 1/6 (A_bottom), 1/2 (B); aux = 1/6, n = 18; sum a_i^2 = 1/2,
    # sum p_ij^2 + aux/n = sum b_j^2 + aux/n = 11/36 + 1/108 = 34/108: precision 1, recall 17/27
    assert s.v_rand == pytest.approx(17 / 22, abs=1e-14)
    # Info: I = H(truth) = ln 2 (every proposal segment lies in one cell), precision 1,
    # H(proposal) = 2 (1/6) ln 6 + (1/2) ln 2 + aux ln n
    recall = math.log(2) / (math.log(6) / 3 + math.log(2) / 2 + math.log(18) / 6)
    assert s.v_info == pytest.approx(2 * recall / (1 + recall), abs=1e-14)


def test_slice_scores_are_averaged():
    stack = np.stack([PERFECT, np.ones_like(PERFECT)])
    s = scores(stack, np.stack([GT, GT]))
    assert s.v_rand == pytest.approx((1 + MERGED_RAND) / 2, abs=1e-15)  # not the pooled Rand score
    assert s.v_info == pytest.approx((1 + MERGED_INFO) / 2, abs=1e-15)


def test_stack_is_mean_of_slice_scores_then_best_threshold():
    rng = np.random.default_rng(3)
    truth = np.stack([ndimage.binary_erosion(rng.random((24, 24)) < 0.8) for _ in range(3)])
    prob = np.stack([ndimage.gaussian_filter(rng.random((24, 24)), 1.2) for _ in range(3)])
    prob = ((prob - prob.min()) / np.ptp(prob)).astype(np.float32)
    whole = challenge_scores(prob, truth)
    per_slice = [challenge_scores(prob[z], truth[z]) for z in range(3)]
    for name in ("v_rand", "v_info"):
        mean = np.mean([getattr(p, f"{name}_per_threshold") for p in per_slice], axis=0)
        np.testing.assert_allclose(getattr(whole, f"{name}_per_threshold"), mean, rtol=0, atol=1e-15)
        assert getattr(whole, name) == pytest.approx(max(0.0, np.nanmax(mean)), abs=1e-15)
        # the best threshold of the stack, not the mean of each slice's best
        assert getattr(whole, name) <= np.mean([getattr(p, name) for p in per_slice]) + 1e-15


def test_nan_thresholds_skipped_and_best_starts_at_zero():
    # a NaN per-threshold score needs mutual information exactly 0 with both entropies > 0, which exact
    # arithmetic rules out for one slice (V_rand is never NaN): test the sweep's maximum directly
    thr = np.array([0.0, 0.1, 0.2])
    per_slice = np.array([[np.nan, 0.2], [0.5, 0.7], [np.nan, np.nan]])
    r = metrics._finish(thr, per_slice, True)
    assert r.score == pytest.approx(0.6) and np.isnan(r.scores[[0, 2]]).all()
    assert metrics._finish(thr, np.full((3, 1), np.nan), False) == 0.0


def test_slice_without_ground_truth_cells_scores_zero():
    empty = np.zeros_like(GT)
    assert scores(PERFECT, empty)[:2] == (0.0, 0.0)
    s = scores(np.stack([PERFECT, PERFECT]), np.stack([GT, empty]))
    assert (s.v_rand, s.v_info) == (0.5, 0.5)


def test_v_rand_v_info_equal_challenge_scores_and_results_are_copies():
    rng = np.random.default_rng(7)
    prob = rng.random((2, 20, 20)).astype(np.float32)
    truth = np.stack([gt_like(rng) for _ in range(2)])
    both = challenge_scores(prob, truth)
    r = v_rand(prob, truth, per_threshold=True)
    r.scores[:] = -1  # mutating a result must not leak into the cache
    assert v_rand(prob, truth) == both.v_rand
    assert v_info(prob, truth) == both.v_info
    np.testing.assert_array_equal(v_info(prob, truth, per_threshold=True).scores, both.v_info_per_threshold)
    assert isinstance(v_rand(prob, truth), float)


def gt_like(rng):
    return (ndimage.binary_erosion(rng.random((20, 20)) < 0.85) * 255).astype(np.uint8)


def test_input_checks():
    with pytest.raises(ValueError, match="shapes differ"):
        v_rand(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(Z, H, W\)"):
        v_info(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="thresholds"):
        v_rand(PERFECT, GT, thresholds=[])
    with pytest.raises(ValueError, match="step"):
        fiji_thresholds(step=0)


# ---- thinning against a direct port of Fiji's flooding --------------------------------------------


def reference_thin(cell):
    """Line-by-line port of WatershedTransform2D.apply (Trainable_Segmentation) for the metrics' input:
    cell pixels at level 0, membrane at 255, connectivity 4, FIFO queue, the WSHED ``flag``."""
    cell = np.asarray(cell, bool)
    h, w = cell.shape
    mask, wshed, init, inqueue = -2, 0, -1, -3
    lab = [[init] * h for _ in range(w)]  # lab[x][y]
    pixels = sorted(((0 if cell[y, x] else 255, x, y) for x in range(w) for y in range(h)), key=lambda p: p[0])

    def nbrs(x, y):
        return ((x - 1, y), (x, y - 1), (x + 1, y), (x, y + 1))

    current, flag, fifo = 0, False, deque()
    for level in sorted({p[0] for p in pixels}):
        at_level = [(x, y) for v, x, y in pixels if v == level]
        for x, y in at_level:
            lab[x][y] = mask
            for u, v in nbrs(x, y):
                if 0 <= u < w and 0 <= v < h and lab[u][v] >= wshed:
                    fifo.append((x, y))
                    lab[x][y] = inqueue
                    break
        while fifo:
            i, j = fifo.popleft()
            for u, v in nbrs(i, j):
                if not (0 <= u < w and 0 <= v < h):
                    continue
                if lab[u][v] > 0:
                    if lab[i][j] == inqueue or (lab[i][j] == wshed and flag):
                        lab[i][j] = lab[u][v]
                    elif lab[i][j] > 0 and lab[i][j] != lab[u][v]:
                        lab[i][j], flag = wshed, False
                elif lab[u][v] == wshed:
                    if lab[i][j] == inqueue:
                        lab[i][j], flag = wshed, True
                elif lab[u][v] == mask:
                    lab[u][v] = inqueue
                    fifo.append((u, v))
        for x, y in at_level:
            if lab[x][y] == mask:
                current += 1
                fifo.append((x, y))
                lab[x][y] = current
                while fifo:
                    p, q = fifo.popleft()
                    for u, v in nbrs(p, q):
                        if 0 <= u < w and 0 <= v < h and lab[u][v] == mask:
                            fifo.append((u, v))
                            lab[u][v] = current
    out = np.array(lab).T
    out[out == init] = 0
    return out


def same_partition(a, b):
    """Same boundary pixels (0) and a one-to-one correspondence between the other labels."""
    if not np.array_equal(a == 0, b == 0):
        return False
    keep = a != 0
    pairs = np.unique(np.stack([a[keep], b[keep]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def test_thinning_matches_reference_port_on_random_masks():
    rng = np.random.default_rng(11)
    for trial in range(150):
        h, w = rng.integers(2, 22, size=2)
        if trial % 3 == 0:
            cell = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        elif trial % 3 == 1:
            field = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.6, 2.0))
            cell = field > np.quantile(field, rng.uniform(0.2, 0.95))
        else:
            cell = rng.random((h, w)) < 0.15  # few cells, wide membrane: long queues, many plateaus
        assert same_partition(metrics._thin_borders(cell), reference_thin(cell)), cell.astype(int)


# ---- agreement with Fiji's own code -----------------------------------------------------------------
# tests/data/fiji_reference.npz holds small cases scored by Fiji's Java metric classes (how it was made:
# the ``note`` entry). Observed agreement: within 5e-16.

CASES = ["prob", "binary", "uint8", "uint8b", "edge", "noise"]


@pytest.fixture(scope="module")
def fiji():
    return np.load(FIXTURE)


def case_proposal(fiji, case):
    if f"{case}_proposal" in fiji.files:
        return fiji[f"{case}_proposal"]
    return fiji[f"{case}_proposal_q"].astype(np.float32) / np.float32(255)


@pytest.mark.parametrize("case", CASES)
def test_agrees_with_fiji(fiji, case):
    thr = fiji_thresholds(float(fiji[f"{case}_max_threshold"]))
    np.testing.assert_array_equal(thr, fiji[f"{case}_thresholds"])
    s = challenge_scores(case_proposal(fiji, case), fiji[f"{case}_truth"], thresholds=thr)
    np.testing.assert_allclose(s.v_rand_per_threshold, fiji[f"{case}_vrand"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(s.v_info_per_threshold, fiji[f"{case}_vinfo"], rtol=0, atol=1e-9)
    assert s.v_rand == pytest.approx(float(fiji[f"{case}_max_vrand"]), abs=1e-9)
    assert s.v_info == pytest.approx(float(fiji[f"{case}_max_vinfo"]), abs=1e-9)


def test_thinning_agrees_with_fiji(fiji):
    assert same_partition(metrics._thin_borders(fiji["thin_mask"]), fiji["thin_labels"])
    assert same_partition(reference_thin(fiji["thin_mask"]), fiji["thin_labels"])


# ---- how scikit-image's metrics differ ---------------------------------------------------------------


def test_relation_to_scikit_image(fiji):
    skm = pytest.importorskip("skimage.metrics")
    prob = case_proposal(fiji, "prob")[0]
    truth = fiji["prob_truth"][0]
    t = 0.5
    ours = challenge_scores(prob, truth, thresholds=[t])
    gt_labels, _ = ndimage.label(truth > t)

    # 1. Used directly on the thresholded map, scikit-image scores something else: no watershed thinning
    #    (every membrane pixel stays membrane), all membrane pixels of the proposal form ONE segment (label 0),
    #    pair counts n(n - 1) instead of n^2, and no threshold sweep.
    naive, _ = ndimage.label(prob > t)
    f_rand_naive = 1 - skm.adapted_rand_error(gt_labels, naive, ignore_labels=(0,))[0]
    assert abs(f_rand_naive - ours.v_rand) > 0.01  # 0.672 vs 0.693 on this crop

    # 2. Thinning the proposal Fiji's way and making each boundary-line pixel its own segment reproduces the
    #    challenge's contingency table; the challenge's V_rand is then 2 S / (A + B) with S = sum n_ij^2,
    #    A, B the sums of squared segment sizes (n^2 normalisation), scikit-image's 2 (S - n) / (A + B - 2 n).
    thinned = metrics._thin_borders(prob > t)
    line = thinned == 0
    thinned[line] = thinned.max() + 1 + np.arange(line.sum())
    table = skm.contingency_table(gt_labels, thinned, ignore_labels=[0]).tocsr()
    n = table.sum()
    s2 = (table.data**2).sum()
    a2 = (np.asarray(table.sum(axis=1)).ravel() ** 2).sum()
    b2 = (np.asarray(table.sum(axis=0)).ravel() ** 2).sum()
    assert ours.v_rand == pytest.approx(2 * s2 / (a2 + b2), abs=1e-12)
    f_rand_skimage = 1 - skm.adapted_rand_error(gt_labels, thinned, ignore_labels=(0,))[0]
    assert f_rand_skimage == pytest.approx(2 * (s2 - n) / (a2 + b2 - 2 * n), abs=1e-12)
    assert f_rand_skimage != pytest.approx(ours.v_rand, abs=1e-6)

    # 3. scikit-image's variation_of_information gives the conditional entropies [H(proposal | truth),
    #    H(truth | proposal)] in bits; normalised by the entropies they give the challenge's V_info
    #    (precision = 1 - H(truth | proposal) / H(truth), recall = 1 - H(proposal | truth) / H(proposal)).
    h_prop_given_gt, h_gt_given_prop = skm.variation_of_information(gt_labels, thinned, ignore_labels=[0])

    def entropy_bits(labels):
        p = np.unique(labels[gt_labels > 0], return_counts=True)[1] / n
        return -(p * np.log2(p)).sum()

    precision = 1 - h_gt_given_prop / entropy_bits(gt_labels)
    recall = 1 - h_prop_given_gt / entropy_bits(thinned)
    assert ours.v_info == pytest.approx(2 * precision * recall / (precision + recall), abs=1e-12)
