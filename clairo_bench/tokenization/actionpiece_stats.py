"""Summary figures of an ActionPiece vocabulary and of the segmentations it produces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clairo_bench.tokenization.actionpiece import ActionPieceVocabulary, Merge
from clairo_bench.tokenization.actionpiece_segment import ActionPieceTokenizer

_TEXT = 1
_IMAGE = 2
MODALITY_CLASSES = ("text_only", "image_only", "cross_modal", "other")


def modality_class(mask: int) -> str:
    """Classify a token by whether it covers text and/or image categories.

    "fused" and "dedup" categories are ignored here: a token of text codes plus a hash bucket is
    text_only, and a token without text or image categories is "other".
    """
    has_text = bool(mask & _TEXT)
    has_image = bool(mask & _IMAGE)
    if has_text and has_image:
        return "cross_modal"
    if has_text:
        return "text_only"
    if has_image:
        return "image_only"
    return "other"


def _merge_record(merge: Merge, rank: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "token": merge.token,
        "left": merge.left,
        "right": merge.right,
        "weight": merge.weight,
        "features": [list(feature) for feature in merge.features],
    }


def _items_with_features(
    features: tuple[tuple[int, int], ...], feature_items: dict[tuple[int, int], set[int]], limit: int
) -> list[int]:
    """Return up to `limit` smallest item indices whose features include all of `features`."""
    if len(set(features)) != len(features):
        return []  # a feature twice: the token joins two items, so no single item contains it
    candidates: set[int] | None = None
    for feature in features:
        items = feature_items.get(feature, set())
        candidates = set(items) if candidates is None else candidates & items
        if not candidates:
            return []
    return sorted(candidates or ())[:limit]


def vocabulary_statistics(
    vocabulary: ActionPieceVocabulary,
    item_features: np.ndarray,
    sequences: Sequence[Sequence[int]],
    *,
    top_k: int = 10,
    n_rank_buckets: int = 4,
    n_examples: int = 3,
) -> dict[str, Any]:
    """Summarize a vocabulary and its deterministic segmentations of items and sequences.

    Returns a JSON-ready dict with: size, n_initial_tokens, n_merges, merged_token_share (merges
    over size), merged_token_share_in_sequences (share of segmented sequence tokens that are
    merged tokens), avg_tokens_per_item (over all items of `item_features`),
    avg_tokens_per_sequence and avg_items_per_sequence (over the non-empty `sequences`), and
    top_merges (the `top_k` heaviest merges). When the categories include both text and image,
    it adds `modality`: the count and share of merged tokens per class of `MODALITY_CLASSES`,
    overall and per merge-rank bucket (`n_rank_buckets` equal slices of the merge order), and
    top_cross_modal_merges (the `top_k` heaviest cross-modal merges, each with up to
    `n_examples` example items whose features include all of the token's features).
    """
    if n_rank_buckets < 1:
        raise ValueError(f"n_rank_buckets must be at least 1, got {n_rank_buckets}.")
    tokenizer = ActionPieceTokenizer(vocabulary, item_features)
    n_initial = vocabulary.n_initial
    merges = vocabulary.merges

    item_lengths = [len(tokenizer.encode_item(item)) for item in range(tokenizer.n_items)]
    sequence_tokens = 0
    merged_sequence_tokens = 0
    n_sequences = 0
    n_sequence_items = 0
    for sequence in sequences:
        if len(sequence) == 0:
            continue
        tokens = tokenizer.encode_sequence(sequence)
        n_sequences += 1
        n_sequence_items += len(sequence)
        sequence_tokens += len(tokens)
        merged_sequence_tokens += sum(1 for token in tokens if token >= n_initial)

    by_weight = sorted(range(len(merges)), key=lambda rank: (-merges[rank].weight, rank))
    statistics: dict[str, Any] = {
        "size": vocabulary.size,
        "n_initial_tokens": n_initial,
        "n_merges": len(merges),
        "merged_token_share": len(merges) / vocabulary.size,
        "merged_token_share_in_sequences": (
            merged_sequence_tokens / sequence_tokens if sequence_tokens else 0.0
        ),
        "avg_tokens_per_item": float(np.mean(item_lengths)) if item_lengths else 0.0,
        "avg_tokens_per_sequence": sequence_tokens / n_sequences if n_sequences else 0.0,
        "avg_items_per_sequence": n_sequence_items / n_sequences if n_sequences else 0.0,
        "top_merges": [_merge_record(merges[rank], rank) for rank in by_weight[:top_k]],
    }

    modalities = set(vocabulary.category_modalities)
    if not {"text", "image"} <= modalities:
        return statistics

    classes = [modality_class(vocabulary.token_modality_mask(m.token)) for m in merges]
    overall = {name: classes.count(name) for name in MODALITY_CLASSES}
    buckets = []
    for bucket in range(n_rank_buckets):
        start = bucket * len(merges) // n_rank_buckets
        stop = (bucket + 1) * len(merges) // n_rank_buckets
        counts = {name: 0 for name in MODALITY_CLASSES}
        for name in classes[start:stop]:
            counts[name] += 1
        size = stop - start
        buckets.append(
            {
                "first_rank": start,
                "last_rank": stop - 1,
                "counts": counts,
                "shares": {name: (count / size if size else 0.0) for name, count in counts.items()},
            }
        )

    feature_items: dict[tuple[int, int], set[int]] = {}
    for item, row in enumerate(np.asarray(item_features).tolist()):
        for category, value in enumerate(row):
            feature_items.setdefault((category, value), set()).add(item)
    cross_modal = [rank for rank in by_weight if classes[rank] == "cross_modal"][:top_k]
    top_cross = []
    for rank in cross_modal:
        record = _merge_record(merges[rank], rank)
        record["example_items"] = _items_with_features(
            merges[rank].features, feature_items, n_examples
        )
        top_cross.append(record)

    statistics["modality"] = {
        "counts": overall,
        "shares": {
            name: (count / len(merges) if merges else 0.0) for name, count in overall.items()
        },
        "by_rank_bucket": buckets,
        "top_cross_modal_merges": top_cross,
    }
    return statistics
