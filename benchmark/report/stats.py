"""Paired tests on per-image Dice: the Wilcoxon signed-rank test and Holm's step-down correction."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05


def min_two_sided_p(n: int) -> float:
    """The smallest two-sided p the exact signed-rank test can give on n non-zero differences:
    all signs equal, probability 2 / 2**n. Above ALPHA (n < 6), no outcome can be significant."""
    return min(1.0, 2.0 / 2.0**n)


@dataclass(frozen=True)
class Paired:
    """n: pairs; n_nonzero: pairs that enter the test (zero differences are dropped, Wilcoxon's
    convention); median_diff: median of a - b over all pairs; statistic/p NaN when nothing to test."""

    n: int
    n_nonzero: int
    median_diff: float
    statistic: float
    p: float

    @property
    def note(self) -> str:
        if self.n_nonzero == 0:
            return "no non-zero difference: nothing to test"
        floor = min_two_sided_p(self.n_nonzero)
        if floor > ALPHA:
            return (f"too few pairs for a meaningful test: with {self.n_nonzero} non-zero differences "
                    f"the smallest possible two-sided p is {floor:.3g} > {ALPHA}")
        return ""


def wilcoxon_paired(a: Sequence[float], b: Sequence[float]) -> Paired:
    """Two-sided Wilcoxon signed-rank test of a - b (scipy's defaults: zero differences dropped,
    exact distribution for small n without ties)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diff.size == 0:
        return Paired(0, 0, math.nan, math.nan, math.nan)
    nonzero = int(np.count_nonzero(diff))
    median = float(np.median(diff))
    if nonzero == 0:
        return Paired(int(diff.size), 0, median, math.nan, math.nan)
    result = stats.wilcoxon(a, b, alternative="two-sided")
    return Paired(int(diff.size), nonzero, median, float(result.statistic), float(result.pvalue))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in input order: sorted ascending, the i-th smallest of
    m is multiplied by m - i (i from 0), made non-decreasing, capped at 1. NaN p-values (no test)
    stay NaN and do not count in m."""
    finite = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    adjusted = [math.nan] * len(pvalues)
    m = len(finite)
    running = 0.0
    for rank, (p, index) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted
