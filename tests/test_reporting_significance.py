import math

import numpy as np
import pytest
from scipy import stats

from clairo_bench.reporting.significance import holm_adjust, paired_tests, relative_gain_percent, t_interval

REFERENCE = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.3, 0.0, 0.8, 0.2, 0.0, 0.6, 0.1])
CANDIDATE = np.array([0.2, 1.0, 0.1, 0.0, 0.4, 0.0, 0.0, 0.5, 0.0, 0.3, 0.2, 0.0])


@pytest.fixture(scope="module")
def result():
    # scipy permutes all signs for 13 or fewer users with ties, which takes most of a second.
    return paired_tests(REFERENCE, CANDIDATE)


def test_paired_tests_match_scipy_wilcoxon(result):
    expected = stats.wilcoxon(CANDIDATE, REFERENCE)
    assert result.wilcoxon_p == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.wilcoxon_statistic == pytest.approx(expected.statistic)


def test_paired_tests_match_scipy_ttest_rel(result):
    expected = stats.ttest_rel(CANDIDATE, REFERENCE)
    assert result.ttest_p == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.ttest_statistic == pytest.approx(expected.statistic)


def test_paired_tests_mean_difference_and_count(result):
    assert result.n_users == 12
    assert result.mean_difference == pytest.approx((CANDIDATE - REFERENCE).mean())


def test_wilcoxon_exact_hand_case():
    # Five positive differences with distinct ranks: only 2 of the 2^5 sign patterns are as extreme
    # (all positive, all negative), so the exact two-sided p-value is 2 / 32.
    result = paired_tests(np.zeros(5), np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert result.wilcoxon_p == pytest.approx(2 / 32)


def test_ttest_statistic_hand_case():
    # Differences 1, 2, 3, 4: mean 2.5, sample variance 5/3, so t = 2.5 / sqrt(5/3 / 4) = sqrt(15).
    result = paired_tests(np.zeros(4), np.array([1.0, 2.0, 3.0, 4.0]))
    assert result.ttest_statistic == pytest.approx(math.sqrt(15))


def test_identical_arrays_give_p_one():
    values = np.array([0.0, 1.0, 0.5])
    result = paired_tests(values, values.copy())
    assert result.wilcoxon_p == 1.0
    assert result.ttest_p == 1.0


def test_paired_tests_reject_unequal_lengths():
    with pytest.raises(ValueError, match="equal length"):
        paired_tests(np.zeros(3), np.zeros(4))


def test_holm_hand_case():
    # Sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> raised to
    # the running maximum 0.06). Back in input order:
    adjusted = holm_adjust(np.array([0.01, 0.04, 0.03, 0.005]))
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one():
    # 0.5 x 2 = 1.0; 0.6 x 1 = 0.6 is raised to the running maximum 1.0.
    np.testing.assert_allclose(holm_adjust(np.array([0.6, 0.5])), [1.0, 1.0])


def test_holm_ignores_nan_in_family_size():
    adjusted = holm_adjust(np.array([0.01, np.nan, 0.02]))
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.02])


def test_holm_single_value_unchanged():
    np.testing.assert_allclose(holm_adjust(np.array([0.037])), [0.037])


def test_relative_gain_hand_case():
    assert relative_gain_percent(0.145, 0.1) == pytest.approx(45.0)
    assert relative_gain_percent(0.06, 0.1) == pytest.approx(-40.0)


def test_relative_gain_zero_baseline_is_nan():
    assert math.isnan(relative_gain_percent(0.1, 0.0))


def test_t_interval_hand_case():
    # Values 0, 1, 0, 1: mean 0.5, s = sqrt(1/3), t(0.975, 3) = 3.182446 (t table).
    mean, low, high = t_interval(np.array([0.0, 1.0, 0.0, 1.0]))
    half_width = 3.182446 * math.sqrt(1 / 3) / 2
    assert mean == pytest.approx(0.5)
    assert low == pytest.approx(0.5 - half_width, rel=1e-6)
    assert high == pytest.approx(0.5 + half_width, rel=1e-6)
