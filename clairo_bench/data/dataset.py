"""The in-memory dataset that every importer produces and every method reads.

Items and users get dense internal indices (0..n-1) when a dataset is loaded. Every external file
is joined to those indices through its identifiers (ASINs, user ids or item indices named in the
file), never through row positions. Once a `Dataset` exists, arrays indexed by item index are
aligned by construction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MODALITIES = ("text", "image", "fused")


class DataError(ValueError):
    """Invalid or inconsistent input data.

    The message names the file, the offending value and the fix.
    """


@dataclass(frozen=True)
class ItemMeta:
    """Content of one item, as read from Amazon metadata or a released file."""

    title: str | None = None
    brand: str | None = None
    categories: tuple[str, ...] = ()
    description: str | None = None
    image_url: str | None = None

    def text(self) -> str:
        """Join title, brand, categories and description into one encoder input."""
        parts = []
        if self.title:
            parts.append(f"Title: {self.title}")
        if self.brand:
            parts.append(f"Brand: {self.brand}")
        if self.categories:
            parts.append("Categories: " + ", ".join(self.categories))
        if self.description:
            parts.append(f"Description: {self.description}")
        return ". ".join(parts)


@dataclass(frozen=True)
class ItemCodes:
    """Discrete codes of one modality for every item.

    Attributes:
        modality: "text", "image" or "fused".
        codes: int64 array of shape (n_items, n_levels); row i belongs to item index i.
        codebook_size: number of distinct values per level; every code is in [0, codebook_size).
        source: where the codes came from (a file name, or a description of the quantizer).
    """

    modality: str
    codes: np.ndarray
    codebook_size: int
    source: str

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise DataError(
                f"Unknown modality {self.modality!r} for codes from {self.source}; "
                f"use one of {', '.join(MODALITIES)}."
            )
        if self.codes.ndim != 2:
            raise DataError(
                f"Codes from {self.source} must be a 2-D array (items x levels), "
                f"got shape {self.codes.shape}."
            )
        if self.codes.size and (self.codes.min() < 0 or self.codes.max() >= self.codebook_size):
            raise DataError(
                f"Codes from {self.source} fall outside [0, {self.codebook_size}): "
                f"min {self.codes.min()}, max {self.codes.max()}."
            )

    @property
    def n_levels(self) -> int:
        return int(self.codes.shape[1])


@dataclass
class Dataset:
    """Items, users and chronological interaction sequences of one dataset.

    Attributes:
        name: dataset name, as in its card (for example "instruments").
        item_ids: external identifier (ASIN) of each item index.
        user_ids: external identifier of each user index.
        sequences: one int64 array of item indices per user, oldest interaction first.
        codes: precomputed discrete codes by modality (may be empty).
        item_meta: content of each item index, or None where the source has no metadata.
        processing: how the data was made (source files, k-core, repeat policy, ...); recorded in
            every run so that only runs on identical data are compared.
    """

    name: str
    item_ids: list[str]
    user_ids: list[str]
    sequences: list[np.ndarray]
    codes: dict[str, ItemCodes] = field(default_factory=dict)
    item_meta: list[ItemMeta | None] | None = None
    processing: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.user_ids) != len(self.sequences):
            raise DataError(
                f"Dataset {self.name!r}: {len(self.user_ids)} user ids but "
                f"{len(self.sequences)} sequences."
            )
        if len(set(self.item_ids)) != len(self.item_ids):
            raise DataError(f"Dataset {self.name!r}: duplicate item identifiers.")
        n_items = len(self.item_ids)
        for user, sequence in zip(self.user_ids, self.sequences):
            if len(sequence) and (sequence.min() < 0 or sequence.max() >= n_items):
                raise DataError(
                    f"Dataset {self.name!r}: user {user} refers to item index "
                    f"{int(sequence.max())} outside 0..{n_items - 1}."
                )
        for modality, item_codes in self.codes.items():
            if item_codes.codes.shape[0] != n_items:
                raise DataError(
                    f"Dataset {self.name!r}: {modality} codes from {item_codes.source} cover "
                    f"{item_codes.codes.shape[0]} items, but the dataset has {n_items}."
                )
        if self.item_meta is not None and len(self.item_meta) != n_items:
            raise DataError(
                f"Dataset {self.name!r}: metadata for {len(self.item_meta)} items, "
                f"but the dataset has {n_items}."
            )

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def item_index(self) -> dict[str, int]:
        """Map each external item identifier to its item index."""
        return {item_id: index for index, item_id in enumerate(self.item_ids)}

    def content_hash(self) -> str:
        """Hash the interactions, identifiers and codes; equal hashes mean identical data."""
        digest = hashlib.sha256()
        digest.update(self.name.encode())
        digest.update("\n".join(self.item_ids).encode())
        digest.update("\n".join(self.user_ids).encode())
        for sequence in self.sequences:
            digest.update(np.asarray(sequence, dtype=np.int64).tobytes())
            digest.update(b"|")
        for modality in sorted(self.codes):
            item_codes = self.codes[modality]
            digest.update(modality.encode())
            digest.update(np.ascontiguousarray(item_codes.codes, dtype=np.int64).tobytes())
        digest.update(json.dumps(self.processing, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]
