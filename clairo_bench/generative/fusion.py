"""Fusion of several ranked item lists into one ranking.

Two rules are provided:
- `fuse_ranked_lists`: reciprocal-rank fusion when no scores are given, or the mean of
  non-negative per-list scores (for example probabilities) when they are. ActionPiece uses it to
  merge the lists of several segmentations of one history.
- `fuse_by_agreement`: the rule of the public MQL4GRec code (Zhai et al., ICLR 2025) that merges
  the text and image beam-search lists. An item found by one list keeps that list's beam score.
  An item found by several lists gets the mean of their scores plus a bonus.

Both functions skip negative item indices (the -1 padding of `Recommendations.items`), count an
item at most once per list (its first position), and break ties deterministically by the first
position at which an item occurs, scanning the lists in order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

RRF_CONSTANT = 60.0
"""Default constant k of reciprocal-rank fusion, 1 / (k + rank); 60 is the customary value."""


def _first_occurrences(lists: Sequence[Sequence[int]]) -> dict[int, int]:
    """Map each valid item to a tie-break key: the order in which the lists first show it."""
    order: dict[int, int] = {}
    longest = max((len(ranked) for ranked in lists), default=0)
    # Scanning position by position across lists ranks an item seen at position 1 of list 2
    # before an item seen at position 2 of list 1.
    for position in range(longest):
        for ranked in lists:
            if position < len(ranked):
                item = int(ranked[position])
                if item >= 0 and item not in order:
                    order[item] = len(order)
    return order


def _check_scores(lists: Sequence[Sequence[int]], scores: Sequence[Sequence[float]]) -> None:
    if len(scores) != len(lists):
        raise ValueError(f"Got {len(lists)} ranked lists but {len(scores)} score lists.")
    for index, (ranked, values) in enumerate(zip(lists, scores)):
        if len(ranked) != len(values):
            raise ValueError(
                f"Ranked list {index} has {len(ranked)} items but {len(values)} scores; "
                "give one score per list entry."
            )


def fuse_ranked_lists(
    lists: Sequence[Sequence[int]],
    k: int,
    scores: Sequence[Sequence[float]] | None = None,
    rrf_constant: float = RRF_CONSTANT,
) -> list[int]:
    """Merge ranked item lists (best first) into one list of at most k distinct items.

    Without `scores`, an item's fused score is the reciprocal-rank sum
    sum over lists of 1 / (rrf_constant + rank), with rank 1-based and lists that miss the item
    contributing 0. With `scores`, one non-negative value per list entry (higher is better, such
    as a probability), the fused score is the mean over all lists of the item's score. A list
    that misses the item again counts 0, so for probabilities this is the average probability.

    Raises:
        ValueError: when k < 0, when `scores` does not match `lists` in shape, or when a score is
            negative or NaN (log-probabilities must be exponentiated first).
    """
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}.")
    if scores is not None:
        _check_scores(lists, scores)
    fused: dict[int, float] = {}
    for list_index, ranked in enumerate(lists):
        seen: set[int] = set()
        rank = 0
        for position, raw_item in enumerate(ranked):
            item = int(raw_item)
            if item < 0 or item in seen:
                continue
            seen.add(item)
            rank += 1
            if scores is None:
                contribution = 1.0 / (rrf_constant + rank)
            else:
                contribution = float(scores[list_index][position])
                if math.isnan(contribution) or contribution < 0:
                    raise ValueError(
                        f"Score {contribution} of item {item} in list {list_index} is negative or "
                        "NaN; pass probabilities (for example exp of log-probabilities)."
                    )
                contribution /= len(lists)
            fused[item] = fused.get(item, 0.0) + contribution
    order = _first_occurrences(lists)
    ranking = sorted(fused, key=lambda item: (-fused[item], order[item]))
    return ranking[:k]


def fuse_by_agreement(
    lists: Sequence[Sequence[int]],
    scores: Sequence[Sequence[float]],
    k: int,
    agreement_bonus: float = 1.0,
) -> list[int]:
    """Merge scored lists, ranking items found by several lists above their mean score.

    An item in a single list keeps that list's score. An item in m > 1 lists gets the mean of
    its m scores plus `agreement_bonus * (m - 1)`. For two lists this is the MQL4GRec rule
    (s_text + s_image) / 2 + 1, with beam scores as length-normalized log-probabilities. Scores
    may be negative. Items are ranked by fused score, highest first.

    Raises:
        ValueError: when k < 0 or when `scores` does not match `lists` in shape.
    """
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}.")
    _check_scores(lists, scores)
    totals: dict[int, float] = {}
    counts: dict[int, int] = {}
    for ranked, values in zip(lists, scores):
        seen: set[int] = set()
        for raw_item, value in zip(ranked, values):
            item = int(raw_item)
            if item < 0 or item in seen:
                continue
            seen.add(item)
            totals[item] = totals.get(item, 0.0) + float(value)
            counts[item] = counts.get(item, 0) + 1
    fused = {
        item: totals[item] / counts[item] + agreement_bonus * (counts[item] - 1) for item in totals
    }
    order = _first_occurrences(lists)
    ranking = sorted(fused, key=lambda item: (-fused[item], order[item]))
    return ranking[:k]
