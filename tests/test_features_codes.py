"""Tests of the de-duplication feature, ItemFeatureSet checks and dataset-shipped codes."""

from __future__ import annotations

import numpy as np
import pytest

from clairo_bench.data.dataset import DataError, Dataset, ItemCodes
from clairo_bench.features import ItemFeatureSet, deduplicate, features_from_dataset_codes


def test_deduplicate_numbers_collisions_by_identifier_order():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [0, 1]])
    item_ids = ["B", "A", "C", "0", "D"]
    dedup, _ = deduplicate(codes, item_ids)
    # Items 0, 1 and 3 share (1, 2); in identifier order "0" < "A" < "B" they get 0, 1, 2.
    assert dedup.tolist() == [2, 1, 0, 0, 0]


def test_deduplicate_collision_rate_counts_all_group_members():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [0, 1]])
    _, collision_rate = deduplicate(codes, ["B", "A", "C", "0", "D"])
    assert collision_rate == pytest.approx(3 / 5)


def test_deduplicate_ignores_item_index_order():
    codes = np.array([[5], [5], [7]])
    forward, _ = deduplicate(codes, ["X1", "X2", "X3"])
    permutation = [2, 1, 0]
    backward, _ = deduplicate(codes[permutation], ["X3", "X2", "X1"])
    assert backward[permutation].tolist() == forward.tolist()


def test_deduplicate_unique_tuples_get_zero():
    dedup, collision_rate = deduplicate(np.array([[0, 1], [1, 0], [1, 1]]), ["a", "b", "c"])
    assert dedup.tolist() == [0, 0, 0]
    assert collision_rate == 0.0


def test_deduplicate_rejects_misaligned_identifiers():
    with pytest.raises(ValueError, match="2 item identifiers for 3 code rows"):
        deduplicate(np.zeros((3, 1), dtype=np.int64), ["a", "b"])


def _dataset_with_codes() -> Dataset:
    text = np.array([[0, 1], [0, 1], [2, 3], [0, 1]])
    image = np.array([[4], [4], [5], [6]])
    return Dataset(
        name="coded",
        item_ids=["I3", "I1", "I2", "I0"],
        user_ids=["U0"],
        sequences=[np.array([0, 1, 2, 3])],
        codes={
            "text": ItemCodes("text", text, 4, "text_codes.json"),
            "image": ItemCodes("image", image, 8, "image_codes.json"),
        },
    )


def test_dataset_codes_text_only_features():
    features = features_from_dataset_codes(_dataset_with_codes(), ["text"])
    # Items I3, I1, I0 share (0, 1): identifier order I0 < I1 < I3 gives I3 -> 2, I1 -> 1, I0 -> 0.
    assert features.features.tolist() == [[0, 1, 2], [0, 1, 1], [2, 3, 0], [0, 1, 0]]


def test_dataset_codes_categories_and_sizes():
    features = features_from_dataset_codes(_dataset_with_codes(), ["text", "image"])
    assert features.category_modalities == ("text", "text", "image", "dedup")
    assert features.codebook_sizes == (4, 4, 8, 2)


def test_dataset_codes_collision_rate_of_combined_tuple():
    features = features_from_dataset_codes(_dataset_with_codes(), ["text", "image"])
    # Only I3 and I1 share (0, 1, 4).
    assert features.collision_rate == pytest.approx(2 / 4)


def test_dataset_codes_provenance_names_files():
    features = features_from_dataset_codes(_dataset_with_codes(), ["text", "image"])
    assert features.provenance["source"] == (
        "precomputed codes: text_codes.json; precomputed codes: image_codes.json"
    )


def test_dataset_codes_missing_modality_raises():
    with pytest.raises(DataError, match="ships no fused codes"):
        features_from_dataset_codes(_dataset_with_codes(), ["fused"])


def test_feature_set_rejects_values_outside_codebook():
    with pytest.raises(ValueError, match="outside"):
        ItemFeatureSet(
            features=np.array([[3, 0]], dtype=np.int64),
            category_modalities=("text", "dedup"),
            codebook_sizes=(3, 1),
            collision_rate=0.0,
        )


def test_feature_set_requires_dedup_last():
    with pytest.raises(ValueError, match="dedup"):
        ItemFeatureSet(
            features=np.array([[0, 0]], dtype=np.int64),
            category_modalities=("dedup", "text"),
            codebook_sizes=(1, 1),
            collision_rate=0.0,
        )
