"""Merge engine behind ActionPiece vocabulary construction.

ActionPiece (Hou et al., "ActionPiece: Contextually Tokenizing Action Sequences for Generative
Recommendation", ICML 2025) treats every item as an unordered set of feature tokens and learns
BPE-like merges over a corpus of item sequences. This module reproduces the counting and merging
rules of the authors' code (google-deepmind/action_piece, genrec/models/ActionPiece/core.py,
`ActionPieceCore.train`), including the order in which it adds floating-point numbers, so that the
same pairs are merged in the same order. Only the data structures differ, for speed.

A sequence in construction is a Python list that alternates item states and context slots:
`[state_0, slot_0, state_1, slot_1, ..., state_n]`. A state is a list of token ids; a slot is one
token id, or 0 while it is empty (token 0 is padding and never occurs in a corpus).

Counting rules (per sequence, summed over the corpus):
- every unordered pair inside a state of M tokens weighs 2/M;
- across an empty slot, every pair (x in state_i, y in state_i+1) weighs 1/(M_i * M_i+1);
- a filled slot with token c separates its neighbours: the pairs (x in state_i, c) weigh 1/M_i and
  the pairs (c, y in state_i+1) weigh 1/M_i+1, and state_i and state_i+1 are not paired.
A pair is keyed by `min * PAIR_KEY_BASE + max`, which sorts like the tuple (min, max).

Merging rules for the pair (a, b) into the new token t, walking the states left to right:
- inside a state holding a and b (a != b), both are replaced by t, placed first;
- a state next to a filled slot that holds one of a, b gives up the other one, and the slot becomes t;
- across an empty slot, a in one state and b in the next (either way round) are removed from both
  states, and the slot between them becomes t.
A state emptied this way takes over the token of a filled slot before it; an empty state followed
by an empty slot is dropped together with that slot (never the last state). Both rules repeat
until nothing changes.
"""

from __future__ import annotations

import heapq
import logging

logger = logging.getLogger(__name__)

# An odd base, unlike a power of two, spreads both token ids over the low bits that CPython's
# dict and set use to place an int key; a shift by 32 bits made keys sharing `max` collide.
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


def sequence_from_states(states: list[list[int]]) -> list:
    """Interleave item states with empty context slots."""
    sequence: list = []
    for state in states:
        if sequence:
            sequence.append(0)
        sequence.append(list(state))
    return sequence


def count_sequence_pairs(sequence: list) -> dict[int, float]:
    """Count the weighted token pairs of one sequence.

    The per-pair sums are accumulated call by call in the reference's traversal order (the pairs
    inside state i, then those across slot i), and a pair that occurs twice within one
    state-to-state call is added once with double weight, as the reference's per-call subtotal is.
    That keeps every sum bitwise equal to the reference's.
    """
    base = PAIR_KEY_BASE
    counts: dict[int, float] = {}
    get = counts.get
    last = len(sequence) - 1
    i = 0
    while True:
        state = sequence[i]
        size = len(state)
        if size > 1:
            weight = 2 / size
            for position in range(1, size):
                b = state[position]
                for a in state[:position]:
                    key = a * base + b if a < b else b * base + a
                    counts[key] = get(key, 0.0) + weight
        if i == last:
            return counts
        slot = sequence[i + 1]
        following = sequence[i + 2]
        next_size = len(following)
        if slot:
            if size:
                weight = 1 / size
                for a in state:
                    key = a * base + slot if a < slot else slot * base + a
                    counts[key] = get(key, 0.0) + weight
            if next_size:
                weight = 1 / next_size
                for b in following:
                    key = slot * base + b if slot < b else b * base + slot
                    counts[key] = get(key, 0.0) + weight
        elif size and next_size:
            weight = 1 / (size * next_size)
            shared = None
            if size > 1 and next_size > 1:
                shared = set(state).intersection(following)
                if len(shared) < 2:
                    shared = None
            if shared is None:
                for a in state:
                    for b in following:
                        key = a * base + b if a < b else b * base + a
                        counts[key] = get(key, 0.0) + weight
            else:
                # x and y both in both states: the pair is met twice in this call.
                double = weight + weight
                for a in state:
                    for b in following:
                        if a != b and a in shared and b in shared:
                            if a > b:
                                continue
                            key = a * base + b
                            counts[key] = get(key, 0.0) + double
                        else:
                            key = a * base + b if a < b else b * base + a
                            counts[key] = get(key, 0.0) + weight
        i += 2


def merge_sequence(sequence: list, a: int, b: int, token: int) -> None:
    """Apply the merge of pair (a, b) into `token` everywhere in `sequence`, in place."""
    last = len(sequence) - 1
    emptied = False
    i = 0
    while True:
        state = sequence[i]
        if a != b and a in state and b in state:
            state = [token] + [x for x in state if x != a and x != b]
            sequence[i] = state
        if i == last:
            break
        slot = sequence[i + 1]
        following = sequence[i + 2]
        if slot:
            if slot == a:
                if b in state:
                    state.remove(b)
                    sequence[i + 1] = slot = token
                    emptied = emptied or not state
            elif slot == b:
                if a in state:
                    state.remove(a)
                    sequence[i + 1] = slot = token
                    emptied = emptied or not state
            if slot == a:
                if b in following:
                    following.remove(b)
                    sequence[i + 1] = token
                    emptied = emptied or not following
            elif slot == b:
                if a in following:
                    following.remove(a)
                    sequence[i + 1] = token
                    emptied = emptied or not following
        elif a in state and b in following:
            state.remove(a)
            following.remove(b)
            sequence[i + 1] = token
            emptied = emptied or not state or not following
        elif b in state and a in following:
            state.remove(b)
            following.remove(a)
            sequence[i + 1] = token
            emptied = emptied or not state or not following
        i += 2
    # A merge that empties no state cannot create work for settling: it fills slots only
    # between two non-empty states and never empties a slot.
    if emptied:
        settle_empty_states(sequence)


def settle_empty_states(sequence: list) -> None:
    """Move slot tokens into emptied states and drop empty state/slot pairs, until stable."""
    changed = True
    while changed:
        changed = False
        for i in range(2, len(sequence), 2):
            if not sequence[i] and sequence[i - 1]:
                sequence[i] = [sequence[i - 1]]
                sequence[i - 1] = 0
                changed = True
        i = 0
        while i + 1 < len(sequence):
            if not sequence[i] and not sequence[i + 1]:
                del sequence[i : i + 2]
                changed = True
            else:
                i += 2


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
    """

    def __init__(
        self,
        corpus_states: list[list[list[int]]],
        first_new_token: int,
        *,
        keep_vanished_pair_counts: bool = True,
        pair_factor=None,
    ) -> None:
        self.keep_vanished_pair_counts = keep_vanished_pair_counts
        self.next_token = first_new_token
        self._pair_factor = pair_factor
        self.sequences: list[list | None] = []
        self.sequence_counts: list[dict[int, float]] = []
        self.pair_sequences: dict[int, set[int]] = {}
        self.totals: dict[int, float] = {}
        # Total a pair kept after vanishing from sequences (only with keep_vanished_pair_counts);
        # lets tests check totals == recount + vanished without re-deriving the bookkeeping.
        self.vanished: dict[int, float] = {}
        self.track_vanished = False

        totals = self.totals
        pair_sequences = self.pair_sequences
        for index, states in enumerate(corpus_states):
            if not states:
                self.sequences.append(None)
                self.sequence_counts.append({})
                continue
            sequence = sequence_from_states(states)
            counts = count_sequence_pairs(sequence)
            for key, value in counts.items():
                totals[key] = totals.get(key, 0.0) + value
                members = pair_sequences.get(key)
                if members is None:
                    pair_sequences[key] = {index}
                else:
                    members.add(index)
            self.sequences.append(sequence)
            self.sequence_counts.append(counts)
        self.heap = [(-self.priority(key, total), key) for key, total in totals.items()]
        heapq.heapify(self.heap)

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
        sequences = self.sequences
        sequence_counts = self.sequence_counts
        pair_sequences = self.pair_sequences
        keep_vanished = self.keep_vanished_pair_counts
        track_vanished = self.track_vanished
        vanished = self.vanished
        changes: dict[int, float] = {}
        get_change = changes.get
        # The copy's iteration order is the reference's order of summing per-sequence changes.
        for index in pair_sequences[key].copy():
            old = sequence_counts[index]
            if key not in old:
                # The pair left this sequence earlier; the reference re-counts it to no change.
                continue
            sequence = sequences[index]
            merge_sequence(sequence, a, b, token)
            new = count_sequence_pairs(sequence)
            get_old = old.get
            for pair, value in new.items():
                previous = get_old(pair)
                if previous is None:
                    members = pair_sequences.get(pair)
                    if members is None:
                        pair_sequences[pair] = {index}
                    else:
                        members.add(index)
                    changes[pair] = get_change(pair, 0) + value
                elif value != previous:
                    changes[pair] = get_change(pair, 0) + (value - previous)
            if keep_vanished:
                if track_vanished:
                    for pair, previous in old.items():
                        if pair not in new:
                            vanished[pair] = vanished.get(pair, 0.0) + previous
            else:
                for pair, previous in old.items():
                    if pair not in new:
                        changes[pair] = get_change(pair, 0) - previous
                        pair_sequences[pair].discard(index)
            sequence_counts[index] = new
        self._apply_changes(changes)

    def _apply_changes(self, changes: dict[int, float]) -> None:
        totals = self.totals
        heap = self.heap
        pair_sequences = self.pair_sequences
        factor = self._pair_factor
        drop_empty = not self.keep_vanished_pair_counts
        for pair, change in changes.items():
            if abs(change) < COUNT_EPSILON:
                continue
            total = totals.get(pair, 0.0) + change
            if drop_empty and total <= COUNT_EPSILON:
                # Exact bookkeeping: the pair is gone from the corpus (up to rounding).
                totals.pop(pair, None)
                if not pair_sequences.get(pair, True):
                    del pair_sequences[pair]
                continue
            totals[pair] = total
            if factor is None:
                heapq.heappush(heap, (-total, pair))
            else:
                heapq.heappush(heap, (-(total * factor(pair)), pair))

    def recount_totals(self) -> dict[int, float]:
        """Count every pair of the current corpus from scratch (slow; for tests)."""
        totals: dict[int, float] = {}
        for sequence in self.sequences:
            if sequence is None:
                continue
            for key, value in count_sequence_pairs(sequence).items():
                totals[key] = totals.get(key, 0.0) + value
        return totals
