"""Merge engine behind ActionPiece vocabulary construction.

ActionPiece (Hou et al., "ActionPiece: Contextually Tokenizing Action Sequences for Generative
Recommendation", ICML 2025) treats every item as an unordered set of feature tokens and learns
BPE-like merges over a corpus of item sequences. This module reproduces the counting and merging
rules of the authors' code (google-deepmind/action_piece, genrec/models/ActionPiece/core.py,
`ActionPieceCore.train`), including the order in which it adds floating-point numbers, so that the
same pairs are merged in the same order. Only the data structures differ, for speed.

A sequence in construction is a Python list that alternates item states and context slots:
`[state_0, slot_0, state_1, slot_1, ..., state_n]`. A state is a list of token ids. A slot is one
token id, or 0 while it is empty, because token 0 is padding and never occurs in a corpus.

Counting rules (per sequence, summed over the corpus):
- every unordered pair inside a state of M tokens weighs 2/M;
- across an empty slot, every pair (x in state_i, y in state_i+1) weighs 1/(M_i * M_i+1);
- a filled slot with token c separates its neighbours: the pairs (x in state_i, c) weigh 1/M_i and
  the pairs (c, y in state_i+1) weigh 1/M_i+1, and state_i and state_i+1 are not paired.
A pair is keyed by `min * PAIR_KEY_BASE + max`, which sorts like the tuple (min, max).

Merging rules for the pair (a, b) into the new token t, walking the states left to right:
- inside a state that contains a and b (a != b), both are replaced by t, placed first;
- a filled slot with token a takes b from the state before it, or else from the state after it,
  and becomes t (likewise with a and b swapped);
- across an empty slot, a in one state and b in the next (either way round) are removed from both
  states, and the slot between them becomes t.
A state emptied this way takes over the token of a filled slot before it. An empty state followed
by an empty slot is dropped together with that slot, except the last state. Both rules repeat
until nothing changes.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left

import numpy as np

from clairo_bench.tokenization.actionpiece_initial import count_initial_pairs

# An odd base, unlike a power of two, spreads both token ids over the low bits that CPython's
# dict and set use to place an int key. With a shift by 32 bits, keys sharing `max` collided.
PAIR_KEY_BASE = 10_000_019
MAX_TOKENS = PAIR_KEY_BASE
# The reference's tolerance: a heap entry is outdated when it differs from the pair's current
# total by more than this, and a summed change smaller than this is not applied.
COUNT_EPSILON = 1e-12


def pair_key(a: int, b: int) -> int:
    """Return the key of the unordered token pair {a, b}."""
    if a <= b:
        return a * PAIR_KEY_BASE + b
    return b * PAIR_KEY_BASE + a


def split_pair_key(key: int) -> tuple[int, int]:
    """Return the (smaller, larger) token ids of a pair key."""
    return divmod(key, PAIR_KEY_BASE)


def merge_sequence(sequence: list, ids: list[int], a: int, b: int, token: int) -> list[int]:
    """Apply the merge of pair (a, b) into `token` everywhere in `sequence`, in place.

    `ids` contains a stable id per element (see `MergeEngine`) and loses the ids of dropped
    elements. States are replaced, never mutated, so a shallow copy of `sequence` taken before
    keeps the old states. Returns the ids of every element changed or dropped, possibly repeated.
    """
    dirty: list[int] = []
    last = len(sequence) - 1
    emptied = False
    i = 0
    while True:
        state = sequence[i]
        if a != b and a in state and b in state:
            state = [token] + [x for x in state if x != a and x != b]
            sequence[i] = state
            dirty.append(ids[i])
        if i == last:
            break
        slot = sequence[i + 1]
        following = sequence[i + 2]
        if slot:
            if slot == a or slot == b:
                other = b if slot == a else a
                if other in state:
                    state = [x for x in state if x != other]
                    sequence[i] = state
                    sequence[i + 1] = slot = token
                    dirty.append(ids[i])
                    dirty.append(ids[i + 1])
                    emptied = emptied or not state
            if slot == a or slot == b:
                other = b if slot == a else a
                if other in following:
                    sequence[i + 2] = following = [x for x in following if x != other]
                    sequence[i + 1] = token
                    dirty.append(ids[i + 1])
                    dirty.append(ids[i + 2])
                    emptied = emptied or not following
        elif a in state and b in following:
            sequence[i] = state = [x for x in state if x != a]
            sequence[i + 2] = [x for x in following if x != b]
            sequence[i + 1] = token
            dirty.extend(ids[i : i + 3])
            emptied = emptied or not state or not sequence[i + 2]
        elif b in state and a in following:
            sequence[i] = state = [x for x in state if x != b]
            sequence[i + 2] = [x for x in following if x != a]
            sequence[i + 1] = token
            dirty.extend(ids[i : i + 3])
            emptied = emptied or not state or not sequence[i + 2]
        i += 2
    # A merge that empties no state cannot create work for settling: it fills slots only
    # between two non-empty states and never empties a slot.
    if emptied:
        settle_empty_states(sequence, ids, dirty)
    return dirty


def settle_empty_states(
    sequence: list, ids: list[int] | None = None, dirty: list[int] | None = None
) -> None:
    """Move slot tokens into emptied states and drop empty state/slot pairs, until stable.

    Each round first moves every filled slot into an empty state after it, then walks left to
    right dropping every empty state whose next slot is empty (with that slot), as the reference
    does; the order of the two passes decides which states survive. `ids` loses the ids of
    dropped elements, and `dirty` collects the ids of moved and dropped ones.
    """
    changed = True
    while changed:
        changed = False
        for i in range(2, len(sequence), 2):
            if not sequence[i] and sequence[i - 1]:
                sequence[i] = [sequence[i - 1]]
                sequence[i - 1] = 0
                changed = True
                if dirty is not None:
                    dirty.append(ids[i - 1])
                    dirty.append(ids[i])
        i = 0
        while i + 1 < len(sequence):
            if not sequence[i] and not sequence[i + 1]:
                del sequence[i : i + 2]
                if ids is not None:
                    if dirty is not None:
                        dirty.append(ids[i])
                        dirty.append(ids[i + 1])
                    del ids[i : i + 2]
                changed = True
            else:
                i += 2


def fold_entries(entries: list[tuple[int, float]]) -> float:
    """Sum entry weights in order, from 0.0, as the reference accumulates a sequence's count."""
    total = 0.0
    for _, weight in entries:
        total += weight
    return total


Call = tuple[int, float, set[int]]


def call_pairs(sequence: list, ids: list[int], positions) -> list[Call]:
    """Return the calls at `positions` as (order, weight, pairs), in traversal order.

    A call is what the reference counts in one step: the pairs inside the state at an even
    position, or the pairs across the slot at an odd position; every pair of a call has the
    call's weight. A filled slot makes two calls (left state with the slot, then the slot with
    the right state). Across an empty slot, pairs whose two tokens sit in both states are met
    twice by the reference, which adds weight + weight once; they form an extra call with that
    weight. `order` is 2 * the element's id, plus 1 for the second half of a filled slot, so
    calls sort in the reference's traversal order even after elements are dropped. Positions
    must come in ascending order.
    """
    base = PAIR_KEY_BASE
    calls: list[Call] = []
    for i in positions:
        order = 2 * ids[i]
        if i % 2 == 0:
            state = sequence[i]
            size = len(state)
            if size > 1:
                pairs = {
                    a * base + b if a < b else b * base + a
                    for k, a in enumerate(state)
                    for b in state[k + 1 :]
                }
                calls.append((order, 2 / size, pairs))
            continue
        slot = sequence[i]
        left = sequence[i - 1]
        right = sequence[i + 1]
        if slot:
            if left:
                pairs = {a * base + slot if a < slot else slot * base + a for a in left}
                calls.append((order, 1 / len(left), pairs))
            if right:
                pairs = {b * base + slot if b < slot else slot * base + b for b in right}
                calls.append((order + 1, 1 / len(right), pairs))
        elif left and right:
            weight = 1 / (len(left) * len(right))
            pairs = {a * base + b if a < b else b * base + a for a in left for b in right}
            shared = set(left).intersection(right) if len(left) > 1 and len(right) > 1 else ()
            if len(shared) > 1:
                both = sorted(shared)
                doubled = {a * base + b for k, a in enumerate(both) for b in both[k + 1 :]}
                calls.append((order, weight, pairs - doubled))
                calls.append((order, weight + weight, doubled))
            else:
                calls.append((order, weight, pairs))
    return calls


def union_and_repeats(calls: list[Call]) -> tuple[set[int], set[int]]:
    """Return all pairs of `calls` and those met in more than one of them."""
    union: set[int] = set()
    repeats: set[int] = set()
    for _, _, pairs in calls:
        if not union.isdisjoint(pairs):
            repeats |= union & pairs
        union |= pairs
    return union, repeats


def entries_in_calls(calls: list[Call], pairs: set[int]) -> dict[int, list[tuple[int, float]]]:
    """Return the (order, weight) entries of `pairs` in `calls`, in traversal order."""
    found: dict[int, list[tuple[int, float]]] = {}
    for order, weight, call in calls:
        for pair in call & pairs:
            listed = found.get(pair)
            if listed is None:
                found[pair] = [(order, weight)]
            else:
                listed.append((order, weight))
    return found


class MergeEngine:
    """Corpus state, pair totals and the lazy max-heap of one vocabulary construction.

    `keep_vanished_pair_counts=True` reproduces the reference's bookkeeping: when a sequence is
    re-counted after a merge, only the pairs it still contains are compared with their old counts,
    so a pair that disappears from a sequence keeps its last count there in the corpus total and
    in the pair -> sequences index. Those stale totals decide later merges (the reference at
    commit ae8e61a3 merges such pairs, and can merge the same pair twice), so conformance needs
    them. `False` subtracts vanished pairs, so totals always equal a full recount.

    `pair_factor(key)`, when given, multiplies a pair's total to give its priority; with None the
    priority is the total itself, exactly as in the reference.

    Speed comes from updating a sequence locally: every element of a sequence keeps the id it
    had in the initial layout (state j: 2j, slot after state j: 2j + 1), a merge reports the ids
    it changed or dropped, and only the calls (see `call_pairs`) that read those elements are
    counted again. A pair met in one call of a sequence has the call's weight as its count; for a
    pair met in several calls the ordered entries are kept, so its count is re-summed in the
    reference's order and stays bitwise equal to a full recount.
    """

    def __init__(
        self,
        item_tokens: np.ndarray,
        corpus: list[list[int]],
        first_new_token: int,
        *,
        keep_vanished_pair_counts: bool = True,
        pair_factor=None,
    ) -> None:
        self.keep_vanished_pair_counts = keep_vanished_pair_counts
        self.next_token = first_new_token
        self._pair_factor = pair_factor
        rows = np.asarray(item_tokens).tolist()
        # States are replaced, never mutated, so sequences may share the item rows.
        self.sequences: list[list | None] = []
        self.element_ids: list[list[int]] = []
        for items in corpus:
            if not items:
                self.sequences.append(None)
                self.element_ids.append([])
                continue
            sequence: list = [rows[items[0]]]
            for item in items[1:]:
                sequence.append(0)
                sequence.append(rows[item])
            self.sequences.append(sequence)
            self.element_ids.append(list(range(len(sequence))))

        initial = count_initial_pairs(
            np.asarray(item_tokens, dtype=np.int64), corpus, PAIR_KEY_BASE
        )
        self.sequence_counts: list[dict[int, float]] = initial.sequence_counts
        self.repeated_entries: list[dict[int, list[tuple[int, float]]]] = initial.repeated_entries
        self.totals: dict[int, float] = initial.totals
        # Sequences that held each pair before the first merge (ascending), and those that
        # gained it later (in the order they did; an index may repeat). Iterating
        # set(initial + later).copy() gives the reference's order of summing per-sequence
        # changes, because the reference's set saw the same additions in the same order.
        self._initial_group = dict(zip(initial.pair_keys.tolist(), range(len(initial.pair_keys))))
        self._head_starts = initial.head_starts
        self._initial_heads = initial.heads
        self.pair_sequences: dict[int, list[int]] = {}
        # Total a pair kept after vanishing from sequences (only with keep_vanished_pair_counts);
        # lets tests check totals == recount + vanished without re-deriving the bookkeeping.
        self.vanished: dict[int, float] = {}
        self.track_vanished = False

        if pair_factor is None:
            self.heap = [(-total, key) for key, total in self.totals.items()]
        else:
            self.heap = [(-(total * pair_factor(key)), key) for key, total in self.totals.items()]
        heapq.heapify(self.heap)

    def pair_heads(self, key: int) -> list[int]:
        """Return the sequences that ever held pair `key`, in the order they gained it."""
        group = self._initial_group.get(key)
        heads = []
        if group is not None:
            start, stop = self._head_starts[group], self._head_starts[group + 1]
            heads = self._initial_heads[start:stop].tolist()
        return heads + self.pair_sequences.get(key, [])

    def priority(self, key: int, total: float) -> float:
        if self._pair_factor is None:
            return total
        return total * self._pair_factor(key)

    def pop_best_pair(self) -> tuple[int, float] | None:
        """Pop the pair with the largest current priority; None when no pair is left.

        Ties go to the smallest key. Entries whose priority no longer matches the pair's total
        are outdated and skipped (lazy deletion). The reference, when its heap runs dry on an
        outdated entry, merges that entry anyway; here construction stops instead.
        """
        heap = self.heap
        totals = self.totals
        while heap:
            negative_priority, key = heapq.heappop(heap)
            total = totals.get(key)
            if total is None:
                continue
            priority = -negative_priority
            if abs(priority - self.priority(key, total)) > COUNT_EPSILON:
                continue
            return key, priority
        return None

    def merge(self, key: int, token: int) -> None:
        """Merge the pair `key` into `token` in every sequence holding it; update all counts."""
        a, b = split_pair_key(key)
        changes: dict[int, float] = {}
        sequence_counts = self.sequence_counts
        for index in set(self.pair_heads(key)).copy():
            if key in sequence_counts[index]:
                self._merge_in_sequence(index, a, b, token, changes)
            # Otherwise the pair left this sequence earlier; the reference re-counts it to no
            # change.
        self._apply_changes(changes)

    def _merge_in_sequence(
        self, index: int, a: int, b: int, token: int, changes: dict[int, float]
    ) -> None:
        sequence = self.sequences[index]
        ids = self.element_ids[index]
        old_sequence = sequence[:]
        old_ids = ids[:]
        dirty = set(merge_sequence(sequence, ids, a, b, token))

        # Calls are anchored at an element: the inside call at its state, the across call(s) at
        # its slot. A changed state dirties its own call and the slots on both sides, in the
        # old layout and in the new one (where a dropped neighbour may have moved a slot).
        if len(ids) == len(old_ids):
            old_positions = new_positions = _dirty_call_positions(ids, dirty)
        else:
            anchors = _dirty_call_anchors(old_ids, dirty) | _dirty_call_anchors(ids, dirty)
            old_positions = _positions_of(old_ids, anchors)
            new_positions = _positions_of(ids, anchors)
        old_calls = call_pairs(old_sequence, old_ids, old_positions)
        new_calls = call_pairs(sequence, ids, new_positions)
        old_all, slow = union_and_repeats(old_calls)
        new_all, repeats = union_and_repeats(new_calls)
        slow |= repeats
        counts = self.sequence_counts[index]
        for pair in self.repeated_entries[index]:
            if pair in old_all or pair in new_all:
                slow.add(pair)
        appeared = new_all - old_all
        vanished = old_all - new_all
        kept = old_all & new_all
        if slow:
            appeared -= slow
            vanished -= slow
            kept -= slow
        elsewhere = {pair for pair in appeared if pair in counts}
        if elsewhere:
            # Also met in a call outside the recounted ones.
            appeared -= elsewhere
            slow |= elsewhere

        # Fast path: a pair met in a single call of the sequence has that call's weight as its
        # count, so whole groups of pairs share their old and new counts.
        get_change = changes.get
        if appeared:
            pair_sequences = self.pair_sequences
            for _, weight, pairs in new_calls:
                group = pairs & appeared
                if not group:
                    continue
                counts.update(dict.fromkeys(group, weight))
                # NOTE: a pair that left this sequence and comes back is listed twice. The
                # reference asserts at this point that the sequence is new to the pair and
                # crashes; with asserts off its set ignores the repeat, as set(list) does here.
                for pair in group:
                    members = pair_sequences.get(pair)
                    if members is None:
                        pair_sequences[pair] = [index]
                    else:
                        members.append(index)
                    changes[pair] = get_change(pair, 0) + weight
        if vanished:
            if not self.keep_vanished_pair_counts or self.track_vanished:
                for _, weight, pairs in old_calls:
                    for pair in pairs & vanished:
                        if self.keep_vanished_pair_counts:
                            self.vanished[pair] = self.vanished.get(pair, 0.0) + weight
                        else:
                            changes[pair] = get_change(pair, 0) - weight
            for pair in vanished:
                del counts[pair]
        if kept:
            for _, new_weight, new_pairs in new_calls:
                moved = new_pairs & kept
                if not moved:
                    continue
                for _, old_weight, old_pairs in old_calls:
                    if new_weight == old_weight:
                        continue
                    group = moved & old_pairs
                    if not group:
                        continue
                    change = new_weight - old_weight
                    counts.update(dict.fromkeys(group, new_weight))
                    for pair in group:
                        changes[pair] = get_change(pair, 0) + change
        if slow:
            self._merge_slow_pairs(index, slow, old_calls, new_calls, changes)

    def _merge_slow_pairs(
        self,
        index: int,
        pairs: set[int],
        old_calls: list[Call],
        new_calls: list[Call],
        changes: dict[int, float],
    ) -> None:
        """Update pairs met in several calls of a sequence, re-summing their ordered entries."""
        sequence = self.sequences[index]
        ids = self.element_ids[index]
        counts = self.sequence_counts[index]
        repeated = self.repeated_entries[index]
        old_entries = entries_in_calls(old_calls, pairs)
        new_entries = entries_in_calls(new_calls, pairs)
        rescan = {
            pair
            for pair in pairs
            if pair in counts and pair not in repeated and pair not in old_entries
        }
        if rescan:
            # A pair met once, in a call outside the recounted ones, and now in more calls:
            # find all its calls again (rare).
            rescanned = entries_in_calls(call_pairs(sequence, ids, range(len(sequence))), rescan)
        get_change = changes.get
        pair_sequences = self.pair_sequences
        keep_vanished = self.keep_vanished_pair_counts
        for pair in pairs:
            previous = counts.get(pair)
            if pair in rescan:
                merged = rescanned.get(pair, [])
            else:
                listed = repeated.get(pair)
                removed = old_entries.get(pair)
                added = new_entries.get(pair)
                if listed is None:
                    # Met at most once before, and then inside the recounted calls.
                    merged = added or []
                else:
                    if removed:
                        gone = {order for order, _ in removed}
                        listed = [entry for entry in listed if entry[0] not in gone]
                    merged = sorted(listed + added) if added else listed

            if not merged:
                value = None
                counts.pop(pair, None)
                repeated.pop(pair, None)
            elif len(merged) == 1:
                value = merged[0][1]
                counts[pair] = value
                repeated.pop(pair, None)
            else:
                value = fold_entries(merged)
                counts[pair] = value
                repeated[pair] = merged

            if value is None:
                if previous is None:
                    continue
                if keep_vanished:
                    if self.track_vanished:
                        self.vanished[pair] = self.vanished.get(pair, 0.0) + previous
                else:
                    changes[pair] = get_change(pair, 0) - previous
            elif previous is None:
                members = pair_sequences.get(pair)
                if members is None:
                    pair_sequences[pair] = [index]
                else:
                    members.append(index)
                changes[pair] = get_change(pair, 0) + value
            elif value != previous:
                changes[pair] = get_change(pair, 0) + (value - previous)

    def _apply_changes(self, changes: dict[int, float]) -> None:
        totals = self.totals
        heap = self.heap
        factor = self._pair_factor
        drop_empty = not self.keep_vanished_pair_counts
        for pair, change in changes.items():
            if abs(change) < COUNT_EPSILON:
                continue
            total = totals.get(pair, 0.0) + change
            if drop_empty and total <= COUNT_EPSILON:
                # Exact bookkeeping: the pair is gone from the corpus (up to rounding).
                totals.pop(pair, None)
                continue
            totals[pair] = total
            if factor is None:
                heapq.heappush(heap, (-total, pair))
            else:
                heapq.heappush(heap, (-(total * factor(pair)), pair))


def _dirty_call_anchors(layout: list[int], dirty: set[int]) -> set[int]:
    """Return the ids of the elements that anchor a call reading a dirty element of `layout`."""
    anchors: set[int] = set()
    size = len(layout)
    for element in dirty:
        position = bisect_left(layout, element)
        if position == size or layout[position] != element:
            continue
        anchors.add(element)
        if element % 2 == 0:
            if position > 0:
                anchors.add(layout[position - 1])
            if position + 1 < size:
                anchors.add(layout[position + 1])
    return anchors


def _dirty_call_positions(layout: list[int], dirty: set[int]) -> list[int]:
    """Return the sorted positions of the calls that read a dirty element of `layout`."""
    positions: set[int] = set()
    size = len(layout)
    for element in dirty:
        position = bisect_left(layout, element)
        positions.add(position)
        if element % 2 == 0:
            if position > 0:
                positions.add(position - 1)
            if position + 1 < size:
                positions.add(position + 1)
    return sorted(positions)


def _positions_of(layout: list[int], anchors: set[int]) -> list[int]:
    positions = []
    size = len(layout)
    for element in sorted(anchors):
        position = bisect_left(layout, element)
        if position < size and layout[position] == element:
            positions.append(position)
    return positions
