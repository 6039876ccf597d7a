"""Discrete item features and the de-duplication feature that makes every item's codes unique.

De-duplication rule: items whose code tuples are equal get an extra feature 0, 1, 2, ... in
ascending order of their item identifiers (Python string order of the ASINs). Items whose tuple
is unique get 0. The rule depends on identifiers, not on item indices, so it does not change when
a loader numbers items differently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from clairo_bench.data.dataset import DataError, Dataset

logger = logging.getLogger(__name__)

CATEGORY_MODALITIES = ("text", "image", "fused", "dedup")


@dataclass(frozen=True)
class ItemFeatureSet:
    """Discrete features of every item.

    Attributes:
        features: (n_items, n_categories) int64; row i belongs to item index i. The last
            category is the de-duplication feature.
        category_modalities: per category, "text", "image", "fused" or "dedup".
        codebook_sizes: per category, the number of distinct values; every value of category j
            is in [0, codebook_sizes[j]).
        collision_rate: share of items whose code tuple (all categories but the last) equalled
            another item's tuple before de-duplication.
        provenance: where the features came from: the source ("precomputed codes: <file>" or
            the encoder, PCA and OPQ settings), the stage cache keys and cache hits.
    """

    features: np.ndarray
    category_modalities: tuple[str, ...]
    codebook_sizes: tuple[int, ...]
    collision_rate: float
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.dtype != np.int64:
            raise ValueError(
                "ItemFeatureSet.features must be a 2-D int64 array, got "
                f"{self.features.dtype} with shape {self.features.shape}."
            )
        n_categories = self.features.shape[1]
        sizes_match = len(self.codebook_sizes) == n_categories
        if len(self.category_modalities) != n_categories or not sizes_match:
            raise ValueError(
                f"ItemFeatureSet has {n_categories} feature columns but "
                f"{len(self.category_modalities)} modalities and {len(self.codebook_sizes)} "
                "codebook sizes; they must match."
            )
        for modality in self.category_modalities:
            if modality not in CATEGORY_MODALITIES:
                raise ValueError(
                    f"Unknown category modality {modality!r}; use {', '.join(CATEGORY_MODALITIES)}."
                )
        if not self.category_modalities or self.category_modalities[-1] != "dedup":
            raise ValueError("The last category of an ItemFeatureSet must be the dedup feature.")
        if self.features.shape[0]:
            sizes = np.asarray(self.codebook_sizes)
            if (self.features.min(axis=0) < 0).any() or (self.features.max(axis=0) >= sizes).any():
                raise ValueError(
                    "ItemFeatureSet values fall outside [0, codebook size) in some category: "
                    f"column maxima {self.features.max(axis=0).tolist()}, sizes {list(sizes)}."
                )

    @property
    def n_items(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_categories(self) -> int:
        return int(self.features.shape[1])


def deduplicate(codes: np.ndarray, item_ids: Sequence[str]) -> tuple[np.ndarray, float]:
    """Compute the de-duplication feature of each item (see the module docstring for the rule).

    Returns:
        (dedup, collision_rate): dedup is (n_items,) int64; collision_rate is the share of items
        whose row of `codes` equals another item's row.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n_items = codes.shape[0]
    if len(item_ids) != n_items:
        raise ValueError(f"{len(item_ids)} item identifiers for {n_items} code rows.")
    if n_items == 0:
        return np.zeros(0, dtype=np.int64), 0.0
    identifier_rank = np.argsort(np.argsort(np.asarray(item_ids, dtype=str), kind="stable"))
    # np.lexsort sorts by its last key first: by code tuple, then by identifier within a tuple.
    sort_keys = [identifier_rank] + [codes[:, column] for column in reversed(range(codes.shape[1]))]
    order = np.lexsort(sort_keys)
    sorted_codes = codes[order]
    starts_group = np.ones(n_items, dtype=bool)
    starts_group[1:] = (sorted_codes[1:] != sorted_codes[:-1]).any(axis=1)
    positions = np.arange(n_items)
    group_start = np.maximum.accumulate(np.where(starts_group, positions, 0))
    dedup = np.empty(n_items, dtype=np.int64)
    dedup[order] = positions - group_start
    group_ids = np.cumsum(starts_group) - 1
    group_sizes = np.bincount(group_ids)
    collided = int((group_sizes[group_ids] > 1).sum())
    return dedup, collided / n_items


def assemble_features(
    parts: Sequence[tuple[str, np.ndarray, Sequence[int]]],
    item_ids: Sequence[str],
    provenance: dict[str, Any],
) -> ItemFeatureSet:
    """Concatenate code blocks, append the de-duplication feature and log the collision rate.

    Args:
        parts: (modality, (n_items, n_levels) codes, codebook size per level) per block.
        item_ids: identifier of each item index, used by the de-duplication rule.
        provenance: stored in the result.
    """
    codes = np.concatenate([np.asarray(block, dtype=np.int64) for _, block, _ in parts], axis=1)
    modalities: list[str] = []
    sizes: list[int] = []
    for modality, block, block_sizes in parts:
        modalities.extend([modality] * block.shape[1])
        sizes.extend(int(size) for size in block_sizes)
    dedup, collision_rate = deduplicate(codes, item_ids)
    distinct = int(len(np.unique(codes, axis=0))) if len(codes) else 0
    logger.info(
        "Code tuples before de-duplication: %d distinct for %d items; collision rate %.4f, "
        "largest group %d.",
        distinct, len(codes), collision_rate, int(dedup.max(initial=-1)) + 1,
    )
    features = np.concatenate([codes, dedup[:, None]], axis=1)
    return ItemFeatureSet(
        features=features,
        category_modalities=tuple(modalities) + ("dedup",),
        codebook_sizes=tuple(sizes) + (int(dedup.max(initial=0)) + 1,),
        collision_rate=float(collision_rate),
        provenance=provenance,
    )


def features_from_dataset_codes(dataset: Dataset, modalities: Sequence[str]) -> ItemFeatureSet:
    """Build features from the codes shipped with the dataset (`Dataset.codes`), plus dedup.

    Raises:
        DataError: a requested modality has no codes in the dataset.
    """
    if not modalities:
        raise ValueError("features_from_dataset_codes needs at least one modality.")
    missing = [modality for modality in modalities if modality not in dataset.codes]
    if missing:
        available = ", ".join(sorted(dataset.codes)) or "none"
        raise DataError(
            f"Dataset {dataset.name!r} ships no {', '.join(missing)} codes (available: "
            f"{available}); build features from content (source=content) or pick modalities "
            "that the dataset has."
        )
    parts = []
    sources = []
    for modality in modalities:
        item_codes = dataset.codes[modality]
        parts.append((modality, item_codes.codes, [item_codes.codebook_size] * item_codes.n_levels))
        sources.append(f"precomputed codes: {item_codes.source}")
    provenance = {
        "source": "; ".join(sources),
        "source_kind": "precomputed",
        "modalities": list(modalities),
        "dataset": dataset.name,
    }
    return assemble_features(parts, dataset.item_ids, provenance)
