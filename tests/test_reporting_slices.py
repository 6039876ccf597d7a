import numpy as np
import pandas as pd
import pytest

from clairo_bench.reporting.slices import history_length_buckets, popularity_groups, slice_metrics

# Training counts of six items: 20 interactions. Head needs 20% = 4 interactions, and item 0 (10)
# alone accounts for them. Tail may account for at most 4: counts <= 1 sum to 0 + 1 + 1 = 2, counts
# <= 3 would sum to 5, so tail = items with count <= 1 (items 3, 4 and the unseen item 5).
COUNTS = np.array([10, 5, 3, 1, 1, 0])


def test_popularity_groups_hand_case():
    groups = popularity_groups(COUNTS)
    assert groups.labels.tolist() == ["head", "torso", "torso", "tail", "tail", "tail"]


def test_popularity_groups_boundaries():
    groups = popularity_groups(COUNTS)
    assert groups.head_min_count == 10
    assert groups.tail_max_count == 1


def test_popularity_groups_state_shares():
    groups = popularity_groups(COUNTS)
    assert groups.definitions["head"] == ">= 10 training interactions: 1 item, 50.0% of training interactions"
    assert groups.definitions["tail"] == "<= 1 training interactions: 3 items, 10.0% of training interactions"


def test_popularity_groups_keep_ties_together():
    # Head needs 50% of 10 = 5 interactions. Count >= 4 sums to 4 and count >= 2 to 8, so both items
    # with count 2 are head although one of them would already reach 5.
    groups = popularity_groups(np.array([4, 2, 2, 1, 1]), head_share=0.5, tail_share=0.2)
    assert groups.labels.tolist() == ["head", "head", "head", "tail", "tail"]


def test_popularity_groups_reject_invalid_shares():
    with pytest.raises(ValueError, match="head_share"):
        popularity_groups(COUNTS, head_share=0.7, tail_share=0.5)


def test_history_buckets_hand_case():
    # Quartiles by numpy's "lower" method of 1..8 are 2, 4, 6 and 8.
    assert history_length_buckets(np.arange(1, 9), 4) == [(1, 2), (3, 4), (5, 6), (7, 8)]


def test_history_buckets_merge_equal_bounds():
    # Six of eight users have length 2, so the first three quartile bounds coincide.
    assert history_length_buckets(np.array([2, 2, 2, 2, 2, 2, 5, 9]), 4) == [(2, 2), (3, 9)]


def per_user_frame(targets, lengths, values):
    return pd.DataFrame(
        {"target_index": targets, "history_length": lengths, "ndcg@10": values},
        index=[f"U{i}" for i in range(len(targets))],
    )


def test_slice_metrics_hand_case():
    # Users' targets: items 0 (head), 1 (torso), 3 and 5 (tail); lengths 1, 2, 3, 4.
    frame = per_user_frame([0, 1, 3, 5], [1, 2, 3, 4], [1.0, 0.5, 0.0, 0.25])
    report = slice_metrics({"sasrec": frame}, ["ndcg@10"], item_counts=COUNTS, n_history_buckets=2)
    table = report.table.set_index(["kind", "slice"])
    assert table.loc[("item popularity", "head"), "mean"] == pytest.approx(1.0)
    assert table.loc[("item popularity", "torso"), "mean"] == pytest.approx(0.5)
    assert table.loc[("item popularity", "tail"), "mean"] == pytest.approx(0.125)
    assert table.loc[("item popularity", "tail"), "n_users"] == 2
    assert table.loc[("history length", "1-2"), "mean"] == pytest.approx(0.75)
    assert table.loc[("history length", "3-4"), "mean"] == pytest.approx(0.125)


def test_slice_metrics_without_counts_has_only_history(tmp_path):
    frame = per_user_frame([0, 1], [1, 2], [1.0, 0.0])
    report = slice_metrics({"sasrec": frame}, ["ndcg@10"])
    assert set(report.table["kind"]) == {"history length"}


def test_slice_metrics_reject_targets_outside_counts():
    frame = per_user_frame([0, 9], [1, 2], [1.0, 0.0])
    with pytest.raises(ValueError, match="another dataset"):
        slice_metrics({"sasrec": frame}, ["ndcg@10"], item_counts=COUNTS)
