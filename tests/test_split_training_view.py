"""Tests of the training view of a dataset that `Method.fit` receives."""

from __future__ import annotations

import numpy as np
import pytest

from clairo_bench.data.dataset import DataError, Dataset
from clairo_bench.data.split import build_split, training_view


def small_dataset(sequences: list[list[int]]) -> Dataset:
    return Dataset(
        name="view",
        item_ids=[f"I{index}" for index in range(6)],
        user_ids=[f"U{user}" for user in range(len(sequences))],
        sequences=[np.array(sequence, dtype=np.int64) for sequence in sequences],
    )


def test_training_view_drops_validation_and_test_items():
    dataset = small_dataset([[0, 1, 2, 3, 4], [5, 4, 3]])
    view = training_view(dataset, build_split(dataset))
    assert view.sequences[0].tolist() == [0, 1, 2]
    assert view.sequences[1].tolist() == [5]


def test_training_view_empties_dropped_users():
    dataset = small_dataset([[0, 1, 2, 3], [4, 5]])
    view = training_view(dataset, build_split(dataset))
    assert view.sequences[1].tolist() == []
    assert view.user_ids == dataset.user_ids


def test_training_view_keeps_items_and_codes():
    dataset = small_dataset([[0, 1, 2, 3]])
    view = training_view(dataset, build_split(dataset))
    assert view.item_ids == dataset.item_ids
    assert view.codes is dataset.codes


def test_training_view_rejects_a_split_of_other_data():
    split = build_split(small_dataset([[0, 1, 2, 3]]))
    with pytest.raises(DataError, match="rebuild the split"):
        training_view(small_dataset([[0, 1, 2, 4]]), split)
