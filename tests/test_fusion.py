"""Rank fusion rules on hand-made lists; expected rankings are computed by hand in comments."""

from __future__ import annotations

import math

import pytest

from clairo_bench.generative.fusion import fuse_by_agreement, fuse_ranked_lists


def test_rrf_orders_by_reciprocal_rank_sum():
    # With constant 1: item 7 = 1/2 + 1/3 = 0.833, item 3 = 1/3 + 1/2 = 0.833 (tie, 7 seen
    # first), item 5 = 1/4 = 0.25, item 9 = 1/4 = 0.25 (tie, 5 seen first at position 3 of list 1).
    fused = fuse_ranked_lists([[7, 3, 5], [3, 7, 9]], k=4, rrf_constant=1.0)
    assert fused == [7, 3, 5, 9]


def test_rrf_rewards_items_in_both_lists():
    # Item 2 is second in both lists: 2 / (60 + 2) = 0.0323 beats 1 / (60 + 1) = 0.0164.
    fused = fuse_ranked_lists([[1, 2], [4, 2]], k=3)
    assert fused[0] == 2


def test_rrf_skips_padding_and_repeats():
    # Padding (-1) and the repeated 4 do not take a rank, so 6 is rank 2 of list 1.
    fused = fuse_ranked_lists([[4, -1, 4, 6]], k=5, rrf_constant=0.0)
    assert fused == [4, 6]


def test_rrf_truncates_to_k():
    assert fuse_ranked_lists([[1, 2, 3, 4]], k=2) == [1, 2]


def test_score_fusion_averages_probabilities():
    # Item 1: (0.5 + 0) / 2 = 0.25; item 2: (0.3 + 0.4) / 2 = 0.35; item 3: (0 + 0.6) / 2 = 0.3.
    fused = fuse_ranked_lists([[1, 2], [3, 2]], k=3, scores=[[0.5, 0.3], [0.6, 0.4]])
    assert fused == [2, 3, 1]


def test_score_fusion_rejects_negative_scores():
    with pytest.raises(ValueError, match="negative"):
        fuse_ranked_lists([[1]], k=1, scores=[[-0.5]])


def test_score_fusion_rejects_mismatched_scores():
    with pytest.raises(ValueError, match="one score per list entry"):
        fuse_ranked_lists([[1, 2]], k=1, scores=[[0.5]])


def test_agreement_fusion_matches_mql4grec_rule():
    # text: 10 (-0.2), 11 (-0.5), 12 (-3.0); image: 20 (-0.1), 12 (-1.0).
    # Item 12 in both lists: (-3.0 + -1.0) / 2 + 1 = -1.0. Single-list items keep their score.
    # Ranking: 20 (-0.1), 10 (-0.2), 11 (-0.5), 12 (-1.0).
    fused = fuse_by_agreement(
        [[10, 11, 12], [20, 12]], [[-0.2, -0.5, -3.0], [-0.1, -1.0]], k=10
    )
    assert fused == [20, 10, 11, 12]


def test_agreement_bonus_lifts_shared_item():
    # Item 5 in both lists: (-0.9 + -0.7) / 2 + 1 = 0.2, above item 6 at -0.1.
    fused = fuse_by_agreement([[6, 5], [5]], [[-0.1, -0.9], [-0.7]], k=2)
    assert fused == [5, 6]


def test_agreement_fusion_ignores_padding():
    fused = fuse_by_agreement([[3, -1], [-1, 4]], [[-1.0, -math.inf], [-math.inf, -2.0]], k=5)
    assert fused == [3, 4]


def test_agreement_fusion_breaks_ties_by_position():
    # Equal scores: item 8 (position 1 of list 2) comes before item 9 (position 2 of list 1).
    fused = fuse_by_agreement([[7, 9], [8]], [[-0.1, -0.5], [-0.5]], k=3)
    assert fused == [7, 8, 9]
