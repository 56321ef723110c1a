"""The statistics a reviewer asks of an ablation: a 95% t-interval per cell, and paired tests over seeds.

Runs of the same seed in two variants share their data order, augmentation
draws and initial random state as far as the variants allow, so the paper's
comparisons (both vs long_only, both vs short_only, both vs none at each
depth) are paired by seed: the difference per seed, its mean with a t-interval,
and the two-sided paired t-test (``scipy.stats.ttest_rel``). With n seeds the
test has n - 1 degrees of freedom; with fewer than two pairs there is no
interval and no p-value, and the report says so rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
ALPHA = 0.05
COMPARISONS = (("both", "long_only"), ("both", "short_only"), ("both", "none"))  # the paper's questions


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided t-interval over ``n`` values (``low``/``high`` None for n < 2)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def half_width(self) -> float | None:
        return None if self.high is None else (self.high - self.low) / 2


def t_interval(values: list[float], level: float = LEVEL) -> Interval | None:
    """Mean and t-interval (sample std, n - 1 degrees of freedom); None for no values."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return None
    mean = float(array.mean())
    if array.size < 2:
        return Interval(mean, None, None, 1)
    sem = float(stats.sem(array))
    if sem == 0.0:
        return Interval(mean, mean, mean, int(array.size))
    low, high = stats.t.interval(level, array.size - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), int(array.size))


@dataclass(frozen=True)
class Paired:
    """``a`` minus ``b`` per shared seed: the mean difference with its interval, and the paired t-test's p."""

    a: str
    b: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    interval: Interval | None
    p_value: float | None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


def paired(a: str, b: str, a_by_seed: dict[int, float], b_by_seed: dict[int, float]) -> Paired:
    """The paired comparison of two variants over the seeds both have."""
    seeds = tuple(sorted(set(a_by_seed) & set(b_by_seed)))
    x = np.array([a_by_seed[s] for s in seeds], dtype=np.float64)
    y = np.array([b_by_seed[s] for s in seeds], dtype=np.float64)
    diff = x - y
    p = None
    if len(seeds) >= 2:  # no spread makes t infinite (p 0) or 0/0 (all equal: p 1), which scipy leaves as nan
        spread = not np.all(diff == diff[0])
        p = float(stats.ttest_rel(x, y).pvalue) if spread else float(diff[0] == 0)
    return Paired(a, b, seeds, tuple(float(d) for d in diff), t_interval(list(diff)), p)


def adjusted_p(p_values: list[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (``scipy.stats.false_discovery_control``) of those that are not None."""
    given = [p for p in p_values if p is not None]
    adjusted = iter(stats.false_discovery_control(given).tolist() if given else [])
    return [None if p is None else float(next(adjusted)) for p in p_values]


def describe(comparison: Paired, metric: str, depth: int, digits: int = 3) -> str:
    """One sentence: which variant scored higher, by how much, with its interval and p, and whether it is
    significant at ``ALPHA``."""
    c = comparison
    n = len(c.seeds)
    if n == 0:
        return f"depth {depth}, {c.a} vs {c.b} ({metric}): no seed has both runs."
    mean = c.interval.mean
    higher, lower = (c.a, c.b) if mean >= 0 else (c.b, c.a)
    if n < 2:
        return (f"depth {depth}, {metric}: {higher} above {lower} by {abs(mean):.{digits}f} on one seed only; "
                "no interval or test is possible with one pair.")
    ci = f"95% CI {c.interval.low:+.{digits}f} to {c.interval.high:+.{digits}f}"
    verdict = "significant" if c.significant else "not significant"
    return (f"depth {depth}, {metric}: {c.a} − {c.b} = {mean:+.{digits}f} ({ci}, paired t-test p = "
            f"{c.p_value:.3g}, {n} seeds): {verdict} at {ALPHA:g}.")
