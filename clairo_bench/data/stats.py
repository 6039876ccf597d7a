"""Summary statistics of a Dataset, as a plain dict for the CLI and for reports."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from clairo_bench.data.dataset import Dataset
from clairo_bench.data.split import MIN_SEQUENCE_LENGTH

logger = logging.getLogger(__name__)

POPULARITY_QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def _content_coverage(dataset: Dataset) -> dict[str, float]:
    """Fraction of items with each kind of content; all 0.0 without metadata."""
    n_items = dataset.n_items
    fields = ("title", "brand", "categories", "description", "image_url", "text")
    if not dataset.item_meta or n_items == 0:
        return {name: 0.0 for name in fields}
    present = dict.fromkeys(fields, 0)
    for meta in dataset.item_meta:
        if meta is None:
            continue
        present["title"] += bool(meta.title)
        present["brand"] += bool(meta.brand)
        present["categories"] += bool(meta.categories)
        present["description"] += bool(meta.description)
        present["image_url"] += bool(meta.image_url)
        present["text"] += bool(meta.text())
    return {name: count / n_items for name, count in present.items()}


def _code_stats(dataset: Dataset) -> dict[str, dict[str, Any]]:
    result = {}
    for modality, item_codes in sorted(dataset.codes.items()):
        codes = item_codes.codes
        distinct = len({tuple(row) for row in codes.tolist()})
        result[modality] = {
            "source": item_codes.source,
            "levels": item_codes.n_levels,
            "codebook_size": item_codes.codebook_size,
            "coverage": 1.0 if dataset.n_items else 0.0,
            "distinct_tuples": distinct,
            "colliding_items": dataset.n_items - distinct,
        }
    return result


def dataset_stats(dataset: Dataset) -> dict[str, Any]:
    """Compute size, sequence-length, popularity and feature-coverage statistics.

    Keys of the returned dict:
    - name, users, items, interactions;
    - split_users: users with at least MIN_SEQUENCE_LENGTH interactions, the ones the
      leave-one-out split keeps (a warning is logged when there are none);
    - density: interactions / (users x items);
    - sequence_length: min, mean, median and max;
    - item_popularity: interactions per item at POPULARITY_QUANTILES (linear interpolation);
    - cold_items: items without interactions;
    - content: fraction of items with each metadata field and with any text, None without
      metadata;
    - codes: per modality the file, levels, codebook size, coverage, distinct code tuples and
      the number of items that share a tuple with an earlier item;
    - coverage: fraction of items with features, for text, image and each modality with codes.
    """
    lengths = np.asarray([len(sequence) for sequence in dataset.sequences], dtype=np.int64)
    popularity = np.zeros(dataset.n_items, dtype=np.int64)
    for sequence in dataset.sequences:
        np.add.at(popularity, sequence, 1)
    n_users, n_items = dataset.n_users, dataset.n_items
    interactions = int(lengths.sum())
    split_users = int((lengths >= MIN_SEQUENCE_LENGTH).sum())
    if not split_users:
        logger.warning(
            "Dataset %s: no user has %d or more interactions (%d users in all), so no split can "
            "be built and every run on it fails.",
            dataset.name, MIN_SEQUENCE_LENGTH, n_users,
        )
    content = _content_coverage(dataset) if dataset.item_meta is not None else None
    codes = _code_stats(dataset)

    coverage = {
        "text": content["text"] if content else 0.0,
        "image": content["image_url"] if content else 0.0,
    }
    for modality, code_stats in codes.items():
        coverage[f"{modality} codes"] = code_stats["coverage"]

    if len(lengths):
        sequence_length = {
            "min": int(lengths.min()),
            "mean": float(lengths.mean()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
        }
    else:
        sequence_length = {"min": 0, "mean": 0.0, "median": 0.0, "max": 0}
    quantiles = (
        {f"q{round(q * 100):02d}": float(np.quantile(popularity, q)) for q in POPULARITY_QUANTILES}
        if n_items
        else {}
    )
    return {
        "name": dataset.name,
        "users": n_users,
        "items": n_items,
        "interactions": interactions,
        "split_users": split_users,
        "density": interactions / (n_users * n_items) if n_users and n_items else 0.0,
        "sequence_length": sequence_length,
        "item_popularity": quantiles,
        "cold_items": int((popularity == 0).sum()),
        "content": content,
        "codes": codes,
        "coverage": coverage,
    }
