"""Evaluator: hand-computed metrics, tie handling, NaN, padding and batch-size invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clairo_bench.data.split import EvalPairs
from clairo_bench.evaluation import (
    NOT_RANKED,
    EvalSettings,
    EvaluationError,
    Evaluator,
    metrics_from_ranks,
    ranks_from_lists,
    ranks_from_scores,
)
from clairo_bench.methods.base import Method, MethodConfig, Recommendations


class FixedScores(Method):
    """Returns scores from a function of (history, n_items)."""

    name = "fixed-scores"
    config_class = MethodConfig

    def __init__(self, score_fn, n_items):
        super().__init__()
        self.score_fn = score_fn
        self.n_items = n_items

    def fit(self, dataset, split, context):
        pass

    def recommend(self, histories, k):
        return Recommendations(scores=np.stack([self.score_fn(h, self.n_items) for h in histories]))


class FixedLists(Method):
    name = "fixed-lists"
    config_class = MethodConfig

    def __init__(self, lists):
        super().__init__()
        self.lists = lists
        self.calls = 0

    def fit(self, dataset, split, context):
        pass

    def recommend(self, histories, k):
        rows = self.lists[self.calls : self.calls + len(histories)]
        self.calls += len(histories)
        return Recommendations(items=np.asarray(rows), invalid_generations=1, total_generations=4)


def pairs_of(histories, targets):
    return EvalPairs(
        users=np.arange(len(targets)),
        histories=[np.asarray(h, dtype=np.int64) for h in histories],
        targets=np.asarray(targets, dtype=np.int64),
    )


def test_ndcg_at_ranks_one_two_three():
    metrics = metrics_from_ranks(np.array([1, 2, 3]), ks=[10])
    assert metrics["ndcg@10"][0] == pytest.approx(1.0)
    assert metrics["ndcg@10"][1] == pytest.approx(0.6309, abs=1e-4)
    assert metrics["ndcg@10"][2] == pytest.approx(0.5)


def test_metrics_respect_cutoff():
    metrics = metrics_from_ranks(np.array([5, 6, NOT_RANKED]), ks=[5])
    assert metrics["recall@5"].tolist() == [1.0, 0.0, 0.0]
    assert metrics["mrr@5"][0] == pytest.approx(0.2)
    assert metrics["ndcg@5"][0] == pytest.approx(1 / math.log2(6))
    assert metrics["ndcg@5"][1] == 0.0


def test_ranks_from_scores_hand_case():
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [0.4, 0.2, 0.8, 0.6]])
    ranks = ranks_from_scores(scores, np.array([2, 0]))
    assert ranks.tolist() == [2, 3]


def test_constant_scorer_ranks_target_last():
    scores = np.zeros((3, 100))
    ranks = ranks_from_scores(scores, np.array([0, 50, 99]))
    assert ranks.tolist() == [100, 100, 100]
    assert metrics_from_ranks(ranks, [20])["recall@20"].sum() == 0.0


def test_nan_scores_raise():
    scores = np.array([[0.1, np.nan, 0.3]])
    with pytest.raises(EvaluationError, match="NaN"):
        ranks_from_scores(scores, np.array([0]))


def test_history_exclusion_removes_items_above_target():
    scores = np.array([[0.9, 0.8, 0.1, 0.5]])
    plain = ranks_from_scores(scores, np.array([3]))
    masked = ranks_from_scores(scores, np.array([3]), [np.array([0, 1])])
    assert plain.tolist() == [3]
    assert masked.tolist() == [1]


def test_history_exclusion_of_target_is_never_a_hit():
    scores = np.array([[0.9, 0.8, 0.1]])
    ranks = ranks_from_scores(scores, np.array([0]), [np.array([0])])
    assert ranks.tolist() == [NOT_RANKED]


def test_padding_and_unknown_ids_never_hit():
    items = np.array([[-1, -1, 7], [99, 3, -1], [4, 4, 3]])
    ranks = ranks_from_lists(items, np.array([-1, 99, 3]), n_items=10)
    assert ranks[0] == NOT_RANKED
    assert ranks[1] == NOT_RANKED
    assert ranks[2] == 2  # the repeated 4 counts once, so 3 is second


def test_recall_stays_in_unit_interval():
    rng = np.random.default_rng(0)
    method = FixedScores(lambda h, n: rng.random(n), n_items=50)
    pairs = pairs_of([[1]] * 40, rng.integers(0, 50, size=40))
    result = Evaluator(EvalSettings(ks=(5, 10, 20))).evaluate(method, pairs, n_items=50)
    for k in (5, 10, 20):
        values = result.per_user[f"recall@{k}"]
        assert values.min() >= 0.0
        assert values.max() <= 1.0


def test_metrics_invariant_to_batch_size():
    def score(history, n_items):
        generator = np.random.default_rng(int(np.sum(history)))
        return generator.random(n_items)

    rng = np.random.default_rng(1)
    histories = [rng.integers(0, 30, size=rng.integers(1, 6)) for _ in range(37)]
    targets = rng.integers(0, 30, size=37)
    results = []
    for batch_size in (1, 5, 64):
        evaluator = Evaluator(EvalSettings(batch_size=batch_size))
        results.append(evaluator.evaluate(FixedScores(score, 30), pairs_of(histories, targets), 30))
    assert np.array_equal(results[0].ranks, results[1].ranks)
    assert np.array_equal(results[0].ranks, results[2].ranks)


def test_list_output_counts_invalid_generations():
    method = FixedLists([[2, 1, -1], [0, -1, -1]])
    result = Evaluator(EvalSettings(ks=(1, 2), batch_size=1)).evaluate(
        method, pairs_of([[5], [6]], [1, 0]), n_items=10
    )
    assert result.ranks.tolist() == [2, 1]
    assert result.summary()["invalid_generation_rate"] == pytest.approx(2 / 8)


def test_scores_over_wrong_catalogue_raise():
    method = FixedScores(lambda h, n: np.zeros(n + 1), n_items=10)
    with pytest.raises(EvaluationError, match="catalogue"):
        Evaluator().evaluate(method, pairs_of([[1]], [2]), n_items=10)


def test_excluded_items_never_count_against_target():
    scores = np.array([[-np.inf, 0.5, -np.inf, 0.1]])
    ranks = ranks_from_scores(scores, np.array([2]), [np.array([0])])
    assert ranks.tolist() == [3]


def test_float_item_lists_raise():
    with pytest.raises(EvaluationError, match="integer"):
        ranks_from_lists(np.array([[0.5, 2.0]]), np.array([2]), n_items=5)


def test_one_dimensional_scores_raise():
    method = FixedScores(lambda h, n: np.zeros(n), n_items=4)
    method.recommend = lambda histories, k: Recommendations(scores=np.zeros(4))
    with pytest.raises(EvaluationError, match="shape"):
        Evaluator().evaluate(method, pairs_of([[1]], [2]), n_items=4)
