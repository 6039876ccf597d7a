"""Turning (user, item, timestamp) rows into chronological sequences.

The order of a user's interactions is (timestamp, item id): interactions at the same second are
ordered by item id, so the result never depends on the order of rows in the input file. Repeated
(user, item) pairs are handled by the card's repeat policy before any k-core filtering, as
MQL4GRec does (Zhai et al., "Multimodal Quantitative Language for Generative Recommendation",
ICLR 2025, data_process/amazon18_data_process.py removes repeats before its k-core loop).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clairo_bench.data.cards import REPEAT_POLICIES
from clairo_bench.data.dataset import DataError

logger = logging.getLogger(__name__)

USER, ITEM, TIMESTAMP = "user", "item", "timestamp"


def sort_identifiers(identifiers: list[str] | set[str]) -> list[str]:
    """Sort ids numerically when all are decimal digits ("2" before "10"), else as strings."""
    values = list(identifiers)
    if values and all(value.isdigit() for value in values):
        return sorted(values, key=lambda value: (len(value.lstrip("0")), value.lstrip("0"), value))
    return sorted(values)


def order_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort rows by (user, timestamp, item); the sort is total up to identical rows."""
    return frame.sort_values([USER, TIMESTAMP, ITEM], kind="mergesort", ignore_index=True)


def apply_repeat_policy(frame: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, int]:
    """Apply the repeat policy to rows ordered by `order_interactions`.

    Returns the filtered rows and the number of rows removed. "keep_first" keeps each (user,
    item) pair's earliest interaction, "keep_last" its latest, "keep_all" keeps every row.
    """
    if policy not in REPEAT_POLICIES:
        raise ValueError(f"Unknown repeat policy {policy!r}; use one of {REPEAT_POLICIES}.")
    if policy == "keep_all":
        return frame, 0
    keep = "first" if policy == "keep_first" else "last"
    filtered = frame.drop_duplicates(subset=[USER, ITEM], keep=keep, ignore_index=True)
    return filtered, len(frame) - len(filtered)


@dataclass(frozen=True)
class KCoreResult:
    """Rows left by the k-core filter and how the filter got there.

    Attributes:
        frame: the remaining rows, in their input order.
        rounds: filtering passes run, including the last one that removed nothing.
        removed_users: users removed in total.
        removed_items: items removed in total.
    """

    frame: pd.DataFrame
    rounds: int
    removed_users: int
    removed_items: int


def kcore_filter(frame: pd.DataFrame, k: int) -> KCoreResult:
    """Remove users and items with fewer than k rows, repeatedly, until none is left below k.

    Removing an item can push a user below k and vice versa, so one pass is not enough. The
    result is the unique maximal subset in which every user and item has at least k rows, so it
    does not depend on the removal order. k = 0 or 1 leaves the rows unchanged.
    """
    n_users = frame[USER].nunique()
    n_items = frame[ITEM].nunique()
    rounds = 0
    while True:
        rounds += 1
        user_counts = frame[USER].map(frame[USER].value_counts())
        item_counts = frame[ITEM].map(frame[ITEM].value_counts())
        keep = (user_counts >= k) & (item_counts >= k)
        if bool(keep.all()):
            break
        frame = frame[keep.to_numpy()]
    frame = frame.reset_index(drop=True)
    return KCoreResult(
        frame=frame,
        rounds=rounds,
        removed_users=n_users - frame[USER].nunique(),
        removed_items=n_items - frame[ITEM].nunique(),
    )


@dataclass(frozen=True)
class Sequences:
    """Chronological sequences with dense indices.

    Attributes:
        user_ids: external user id of each user index (sorted by `sort_identifiers`).
        item_ids: external item id of each item index (sorted by `sort_identifiers`).
        sequences: item indices of each user, oldest first.
    """

    user_ids: list[str]
    item_ids: list[str]
    sequences: list[np.ndarray]


def build_sequences(frame: pd.DataFrame, item_ids: list[str] | None = None) -> Sequences:
    """Group ordered rows into one item-index sequence per user.

    `item_ids` fixes the item catalogue (it must contain every item in `frame`); by default the
    catalogue is the sorted set of items in `frame`.
    """
    if item_ids is None:
        item_ids = sort_identifiers(set(frame[ITEM].unique()))
    item_index = {item_id: index for index, item_id in enumerate(item_ids)}
    user_ids = sort_identifiers(set(frame[USER].unique()))
    user_rank = {user_id: rank for rank, user_id in enumerate(user_ids)}
    # Sort users by their rank in user_ids while keeping each user's chronological order.
    ranks = frame[USER].map(user_rank).to_numpy()
    order = np.argsort(ranks, kind="stable")
    items = frame[ITEM].to_numpy()[order]
    try:
        indices = np.fromiter((item_index[item] for item in items), dtype=np.int64, count=len(items))
    except KeyError as error:
        raise DataError(f"Item {error.args[0]!r} is missing from the item catalogue.") from error
    lengths = np.bincount(ranks[order], minlength=len(user_ids))
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    sequences = [indices[bounds[i] : bounds[i + 1]] for i in range(len(user_ids))]
    return Sequences(user_ids=user_ids, item_ids=list(item_ids), sequences=sequences)
