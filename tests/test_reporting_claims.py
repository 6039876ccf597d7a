import math

import numpy as np
import pytest
from scipy import stats

from clairo_bench.reporting.claims import PUBLISHED_CLAIMS, check_claims, compare_with_published, verdict
from clairo_bench.reporting.collect import discover_runs, select_runs
from test_reporting_support import ranks_with_hits, write_run

N_USERS = 30


@pytest.fixture
def results(tmp_path):
    # Only CLAIRO and ActionPiece have finished runs; MQL4GRec failed and the variants never ran.
    write_run(tmp_path, "clairo", 0, ranks_with_hits(N_USERS, 15))
    write_run(tmp_path, "clairo", 1, ranks_with_hits(N_USERS, 13))
    write_run(tmp_path, "actionpiece", 0, ranks_with_hits(N_USERS, 10))
    write_run(tmp_path, "mql4grec", 0, ranks_with_hits(N_USERS, 10), status="failed")
    selection = select_runs(discover_runs(tmp_path, "toy"), "toy")
    return {result.claim.key: result for result in check_claims(selection)}


def test_claims_with_missing_runs_are_untested(results):
    for key in ("gain-over-mql4grec", "final-pca-hurts", "text-only-close", "image-only-worse"):
        assert not results[key].tested
        assert results[key].verdict == "untested"


def test_untested_claim_names_missing_method(results):
    assert "no finished run of mql4grec" in results["gain-over-mql4grec"].reason
    assert "no finished run of clairo-final-pca" in results["final-pca-hurts"].reason


def test_actionpiece_claim_uses_published_metric(results):
    assert results["gain-over-actionpiece"].metric == "ndcg@5"


def test_actionpiece_claim_measured_gain_hand_case(results):
    # NDCG@5 with hits at rank 1 equals Recall@5: CLAIRO 28/60, ActionPiece 1/3 -> +40%.
    assert results["gain-over-actionpiece"].measured_percent == pytest.approx(40.0)
    assert results["gain-over-actionpiece"].magnitude == "below the published figure"


def test_actionpiece_claim_p_value_and_verdict(results):
    clairo = np.array([1.0] * 13 + [0.5] * 2 + [0.0] * 15)
    actionpiece = np.array([1.0] * 10 + [0.0] * 20)
    expected = stats.wilcoxon(clairo, actionpiece).pvalue
    result = results["gain-over-actionpiece"]
    # One claim tested, so Holm leaves its p-value unchanged.
    assert result.wilcoxon_p_holm == pytest.approx(expected)
    assert result.verdict == ("supported" if expected < 0.05 else "not significant")


@pytest.mark.parametrize(
    ("direction", "measured", "p_value", "expected"),
    [
        ("higher", 10.0, 0.01, "supported"),
        ("higher", -10.0, 0.01, "contradicted"),
        ("higher", 10.0, 0.2, "not significant"),
        ("lower", -40.0, 0.001, "supported"),
        ("lower", 5.0, 0.001, "contradicted"),
        ("close", 3.0, 0.001, "supported"),
        ("close", -12.0, 0.001, "contradicted"),
        ("close", 12.0, 0.3, "inconclusive"),
        ("higher", math.nan, 0.01, "inconclusive"),
    ],
)
def test_verdict_rules(direction, measured, p_value, expected):
    assert verdict(direction, measured, p_value) == expected


@pytest.mark.parametrize(
    ("measured", "expected"),
    [(-39.0, "within the published figure"), (-30.0, "above the published figure"),
     (-50.0, "below the published figure")],
)
def test_compare_with_published_range(measured, expected):
    final_pca = next(claim for claim in PUBLISHED_CLAIMS if claim.key == "final-pca-hurts")
    assert compare_with_published(final_pca, measured) == expected


def test_compare_without_published_figure():
    image_only = next(claim for claim in PUBLISHED_CLAIMS if claim.key == "image-only-worse")
    assert compare_with_published(image_only, -10.0) == "no published figure"
