"""Tests of the sequential baselines SASRec, GRU4Rec and BERT4Rec and their shared machinery.

The fitted tests use a synthetic dataset in which item i is always followed by item i + 1 (modulo
the catalogue size). A sequential model learns that rule and reaches a validation NDCG@10 far
above Pop's, because all items are about equally popular.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clairo_bench.data.dataset import Dataset
from clairo_bench.data.split import Split, SplitSettings, build_split
from clairo_bench.evaluation import Evaluator
from clairo_bench.methods.base import ConfigError, Method, RunContext
from clairo_bench.methods.bert4rec import BERT4Rec
from clairo_bench.methods.gru4rec import GRU4Rec
from clairo_bench.methods.pop import Pop
from clairo_bench.methods.registry import get_method_class
from clairo_bench.methods.sasrec import SASRec
from clairo_bench.methods.sequential import (
    attention_mask,
    pad_left,
    position_ids,
    shifted_batch,
    training_windows,
)

N_ITEMS = 40
N_USERS = 300
METHODS = [SASRec, GRU4Rec, BERT4Rec]
# BERT4Rec predicts a masked item only through attention to its neighbours, which takes more
# optimizer steps to learn than the direct item-to-successor path of the causal models.
SMOKE_OVERRIDES: dict[str, dict[str, Any]] = {
    "sasrec": {},
    "gru4rec": {},
    "bert4rec": {"lr": 1e-2, "max_epochs": 15, "patience": 15},
}
MIN_NDCG_GAIN_OVER_POP = 0.25


@pytest.fixture(autouse=True)
def single_thread() -> None:
    torch.set_num_threads(1)


def successor_dataset(n_users: int = N_USERS, n_items: int = N_ITEMS, seed: int = 0) -> Dataset:
    """Users read 5 to 10 consecutive items (modulo n_items) from a random start."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(n_users):
        length = int(rng.integers(5, 11))
        start = int(rng.integers(n_items))
        sequences.append((start + np.arange(length, dtype=np.int64)) % n_items)
    return Dataset(
        name="successor",
        item_ids=[f"item{i}" for i in range(n_items)],
        user_ids=[f"user{u}" for u in range(n_users)],
        sequences=sequences,
    )


def make_context(work_dir: Path, split: Split, log: list[dict[str, Any]]) -> RunContext:
    evaluator = Evaluator()
    return RunContext(
        seed=0,
        profile="smoke",
        device="cpu",
        work_dir=work_dir,
        cache_dir=work_dir.parent / "cache",
        validate=lambda method: evaluator.evaluate(method, split.valid, split.n_items).summary(),
        log_epoch=log.append,
    )


def validation_ndcg(method: Method, split: Split) -> float:
    return Evaluator().evaluate(method, split.valid, split.n_items).summary()["ndcg@10"]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return successor_dataset()


@pytest.fixture(scope="module")
def split(dataset: Dataset) -> Split:
    return build_split(dataset, SplitSettings(max_history_items=8))


@pytest.fixture(scope="module")
def pop_ndcg(dataset: Dataset, split: Split, tmp_path_factory: pytest.TempPathFactory) -> float:
    pop = Pop()
    pop.fit(dataset, split, make_context(tmp_path_factory.mktemp("pop"), split, []))
    return validation_ndcg(pop, split)


@pytest.fixture(scope="module")
def fitted(
    dataset: Dataset, split: Split, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Method, RunContext]]:
    """Fit every method once with the smoke profile; tests share the fitted methods."""
    torch.set_num_threads(1)
    methods = {}
    for method_class in METHODS:
        torch.manual_seed(0)
        config = method_class.resolve_config("smoke", SMOKE_OVERRIDES[method_class.name])
        method = method_class(config)
        context = make_context(tmp_path_factory.mktemp(method_class.name), split, [])
        method.fit(dataset, split, context)
        methods[method_class.name] = (method, context)
    return methods


def test_pad_left_right_aligns_and_truncates() -> None:
    rows = [np.array([5, 6, 7]), np.array([9]), np.array([], dtype=np.int64)]

    padded = pad_left(rows, length=2)

    assert padded.tolist() == [[6, 7], [0, 9], [0, 0]]


def test_position_ids_end_at_max_length() -> None:
    tokens = torch.tensor([[0, 4, 5], [1, 2, 3]])

    positions = position_ids(tokens, max_length=5)

    assert positions.tolist() == [[2, 3, 4], [2, 3, 4]]


def test_attention_mask_causal_blocks_padding_and_future() -> None:
    tokens = torch.tensor([[0, 3, 4]])

    blocked = attention_mask(tokens, num_heads=2, causal=True)

    expected = [[False, True, True], [True, False, True], [True, False, False]]
    assert blocked.shape == (2, 3, 3)
    assert blocked[0].tolist() == expected
    assert blocked[1].tolist() == expected


def test_attention_mask_bidirectional_blocks_only_padding() -> None:
    tokens = torch.tensor([[0, 3, 4]])

    blocked = attention_mask(tokens, num_heads=1, causal=False)

    # The padding row may read the items; its output is never used.
    assert blocked[0].tolist() == [[False, False, False], [True, False, False], [True, False, False]]


def test_training_windows_causal_cover_each_target_once() -> None:
    # Items 0..6 are tokens 1..7; windows of 3 items overlap by one item.
    windows = training_windows([np.arange(7)], window_items=3, min_items=2)

    assert [w.tolist() for w in windows] == [[5, 6, 7], [3, 4, 5], [1, 2, 3]]
    targets = sorted(token for w in windows for token in w[1:].tolist())
    assert targets == [2, 3, 4, 5, 6, 7]


def test_training_windows_causal_drop_single_items() -> None:
    windows = training_windows([np.array([4]), np.array([1, 2])], window_items=3, min_items=2)

    assert [w.tolist() for w in windows] == [[2, 3]]


def test_training_windows_masked_are_disjoint() -> None:
    windows = training_windows([np.arange(7)], window_items=3, min_items=1)

    assert [w.tolist() for w in windows] == [[5, 6, 7], [2, 3, 4], [1]]


def test_shifted_batch_targets_follow_inputs() -> None:
    inputs, targets = shifted_batch([np.array([1, 2, 3]), np.array([7, 8])])

    assert inputs.tolist() == [[1, 2], [0, 7]]
    assert targets.tolist() == [[2, 3], [0, 8]]


def test_bert4rec_batch_masks_every_row() -> None:
    method = BERT4Rec(BERT4Rec.resolve_config("smoke", {"mask_probability": 0.01}))
    method.model = method.build_model(n_items=N_ITEMS, max_length=8)
    windows = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6, 7, 8])]

    inputs, targets = method.make_batch(windows, torch.Generator().manual_seed(0))

    mask_token = N_ITEMS + 1
    assert (inputs == mask_token).sum(dim=1).tolist() == [1, 1, 1]
    assert torch.equal(targets > 0, inputs == mask_token)
    assert torch.equal(torch.where(targets > 0, targets, inputs), pad_left(windows))


@pytest.mark.parametrize("method_class", METHODS, ids=lambda c: c.name)
def test_registry_resolves_method(method_class: type[Method]) -> None:
    assert get_method_class(method_class.name) is method_class


@pytest.mark.parametrize("method_class", METHODS, ids=lambda c: c.name)
def test_config_rejects_invalid_loss(method_class: type[Method]) -> None:
    with pytest.raises(ConfigError, match="loss"):
        method_class.resolve_config("quick", {"loss": "hinge"})


@pytest.mark.parametrize("method_class", METHODS, ids=lambda c: c.name)
def test_config_rejects_zero_hidden_size(method_class: type[Method]) -> None:
    with pytest.raises(ConfigError, match="hidden_size"):
        method_class.resolve_config("quick", {"hidden_size": "0"})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec"])
def test_smoke_fit_beats_pop(
    name: str, fitted: dict[str, tuple[Method, RunContext]], split: Split, pop_ndcg: float
) -> None:
    method, _ = fitted[name]

    ndcg = validation_ndcg(method, split)

    assert ndcg > pop_ndcg + MIN_NDCG_GAIN_OVER_POP, f"{name}: {ndcg:.3f} vs Pop {pop_ndcg:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec"])
def test_fit_records_loss(name: str, fitted: dict[str, tuple[Method, RunContext]]) -> None:
    _, context = fitted[name]

    assert context.records["loss"] == "ce"
    assert context.records["departures_from_paper"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec"])
def test_scores_cover_catalogue_without_nan(
    name: str, fitted: dict[str, tuple[Method, RunContext]]
) -> None:
    method, _ = fitted[name]
    histories = [np.array([3, 4, 5]), np.array([], dtype=np.int64), np.arange(30) % N_ITEMS]

    scores = method.recommend(histories, k=10).scores

    assert scores.shape == (3, N_ITEMS)
    assert scores.dtype == np.float32
    assert not np.isnan(scores).any()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec"])
def test_scores_independent_of_batch_padding(
    name: str, fitted: dict[str, tuple[Method, RunContext]]
) -> None:
    method, _ = fitted[name]
    short = np.array([10, 11])

    alone = method.recommend([short], k=10).scores[0]
    padded = method.recommend([short, np.arange(20, 28)], k=10).scores[0]

    np.testing.assert_allclose(padded, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec"])
def test_save_load_round_trip_gives_identical_scores(
    name: str,
    fitted: dict[str, tuple[Method, RunContext]],
    dataset: Dataset,
    split: Split,
    tmp_path: Path,
) -> None:
    method, _ = fitted[name]
    histories = split.valid.histories[:16]
    method.save(tmp_path / "model")
    restored = type(method)()

    restored.load(tmp_path / "model", dataset, split)

    assert restored.config == method.config
    np.testing.assert_array_equal(
        restored.recommend(histories, k=10).scores, method.recommend(histories, k=10).scores
    )


@pytest.mark.slow
def test_load_rejects_other_catalogue(
    fitted: dict[str, tuple[Method, RunContext]], tmp_path: Path
) -> None:
    method, _ = fitted["sasrec"]
    method.save(tmp_path / "model")
    other = successor_dataset(n_users=20, n_items=N_ITEMS + 5)

    with pytest.raises(ValueError, match="45"):
        SASRec().load(tmp_path / "model", other, build_split(other))


@pytest.mark.slow
@pytest.mark.parametrize("method_class", [SASRec, GRU4Rec], ids=lambda c: c.name)
def test_fit_resumes_at_epoch_3(
    method_class: type[Method], dataset: Dataset, split: Split, tmp_path: Path
) -> None:
    log: list[dict[str, Any]] = []
    work_dir = tmp_path / "work"
    first = method_class(method_class.resolve_config("smoke", {"max_epochs": 2, "patience": 5}))
    first.fit(dataset, split, make_context(work_dir, split, log))
    second = method_class(method_class.resolve_config("smoke", {"max_epochs": 4, "patience": 5}))

    second.fit(dataset, split, make_context(work_dir, split, log))

    assert [record["epoch"] for record in log] == [1, 2, 3, 4]
    checkpoint = torch.load(work_dir / "last.pt", map_location="cpu", weights_only=False)
    assert [record["epoch"] for record in checkpoint["history"]] == [1, 2, 3, 4]


@pytest.mark.slow
def test_bce_loss_trains_and_is_recorded(dataset: Dataset, split: Split, tmp_path: Path) -> None:
    log: list[dict[str, Any]] = []
    context = make_context(tmp_path / "work", split, log)
    method = SASRec(SASRec.resolve_config("smoke", {"loss": "bce"}))

    method.fit(dataset, split, context)

    assert context.records["loss"] == "bce"
    assert json.loads(json.dumps(context.records)) == context.records
    assert log[-1]["train_loss"] < log[0]["train_loss"]
