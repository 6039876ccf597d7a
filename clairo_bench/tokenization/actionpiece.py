"""ActionPiece vocabulary: initial feature tokens plus learned merges.

ActionPiece (Hou et al., "ActionPiece: Contextually Tokenizing Action Sequences for Generative
Recommendation", ICML 2025) describes each item by a set of discrete features and learns merges of
feature tokens that co-occur inside an item or across adjacent items of user sequences. Token ids
follow the authors' code (google-deepmind/action_piece, genrec/models/ActionPiece/core.py): token 0
is padding, then for each feature category in order one token per distinct value in ascending
order, then one token per merge in merge order. The counting and merging rules are documented in
`actionpiece_build`; segmentation lives in `actionpiece_segment`.

Feature category c of item i is the pair (c, item_features[i, c]). Each category has a modality
("text", "image", "fused" or "dedup"); a token spans the modalities of the categories it covers.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clairo_bench.io import atomic_write_text
from clairo_bench.tokenization.actionpiece_build import (
    MAX_TOKENS,
    MergeEngine,
    pair_key,
    split_pair_key,
)

logger = logging.getLogger(__name__)

VOCABULARY_FORMAT = "clairo_bench.actionpiece_vocabulary"
VOCABULARY_FORMAT_VERSION = 1
CATEGORY_MODALITIES = ("text", "image", "fused", "dedup")
PAIR_WEIGHT_KEYS = ("text-text", "image-image", "text-image")
PADDING_FEATURE = (-1, -1)

_MODALITY_BITS = {"text": 1, "image": 2, "fused": 4, "dedup": 8}
_TEXT_AND_IMAGE = _MODALITY_BITS["text"] | _MODALITY_BITS["image"]


@dataclass(frozen=True)
class Merge:
    """One learned merge.

    Attributes:
        token: id of the new token.
        left: the smaller id of the merged pair.
        right: the larger id of the merged pair (equal to `left` for a token paired with its
            own copy in the next item).
        weight: the pair's priority when it was merged: its summed pair weight over the corpus,
            times the modality pair weight when `pair_weights` were given.
        features: the initial (category, value) features the token expands to, sorted; a
            feature occurs twice when the token joins copies from two items.
    """

    token: int
    left: int
    right: int
    weight: float
    features: tuple[tuple[int, int], ...]


def _factor_table(pair_weights: Mapping[str, float]) -> list[float]:
    """Return the priority factor for every union of modality bits of a merged pair.

    A pair whose tokens together span only text uses "text-text", only image "image-image", and
    text and image "text-image". A pair that touches a "fused" or "dedup" category uses 1.0.
    """
    table = [1.0] * 16
    table[_MODALITY_BITS["text"]] = float(pair_weights.get("text-text", 1.0))
    table[_MODALITY_BITS["image"]] = float(pair_weights.get("image-image", 1.0))
    table[_TEXT_AND_IMAGE] = float(pair_weights.get("text-image", 1.0))
    return table


def _validate_pair_weights(pair_weights: Mapping[str, float]) -> dict[str, float]:
    checked = {}
    for key, value in pair_weights.items():
        if key not in PAIR_WEIGHT_KEYS:
            raise ValueError(
                f"Unknown pair_weights key {key!r}; use one of {', '.join(PAIR_WEIGHT_KEYS)}."
            )
        value = float(value)
        if not math.isfinite(value) or value <= 0.0:
            raise ValueError(
                f"pair_weights[{key!r}] must be a positive finite number, got {value}."
            )
        checked[key] = value
    return checked


def _validate_item_features(item_features: np.ndarray) -> np.ndarray:
    array = np.asarray(item_features)
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(
            "item_features must be a 2-D array (items x categories) with at least one "
            f"category, got shape {array.shape}."
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"item_features must hold integers, got dtype {array.dtype}; quantize the features "
            "into integer codes first."
        )
    return array.astype(np.int64, copy=False)


def _validate_modalities(
    category_modalities: Sequence[str] | None, n_categories: int
) -> tuple[str, ...]:
    if category_modalities is None:
        return ("text",) * n_categories
    modalities = tuple(category_modalities)
    if len(modalities) != n_categories:
        raise ValueError(
            f"category_modalities has {len(modalities)} entries but item_features has "
            f"{n_categories} categories; give one modality per category."
        )
    for index, modality in enumerate(modalities):
        if modality not in CATEGORY_MODALITIES:
            raise ValueError(
                f"category_modalities[{index}] is {modality!r}; use one of "
                f"{', '.join(CATEGORY_MODALITIES)}."
            )
    return modalities


def initial_token_table(item_features: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Return the initial tokens and every item's initial token ids, in category order.

    Token 0 is padding (-1, -1); then, for each category in order, one token per distinct value
    in ascending order.
    """
    features = _validate_item_features(item_features)
    initial_tokens: list[tuple[int, int]] = [PADDING_FEATURE]
    item_tokens = np.zeros_like(features)
    for category in range(features.shape[1]):
        values, inverse = np.unique(features[:, category], return_inverse=True)
        item_tokens[:, category] = inverse.reshape(-1) + len(initial_tokens)
        initial_tokens.extend((category, int(value)) for value in values.tolist())
    return initial_tokens, item_tokens


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector, restoring its previous state on exit.

    Construction allocates millions of long-lived dicts, lists and tuples without reference
    cycles. The collector's repeated scans of them took about a fifth of the build time on
    Instruments (40,000 tokens, benchmarks/bench_actionpiece_vocab.py). Reference counting still
    frees memory.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _learn_merges(
    engine: MergeEngine,
    initial_tokens: list[tuple[int, int]],
    vocab_size: int,
    masks: list[int],
    progress: Callable[[int, int], None] | None,
) -> list[Merge]:
    """Merge the best pair until the vocabulary reaches `vocab_size` or no pair is left.

    `masks` (modality bits per token) grows by one entry per merge; the engine's pair factor
    reads it.
    """
    n_initial = len(initial_tokens)
    token_features: list[tuple[tuple[int, int], ...]] = [()] + [
        (feature,) for feature in initial_tokens[1:]
    ]
    merges: list[Merge] = []
    planned = vocab_size - n_initial
    while len(merges) < planned:
        best = engine.pop_best_pair()
        if best is None:
            logger.warning(
                "ActionPiece: no pair left to merge after %d of %d merges; the vocabulary has "
                "%d tokens instead of %d.",
                len(merges),
                planned,
                n_initial + len(merges),
                vocab_size,
            )
            break
        key, weight = best
        left, right = split_pair_key(key)
        token = n_initial + len(merges)
        # The engine prices new pairs of `token` while merging, so its modalities go first.
        masks.append(masks[left] | masks[right])
        engine.merge(key, token)
        merged_features = tuple(sorted(token_features[left] + token_features[right]))
        token_features.append(merged_features)
        merges.append(Merge(token, left, right, weight, merged_features))
        if progress is not None:
            progress(len(merges), planned)
    return merges


class ActionPieceVocabulary:
    """Initial feature tokens and merges of one ActionPiece vocabulary.

    Build one with `build`, or read one with `load`. Instances are not meant to be mutated.

    Attributes:
        size: number of tokens, padding and initial tokens included.
        merges: the merges in the order they were learned; merges[k].token == n_initial + k.
        initial_tokens: (category, value) of every initial token, indexed by token id;
            (-1, -1) for padding at id 0.
        category_modalities: modality of each feature category.
        pair_weights: the modality pair weights used to build the vocabulary (empty: all 1.0).
    """

    def __init__(
        self,
        initial_tokens: Sequence[tuple[int, int]],
        merges: Sequence[Merge],
        category_modalities: Sequence[str],
        pair_weights: Mapping[str, float] | None = None,
    ) -> None:
        self.initial_tokens: list[tuple[int, int]] = [tuple(t) for t in initial_tokens]
        self.merges: list[Merge] = list(merges)
        self.category_modalities: tuple[str, ...] = tuple(category_modalities)
        self.pair_weights: dict[str, float] = dict(pair_weights or {})
        self.n_categories = len(self.category_modalities)
        self.n_initial = len(self.initial_tokens)
        self.size = self.n_initial + len(self.merges)
        self._check_consistency()

        self.feature_token: dict[tuple[int, int], int] = {
            feature: token for token, feature in enumerate(self.initial_tokens) if token
        }
        self._features: list[tuple[tuple[int, int], ...]] = [()] + [
            (feature,) for feature in self.initial_tokens[1:]
        ]
        self._masks: list[int] = [0] + [
            _MODALITY_BITS[self.category_modalities[category]]
            for category, _ in self.initial_tokens[1:]
        ]
        # Segmentation looks a rule up here; when a pair was merged twice, the later token wins,
        # as in the reference's rank table.
        self.rule_token: dict[int, int] = {}
        self.priority: list[float] = [0.0] * self.n_initial
        for merge in self.merges:
            self._features.append(merge.features)
            self._masks.append(self._masks[merge.left] | self._masks[merge.right])
            self.rule_token[pair_key(merge.left, merge.right)] = merge.token
            self.priority.append(merge.weight)

    def _check_consistency(self) -> None:
        if not self.initial_tokens or self.initial_tokens[0] != PADDING_FEATURE:
            raise ValueError("initial_tokens[0] must be the padding feature (-1, -1).")
        previous = None
        for token, (category, value) in enumerate(self.initial_tokens[1:], start=1):
            if not 0 <= category < self.n_categories:
                raise ValueError(
                    f"Initial token {token} has category {category}, outside "
                    f"0..{self.n_categories - 1}."
                )
            if previous is not None and (category, value) <= previous:
                raise ValueError(
                    f"Initial token {token} = {(category, value)} is out of order; initial "
                    "tokens must be sorted by category, then value, without repeats."
                )
            previous = (category, value)
        for index, merge in enumerate(self.merges):
            expected = self.n_initial + index
            if merge.token != expected:
                raise ValueError(f"Merge {index} creates token {merge.token}, expected {expected}.")
            if not (0 < merge.left <= merge.right < merge.token):
                raise ValueError(
                    f"Merge {index} joins tokens {merge.left} and {merge.right}; both must be "
                    f"existing non-padding tokens below {merge.token}, smaller one first."
                )
        if self.size >= MAX_TOKENS:
            raise ValueError(
                f"A vocabulary has at most {MAX_TOKENS - 1} tokens, got {self.size}."
            )

    @classmethod
    def build(
        cls,
        item_features: np.ndarray,
        corpus: Sequence[Sequence[int]],
        vocab_size: int,
        category_modalities: Sequence[str] | None = None,
        pair_weights: Mapping[str, float] | None = None,
        progress: Callable[[int, int], None] | None = None,
        *,
        keep_vanished_pair_counts: bool = True,
    ) -> "ActionPieceVocabulary":
        """Learn merges on `corpus` until the vocabulary has `vocab_size` tokens.

        Args:
            item_features: (n_items, n_categories) integer codes; feature c of item i is
                (c, item_features[i, c]). Every item gets initial tokens, in the corpus or not.
            corpus: item-index sequences, oldest first (the training parts of user sequences).
                Empty sequences are skipped.
            vocab_size: target number of tokens, padding and initial tokens included. Fewer
                tokens result when no pair is left to merge (logged as a warning).
            category_modalities: modality per category ("text", "image", "fused" or "dedup");
                None means every category is "text".
            pair_weights: factors "text-text", "image-image" and "text-image" that multiply a
                pair's total by the modalities the pair spans (missing keys: 1.0). Pairs that
                touch a "fused" or "dedup" category keep factor 1.0, and so do tokens that
                already absorbed such a category. Needs category_modalities.
            progress: called as progress(merges_done, merges_planned) after every merge.
            keep_vanished_pair_counts: True (default) reproduces the reference's bookkeeping,
                where a pair that disappears from a sequence keeps its last count in the corpus
                total; False keeps exact totals. See `MergeEngine`.

        Raises:
            ValueError: on malformed features, modalities, pair weights, corpus or size.
        """
        features = _validate_item_features(item_features)
        n_items, n_categories = features.shape
        modalities = _validate_modalities(category_modalities, n_categories)
        weights = _validate_pair_weights(pair_weights or {})
        if weights and category_modalities is None:
            raise ValueError(
                "pair_weights need category_modalities to know which categories are text and "
                "which are image; pass both."
            )

        initial_tokens, item_tokens = initial_token_table(features)
        n_initial = len(initial_tokens)
        if vocab_size < n_initial:
            raise ValueError(
                f"vocab_size {vocab_size} is smaller than the {n_initial} initial tokens "
                "(padding plus one per distinct feature value); raise vocab_size."
            )
        if vocab_size >= MAX_TOKENS:
            raise ValueError(f"vocab_size must be below {MAX_TOKENS}, got {vocab_size}.")

        checked_corpus: list[list[int]] = []
        for index, sequence in enumerate(corpus):
            items = [int(item) for item in sequence]
            for item in items:
                if not 0 <= item < n_items:
                    raise ValueError(
                        f"Corpus sequence {index} contains item {item}, outside the "
                        f"{n_items} items of item_features (0..{n_items - 1})."
                    )
            checked_corpus.append(items)

        masks = [0] + [_MODALITY_BITS[modalities[category]] for category, _ in initial_tokens[1:]]
        pair_factor = None
        if weights and any(value != 1.0 for value in weights.values()):
            table = _factor_table(weights)

            def pair_factor(key: int) -> float:
                left, right = split_pair_key(key)
                return table[masks[left] | masks[right]]

        with _cyclic_gc_paused():
            started = time.perf_counter()
            engine = MergeEngine(
                item_tokens,
                checked_corpus,
                n_initial,
                keep_vanished_pair_counts=keep_vanished_pair_counts,
                pair_factor=pair_factor,
            )
            logger.info(
                "ActionPiece: %d sequences, %d initial tokens, %d distinct pairs counted in "
                "%.1f s",
                len(checked_corpus),
                n_initial,
                len(engine.totals),
                time.perf_counter() - started,
            )
            merges = _learn_merges(engine, initial_tokens, vocab_size, masks, progress)
            logger.info(
                "ActionPiece: %d merges in %.1f s", len(merges), time.perf_counter() - started
            )
        return cls(initial_tokens, merges, modalities, weights)

    def token_features(self, token: int) -> tuple[tuple[int, int], ...]:
        """Return the sorted initial features of `token`; () for padding."""
        self._check_token(token)
        return self._features[token]

    def token_modalities(self, token: int) -> frozenset[str]:
        """Return the modalities of the categories that `token` covers; empty for padding."""
        self._check_token(token)
        mask = self._masks[token]
        return frozenset(name for name, bit in _MODALITY_BITS.items() if mask & bit)

    def token_modality_mask(self, token: int) -> int:
        """Return the modalities of `token` as bits (text 1, image 2, fused 4, dedup 8)."""
        return self._masks[token]

    def _check_token(self, token: int) -> None:
        if not 0 <= token < self.size:
            raise ValueError(f"Token {token} is outside the vocabulary (0..{self.size - 1}).")

    def to_payload(self) -> dict[str, Any]:
        """Return the JSON document that `save` writes."""
        return {
            "format": VOCABULARY_FORMAT,
            "format_version": VOCABULARY_FORMAT_VERSION,
            "n_categories": self.n_categories,
            "category_modalities": list(self.category_modalities),
            "pair_weights": self.pair_weights,
            "initial_tokens": [list(feature) for feature in self.initial_tokens],
            # Floats are written with repr, so weights round-trip exactly and reloaded
            # vocabularies segment exactly as the built one.
            "merges": [[m.token, m.left, m.right, m.weight] for m in self.merges],
        }

    def save(self, path: Path) -> None:
        """Write the vocabulary as versioned JSON, atomically."""
        atomic_write_text(Path(path), json.dumps(self.to_payload(), separators=(",", ":")))

    @classmethod
    def load(cls, path: Path) -> "ActionPieceVocabulary":
        """Read a vocabulary written by `save`.

        Raises:
            ValueError: when the file is not an ActionPiece vocabulary, has a format version
                this code does not read, or is inconsistent.
        """
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); rebuild the vocabulary.") from None
        if not isinstance(payload, dict) or payload.get("format") != VOCABULARY_FORMAT:
            raise ValueError(
                f"{path} is not an ActionPiece vocabulary (missing format "
                f"{VOCABULARY_FORMAT!r}); rebuild it with ActionPieceVocabulary.build."
            )
        version = payload.get("format_version")
        if version != VOCABULARY_FORMAT_VERSION:
            raise ValueError(
                f"{path} has vocabulary format_version {version!r}, but this code reads only "
                f"version {VOCABULARY_FORMAT_VERSION}; rebuild the vocabulary with this version "
                "of clairo-bench."
            )
        try:
            initial_tokens = [(int(c), int(v)) for c, v in payload["initial_tokens"]]
            modalities = _validate_modalities(
                payload["category_modalities"], int(payload["n_categories"])
            )
            weights = _validate_pair_weights(payload.get("pair_weights") or {})
            features: list[tuple[tuple[int, int], ...]] = [()] + [
                (feature,) for feature in initial_tokens[1:]
            ]
            merges = []
            for token, left, right, weight in payload["merges"]:
                token, left, right = int(token), int(left), int(right)
                if not (0 < left <= right < token == len(features)):
                    raise ValueError(
                        f"merge creating token {token} joins {left} and {right}, which do not "
                        "precede it"
                    )
                merged = tuple(sorted(features[left] + features[right]))
                features.append(merged)
                merges.append(Merge(token, left, right, float(weight), merged))
            return cls(initial_tokens, merges, modalities, weights)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{path} is a damaged ActionPiece vocabulary ({error}); rebuild it."
            ) from None

    def statistics(
        self,
        item_features: np.ndarray,
        sequences: Sequence[Sequence[int]],
        *,
        top_k: int = 10,
        n_rank_buckets: int = 4,
        n_examples: int = 3,
    ) -> dict[str, Any]:
        """Summarize the vocabulary and its segmentations; see `actionpiece_stats`."""
        # Imported here because actionpiece_stats imports this module.
        from clairo_bench.tokenization.actionpiece_stats import vocabulary_statistics

        return vocabulary_statistics(
            self,
            item_features,
            sequences,
            top_k=top_k,
            n_rank_buckets=n_rank_buckets,
            n_examples=n_examples,
        )
