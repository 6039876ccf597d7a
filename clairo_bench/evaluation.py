"""Full-ranking evaluation with one held-out target per user; the only place metrics are computed.

For each user the evaluator finds the 1-based rank of the target among all catalogue items:
- from scores, rank = 1 + number of other items whose score is greater than or equal to the
  target's, so ties count against the target and a constant scorer ranks every target last;
- from a ranked list, rank = position of the target, or "not ranked" when it is absent.
Per-user metrics for a cut-off K, with a single relevant item:
- Recall@K = 1 if rank <= K else 0 (equal to hit rate with one target);
- NDCG@K = 1 / log2(rank + 1) if rank <= K else 0 (the ideal DCG is 1);
- MRR@K = 1 / rank if rank <= K else 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from clairo_bench.data.split import EvalPairs
from clairo_bench.methods.base import Method, Recommendations

logger = logging.getLogger(__name__)

NOT_RANKED = np.iinfo(np.int64).max
METRICS = ("recall", "ndcg", "mrr")

# Scores held in memory at once: batch_size x n_items floats are capped near this count, so that a
# catalogue of a million items is scored a few users at a time (64M float32 = 256 MiB).
MAX_SCORES_PER_BATCH = 64 * 1024 * 1024


class EvaluationError(ValueError):
    """A method returned something the evaluator cannot score."""


@dataclass(frozen=True)
class EvalSettings:
    """Settings of the evaluation protocol; recorded with every result.

    Attributes:
        ks: cut-offs K for Recall@K, NDCG@K and MRR@K.
        exclude_history_items: when true, items in a user's history are removed from the ranking
            (a target that also occurs in the history then cannot be a hit).
            NOTE: the history is the capped one the model reads (split.max_history_items), so
            older interactions stay rankable.
        batch_size: histories per call to `Method.recommend`; metrics do not depend on it.
    """

    ks: tuple[int, ...] = (5, 10, 20)
    exclude_history_items: bool = False
    batch_size: int = 256

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"Cut-offs must be positive integers, got {self.ks}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}.")

    @property
    def max_k(self) -> int:
        return max(self.ks)

    def protocol(self) -> dict:
        """Describe the protocol for run records and leaderboard headers."""
        return {
            "ranking": "full catalogue",
            "targets_per_user": 1,
            "tie_break": "against the target",
            **asdict(self),
        }


@dataclass
class EvalResult:
    """Per-user ranks and metrics of one evaluation.

    Attributes:
        users: user index of each row.
        targets: target item index of each row.
        ranks: 1-based rank of the target; NOT_RANKED when a ranked list did not contain it.
        per_user: metric name (for example "ndcg@10") -> per-user values.
        invalid_generations, total_generations: summed over batches (generative methods).
    """

    users: np.ndarray
    targets: np.ndarray
    ranks: np.ndarray
    per_user: dict[str, np.ndarray]
    invalid_generations: int = 0
    total_generations: int = 0

    def summary(self) -> dict[str, float]:
        """Average every metric over users; add the invalid-generation rate where defined."""
        result = {name: float(values.mean()) for name, values in self.per_user.items()}
        if self.total_generations:
            result["invalid_generation_rate"] = self.invalid_generations / self.total_generations
        return result


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Compute per-user Recall@K, NDCG@K and MRR@K from 1-based target ranks."""
    ranks = np.asarray(ranks, dtype=np.int64)
    ranked = ranks != NOT_RANKED
    safe_ranks = np.where(ranked, ranks, 1).astype(np.float64)
    metrics: dict[str, np.ndarray] = {}
    for k in ks:
        hit = ranked & (ranks <= k)
        metrics[f"recall@{k}"] = hit.astype(np.float64)
        metrics[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(safe_ranks + 1.0), 0.0)
        metrics[f"mrr@{k}"] = np.where(hit, 1.0 / safe_ranks, 0.0)
    return metrics


def ranks_from_scores(
    scores: np.ndarray,
    targets: np.ndarray,
    histories: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Rank each target within its row of `scores`, ties counting against the target.

    When `histories` is given, those items are removed from the ranking first.
    """
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
        raise EvaluationError(f"Scores must be real numbers, got dtype {scores.dtype}.")
    if scores.ndim != 2 or scores.shape[0] != len(targets):
        raise EvaluationError(
            f"Scores must have shape (batch, n_items) with batch = {len(targets)}, "
            f"got {scores.shape}."
        )
    nan_rows = np.flatnonzero(np.isnan(scores).any(axis=1))
    if len(nan_rows):
        raise EvaluationError(
            f"Method returned NaN scores for {len(nan_rows)} of {len(targets)} histories in this "
            f"batch (first row {int(nan_rows[0])}); NaN cannot be ranked. Check the model for "
            "diverged training or division by zero."
        )
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets]
    # Counting items scored >= the target includes the target itself, so the count is 1-based.
    at_least_target = scores >= target_scores[:, None]
    if histories is not None:
        # Excluded items leave the ranking entirely, whatever their score.
        excluded = np.zeros(scores.shape, dtype=bool)
        for row, history in enumerate(histories):
            excluded[row, np.asarray(history, dtype=np.int64)] = True
        at_least_target &= ~excluded
    ranks = at_least_target.sum(axis=1).astype(np.int64)
    if histories is not None:
        ranks[excluded[rows, targets]] = NOT_RANKED
    return ranks


def ranks_from_lists(
    items: np.ndarray,
    targets: np.ndarray,
    n_items: int,
    histories: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Find each target's 1-based position in its ranked list; NOT_RANKED where absent.

    Padding (-1) and ids outside the catalogue never count as hits. Repeated items count once,
    at their first position. When `histories` is given, history items are dropped from the list
    before positions are counted.
    """
    items = np.asarray(items)
    if items.size and not np.issubdtype(items.dtype, np.integer):
        raise EvaluationError(f"Ranked lists must hold integer item indices, got dtype {items.dtype}.")
    if items.ndim != 2 or items.shape[0] != len(targets):
        raise EvaluationError(
            f"Ranked lists must have shape (batch, k) with batch = {len(targets)}, "
            f"got {items.shape}."
        )
    ranks = np.full(len(targets), NOT_RANKED, dtype=np.int64)
    for row, target in enumerate(targets):
        excluded = set() if histories is None else set(np.asarray(histories[row]).tolist())
        seen: set[int] = set()
        position = 0
        for item in items[row].tolist():
            if item < 0 or item >= n_items or item in seen or item in excluded:
                continue
            seen.add(item)
            position += 1
            if item == target:
                ranks[row] = position
                break
    return ranks


class Evaluator:
    """Scores a method on evaluation pairs with one protocol for every method."""

    def __init__(self, settings: EvalSettings | None = None) -> None:
        self.settings = settings or EvalSettings()

    def evaluate(
        self,
        method: Method,
        pairs: EvalPairs,
        n_items: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> EvalResult:
        """Ask `method` for rankings of every history in `pairs` and compute per-user metrics."""
        settings = self.settings
        batch_size = max(1, min(settings.batch_size, MAX_SCORES_PER_BATCH // max(n_items, 1)))
        longest_history = max((len(h) for h in pairs.histories), default=0)
        # A list that drops history items must start longer so that max_k items remain.
        list_length = settings.max_k + (longest_history if settings.exclude_history_items else 0)
        list_length = min(list_length, n_items)
        ranks = np.empty(len(pairs), dtype=np.int64)
        invalid = total = 0
        for start in range(0, len(pairs), batch_size):
            stop = min(start + batch_size, len(pairs))
            histories = pairs.histories[start:stop]
            targets = pairs.targets[start:stop]
            output = method.recommend(histories, list_length)
            if not isinstance(output, Recommendations):
                raise EvaluationError(
                    f"Method {method.name!r} returned {type(output).__name__}; "
                    "recommend() must return a Recommendations object."
                )
            masked = histories if settings.exclude_history_items else None
            if output.scores is not None:
                output.scores = np.asarray(output.scores)
                if output.scores.ndim != 2 or output.scores.shape[1] != n_items:
                    raise EvaluationError(
                        f"Method {method.name!r} returned scores of shape {output.scores.shape}; "
                        f"expected (batch, {n_items}) over the whole catalogue."
                    )
                ranks[start:stop] = ranks_from_scores(output.scores, targets, masked)
            else:
                ranks[start:stop] = ranks_from_lists(output.items, targets, n_items, masked)
            invalid += output.invalid_generations
            total += output.total_generations
            if progress is not None:
                progress(stop, len(pairs))
        return EvalResult(
            users=pairs.users,
            targets=pairs.targets,
            ranks=ranks,
            per_user=metrics_from_ranks(ranks, settings.ks),
            invalid_generations=invalid,
            total_generations=total,
        )

