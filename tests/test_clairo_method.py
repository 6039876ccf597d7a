"""Tests of CLAIRO and its ablation variants on top of the ActionPiece machinery."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clairo_bench.cli.runs import vocabulary_modality_line
from clairo_bench.data.dataset import Dataset, ItemCodes
from clairo_bench.data.split import Split, build_split
from clairo_bench.evaluation import Evaluator
from clairo_bench.methods.actionpiece import ActionPiece
from clairo_bench.methods.base import ConfigError, RunContext, build_config
from clairo_bench.methods.clairo import (
    Clairo,
    ClairoFinalPCA,
    ClairoImageOnly,
    ClairoTextOnly,
)
from clairo_bench.methods.registry import get_method_class

N_ITEMS = 30
N_USERS = 60
TEST_SETTINGS = {
    "vocab_size": 80,
    "d_model": 32,
    "max_epochs": 2,
    "patience": 2,
    "lr": 0.01,
    "num_beams": 4,
    "inference_segmentations": 2,
    "validation_users": 10,
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sequences(rng: np.random.Generator) -> list[np.ndarray]:
    result = []
    for _ in range(N_USERS):
        start = int(rng.integers(0, N_ITEMS))
        length = int(rng.integers(4, 8))
        result.append(((start + np.arange(length) * int(rng.integers(1, 3))) % N_ITEMS).astype(np.int64))
    return result


def coded_dataset() -> Dataset:
    """30 items shipping 2 text and 2 image code levels of 4 values each, and no embeddings."""
    rng = np.random.default_rng(5)
    return Dataset(
        name="tiny-coded",
        item_ids=[f"B{index:04d}" for index in range(N_ITEMS)],
        user_ids=[f"U{user:03d}" for user in range(N_USERS)],
        sequences=sequences(rng),
        codes={
            "text": ItemCodes("text", rng.integers(0, 4, size=(N_ITEMS, 2)), 4, "test text codes"),
            "image": ItemCodes("image", rng.integers(0, 4, size=(N_ITEMS, 2)), 4, "test image codes"),
        },
    )


def embedded_dataset(folder: Path) -> tuple[Dataset, tuple[str, ...]]:
    """30 items without codes, with 12-d text and 10-d image embeddings in .npy files."""
    rng = np.random.default_rng(9)
    dataset = Dataset(
        name="tiny-embedded",
        item_ids=[f"B{index:04d}" for index in range(N_ITEMS)],
        user_ids=[f"U{user:03d}" for user in range(N_USERS)],
        sequences=sequences(rng),
    )
    folder.mkdir(parents=True, exist_ok=True)
    ids = folder / "ids.txt"
    ids.write_text("\n".join(dataset.item_ids) + "\n")
    np.save(folder / "text.npy", rng.normal(size=(N_ITEMS, 12)).astype(np.float32))
    np.save(folder / "image.npy", rng.normal(size=(N_ITEMS, 10)).astype(np.float32))
    feature_settings = (
        f"text_embeddings={folder / 'text.npy'}",
        f"text_embedding_ids={ids}",
        f"image_embeddings={folder / 'image.npy'}",
        f"image_embedding_ids={ids}",
        "opq_iterations=4",
        "pq_iterations=4",
    )
    return dataset, feature_settings


def run_context(tmp_path: Path, split: Split) -> RunContext:
    evaluator = Evaluator()
    context = RunContext(
        seed=4,
        profile="smoke",
        device="cpu",
        work_dir=tmp_path / "work",
        cache_dir=tmp_path / "cache",
        validate=lambda method: evaluator.evaluate(method, split.valid, split.n_items).summary(),
        log_epoch=lambda record: None,
    )
    context.work_dir.mkdir(parents=True, exist_ok=True)
    return context


def fit(method_class, tmp_path: Path, dataset: Dataset | None = None,
        cache_dir: Path | None = None, **settings):
    torch.manual_seed(0)
    dataset = dataset or coded_dataset()
    split = build_split(dataset)
    context = run_context(tmp_path, split)
    if cache_dir is not None:
        context.cache_dir = cache_dir
    method = method_class(method_class.resolve_config("smoke", {**TEST_SETTINGS, **settings}))
    method.fit(dataset, split, context)
    return method, split, context


@pytest.fixture(scope="module")
def fitted_clairo(tmp_path_factory):
    torch.set_num_threads(1)
    return fit(Clairo, tmp_path_factory.mktemp("clairo"))


def test_registry_resolves_every_clairo_name():
    for name, expected in (
        ("actionpiece", ActionPiece),
        ("clairo", Clairo),
        ("clairo-text-only", ClairoTextOnly),
        ("clairo-image-only", ClairoImageOnly),
        ("clairo-final-pca", ClairoFinalPCA),
    ):
        assert get_method_class(name) is expected
        assert issubclass(expected, ActionPiece)


def test_clairo_recommends_valid_item_indices(fitted_clairo):
    method, split, _ = fitted_clairo
    output = method.recommend(split.test.histories, 10)
    assert output.items.shape == (len(split.test), 10)
    assert ((output.items >= -1) & (output.items < N_ITEMS)).all()
    assert output.total_generations == len(split.test) * 2 * 4


def test_clairo_uses_shipped_codes_per_modality(fitted_clairo):
    method, _, context = fitted_clairo
    record = context.records["features"]
    assert record["source"] == "precomputed"
    assert record["layout_requested"] == "fused"
    assert record["layout_used"] == "per_modality"
    assert "layout_note" in record
    assert record["code_sources"] == {"text": "test text codes", "image": "test image codes"}
    assert method.vocabulary.category_modalities == ("text", "text", "image", "image", "dedup")


def test_clairo_records_cross_modal_share(fitted_clairo):
    method, _, context = fitted_clairo
    modality = context.records["vocabulary"]["modality"]
    shares = modality["shares"]
    assert set(shares) >= {"text_only", "image_only", "cross_modal"}
    merges = method.vocabulary.merges
    cross = sum(
        {"text", "image"} <= method.vocabulary.token_modalities(merge.token) for merge in merges
    )
    assert shares["cross_modal"] == pytest.approx(cross / len(merges))
    assert len(modality["by_rank_bucket"]) >= 1
    for merge in modality["top_cross_modal_merges"]:
        assert len(merge["example_item_ids"]) == len(merge["example_items"])


def test_run_summary_line_states_the_cross_modal_share(fitted_clairo, tmp_path):
    _, _, context = fitted_clairo
    (tmp_path / "records.json").write_text(json.dumps(context.records))
    shares = context.records["vocabulary"]["modality"]["shares"]
    line = vocabulary_modality_line(tmp_path)
    assert f"{shares['cross_modal']:.1%} cross-modal" in line


def test_run_summary_line_is_absent_without_modality_records(tmp_path):
    (tmp_path / "records.json").write_text(json.dumps({"vocabulary": {"size": 10}}))
    assert vocabulary_modality_line(tmp_path) is None


def test_clairo_is_not_an_ablation(fitted_clairo):
    _, _, context = fitted_clairo
    assert "ablation" not in context.records


@pytest.mark.parametrize(
    ("variant", "allowed", "fixed"),
    [
        (ClairoTextOnly, {"text", "dedup"}, ["text"]),
        (ClairoImageOnly, {"image", "dedup"}, ["image"]),
    ],
)
def test_single_modality_variant_never_creates_other_tokens(tmp_path, variant, allowed, fixed):
    method, _, context = fit(variant, tmp_path, max_epochs=1)
    vocabulary = method.vocabulary
    assert len(vocabulary.merges) > 0
    for token in range(1, vocabulary.size):
        assert vocabulary.token_modalities(token) <= allowed
    changed = context.records["ablation"]["changed"]["modalities"]
    assert changed == {"clairo": ["text", "image"], variant.name: fixed}
    assert context.records["ablation"]["variant_of"] == "clairo"
    assert "modality_note" in context.records["vocabulary"]


def test_variant_rejects_a_change_of_its_fixed_setting():
    with pytest.raises(ConfigError, match="clairo-text-only fixes modalities"):
        ClairoTextOnly(ClairoTextOnly.resolve_config("smoke", {"modalities": "text,image"}))


def test_final_pca_on_shipped_codes_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="needs item embeddings"):
        fit(ClairoFinalPCA, tmp_path)


def test_final_pca_variant_records_its_change():
    method = ClairoFinalPCA(ClairoFinalPCA.resolve_config("smoke"))
    changed = method.extra_records()["ablation"]["changed"]
    assert changed == {"final_pca_dim": {"clairo": None, "clairo-final-pca": 128}}


def test_pair_weights_reach_the_vocabulary(tmp_path):
    method, _, _ = fit(Clairo, tmp_path, max_epochs=1, text_image_weight=0.25)
    assert method.vocabulary.pair_weights["text-image"] == 0.25
    assert method.vocabulary.pair_weights["text-text"] == 1.0


def test_pair_weights_change_the_cache_key(tmp_path):
    cache = tmp_path / "cache"
    default, _, _ = fit(Clairo, tmp_path / "default", cache_dir=cache, max_epochs=1)
    weighted, _, _ = fit(
        Clairo, tmp_path / "weighted", cache_dir=cache, max_epochs=1, text_image_weight=0.25
    )
    assert weighted.vocabulary.pair_weights["text-image"] == 0.25
    assert len(list((cache / "vocabularies").iterdir())) == 2
    assert default.vocabulary.pair_weights["text-image"] == 1.0


def test_fused_layout_runs_end_to_end_with_embeddings(tmp_path):
    dataset, feature_settings = embedded_dataset(tmp_path / "embeddings")
    method, split, context = fit(
        Clairo,
        tmp_path,
        dataset=dataset,
        feature_settings=feature_settings,
        text_pca_dim=4,
        image_pca_dim=4,
        opq_subquantizers=2,
        opq_bits=2,
        vocab_size=30,
    )
    record = context.records["features"]
    assert record["source"] == "content"
    assert record["layout_used"] == "fused"
    assert record["category_modalities"] == ["fused", "fused", "dedup"]
    assert "modality_note" in context.records["vocabulary"]
    output = method.recommend(split.test.histories, 5)
    assert ((output.items >= -1) & (output.items < N_ITEMS)).all()


def test_per_modality_layout_quantizes_each_modality(tmp_path):
    dataset, feature_settings = embedded_dataset(tmp_path / "embeddings")
    method, _, context = fit(
        Clairo,
        tmp_path,
        dataset=dataset,
        layout="per_modality",
        feature_settings=feature_settings,
        text_pca_dim=4,
        image_pca_dim=4,
        opq_subquantizers=2,
        opq_bits=2,
        vocab_size=40,
        max_epochs=1,
    )
    assert context.records["features"]["category_modalities"] == [
        "text", "text", "image", "image", "dedup",
    ]
    assert "modality" in context.records["vocabulary"]


def test_variant_config_survives_a_json_round_trip():
    config = ClairoTextOnly.resolve_config("quick")
    values = json.loads(json.dumps(dataclasses.asdict(config)))
    rebuilt = build_config(ClairoTextOnly.config_class, values, owner="clairo-text-only")
    assert rebuilt == config
    assert ClairoTextOnly(rebuilt).config.modalities == ("text",)
