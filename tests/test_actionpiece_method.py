"""Tests of the ActionPiece method: fit, generation, invalid generations, SPR, save and load."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from clairo_bench.data.dataset import Dataset, ItemCodes
from clairo_bench.data.split import Split, build_split
from clairo_bench.evaluation import Evaluator
from clairo_bench.generative.t5 import T5Settings
from clairo_bench.methods.actionpiece import ActionPiece
from clairo_bench.methods.actionpiece.inference import decode_beams
from clairo_bench.methods.actionpiece.method import STATISTICS_FILE
from clairo_bench.methods.actionpiece.model import (
    EOS_ID,
    IGNORED_LABEL,
    TOKEN_OFFSET,
    beam_search,
    build_model,
    collate_inputs,
    collate_labels,
)
from clairo_bench.methods.actionpiece.training import SPRTrainingData
from clairo_bench.methods.base import RunContext
from clairo_bench.tokenization.actionpiece import ActionPieceVocabulary

N_ITEMS = 30
N_USERS = 60
TEST_SETTINGS = {
    "vocab_size": 60,
    "d_model": 32,
    "max_epochs": 12,
    "patience": 12,
    "lr": 0.02,
    "num_beams": 4,
    "inference_segmentations": 2,
    "validation_users": None,
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_dataset() -> Dataset:
    """30 items with 2 text and 2 image code levels; users walk forward through the catalogue."""
    rng = np.random.default_rng(7)
    text = rng.integers(0, 4, size=(N_ITEMS, 2))
    image = rng.integers(0, 4, size=(N_ITEMS, 2))
    sequences = []
    for _ in range(N_USERS):
        start = int(rng.integers(0, N_ITEMS))
        length = int(rng.integers(4, 8))
        sequences.append((start + np.arange(length) * int(rng.integers(1, 3))) % N_ITEMS)
    return Dataset(
        name="tiny",
        item_ids=[f"B{index:04d}" for index in range(N_ITEMS)],
        user_ids=[f"U{user:03d}" for user in range(N_USERS)],
        sequences=[np.asarray(s, dtype=np.int64) for s in sequences],
        codes={
            "text": ItemCodes("text", text, 4, "test text codes"),
            "image": ItemCodes("image", image, 4, "test image codes"),
        },
    )


def run_context(tmp_path: Path, split: Split, validate=None) -> RunContext:
    evaluator = Evaluator()
    logs: list[dict] = []
    context = RunContext(
        seed=3,
        profile="smoke",
        device="cpu",
        work_dir=tmp_path / "work",
        cache_dir=tmp_path / "cache",
        validate=validate or (lambda method: evaluator.evaluate(method, split.valid, split.n_items).summary()),
        log_epoch=logs.append,
    )
    context.work_dir.mkdir(parents=True, exist_ok=True)
    context.logs = logs  # type: ignore[attr-defined]
    return context


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tmp_path = tmp_path_factory.mktemp("actionpiece")
    dataset = tiny_dataset()
    split = build_split(dataset)
    context = run_context(tmp_path, split)
    method = ActionPiece(ActionPiece.resolve_config("smoke", TEST_SETTINGS))
    method.fit(dataset, split, context)
    return method, dataset, split, context, tmp_path


def test_fit_recommends_valid_item_indices(fitted):
    method, _, split, _, _ = fitted
    output = method.recommend(split.test.histories, 10)
    assert output.items.shape == (len(split.test), 10)
    assert ((output.items >= -1) & (output.items < N_ITEMS)).all()
    assert (output.items >= 0).any()
    for row in output.items:
        valid = row[row >= 0].tolist()
        assert len(valid) == len(set(valid))
        assert (row[len(valid):] == -1).all()


def test_recommendations_keep_the_order_of_the_histories(fitted):
    method, _, split, _, _ = fitted
    histories = split.test.histories[:12]
    together = method.recommend(histories, 10)
    for row, history in enumerate(histories):
        alone = method.recommend([history], 10)
        assert np.array_equal(together.items[row], alone.items[0])


def test_fit_counts_every_beam_as_a_generation(fitted):
    method, _, split, _, _ = fitted
    output = method.recommend(split.test.histories[:5], 10)
    assert output.total_generations == 5 * 2 * 4


def test_fit_logs_epochs_and_records(fitted):
    _, _, _, context, _ = fitted
    assert [record["epoch"] for record in context.logs] == list(range(1, 13))
    assert "valid_ndcg@10" in context.logs[0]
    assert context.records["features"]["source"] == "precomputed"
    assert context.records["features"]["category_modalities"] == ["text", "text", "dedup"]
    assert context.records["validation"]["users"] == N_USERS


def test_fit_stores_vocabulary_statistics(fitted):
    method, _, _, context, _ = fitted
    statistics = context.records["vocabulary"]
    assert statistics["size"] == method.vocabulary.size
    assert statistics["n_merges"] == len(method.vocabulary.merges)
    assert "top_merges" in statistics
    stored = json.loads((context.work_dir / STATISTICS_FILE).read_text())
    assert stored == json.loads(json.dumps(statistics))


def test_vocabulary_tokens_are_text_or_dedup_only(fitted):
    method, _, _, _, _ = fitted
    vocabulary = method.vocabulary
    for token in range(1, vocabulary.size):
        assert vocabulary.token_modalities(token) <= {"text", "dedup"}


def test_invalid_generations_are_counted_not_replaced(fitted, monkeypatch):
    method, _, split, _, _ = fitted
    histories = split.test.histories[:8]
    wide = method.recommend(histories, 2 * 4)
    decode = method.tokenizer.decode_item
    rejected = []

    def decode_even_items_only(tokens):
        item = decode(tokens)
        if item is not None and item % 2:
            rejected.append(item)
            return None
        return item

    monkeypatch.setattr(method.tokenizer, "decode_item", decode_even_items_only)
    output = method.recommend(histories, 3)
    assert output.invalid_generations >= len(rejected) > 0
    assert output.invalid_generations - len(rejected) == wide.invalid_generations
    assert output.total_generations == wide.total_generations
    for row, wide_row in zip(output.items, wide.items):
        kept = [item for item in wide_row.tolist() if item >= 0 and item % 2 == 0][:3]
        assert row.tolist() == kept + [-1] * (3 - len(kept))


def test_generation_without_any_valid_item_returns_padding(fitted, monkeypatch):
    method, _, split, _, _ = fitted
    monkeypatch.setattr(method.tokenizer, "decode_item", lambda tokens: None)
    output = method.recommend(split.test.histories[:4], 5)
    assert (output.items == -1).all()
    assert output.invalid_generations == output.total_generations == 4 * 2 * 4


def test_spr_segments_differently_across_epochs(fitted):
    method, _, split, _, _ = fitted
    histories, targets = split.train_pairs()
    data = SPRTrainingData(method.tokenizer, histories, targets, seed=11)
    first = data.segment_epoch(1)
    assert first == data.segment_epoch(1)
    second = data.segment_epoch(2)
    assert first != second
    features = method.item_features
    for history, one, two in zip(histories, first, second):
        expected = sorted(
            (category, int(features[item, category]))
            for item in history.tolist()
            for category in range(features.shape[1])
        )
        assert sorted(method.tokenizer.expand(one)) == expected
        assert sorted(method.tokenizer.expand(two)) == expected


def test_spr_batches_use_the_epoch_segmentation(fitted):
    method, _, split, _, _ = fitted
    histories, targets = split.train_pairs()
    data = SPRTrainingData(method.tokenizer, histories, targets, seed=11)
    segmentations = data.segment_epoch(2)
    rows = set()
    for batch in data.batches(2, batch_size=16):
        for ids, mask in zip(batch.input_ids.tolist(), batch.attention_mask.tolist()):
            tokens = [token - TOKEN_OFFSET for token in ids[1 : sum(mask) - 1]]
            rows.add(tuple(tokens))
    assert rows == {tuple(tokens) for tokens in segmentations}


def length_corpus(n_items: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Eight histories of 1 to 8 items (item 0 repeated), each with target item 1."""
    histories = [np.zeros(length, dtype=np.int64) for length in (5, 2, 8, 1, 7, 3, 6, 4)]
    return histories, np.ones(len(histories), dtype=np.int64) % n_items


def test_length_grouping_pairs_neighbouring_lengths(fitted):
    method = fitted[0]
    histories, targets = length_corpus(method.tokenizer.n_items)
    data = SPRTrainingData(method.tokenizer, histories, targets, seed=3, length_grouping=4)
    _, batches = data.batch_indices(epoch=1, batch_size=2)
    grouped = {frozenset(len(histories[i]) for i in batch.tolist()) for batch in batches}
    assert grouped == {frozenset({1, 2}), frozenset({3, 4}), frozenset({5, 6}), frozenset({7, 8})}


def test_length_grouping_visits_every_pair_once(fitted):
    method, _, split, _, _ = fitted
    histories, targets = split.train_pairs()
    data = SPRTrainingData(method.tokenizer, histories, targets, seed=3, length_grouping=2)
    _, batches = data.batch_indices(epoch=1, batch_size=5)
    visited = np.sort(np.concatenate(batches))
    assert np.array_equal(visited, np.arange(len(targets)))


def test_length_grouping_orders_batches_anew_each_epoch(fitted):
    method, _, split, _, _ = fitted
    histories, targets = split.train_pairs()
    data = SPRTrainingData(method.tokenizer, histories, targets, seed=3, length_grouping=2)
    first = [batch.tolist() for batch in data.batch_indices(epoch=1, batch_size=5)[1]]
    second = [batch.tolist() for batch in data.batch_indices(epoch=2, batch_size=5)[1]]
    assert first != second


def test_grouped_batches_use_the_epoch_segmentation(fitted):
    method, _, split, _, _ = fitted
    histories, targets = split.train_pairs()
    data = SPRTrainingData(method.tokenizer, histories, targets, seed=11, length_grouping=3)
    segmentations = data.segment_epoch(2, batch_size=4)
    rows = set()
    for batch in data.batches(2, batch_size=4):
        for ids, mask in zip(batch.input_ids.tolist(), batch.attention_mask.tolist()):
            rows.add(tuple(token - TOKEN_OFFSET for token in ids[1 : sum(mask) - 1]))
    assert rows == {tuple(tokens) for tokens in segmentations}


def test_save_and_load_give_identical_recommendations(fitted):
    method, dataset, split, _, tmp_path = fitted
    method.save(tmp_path / "model")
    restored = ActionPiece(method.config)
    restored.load(tmp_path / "model", dataset, split)
    before = method.recommend(split.test.histories, 10)
    after = restored.recommend(split.test.histories, 10)
    assert np.array_equal(before.items, after.items)
    assert before.invalid_generations == after.invalid_generations


def test_load_rejects_other_settings(fitted):
    method, dataset, split, _, tmp_path = fitted
    method.save(tmp_path / "model-settings")
    other = ActionPiece(ActionPiece.resolve_config("smoke", {**TEST_SETTINGS, "num_beams": 3}))
    with pytest.raises(ValueError, match="num_beams"):
        other.load(tmp_path / "model-settings", dataset, split)


def test_second_fit_reuses_cached_vocabulary(fitted, monkeypatch):
    method, dataset, split, context, tmp_path = fitted

    def fail_build(*args, **kwargs):
        raise AssertionError("the vocabulary should come from the cache")

    monkeypatch.setattr(ActionPieceVocabulary, "build", fail_build)
    again = run_context(tmp_path / "again", split)
    again.cache_dir = context.cache_dir
    settings = {**TEST_SETTINGS, "max_epochs": 1}
    second = ActionPiece(ActionPiece.resolve_config("smoke", settings))
    second.fit(dataset, split, again)
    assert second.vocabulary.merges == method.vocabulary.merges


def test_damaged_cached_vocabulary_is_rebuilt(fitted, caplog):
    method, dataset, split, context, tmp_path = fitted
    cache_dir = tmp_path / "damaged-cache"
    shutil.copytree(context.cache_dir, cache_dir)
    [cached] = (cache_dir / "vocabularies").glob("*.json")
    cached.write_text(cached.read_text()[:100])
    again = run_context(tmp_path / "damaged", split)
    again.cache_dir = cache_dir
    second = ActionPiece(ActionPiece.resolve_config("smoke", {**TEST_SETTINGS, "max_epochs": 1}))
    with caplog.at_level(logging.WARNING):
        second.fit(dataset, split, again)
    assert f"Vocabulary cache file {cached} is unreadable" in caplog.text
    assert second.vocabulary.merges == method.vocabulary.merges
    assert ActionPieceVocabulary.load(cached).merges == method.vocabulary.merges


def test_fit_resumes_from_its_checkpoints(fitted, monkeypatch):
    method, dataset, split, context, _ = fitted
    resumed = ActionPiece(method.config)
    trained_epochs = []

    def record_epoch(model, optimizer, scheduler, data, epoch, *args):
        trained_epochs.append(epoch)
        return 0.0

    monkeypatch.setattr("clairo_bench.methods.actionpiece.method.train_one_epoch", record_epoch)
    resumed_context = dataclasses.replace(context, records={})
    resumed.fit(dataset, split, resumed_context)
    assert trained_epochs == []
    assert resumed_context.records["training"]["epochs_run"] == 12
    before = method.recommend(split.test.histories, 10)
    after = resumed.recommend(split.test.histories, 10)
    assert np.array_equal(before.items, after.items)


def test_validation_subset_replaces_context_validate(tmp_path):
    dataset = tiny_dataset()
    split = build_split(dataset)

    def forbidden(method):
        raise AssertionError("validation should use the fixed subset")

    context = run_context(tmp_path, split, validate=forbidden)
    settings = {**TEST_SETTINGS, "max_epochs": 1, "validation_users": 10}
    ActionPiece(ActionPiece.resolve_config("smoke", settings)).fit(dataset, split, context)
    assert context.records["validation"]["users"] == 10
    assert context.records["validation"]["of"] == N_USERS
    assert "valid_ndcg@10" in context.logs[0]


def test_beam_search_cache_matches_full_decoding():
    torch.manual_seed(0)
    settings = T5Settings(num_layers=1, num_decoder_layers=2, d_model=16, d_ff=32, num_heads=2, d_kv=8)
    model = build_model(settings, vocabulary_size=40).eval()
    input_ids, attention_mask = collate_inputs([[1, 2, 3, 4], [5, 6], [7, 8, 9]])
    cached = beam_search(model, input_ids, attention_mask, num_beams=5, max_new_tokens=4)
    full = beam_search(model, input_ids, attention_mask, num_beams=5, max_new_tokens=4,
                       use_cache=False)
    assert cached.tokens == full.tokens
    assert np.allclose(cached.log_probs, full.log_probs, atol=1e-5)


def test_beam_search_reuses_decoder_cache():
    torch.manual_seed(0)
    settings = T5Settings(num_layers=1, num_decoder_layers=1, d_model=16, d_ff=32, num_heads=2, d_kv=8)
    model = build_model(settings, vocabulary_size=40).eval()
    widths = []
    model.get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    input_ids, attention_mask = collate_inputs([[1, 2, 3], [4, 5]])
    beam_search(model, input_ids, attention_mask, num_beams=3, max_new_tokens=4)
    assert widths[0] == 1
    assert set(widths[1:]) <= {1}


def test_beam_search_ranks_beams_by_log_probability():
    torch.manual_seed(1)
    settings = T5Settings(num_layers=1, num_decoder_layers=1, d_model=16, d_ff=32, num_heads=2, d_kv=8)
    model = build_model(settings, vocabulary_size=30).eval()
    input_ids, attention_mask = collate_inputs([[1, 2, 3], [4, 5]])
    output = beam_search(model, input_ids, attention_mask, num_beams=6, max_new_tokens=3)
    for scores, tokens in zip(output.log_probs, output.tokens):
        assert scores == sorted(scores, reverse=True)
        assert len(tokens) == 6
        assert len(set(map(tuple, tokens))) == 6


def test_collate_wraps_inputs_and_ends_labels_with_eos():
    input_ids, attention_mask = collate_inputs([[0, 5], [7]])
    assert input_ids.tolist() == [[2, 3, 8, 1], [2, 10, 1, 0]]
    assert attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    labels = collate_labels([[4], [1, 2]])
    assert labels.tolist() == [[7, EOS_ID, IGNORED_LABEL], [4, 5, EOS_ID]]


class _LookupTokenizer:
    def __init__(self, table):
        self.table = table

    def decode_item(self, tokens):
        return self.table.get(tuple(tokens))


def test_decode_beams_keeps_positions_of_invalid_beams():
    tokenizer = _LookupTokenizer({(1,): 5, (2,): 7, (4,): 5})
    decoded = decode_beams(tokenizer, [[1], [3], [2], [4], [2]], [True, True, True, True, False])
    assert decoded.items == [5, 7, 5]
    assert decoded.weights == [1.0, 1.0 / math.log2(4), 1.0 / math.log2(5)]
    assert decoded.invalid == 2
    assert decoded.total == 5
