"""Pair counts of an ActionPiece corpus before any merge, computed with numpy.

Before the first merge every state is a whole item of C tokens and every slot is empty, so each
call of `actionpiece_build.call_pairs` has a fixed weight: 2/C inside an item, 1/(C*C) across two
items, and (1/(C*C)) + (1/(C*C)) for a pair whose two tokens occur in both items. Sums are
accumulated in the same order as the reference's Python loops (calls in traversal order within a
sequence, then sequences in index order for the corpus total), one addition per round, so every
float is bitwise equal to the pure-Python count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class InitialCounts:
    """Initial per-sequence counts, repeated-pair entries, corpus totals and pair index.

    Attributes:
        sequence_counts: per sequence, pair key -> count.
        repeated_entries: per sequence, pair key -> ordered (order, weight) entries for the pairs
            met in more than one call of that sequence.
        totals: pair key -> count summed over the corpus in sequence order.
        pair_keys: every pair key, ascending.
        head_starts: sequences holding pair_keys[k] are heads[head_starts[k]:head_starts[k+1]],
            ascending.
        heads: sequence indices grouped by pair.
    """

    sequence_counts: list[dict[int, float]]
    repeated_entries: list[dict[int, list[tuple[int, float]]]]
    totals: dict[int, float]
    pair_keys: np.ndarray
    head_starts: np.ndarray
    heads: np.ndarray


def _fold_groups(values: np.ndarray, group: np.ndarray, rank: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum `values` per group in `rank` order, left to right from 0.0, one rank per round."""
    totals = np.zeros(n_groups, dtype=np.float64)
    if len(rank) and int(rank.max()) < 1 << 16:
        by_rank = np.argsort(rank.astype(np.uint16), kind="stable")  # radix sort
    else:
        by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max()) + 2 if len(rank) else 1))
    for r in range(len(bounds) - 1):
        chosen = by_rank[bounds[r] : bounds[r + 1]]
        # Within one round every group occurs at most once, so the indexed add is exact.
        totals[group[chosen]] += values[chosen]
    return totals


def _sort_order(*columns: np.ndarray) -> np.ndarray:
    """Return the permutation sorting rows by `columns` (first column most significant).

    Rows must be distinct. Non-negative columns that fit together in 62 bits are packed into
    one int64 and sorted once, which is several times faster than `np.lexsort`.
    """
    widths = [int(column.max()).bit_length() if len(column) else 1 for column in columns]
    if len(columns[0]) == 0 or sum(widths) > 62 or any(int(c.min()) < 0 for c in columns):
        return np.lexsort(columns[::-1])
    packed = np.zeros(len(columns[0]), dtype=np.int64)
    for column, width in zip(columns, widths):
        packed = (packed << width) | column.astype(np.int64)
    return np.argsort(packed)


def _ranks_within_groups(starts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return each element's group number and rank inside its group, for sorted groups."""
    group = np.zeros(size, dtype=np.int64)
    if size:
        group[starts[1:]] = 1
        group = np.cumsum(group)
    rank = np.arange(size, dtype=np.int64) - starts[group]
    return group, rank


def count_initial_pairs(
    item_tokens: np.ndarray, corpus: list[list[int]], key_base: int
) -> InitialCounts:
    """Count the weighted pairs of every sequence of `corpus` before any merge.

    Args:
        item_tokens: (n_items, C) initial token ids of every item, in category order.
        corpus: item-index sequences; empty ones get empty counts.
        key_base: the pair {a <= b} is keyed a * key_base + b.
    """
    n_categories = item_tokens.shape[1]
    base = key_base
    lengths = np.array([len(sequence) for sequence in corpus], dtype=np.int64)
    n_positions = int(lengths.sum())
    flat_items = np.fromiter(
        (item for sequence in corpus for item in sequence), dtype=np.int64, count=n_positions
    )
    sequence_of = np.repeat(np.arange(len(corpus), dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    item_position = np.arange(n_positions, dtype=np.int64) - starts[sequence_of]
    tokens = item_tokens[flat_items]

    inside_weight = 2 / n_categories
    across_weight = 1 / (n_categories * n_categories)
    weight_table = np.array([inside_weight, across_weight, across_weight + across_weight])

    parts_key, parts_sequence, parts_order, parts_code = [], [], [], []
    if n_categories > 1:
        first, second = np.triu_indices(n_categories, 1)
        left, right = tokens[:, first], tokens[:, second]
        keys = np.minimum(left, right) * base + np.maximum(left, right)
        parts_key.append(keys.ravel())
        parts_sequence.append(np.repeat(sequence_of, len(first)))
        # A state at position j has element id 2j, so its call has order 4j.
        parts_order.append(np.repeat(4 * item_position, len(first)))
        parts_code.append(np.zeros(keys.size, dtype=np.int8))

    has_next = np.ones(n_positions, dtype=bool)
    has_next[np.cumsum(lengths)[lengths > 0] - 1] = False
    gap = np.flatnonzero(has_next)
    if len(gap):
        left = np.repeat(tokens[gap], n_categories, axis=1)
        right = np.tile(tokens[gap + 1], (1, n_categories))
        keys = np.sort(np.minimum(left, right) * base + np.maximum(left, right), axis=1)
        codes = np.ones(keys.shape, dtype=np.int8)
        # A key twice in one row is a pair met twice in one call: keep one, at double weight.
        twice = keys[:, 1:] == keys[:, :-1]
        codes[:, :-1][twice] = 2
        keep = np.ones(keys.shape, dtype=bool)
        keep[:, 1:][twice] = False
        width = keys.shape[1]
        parts_key.append(keys[keep])
        parts_sequence.append(np.repeat(sequence_of[gap], width)[keep.ravel()])
        # The slot after state j has element id 2j + 1, so its call has order 4j + 2.
        parts_order.append(np.repeat(4 * item_position[gap] + 2, width)[keep.ravel()])
        parts_code.append(codes[keep])

    if parts_key:
        key = np.concatenate(parts_key)
        sequence = np.concatenate(parts_sequence)
        order = np.concatenate(parts_order)
        code = np.concatenate(parts_code)
    else:
        key = np.zeros(0, dtype=np.int64)
        sequence = np.zeros(0, dtype=np.int64)
        order = np.zeros(0, dtype=np.int64)
        code = np.zeros(0, dtype=np.int8)

    # Per sequence and pair: fold the call weights in call order.
    by_sequence = _sort_order(sequence, key, order)
    key, sequence, order, code = (
        key[by_sequence],
        sequence[by_sequence],
        order[by_sequence],
        code[by_sequence],
    )
    del by_sequence
    weight = weight_table[code]
    new_group = np.ones(len(key), dtype=bool)
    new_group[1:] = (key[1:] != key[:-1]) | (sequence[1:] != sequence[:-1])
    group_starts = np.flatnonzero(new_group)
    del new_group
    group, rank = _ranks_within_groups(group_starts, len(key))
    n_groups = len(group_starts)
    group_count = _fold_groups(weight, group, rank, n_groups)
    del group, rank
    group_key = key[group_starts]
    group_sequence = sequence[group_starts]
    group_size = np.diff(np.append(group_starts, len(key)))
    del key, sequence

    # Per pair: fold the sequence counts in sequence order.
    by_pair = _sort_order(group_key, group_sequence)
    pair_of_group = group_key[by_pair]
    new_pair = np.ones(n_groups, dtype=bool)
    new_pair[1:] = pair_of_group[1:] != pair_of_group[:-1]
    pair_starts = np.flatnonzero(new_pair)
    pair_index, pair_rank = _ranks_within_groups(pair_starts, n_groups)
    pair_totals = _fold_groups(group_count[by_pair], pair_index, pair_rank, len(pair_starts))
    pair_keys = pair_of_group[pair_starts]
    del pair_of_group, new_pair, pair_rank

    # The Python dicts share one int object per pair and one float object per call weight, which
    # saves about 50 bytes per (sequence, pair) over fresh objects from `tolist`.
    pair_objects = np.array(pair_keys.tolist(), dtype=object)
    group_pair = np.empty(n_groups, dtype=np.int64)
    group_pair[by_pair] = pair_index
    del pair_index
    key_list = pair_objects[group_pair].tolist()
    del group_pair
    single = group_size == 1
    counts = np.empty(n_groups, dtype=object)
    weight_objects = np.array([float(w) for w in weight_table] + [0.0], dtype=object)
    counts[single] = weight_objects[code[group_starts[single]]]
    counts[~single] = group_count[~single].tolist()
    count_list = counts.tolist()
    del counts

    sequence_counts: list[dict[int, float]] = []
    repeated_entries: list[dict[int, list[tuple[int, float]]]] = []
    bounds = np.searchsorted(group_sequence, np.arange(len(corpus) + 1)).tolist()
    for index in range(len(corpus)):
        low, high = bounds[index], bounds[index + 1]
        sequence_counts.append(dict(zip(key_list[low:high], count_list[low:high])))
        repeated_entries.append({})
    multiple = np.flatnonzero(~single)
    if len(multiple):
        in_multiple = np.repeat(~single, group_size)
        entries = list(zip(order[in_multiple].tolist(), weight[in_multiple].tolist()))
        ends = np.cumsum(group_size[multiple]).tolist()
        lists = [entries[begin:end] for begin, end in zip([0] + ends[:-1], ends)]
        keys = [key_list[g] for g in multiple.tolist()]
        owners = group_sequence[multiple]
        cuts = np.searchsorted(owners, np.arange(len(corpus) + 1)).tolist()
        for owner in np.unique(owners).tolist():
            low, high = cuts[owner], cuts[owner + 1]
            repeated_entries[owner] = dict(zip(keys[low:high], lists[low:high]))
    del key_list, count_list

    return InitialCounts(
        sequence_counts=sequence_counts,
        repeated_entries=repeated_entries,
        totals=dict(zip(pair_objects.tolist(), pair_totals.tolist())),
        pair_keys=pair_keys,
        head_starts=np.append(pair_starts, n_groups),
        heads=group_sequence[by_pair],
    )
