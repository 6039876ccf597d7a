"""MQL4GRec and TIGER: token layout, constrained decoding, list merging and smoke fits.

The smoke fits use a tiny dataset made here, with precomputed text and image codes, and a T5 of
a few thousand parameters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from clairo_bench.data.dataset import Dataset, ItemCodes
from clairo_bench.data.split import build_split
from clairo_bench.evaluation import Evaluator
from clairo_bench.generative.seq2seq import (
    EOS_TOKEN,
    IGNORE_LABEL,
    PAD_TOKEN,
    Seq2SeqExamples,
    SequenceBatcher,
    TokenLayout,
    constrained_beam_search,
    length_grouped_batches,
    next_token_logits,
)
from clairo_bench.generative.t5 import T5Settings, build_t5
from clairo_bench.generative.trie import PrefixTrie
from clairo_bench.methods.base import RunContext
from clairo_bench.methods.mql4grec import TASKS, MQL4GRec
from clairo_bench.methods.tiger import TIGER

TINY_T5 = T5Settings(num_layers=1, num_decoder_layers=1, d_model=16, d_ff=32, num_heads=2, d_kv=8)
TINY_OVERRIDES = {
    "num_layers": 1, "num_decoder_layers": 1, "d_model": 16, "d_ff": 32, "num_heads": 2,
    "d_kv": 8, "max_epochs": 2, "patience": 2, "batch_size": 32, "num_beams": 6,
}


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_dataset(n_items: int = 24, n_users: int = 30) -> Dataset:
    rng = np.random.default_rng(0)
    sequences = [
        rng.choice(n_items, size=int(rng.integers(4, 8)), replace=False).astype(np.int64)
        for _ in range(n_users)
    ]
    text = np.unique(rng.integers(8, size=(n_items * 3, 4)), axis=0)[:n_items]
    text = rng.permutation(text)
    text[1] = text[0]  # two items share a text ID, as in the released Instruments codes
    image = rng.permutation(np.unique(rng.integers(8, size=(n_items * 3, 4)), axis=0)[:n_items])
    return Dataset(
        name="tiny",
        item_ids=[f"I{index:03d}" for index in range(n_items)],
        user_ids=[f"U{index:03d}" for index in range(n_users)],
        sequences=sequences,
        codes={
            "text": ItemCodes("text", text, 8, "test text codes"),
            "image": ItemCodes("image", image, 8, "test image codes"),
        },
    )


def run_context(tmp_path: Path, split, logged: list) -> RunContext:
    evaluator = Evaluator()
    return RunContext(
        seed=0,
        profile="smoke",
        device="cpu",
        work_dir=tmp_path / "work",
        cache_dir=tmp_path / "cache",
        validate=lambda method: evaluator.evaluate(method, split.valid, split.n_items).summary(),
        log_epoch=logged.append,
    )


def catalogue_trie(n_items: int = 10) -> tuple[TokenLayout, PrefixTrie, np.ndarray]:
    rng = np.random.default_rng(1)
    codes = rng.permutation(np.unique(rng.integers(4, size=(40, 3)), axis=0))[:n_items]
    layout = TokenLayout({"text": (4, 4, 4)}, ["next"], prompt_length=1)
    tokens = layout.item_tokens("text", codes)
    return layout, PrefixTrie(tokens), tokens


def random_inputs(layout: TokenLayout, rows: int = 3, length: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    input_ids = torch.randint(3, layout.vocab_size, (rows, length), generator=generator)
    input_ids[:, -1] = EOS_TOKEN
    return input_ids, torch.ones_like(input_ids)


def test_token_layout_offsets():
    layout = TokenLayout({"text": (8, 8, 3), "image": (8, 8)}, ["a", "b"], prompt_length=2)
    # pad 0, eos 1, prompts 2..5, text levels at 6, 14, 22, image levels at 25, 33.
    assert layout.prompt_tokens("b").tolist() == [4, 5]
    assert layout.item_tokens("text", np.array([[0, 7, 2]])).tolist() == [[6, 21, 24]]
    assert layout.item_tokens("image", np.array([[1, 0]])).tolist() == [[26, 33]]
    assert layout.vocab_size == 41


def test_token_layout_rejects_out_of_range_codes():
    layout = TokenLayout({"text": (4, 4)}, [], prompt_length=0)
    with pytest.raises(ValueError, match="outside the level sizes"):
        layout.item_tokens("text", np.array([[0, 4]]))


def test_batcher_builds_prompt_history_and_eos():
    layout = TokenLayout({"text": (4, 4), "image": (4,)}, ["t", "i"], prompt_length=1)
    item_tokens = {
        "text": layout.item_tokens("text", np.array([[0, 1], [2, 3], [1, 1]])),
        "image": layout.item_tokens("image", np.array([[0], [1], [2]])),
    }
    batcher = SequenceBatcher(layout, item_tokens)
    examples = Seq2SeqExamples(
        tasks=np.array([0, 1]),
        histories=np.array([[2, 0], [1, -1]]),
        sources=np.array([0, 1]),
        targets=np.array([1, 0]),
        target_spaces=np.array([1, 0]),
    )
    input_ids, attention_mask = batcher.encoder_inputs(examples)
    # Text tokens start at 4 (levels 4..7 and 8..11), image tokens at 12.
    assert input_ids.tolist() == [[2, 5, 9, 4, 9, EOS_TOKEN], [3, 13, EOS_TOKEN, PAD_TOKEN, PAD_TOKEN, PAD_TOKEN]]
    assert attention_mask.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    assert batcher.labels(examples).tolist() == [[13, IGNORE_LABEL], [4, 9]]
    assert batcher.input_lengths(examples).tolist() == [6, 3]


def test_length_grouped_batches_cover_every_row_once():
    lengths = np.array([5, 1, 9, 3, 7, 2, 8])
    batches = length_grouped_batches(lengths, 3, torch.Generator().manual_seed(0))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(7))
    assert max(len(batch) for batch in batches) == 3


def test_constrained_search_returns_catalogue_items_untrained():
    layout, trie, _ = catalogue_trie()
    torch.manual_seed(0)
    model = build_t5(TINY_T5, layout.vocab_size)
    input_ids, attention_mask = random_inputs(layout)
    output = constrained_beam_search(model, input_ids, attention_mask, trie, num_beams=4)
    catalogue = set(range(trie.n_sequences))
    for row in range(3):
        items = output.items[row].tolist()
        assert set(items) <= catalogue
        assert len(set(items)) == 4
        assert np.all(np.diff(output.scores[row]) <= 1e-6)


def test_constrained_search_pads_when_beams_exceed_items():
    layout, trie, _ = catalogue_trie(n_items=3)
    model = build_t5(TINY_T5, layout.vocab_size)
    input_ids, attention_mask = random_inputs(layout, rows=2)
    output = constrained_beam_search(model, input_ids, attention_mask, trie, num_beams=5)
    assert sorted(output.items[0, :3].tolist()) == [0, 1, 2]
    assert output.items[:, 3:].tolist() == [[-1, -1], [-1, -1]]
    assert np.isinf(output.scores[:, 3:]).all()


def test_trie_constrains_transformers_generate():
    layout, trie, _ = catalogue_trie()
    model = build_t5(TINY_T5, layout.vocab_size).eval()
    input_ids, attention_mask = random_inputs(layout, rows=2)
    sequences = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        num_beams=4,
        num_return_sequences=4,
        do_sample=False,
        max_new_tokens=trie.depth + 1,
        prefix_allowed_tokens_fn=trie.prefix_allowed_tokens_fn(PAD_TOKEN, EOS_TOKEN),
    )
    for sequence in sequences.tolist():
        assert trie.value(sequence[1 : 1 + trie.depth]) is not None


def test_beam_search_equals_exhaustive_ranking():
    # With as many beams as items, beam search must return every item, ranked by the mean
    # log-probability of its tokens, each normalized over its level's token block.
    layout, trie, tokens = catalogue_trie(n_items=10)
    torch.manual_seed(3)
    model = build_t5(TINY_T5, layout.vocab_size).eval()
    input_ids, attention_mask = random_inputs(layout, rows=1)
    output = constrained_beam_search(model, input_ids, attention_mask, trie, num_beams=10)

    labels = torch.as_tensor(tokens)
    with torch.no_grad():
        logits = model(
            input_ids=input_ids.expand(len(labels), -1),
            attention_mask=attention_mask.expand(len(labels), -1),
            labels=labels,
        ).logits
    expected = torch.zeros(len(labels))
    for depth in range(labels.shape[1]):
        start, stop = trie.depth_token_range(depth)
        log_probs = F.log_softmax(logits[:, depth, start:stop], dim=-1)
        expected += log_probs[torch.arange(len(labels)), labels[:, depth] - start]
    expected /= labels.shape[1]
    expected_order = torch.argsort(expected, descending=True, stable=True).tolist()
    assert output.items[0].tolist() == expected_order
    assert output.scores[0] == pytest.approx(expected[expected_order].numpy(), abs=1e-5)


def test_next_token_logits_match_t5_head():
    layout, _, _ = catalogue_trie()
    model = build_t5(TINY_T5, layout.vocab_size).eval()
    input_ids, attention_mask = random_inputs(layout, rows=2)
    decoder_ids = torch.zeros(2, 1, dtype=torch.long)
    with torch.no_grad():
        full = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_ids)
        hidden = model(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_ids,
            output_hidden_states=True,
        ).decoder_hidden_states[-1][:, -1, :]
        sliced = next_token_logits(model, hidden, 5, 9)
    assert torch.allclose(sliced, full.logits[:, -1, 5:9], atol=1e-5)


def test_mql4grec_fuse_merges_modalities():
    method = MQL4GRec(MQL4GRec.resolve_config("smoke"))
    text_items, text_scores = np.array([4, 2, -1]), np.array([-0.3, -2.0, -math.inf])
    image_items, image_scores = np.array([7, 2, 9]), np.array([-0.2, -1.0, -0.5])
    # Item 2 is in both lists: (-2.0 + -1.0) / 2 + 1 = -0.5, which ties item 9 at -0.5 and
    # comes first because it appears earlier (position 2 of the text list).
    fused = method.fuse([text_items, image_items], [text_scores, image_scores], k=5)
    assert fused == [7, 4, 2, 9]


def test_mql4grec_training_examples_cover_tasks():
    dataset = tiny_dataset()
    split = build_split(dataset)
    method = MQL4GRec(MQL4GRec.resolve_config("smoke"))
    method.max_history = 20
    examples = method.training_examples(split)
    histories, _ = split.train_pairs()
    counts = np.bincount(examples.fixed.tasks, minlength=len(TASKS))
    assert counts[TASKS.index("text_next")] == len(histories)
    assert counts[TASKS.index("image_next")] == len(histories)
    assert counts[TASKS.index("text_to_image")] == dataset.n_items
    assert counts[TASKS.index("image_to_text")] == dataset.n_items
    first, second = examples.alternatives[0]
    assert set(first.sources.tolist()) == {0}
    assert set(first.target_spaces.tolist()) == {1}
    assert set(second.sources.tolist()) == {1}
    epoch = examples.for_epoch(torch.Generator().manual_seed(0), 0)
    assert len(epoch) == examples.size_per_epoch()


def test_mql4grec_smoke_fit_recommends_valid_items(tmp_path):
    dataset = tiny_dataset()
    split = build_split(dataset)
    logged: list = []
    context = run_context(tmp_path, split, logged)
    method = MQL4GRec(MQL4GRec.resolve_config("smoke", TINY_OVERRIDES))
    method.fit(dataset, split, context)

    output = method.recommend(split.test.histories, k=10)
    assert output.items.shape == (len(split.test), 10)
    valid = output.items[output.items >= 0]
    assert valid.size > 0
    assert valid.max() < dataset.n_items
    for row in output.items:
        ranked = row[row >= 0].tolist()
        assert len(ranked) == len(set(ranked))
    assert len(logged) == 2
    assert "pre-training" in context.records["pretraining"]
    assert context.records["semantic_ids"]["text"]["collision_rate"] > 0
    assert context.records["semantic_ids"]["text"]["collision_rate_after"] == 0
    assert context.records["semantic_ids"]["image"]["level_sizes"] == [8, 8, 8, 8]
    assert json.loads(json.dumps(context.records))["id_sources"]["text"].startswith("precomputed")


def test_mql4grec_save_load_gives_same_lists(tmp_path):
    dataset = tiny_dataset()
    split = build_split(dataset)
    method = MQL4GRec(MQL4GRec.resolve_config("smoke", TINY_OVERRIDES | {"max_epochs": 1}))
    method.fit(dataset, split, run_context(tmp_path, split, []))
    method.save(tmp_path / "model")

    restored = MQL4GRec(MQL4GRec.resolve_config("smoke"))
    restored.load(tmp_path / "model", dataset, split)
    before = method.recommend(split.test.histories[:5], k=8).items
    after = restored.recommend(split.test.histories[:5], k=8).items
    assert after.tolist() == before.tolist()


def test_tiger_uses_three_levels_and_dedup_level(tmp_path):
    dataset = tiny_dataset()
    split = build_split(dataset)
    context = run_context(tmp_path, split, [])
    method = TIGER(TIGER.resolve_config("smoke", TINY_OVERRIDES | {"max_epochs": 1}))
    method.fit(dataset, split, context)
    record = context.records["semantic_ids"]["text"]
    assert record["level_sizes"][:3] == [8, 8, 8]
    assert len(record["level_sizes"]) == 4
    assert "first 3 of 4 levels" in record["source"]
    output = method.recommend(split.valid.histories, k=4)
    valid = output.items[output.items >= 0]
    assert valid.size > 0
    assert valid.max() < dataset.n_items


def test_tiger_builds_ids_from_embedding_file(tmp_path):
    dataset = tiny_dataset()
    split = build_split(dataset)
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(dataset.n_items, 12)).astype(np.float32)
    np.save(tmp_path / "text.npy", vectors)
    (tmp_path / "text_ids.txt").write_text("\n".join(dataset.item_ids) + "\n")
    overrides = TINY_OVERRIDES | {
        "max_epochs": 1,
        "code_source": "rqvae",
        "rqvae_hidden_dims": (16,),
        "rqvae_code_dim": 4,
        "rqvae_codebook_size": 4,
        "rqvae_epochs": 3,
        "features": (f"text_embeddings={tmp_path / 'text.npy'}", f"text_embedding_ids={tmp_path / 'text_ids.txt'}"),
    }
    context = run_context(tmp_path, split, [])
    method = TIGER(TIGER.resolve_config("smoke", overrides))
    method.fit(dataset, split, context)
    record = context.records["semantic_ids"]["text"]
    assert record["source"].startswith("RQ-VAE on text embeddings")
    assert record["collision_rate_after"] == 0
    assert method.semantic_ids["text"].codes.shape == (dataset.n_items, 4)


def test_tiger_resumes_from_checkpoint(tmp_path):
    dataset = tiny_dataset()
    split = build_split(dataset)
    first_log: list = []
    first = TIGER(TIGER.resolve_config("smoke", TINY_OVERRIDES | {"max_epochs": 1}))
    first.fit(dataset, split, run_context(tmp_path, split, first_log))
    second_log: list = []
    second = TIGER(TIGER.resolve_config("smoke", TINY_OVERRIDES | {"max_epochs": 2}))
    second.fit(dataset, split, run_context(tmp_path, split, second_log))
    assert [record["epoch"] for record in first_log] == [1]
    assert [record["epoch"] for record in second_log] == [2]
