"""Metrics by slice: popularity of the target item in the training data, and user history length.

Item popularity groups, from training interaction counts (each item's occurrences in the training
sequences of the split, `Split.item_popularity`):
- head: the most popular items that together account for the first `head_share` (default 20%)
  of training interactions. Formally, head = items with count >= h, where h is the largest count
  such that items with count >= h account for at least head_share of all training interactions;
- tail: the least popular items that together account for at most `tail_share` (default 20%) of
  training interactions, including items never seen in training. Formally, tail = items with
  count <= t, where t is the largest count such that items with count <= t account for at most
  tail_share;
- torso: every other item.
Thresholds are counts, so items with equal counts always share a group; head wins where the two
rules overlap (a nearly uniform catalogue).

History-length buckets split test users by the length of their test history into up to
`n_buckets` quantile buckets, shortest (cold-start users) first. The upper bound of bucket k is the
k/n quantile of the lengths, by numpy's "lower" method, so every bound is an observed length. Equal
bounds merge, so fewer buckets remain when many users share a length.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clairo_bench.reporting.collect import ReportError
from clairo_bench.runner import TRAIN_ITEM_COUNTS_FILE

logger = logging.getLogger(__name__)

POPULARITY_ORDER = ("head", "torso", "tail")
SLICE_COLUMNS = ("kind", "slice", "definition", "n_users", "method", "metric", "mean")


@dataclass(frozen=True)
class PopularityGroups:
    """Popularity group of every item and the boundaries that define them.

    Attributes:
        labels: "head", "torso" or "tail" for each item index.
        head_min_count: items with at least this many training interactions are head.
        tail_max_count: items with at most this many are tail (-1: no tail item).
        definitions: group -> the boundary, item count and share of training interactions.
    """

    labels: np.ndarray
    head_min_count: int
    tail_max_count: int
    definitions: Mapping[str, str]


@dataclass(frozen=True)
class SliceReport:
    """Metrics by slice for every method.

    Attributes:
        table: one row per (kind, slice, method, metric) with the columns of SLICE_COLUMNS; `mean`
            is the mean over the slice's users of the seed-averaged per-user metric.
        notes: how the slices were defined, one sentence each.
    """

    table: pd.DataFrame
    notes: tuple[str, ...]


def popularity_groups(item_counts: np.ndarray, head_share: float = 0.2, tail_share: float = 0.2) -> PopularityGroups:
    """Assign each item to head, torso or tail by its training interaction count (see module docstring)."""
    counts = np.asarray(item_counts, dtype=np.int64)
    if not 0 < head_share < 1 or not 0 <= tail_share < 1 or head_share + tail_share > 1:
        raise ValueError(
            f"Need 0 < head_share < 1, 0 <= tail_share < 1 and head_share + tail_share <= 1; "
            f"got {head_share} and {tail_share}."
        )

    total = int(counts.sum())
    if total == 0 or counts.min() < 0:
        raise ReportError("Item popularity needs non-negative training counts with at least one interaction.")

    values, frequencies = np.unique(counts, return_counts=True)
    held_ascending = np.cumsum(values * frequencies)
    held_descending = np.cumsum((values * frequencies)[::-1])[::-1]
    # held_descending[i]: interactions of items with count >= values[i]; it decreases with i.
    head_min_count = int(values[np.flatnonzero(held_descending >= head_share * total)[-1]])
    tail_candidates = np.flatnonzero(held_ascending <= tail_share * total)
    tail_max_count = int(values[tail_candidates[-1]]) if len(tail_candidates) else -1

    labels = np.full(len(counts), "torso", dtype=object)
    labels[counts <= tail_max_count] = "tail"
    labels[counts >= head_min_count] = "head"

    definitions = {}
    for group in POPULARITY_ORDER:
        members = labels == group
        share = 100.0 * counts[members].sum() / total
        if group == "head":
            rule = f">= {head_min_count} training interactions"
        elif group == "tail":
            rule = f"<= {tail_max_count} training interactions" if tail_max_count >= 0 else "empty"
        else:
            rule = "between head and tail"
        n_members = int(members.sum())
        definitions[group] = (
            f"{rule}: {n_members} {'item' if n_members == 1 else 'items'}, {share:.1f}% of training interactions"
        )
    return PopularityGroups(labels.astype(str), head_min_count, tail_max_count, definitions)


def history_length_buckets(lengths: np.ndarray, n_buckets: int = 4) -> list[tuple[int, int]]:
    """Return inclusive (low, high) history-length ranges of quantile buckets, shortest first."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be at least 1, got {n_buckets}.")
    if len(lengths) == 0:
        raise ReportError("History-length buckets need at least one user.")
    levels = np.arange(1, n_buckets + 1) / n_buckets
    uppers = np.unique(np.quantile(lengths, levels, method="lower").astype(np.int64))
    uppers[-1] = lengths.max()
    uppers = np.unique(uppers)
    buckets = []
    low = int(lengths.min())
    for upper in uppers:
        buckets.append((low, int(upper)))
        low = int(upper) + 1
    return buckets


def bucket_label(bucket: tuple[int, int]) -> str:
    low, high = bucket
    return str(low) if low == high else f"{low}-{high}"


def slice_metrics(
    per_user: Mapping[str, pd.DataFrame],
    metrics: Sequence[str],
    item_counts: np.ndarray | None = None,
    n_history_buckets: int = 4,
    head_share: float = 0.2,
    tail_share: float = 0.2,
) -> SliceReport:
    """Average each method's per-user metrics within popularity groups and history-length buckets.

    `per_user` maps method -> seed-averaged per-user frame with target_index and history_length
    (see `collect.seed_averaged_per_user`). Without `item_counts`, only history slices are made.
    """
    if not per_user:
        raise ReportError("Slices need at least one method's per-user metrics.")
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    if item_counts is not None:
        groups = popularity_groups(item_counts, head_share, tail_share)
        notes.append(
            f"Item popularity of the test target, from training interaction counts: head = the most "
            f"popular items accounting for the top {head_share:.0%} of training interactions "
            f"({groups.definitions['head']}); tail = the least popular items accounting for at most the bottom "
            f"{tail_share:.0%} ({groups.definitions['tail']}); torso = the rest ({groups.definitions['torso']})."
        )
        for method, frame in per_user.items():
            targets = frame["target_index"].to_numpy(np.int64)
            if len(targets) and (targets.min() < 0 or targets.max() >= len(groups.labels)):
                raise ReportError(
                    f"Method {method} has target item index {int(targets.max())} outside the "
                    f"{len(groups.labels)} items of the popularity counts; the counts come from another dataset."
                )
            labels = groups.labels[targets]
            for group in POPULARITY_ORDER:
                rows += _slice_rows("item popularity", group, groups.definitions[group], method, frame,
                                    labels == group, metrics)
    first = next(iter(per_user.values()))
    buckets = history_length_buckets(first["history_length"].to_numpy(), n_history_buckets)
    notes.append(
        f"History length of the test user (all interactions before the target, not capped), in up to {n_history_buckets} quantile buckets, shortest first: "
        + ", ".join(bucket_label(bucket) for bucket in buckets) + "."
    )
    for method, frame in per_user.items():
        lengths = frame["history_length"].to_numpy(np.int64)
        for bucket in buckets:
            members = (lengths >= bucket[0]) & (lengths <= bucket[1])
            rows += _slice_rows("history length", bucket_label(bucket), f"{bucket[0]} to {bucket[1]} items",
                                method, frame, members, metrics)
    return SliceReport(pd.DataFrame(rows, columns=list(SLICE_COLUMNS)), tuple(notes))


def _slice_rows(kind, name, definition, method, frame, members, metrics) -> list[dict[str, Any]]:
    count = int(members.sum())
    return [
        {"kind": kind, "slice": name, "definition": definition, "n_users": count, "method": method,
         "metric": metric, "mean": float(frame.loc[members, metric].mean()) if count else float("nan")}
        for metric in metrics
    ]


def training_item_counts(config: Mapping[str, Any]) -> np.ndarray:
    """Rebuild a run's split from its dataset and count each item's training interactions.

    Raises ReportError when the dataset's content or the rebuilt split key no longer matches the
    run's config.json, so counts always describe the data the run was trained on.
    """
    # Runs store their training counts. Older run directories without the file fall back to
    # rebuilding the split, which fails (ReportError) once the dataset's content hash changed.
    run_dir = config.get("run_dir")
    if run_dir is not None and (Path(run_dir) / TRAIN_ITEM_COUNTS_FILE).exists():
        path = Path(run_dir) / TRAIN_ITEM_COUNTS_FILE
        try:
            counts = np.load(path)
        except (ValueError, EOFError, OSError) as error:
            logger.warning("%s is damaged (%s); counting items from a rebuilt split instead.", path, error)
        else:
            n_items = config["dataset"].get("n_items")
            if counts.ndim == 1 and (n_items is None or counts.shape[0] == n_items):
                return counts
            logger.warning("%s is invalid: counts of shape %s for %s items; counting items from a "
                           "rebuilt split instead.", path, counts.shape, n_items)
    from clairo_bench.data.catalog import load_dataset
    from clairo_bench.data.split import SplitSettings, build_split

    name = config["dataset"]["name"]
    dataset = load_dataset(name)
    if dataset.content_hash() != config["dataset"]["content_hash"]:
        raise ReportError(
            f"Dataset {name!r} has content hash {dataset.content_hash()} now, but the runs used "
            f"{config['dataset']['content_hash']}; popularity slices need the data the runs were trained on."
        )
    names = {f.name for f in fields(SplitSettings)}
    settings = SplitSettings(**{key: value for key, value in config["split"].items() if key in names})
    split = build_split(dataset, settings)
    if split.key != config["split"]["key"]:
        raise ReportError(
            f"Rebuilt split of {name!r} has key {split.key}, but the runs used {config['split']['key']}; "
            "the split code or settings changed since the runs."
        )
    return split.item_popularity()
