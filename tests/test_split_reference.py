"""The shared split on the embedded Instruments data against MQL4GRec's released split files."""

from __future__ import annotations

import numpy as np
import pytest

from clairo_bench.data.catalog import load_dataset, load_reference_split
from clairo_bench.data.split import SplitSettings, build_split

CAP = 50


@pytest.fixture(scope="module")
def instruments():
    return load_dataset("instruments", cache_dir=None)


@pytest.fixture(scope="module")
def split(instruments):
    return build_split(instruments, SplitSettings(max_history_items=CAP))


@pytest.fixture(scope="module")
def reference():
    return load_reference_split("instruments")


def _released_pairs(rows, user_index):
    return {
        user_index[user]: (tuple(int(item) for item in history), int(target))
        for user, history, target in zip(rows.user_ids, rows.histories, rows.targets)
    }


@pytest.mark.parametrize("stage", ["valid", "test"])
def test_eval_pairs_equal_released_split(instruments, split, reference, stage):
    user_index = {user: index for index, user in enumerate(instruments.user_ids)}
    expected = _released_pairs(reference[stage], user_index)
    pairs = getattr(split, stage)
    built = {
        int(user): (tuple(history.tolist()), int(target))
        for user, history, target in zip(pairs.users, pairs.histories, pairs.targets)
    }
    assert len(reference[stage].targets) == 17_112
    assert built == expected


def test_train_pairs_equal_released_split(instruments, split, reference):
    user_index = {user: index for index, user in enumerate(instruments.user_ids)}
    rows = reference["train"]
    expected = sorted(
        (user_index[user], tuple(int(item) for item in history), int(target))
        for user, history, target in zip(rows.user_ids, rows.histories, rows.targets)
    )
    histories, targets = split.train_pairs()
    pair_users = np.repeat(split.train_users, [len(s) - 1 for s in split.train_sequences])
    built = sorted(
        (int(user), tuple(history.tolist()), int(target))
        for user, history, target in zip(pair_users, histories, targets)
    )
    # 136,226 interactions minus 3 per user (first item, validation and test targets).
    assert len(expected) == 84_890
    assert built == expected


def test_released_split_histories_respect_cap(reference):
    for stage in ("train", "valid", "test"):
        assert max(len(history) for history in reference[stage].histories) == CAP


@pytest.mark.parametrize("stage", ["valid", "test"])
def test_eval_history_strictly_precedes_target(instruments, split, stage):
    pairs = getattr(split, stage)
    offset = 2 if stage == "valid" else 1
    for user, history, target in zip(pairs.users, pairs.histories, pairs.targets):
        sequence = instruments.sequences[user]
        target_position = len(sequence) - offset
        assert sequence[target_position] == target
        start = max(0, target_position - CAP)
        assert np.array_equal(history, sequence[start:target_position])


def test_train_sequences_exclude_eval_targets(instruments, split):
    for user, train in zip(split.train_users, split.train_sequences):
        sequence = instruments.sequences[user]
        assert len(train) == len(sequence) - 2
        assert np.array_equal(train, sequence[:-2])
