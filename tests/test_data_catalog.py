"""load_dataset on toy cards: raw and released sources, hash checks, the .npz cache, stats."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from clairo_bench.data.catalog import load_dataset
from clairo_bench.data.dataset import DataError, Dataset, ItemCodes, ItemMeta
from clairo_bench.data.stats import dataset_stats
from clairo_bench.data.store import load_stored_dataset, save_dataset

CARD = """
name = "toy"
title = "Toy"
category = "Musical_Instruments"
year = 2018
default_source = "released"

[processing]
k_core = 2
repeat_policy = "keep_first"
missing_metadata = "drop"
require_image = true
max_history_items = 50

[raw]
format = "amazon2018"
base_url = "http://127.0.0.1:9/"
reviews = "Toy_5.json.gz"
metadata = "meta_Toy.json.gz"

[raw.sha256]
{raw_hashes}

[released]
format = "mql4grec"
path = "embedded/toy"
inter = "Toy.inter.json"
item2id = "Toy.item2id"

[released.codes.text]
file = "Toy.index_lemb.json"
codebook_size = 8

[released.sha256]
{released_hashes}
"""

INTER = {"0": [0, 1, 2], "1": [1, 2]}
ITEM2ID = "B1\t0\nB2\t1\nB3\t2\n"
CODES = {"0": ["<a_1>", "<b_2>"], "1": ["<a_3>", "<b_4>"], "2": ["<a_1>", "<b_2>"]}
REVIEW_ROWS = [("u1", "B1", 3), ("u1", "B2", 1), ("u2", "B1", 5), ("u2", "B2", 6),
               ("u3", "B9", 1)]


def toml_table(hashes: dict[str, str]) -> str:
    return "\n".join(f'"{name}" = "{value}"' for name, value in hashes.items())


def make_toy(folder: Path, *, released_hashes=None, raw_hashes=None) -> Path:
    """Write a toy card with a released source and raw files; return the datasets folder."""
    release = folder / "embedded" / "toy"
    release.mkdir(parents=True)
    (release / "Toy.inter.json").write_text(json.dumps(INTER), encoding="utf-8")
    (release / "Toy.item2id").write_text(ITEM2ID, encoding="utf-8")
    (release / "Toy.index_lemb.json").write_text(json.dumps(CODES), encoding="utf-8")
    raw = folder / "raw" / "toy"
    raw.mkdir(parents=True)
    with gzip.open(raw / "Toy_5.json.gz", "wt") as handle:
        for user, item, timestamp in REVIEW_ROWS:
            handle.write(json.dumps({"reviewerID": user, "asin": item,
                                     "unixReviewTime": timestamp}) + "\n")
    with gzip.open(raw / "meta_Toy.json.gz", "wt") as handle:
        for asin in ("B1", "B2", "B9"):
            handle.write(json.dumps({"asin": asin, "title": f"title {asin}",
                                     "imageURL": [f"http://x/{asin}.jpg"]}) + "\n")
    card = CARD.format(
        raw_hashes=toml_table(raw_hashes or {}),
        released_hashes=toml_table(released_hashes or {}),
    )
    (folder / "toy.toml").write_text(card, encoding="utf-8")
    return folder


def test_load_dataset_uses_default_released_source(tmp_path):
    dataset = load_dataset("toy", data_dir=make_toy(tmp_path))
    assert dataset.name == "toy"
    assert dataset.processing["source"] == "released"
    assert dataset.processing["format"] == "mql4grec"
    assert dataset.item_ids == ["B1", "B2", "B3"]
    assert dataset.codes["text"].codes.tolist() == [[1, 2], [3, 4], [1, 2]]


def test_load_dataset_raw_source_on_request(tmp_path):
    dataset = load_dataset("toy", source="raw", data_dir=make_toy(tmp_path))
    assert dataset.processing["source"] == "raw"
    assert dataset.user_ids == ["u1", "u2"]
    assert dataset.item_ids == ["B1", "B2"]
    assert [s.tolist() for s in dataset.sequences] == [[1, 0], [0, 1]]
    assert dataset.item_meta[0].title == "title B1"
    assert dataset.processing["settings"]["k_core"] == 2
    assert dataset.processing["counts"]["kcore_removed_users"] == 1


def test_raw_processing_records_stored_file_hashes(tmp_path):
    folder = make_toy(tmp_path)
    dataset = load_dataset("toy", source="raw", data_dir=folder)
    reviews = folder / "raw" / "toy" / "Toy_5.json.gz"
    expected = hashlib.sha256(reviews.read_bytes()).hexdigest()
    assert dataset.processing["files"]["Toy_5.json.gz"] == expected


def test_released_hash_mismatch_is_rejected(tmp_path):
    folder = make_toy(tmp_path, released_hashes={"Toy.item2id": "f" * 64})
    with pytest.raises(DataError, match=r"Toy\.item2id has decompressed content SHA-256 .* expects f+"):
        load_dataset("toy", data_dir=folder)


def test_released_hash_match_is_accepted(tmp_path):
    expected = hashlib.sha256(ITEM2ID.encode()).hexdigest()
    folder = make_toy(tmp_path, released_hashes={"Toy.item2id": expected})
    assert load_dataset("toy", data_dir=folder).n_items == 3


def test_raw_hash_mismatch_is_rejected(tmp_path):
    folder = make_toy(tmp_path, raw_hashes={"meta_Toy.json.gz": "0" * 64})
    with pytest.raises(DataError, match=r"meta_Toy\.json\.gz has file SHA-256"):
        load_dataset("toy", source="raw", data_dir=folder)


def test_unknown_source_is_rejected(tmp_path):
    with pytest.raises(DataError, match=r"Unknown source 'embedded'"):
        load_dataset("toy", source="embedded", data_dir=make_toy(tmp_path))


def test_cache_hit_returns_equal_dataset(tmp_path, caplog):
    folder = make_toy(tmp_path / "data")
    first = load_dataset("toy", source="raw", data_dir=folder, cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="clairo_bench.data.catalog"):
        second = load_dataset("toy", source="raw", data_dir=folder, cache_dir=tmp_path / "cache")
    assert "Dataset cache hit" in caplog.text
    assert second.content_hash() == first.content_hash()
    assert second.item_meta == first.item_meta


def test_cache_misses_after_source_change(tmp_path):
    folder = make_toy(tmp_path / "data")
    cache = tmp_path / "cache"
    load_dataset("toy", data_dir=folder, cache_dir=cache)
    (folder / "embedded" / "toy" / "Toy.inter.json").write_text(
        json.dumps({"0": [0, 1, 2], "1": [2, 1]}), encoding="utf-8"
    )
    reloaded = load_dataset("toy", data_dir=folder, cache_dir=cache)
    assert reloaded.sequences[1].tolist() == [2, 1]
    assert len(list((cache / "datasets").glob("toy-released-*.npz"))) == 2


def test_store_round_trip(tmp_path):
    dataset = Dataset(
        name="toy",
        item_ids=["a", "b"],
        user_ids=["u"],
        sequences=[np.array([1, 0])],
        codes={"image": ItemCodes("image", np.array([[0, 1], [1, 1]]), 2, "f.json")},
        item_meta=[ItemMeta(title="A", categories=("x", "y")), None],
        processing={"card": "toy", "counts": {"n": 1}},
    )
    save_dataset(dataset, tmp_path / "toy.npz")
    loaded = load_stored_dataset(tmp_path / "toy.npz")
    assert loaded.content_hash() == dataset.content_hash()
    assert loaded.item_meta == dataset.item_meta
    assert loaded.codes["image"].codebook_size == 2


def test_stats_on_hand_computed_dataset():
    dataset = Dataset(
        name="toy",
        item_ids=["a", "b", "c", "d"],
        user_ids=["u1", "u2"],
        sequences=[np.array([0, 1]), np.array([1, 2, 1])],
        codes={"text": ItemCodes("text", np.array([[0, 1], [0, 1], [1, 0], [1, 1]]), 2, "t")},
        item_meta=[ItemMeta(title="A", image_url="http://x"), None, ItemMeta(description="d"),
                   None],
    )
    stats = dataset_stats(dataset)
    assert stats["interactions"] == 5
    assert stats["density"] == pytest.approx(5 / 8)
    assert stats["sequence_length"] == {"min": 2, "mean": 2.5, "median": 2.5, "max": 3}
    # Popularity per item is [1, 3, 1, 0].
    assert stats["item_popularity"]["q00"] == 0.0
    assert stats["item_popularity"]["q100"] == 3.0
    assert stats["item_popularity"]["q50"] == 1.0
    assert stats["cold_items"] == 1
    assert stats["coverage"]["text"] == pytest.approx(0.5)
    assert stats["coverage"]["image"] == pytest.approx(0.25)
    assert stats["coverage"]["text codes"] == 1.0
    assert stats["codes"]["text"]["distinct_tuples"] == 3
    assert stats["codes"]["text"]["colliding_items"] == 1
