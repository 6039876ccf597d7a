"""ActionPiece segmentation: turning items and item sequences into vocabulary tokens.

Both modes follow `ActionPieceCore.encode` of the authors' code (google-deepmind/action_piece,
genrec/models/ActionPiece/core.py) for Hou et al., ICML 2025:

- Deterministic (`shuffle='none'` there): the sequence is laid out as item states separated by
  context slots, as in vocabulary construction. Every applicable merge rule is scored by its
  recorded weight (`Merge.weight`) times 2/M for a pair inside a state of M tokens, or divided by
  M1 * M2 for a pair across a slot (a filled slot counts as one token). The single best-scoring
  pair is merged at its place, and a tie goes to the pair met first (left to right, a state's
  inside before the slot after it). Empty states are then settled, and the search repeats until
  no rule applies. The output lists the tokens of every state and filled slot from left to
  right. The order of merges is by weight, not by merge rank, and the two differ because weights
  are not monotone in rank. The reference uses this mode for generation targets.
- Set permutation regularization (SPR, `shuffle='feature'` there): each item's initial tokens are
  shuffled, the items are concatenated into one flat list, and BPE runs on it: the adjacent pair
  whose rule was learned earliest (lowest token id) is merged first, leftmost first. Pairs may
  straddle item boundaries. Different shuffles give different segmentations of the same items.
  The reference uses this mode for training inputs and for inference ensembles.

A rule learned twice (possible with the reference's bookkeeping) is applied as its later token.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from clairo_bench.data.dataset import DataError
from clairo_bench.tokenization.actionpiece import ActionPieceVocabulary
from clairo_bench.tokenization.actionpiece_build import PAIR_KEY_BASE, settle_empty_states

_NO_CANDIDATE = float("-inf")
# Best-candidate caches are cleared when they grow past this many entries, to bound memory.
_CACHE_LIMIT = 500_000


class ActionPieceTokenizer:
    """Segment items and item sequences with an ActionPiece vocabulary.

    Args:
        vocabulary: the learned vocabulary.
        item_features: (n_items, n_categories) integer codes, the same coding the vocabulary was
            built from.

    Raises:
        DataError: when the feature matrix does not fit the vocabulary, an item has a feature
            value the vocabulary lacks, or two items share all features (decoding would be
            ambiguous; add a deduplicating category).
    """

    def __init__(self, vocabulary: ActionPieceVocabulary, item_features: np.ndarray) -> None:
        features = np.asarray(item_features)
        if features.ndim != 2 or features.shape[1] != vocabulary.n_categories:
            raise DataError(
                f"item_features has shape {features.shape}, but the vocabulary has "
                f"{vocabulary.n_categories} categories; pass the features it was built from."
            )
        self.vocabulary = vocabulary
        self.n_items = features.shape[0]
        feature_token = vocabulary.feature_token
        rows = features.tolist()
        self._item_tokens: list[tuple[int, ...]] = []
        self._feature_item: dict[tuple[int, ...], int] = {}
        for item, row in enumerate(rows):
            tokens = []
            for category, value in enumerate(row):
                token = feature_token.get((category, value))
                if token is None:
                    raise DataError(
                        f"Item {item} has feature value {value} in category {category}, which "
                        "the vocabulary has no token for; rebuild the vocabulary on these features."
                    )
                tokens.append(token)
            key = tuple(row)
            other = self._feature_item.setdefault(key, item)
            if other != item:
                raise DataError(
                    f"Items {other} and {item} have the same features {key}; decoding needs "
                    "distinct items, so add a deduplicating category (for example a hash bucket)."
                )
            self._item_tokens.append(tuple(tokens))
        self._rule_token = vocabulary.rule_token
        self._priority = vocabulary.priority
        self._item_cache: dict[int, tuple[int, ...]] = {}
        self._inside_cache: dict[tuple[int, ...], tuple[float, int, int]] = {}
        self._across_cache: dict[tuple, tuple[float, int, int]] = {}

    def _check_item(self, item: int) -> int:
        item = int(item)
        if not 0 <= item < self.n_items:
            raise ValueError(f"Item {item} is outside 0..{self.n_items - 1}.")
        return item

    def item_initial_tokens(self, item: int) -> tuple[int, ...]:
        """Return the initial tokens of `item`, in category order."""
        return self._item_tokens[self._check_item(item)]

    def encode_item(self, item: int) -> list[int]:
        """Segment one item deterministically (the generation target of that item).

        Inside a single state every pair has the same factor 2/M, so this applies the
        highest-weight rule among the item's tokens until none applies.
        """
        item = self._check_item(item)
        cached = self._item_cache.get(item)
        if cached is None:
            cached = tuple(self._segment_deterministic([list(self._item_tokens[item])]))
            self._item_cache[item] = cached
        return list(cached)

    def encode_sequence(
        self, items: Sequence[int], rng: np.random.Generator | None = None
    ) -> list[int]:
        """Segment an item sequence (oldest first).

        With `rng` None the segmentation is deterministic and uses in-item merges and context
        tokens between items; with `rng` it uses set permutation regularization (see the module
        docstring), drawing one permutation per item from `rng`.
        """
        checked = [self._check_item(item) for item in items]
        if not checked:
            return []
        if rng is None:
            return self._segment_deterministic([list(self._item_tokens[i]) for i in checked])
        flat: list[int] = []
        for item in checked:
            tokens = self._item_tokens[item]
            order = rng.permutation(len(tokens))
            flat.extend(tokens[k] for k in order.tolist())
        return self._segment_flat(flat)

    def expand(self, tokens: Sequence[int]) -> list[tuple[int, int]]:
        """Expand tokens into their initial (category, value) features, token by token.

        Padding expands to nothing. Raises ValueError for tokens outside the vocabulary.
        """
        features: list[tuple[int, int]] = []
        for token in tokens:
            features.extend(self.vocabulary.token_features(int(token)))
        return features

    def decode_item(self, tokens: Sequence[int]) -> int | None:
        """Return the item whose feature set `tokens` expand to, or None.

        None means an invalid generation: padding or an out-of-vocabulary token, a category
        covered twice or not at all, or a feature combination no item has.
        """
        size = self.vocabulary.size
        values: list[int | None] = [None] * self.vocabulary.n_categories
        for token in tokens:
            token = int(token)
            if token <= 0 or token >= size:
                return None
            for category, value in self.vocabulary.token_features(token):
                if values[category] is not None:
                    return None
                values[category] = value
        if any(value is None for value in values):
            return None
        return self._feature_item.get(tuple(values))

    def _segment_flat(self, tokens: list[int]) -> list[int]:
        """Run BPE on a flat token list: the lowest merged token id first, leftmost first."""
        count = len(tokens)
        if count < 2:
            return tokens
        rule_token = self._rule_token
        base = PAIR_KEY_BASE
        following = list(range(1, count + 1))
        preceding = list(range(-1, count - 1))
        alive = [True] * count
        heap = []
        for position in range(count - 1):
            a, b = tokens[position], tokens[position + 1]
            merged = rule_token.get(a * base + b if a < b else b * base + a)
            if merged is not None:
                heap.append((merged, position))
        heapq.heapify(heap)
        while heap:
            merged, position = heapq.heappop(heap)
            if not alive[position]:
                continue
            right = following[position]
            if right >= count:
                continue
            a, b = tokens[position], tokens[right]
            if rule_token.get(a * base + b if a < b else b * base + a) != merged:
                continue
            tokens[position] = merged
            alive[right] = False
            after = following[right]
            following[position] = after
            if after < count:
                preceding[after] = position
                c = tokens[after]
                candidate = rule_token.get(merged * base + c if merged < c else c * base + merged)
                if candidate is not None:
                    heapq.heappush(heap, (candidate, position))
            before = preceding[position]
            if before >= 0:
                c = tokens[before]
                candidate = rule_token.get(c * base + merged if c < merged else merged * base + c)
                if candidate is not None:
                    heapq.heappush(heap, (candidate, before))
        return [token for token, keep in zip(tokens, alive) if keep]

    def _best_inside(self, state: list[int]) -> tuple[float, int, int]:
        """Return (score, a, b) of the best rule inside one state; score -inf when none."""
        key = tuple(state)
        cached = self._inside_cache.get(key)
        if cached is not None:
            return cached
        rule_token = self._rule_token
        priority = self._priority
        base = PAIR_KEY_BASE
        size = len(state)
        best = (_NO_CANDIDATE, 0, 0)
        for i in range(size - 1):
            a = state[i]
            for b in state[i + 1 :]:
                token = rule_token.get(a * base + b if a < b else b * base + a)
                if token is not None:
                    score = priority[token] * 2 / size
                    if score > best[0]:
                        best = (score, a, b)
        if len(self._inside_cache) > _CACHE_LIMIT:
            self._inside_cache.clear()
        self._inside_cache[key] = best
        return best

    def _best_across(self, first: Sequence[int], second: Sequence[int]) -> tuple[float, int, int]:
        """Return (score, a, b) of the best rule joining a token of `first` with one of `second`."""
        key = (tuple(first), tuple(second))
        cached = self._across_cache.get(key)
        if cached is not None:
            return cached
        rule_token = self._rule_token
        priority = self._priority
        base = PAIR_KEY_BASE
        divisor = len(first) * len(second)
        best = (_NO_CANDIDATE, 0, 0)
        for a in first:
            for b in second:
                token = rule_token.get(a * base + b if a < b else b * base + a)
                if token is not None:
                    score = priority[token] / divisor
                    if score > best[0]:
                        best = (score, a, b)
        if len(self._across_cache) > _CACHE_LIMIT:
            self._across_cache.clear()
        self._across_cache[key] = best
        return best

    def _position_best(self, sequence: list, position: int) -> tuple[float, int, int, int]:
        """Return (score, a, b, call) of the best candidate at one position of the layout.

        Even positions are states (call 0: inside). Odd positions are the gap between two states:
        with a filled slot, call 1 pairs the left state with the slot and call 2 the right state
        with the slot (call 1 wins ties, as it is scanned first); with an empty slot, call 3
        pairs the two states.
        """
        if position % 2 == 0:
            score, a, b = self._best_inside(sequence[position])
            return score, a, b, 0
        slot = sequence[position]
        left = sequence[position - 1]
        right = sequence[position + 1]
        if slot:
            first = self._best_across(left, (slot,)) if left else (_NO_CANDIDATE, 0, 0)
            second = self._best_across(right, (slot,)) if right else (_NO_CANDIDATE, 0, 0)
            if second[0] > first[0]:
                return second[0], second[1], second[2], 2
            return first[0], first[1], first[2], 1
        if left and right:
            score, a, b = self._best_across(left, right)
            return score, a, b, 3
        return _NO_CANDIDATE, 0, 0, 3

    def _segment_deterministic(self, states: list[list[int]]) -> list[int]:
        sequence: list = []
        for state in states:
            if sequence:
                sequence.append(0)
            sequence.append(state)
        candidates = [self._position_best(sequence, p) for p in range(len(sequence))]
        scores = [candidate[0] for candidate in candidates]
        while True:
            best_score = max(scores)
            if best_score == _NO_CANDIDATE:
                break
            position = scores.index(best_score)
            _, a, b, call = candidates[position]
            token = self._rule_token[a * PAIR_KEY_BASE + b if a < b else b * PAIR_KEY_BASE + a]
            length = len(sequence)
            _apply_single_merge(sequence, position, call, a, b, token)
            if len(sequence) != length:
                candidates = [self._position_best(sequence, p) for p in range(len(sequence))]
                scores = [candidate[0] for candidate in candidates]
                continue
            # Without a dropped state, a merge at a state changes only that state; a merge at
            # slot p changes the states p - 1 and p + 1, the slot itself, and slot p - 2 when
            # settling moves its token into an emptied state p - 1. The calls that read those
            # elements lie between positions p - 2 and p + 2.
            low = max(position - 2, 0)
            high = min(position + 3, len(sequence))
            for p in range(low, high):
                candidate = self._position_best(sequence, p)
                candidates[p] = candidate
                scores[p] = candidate[0]
        output: list[int] = []
        for p, element in enumerate(sequence):
            if p % 2 == 0:
                output.extend(element)
            elif element:
                output.append(element)
        return output


def _apply_single_merge(sequence: list, position: int, call: int, a: int, b: int, token: int) -> None:
    """Merge (a, b) into `token` at one call site, then settle empty states."""
    emptied = False
    if call == 0:
        state = sequence[position]
        sequence[position] = [token] + [x for x in state if x != a and x != b]
    elif call in (1, 2):
        slot = sequence[position]
        index = position - 1 if call == 1 else position + 1
        state = sequence[index]
        other = b if slot == a else a
        sequence[index] = [x for x in state if x != other]
        sequence[position] = token
        emptied = not sequence[index]
    else:
        left = sequence[position - 1]
        right = sequence[position + 1]
        # The reference tries (smaller in left, larger in right) first; the orientation matters
        # when both tokens occur on both sides.
        low, high = (a, b) if a <= b else (b, a)
        if low in left and high in right:
            sequence[position - 1] = [x for x in left if x != low]
            sequence[position + 1] = [x for x in right if x != high]
        else:
            sequence[position - 1] = [x for x in left if x != high]
            sequence[position + 1] = [x for x in right if x != low]
        sequence[position] = token
        emptied = not sequence[position - 1] or not sequence[position + 1]
    if emptied:
        settle_empty_states(sequence)
