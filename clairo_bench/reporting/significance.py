"""Paired significance tests on per-user metrics, Holm's step-down correction and confidence intervals.

Two methods scored on one split rank the same test users, so their per-user metrics are paired.
Both tests are two-sided:
- Wilcoxon signed-rank test (scipy.stats.wilcoxon with its defaults). Zero differences are
  dropped. As documented for scipy 1.17, the p-value is exact for up to 50 users without ties or
  zeros, comes from exhaustive sign permutations for up to 13 users with ties or zeros, and from
  the normal approximation otherwise;
- paired t-test (scipy.stats.ttest_rel).
Holm's correction (S. Holm, "A simple sequentially rejective multiple test procedure",
Scandinavian Journal of Statistics 6(2), 1979) controls the family-wise error rate over all
comparisons of one table.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairedTest:
    """Result of both paired tests on one pair of per-user arrays.

    Attributes:
        n_users: number of paired users.
        mean_difference: mean of (candidate - reference) over users.
        wilcoxon_statistic, wilcoxon_p: scipy's statistic and two-sided p-value.
        ttest_statistic, ttest_p: scipy's t statistic and two-sided p-value.
    """

    n_users: int
    mean_difference: float
    wilcoxon_statistic: float
    wilcoxon_p: float
    ttest_statistic: float
    ttest_p: float


def paired_tests(reference: np.ndarray, candidate: np.ndarray) -> PairedTest:
    """Run the Wilcoxon signed-rank test and the paired t-test of `candidate` against `reference`.

    When every difference is zero, neither test is defined and scipy returns NaN for the t-test.
    Both p-values are then 1.0, because the data show no difference at all.
    """
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 1:
        raise ValueError(
            f"Paired tests need two 1-D arrays of equal length, got shapes {reference.shape} and {candidate.shape}."
        )
    if len(reference) < 2:
        raise ValueError(f"Paired tests need at least 2 users, got {len(reference)}.")
    differences = candidate - reference
    mean_difference = float(differences.mean())
    if not np.any(differences):
        return PairedTest(len(reference), 0.0, 0.0, 1.0, 0.0, 1.0)
    with warnings.catch_warnings():
        # scipy warns about precision loss when differences are almost constant. Its p-values are
        # reported all the same, so the warning is silenced instead of repeated per comparison.
        warnings.simplefilter("ignore", RuntimeWarning)
        wilcoxon = stats.wilcoxon(candidate, reference)
        ttest = stats.ttest_rel(candidate, reference)
    return PairedTest(
        n_users=len(reference),
        mean_difference=mean_difference,
        wilcoxon_statistic=float(wilcoxon.statistic),
        wilcoxon_p=float(wilcoxon.pvalue),
        ttest_statistic=float(ttest.statistic),
        ttest_p=float(ttest.pvalue),
    )


def holm_adjust(pvalues: np.ndarray) -> np.ndarray:
    """Return Holm-adjusted p-values in the input order.

    With the m p-values sorted ascending as p_(1) <= ... <= p_(m), the adjusted value of p_(i) is
    max over j <= i of min(1, (m - j + 1) * p_(j)); rejecting where it is below alpha is Holm's
    procedure at level alpha. NaN entries stay NaN and do not count towards m.
    """
    pvalues = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(pvalues.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(pvalues))
    if len(valid) == 0:
        return adjusted
    if np.any((pvalues[valid] < 0) | (pvalues[valid] > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {pvalues[valid].tolist()}.")
    order = valid[np.argsort(pvalues[valid], kind="stable")]
    m = len(order)
    multipliers = m - np.arange(m)
    stepped = np.minimum(1.0, multipliers * pvalues[order])
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Return (mean, low, high): the t-interval for the mean of `values` over users.

    mean +/- t_{(1+confidence)/2, n-1} * s / sqrt(n), with s the sample standard deviation.
    A single value gives NaN bounds.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    n = len(values)
    if n < 2:
        return mean, math.nan, math.nan
    half_width = stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return mean, mean - float(half_width), mean + float(half_width)


def relative_gain_percent(value: float, baseline: float) -> float:
    """Return 100 * (value - baseline) / baseline, the way papers state "+45.1% over X"; NaN if baseline is 0."""
    if baseline == 0:
        return math.nan
    return 100.0 * (value - baseline) / baseline
