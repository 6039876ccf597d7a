"""Bad input to the data layer: damaged caches, malformed raw and RecBole files, invalid cards.

Each test writes the damaged input by hand and checks that the error names the file, the line
or value and the fix, or that a damaged cache file is rebuilt with a warning.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clairo_bench.cli import app
from clairo_bench.data.amazon2018 import read_metadata, read_reviews
from clairo_bench.data.catalog import load_dataset, scan_datasets
from clairo_bench.data.cards import load_card
from clairo_bench.data.dataset import DataError, Dataset
from clairo_bench.data.importers import import_recbole_interactions, read_atomic_file
from clairo_bench.data.split import Split, SplitSettings, build_split, load_or_build_split
from clairo_bench.data.stats import dataset_stats
from clairo_bench.features.cache import StageCache

TOO_LARGE_FOR_INT64 = 99999999999999999999999


def _flat(text: str) -> str:
    return " ".join(text.split())


def _without_spaces(text: str) -> str:
    """Drop all whitespace, because rich breaks long paths across lines."""
    return "".join(text.split())


def _damage(path: Path, damage: str) -> None:
    """Empty the file, or cut it to its first 40 bytes, as a crash or a full disk would."""
    if damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(path.read_bytes()[:40])


def _dataset(lengths: list[int]) -> Dataset:
    return Dataset(
        name="toy",
        item_ids=[f"I{index}" for index in range(6)],
        user_ids=[f"U{user}" for user in range(len(lengths))],
        sequences=[np.arange(length, dtype=np.int64) % 6 for length in lengths],
    )


# Damaged cache files are a cache miss.


@pytest.mark.parametrize("damage", ["empty", "cut"])
def test_damaged_split_cache_is_rebuilt(tmp_path, caplog, damage):
    dataset = _dataset([5, 4, 3])
    first = load_or_build_split(dataset, SplitSettings(), tmp_path)
    (path,) = (tmp_path / "splits").glob("*.npz")
    _damage(path, damage)
    with caplog.at_level(logging.WARNING, logger="clairo_bench.data.split"):
        second = load_or_build_split(dataset, SplitSettings(), tmp_path)
    assert f"Split cache file {path} is unreadable" in caplog.text
    assert second.key == first.key
    rebuilt = [sequence.tolist() for sequence in second.train_sequences]
    assert rebuilt == [sequence.tolist() for sequence in first.train_sequences]
    # The rebuilt file replaced the damaged one.
    assert Split.load(path).test.targets.tolist() == first.test.targets.tolist()


@pytest.mark.parametrize("damage", ["empty", "cut"])
def test_damaged_dataset_cache_is_rebuilt(tiny_datasets_dir, tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    first = load_dataset("tiny", cache_dir=cache)
    (path,) = (cache / "datasets").glob("tiny-released-*.npz")
    _damage(path, damage)
    with caplog.at_level(logging.WARNING, logger="clairo_bench.data.catalog"):
        second = load_dataset("tiny", cache_dir=cache)
    assert f"Dataset cache file {path} is unreadable" in caplog.text
    assert second.content_hash() == first.content_hash()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clairo_bench.data.catalog"):
        load_dataset("tiny", cache_dir=cache)
    assert "Dataset cache hit" in caplog.text


@pytest.mark.parametrize("damage", ["empty", "cut"])
def test_damaged_stage_cache_is_rebuilt(tmp_path, caplog, damage):
    cache = StageCache(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return {"values": np.arange(4.0)}, {"note": "built"}

    cache.run("pca:text", {"dim": 2}, build)
    (path,) = (tmp_path / "features" / "pca-text").glob("*.npz")
    _damage(path, damage)
    with caplog.at_level(logging.WARNING, logger="clairo_bench.features.cache"):
        result = cache.run("pca:text", {"dim": 2}, build)
    assert f"Cache file {path} is unreadable" in caplog.text
    assert len(calls) == 2
    assert not result.cache_hit
    assert result.arrays["values"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert cache.run("pca:text", {"dim": 2}, build).cache_hit


# features build on a dataset that fails to load


def test_features_build_unknown_dataset(tiny_datasets_dir, tmp_path):
    result = CliRunner().invoke(
        app, ["features", "build", "--dataset", "nope", "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    # A clean exit raises SystemExit; an uncaught DataError would be the exception instead.
    assert isinstance(result.exception, SystemExit)
    output = _flat(result.output)
    assert output.startswith("Error: No dataset card")
    assert "known datasets: tiny" in output
    assert "Traceback" not in result.output


def test_features_build_damaged_release(tiny_datasets_dir, tmp_path):
    release = tiny_datasets_dir / "embedded" / "tiny" / "user_sequence.txt.xz"
    release.write_bytes(release.read_bytes()[:30])
    result = CliRunner().invoke(
        app, ["features", "build", "--dataset", "tiny", "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert f"Error:Cannotdecompress{release}" in _without_spaces(result.output)


# Raw Amazon files


def _write_review_lines(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _review(user: str, item: str, timestamp: int) -> str:
    return json.dumps({"reviewerID": user, "asin": item, "unixReviewTime": timestamp})


def test_review_timestamp_overflow_named(tmp_path):
    path = _write_review_lines(
        tmp_path / "rev.json.gz",
        [_review("u1", "B1", 5), _review("u1", "B2", TOO_LARGE_FOR_INT64)],
    )
    with pytest.raises(DataError) as raised:
        read_reviews(path)
    message = str(raised.value)
    assert message.startswith(f"{path}, line 2: unixReviewTime {TOO_LARGE_FOR_INT64}")
    assert "outside the 64-bit integer range" in message


def test_review_timestamp_int64_limit_read(tmp_path):
    largest = 2**63 - 1
    path = _write_review_lines(tmp_path / "rev.json.gz", [_review("u1", "B1", largest)])
    assert read_reviews(path)["timestamp"].tolist() == [largest]


def test_rating_csv_timestamp_overflow_named(tmp_path):
    path = tmp_path / "rev.csv"
    path.write_text(f"B1,u1,5.0,7\nB2,u1,4.0,{TOO_LARGE_FOR_INT64}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"rev\.csv, line 2: timestamp {TOO_LARGE_FOR_INT64} "):
        read_reviews(path)


def test_rating_csv_header_line_is_named(tmp_path):
    path = tmp_path / "rev.csv"
    path.write_text("item,user,rating,timestamp\nB1,u1,5.0,7\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        read_reviews(path)
    message = str(raised.value)
    assert message.startswith(f"{path}, line 1: the first line 'item,user,rating,timestamp'")
    assert "A ratings CSV has no header line" in message
    assert "remove it" in message


def test_rating_csv_later_bad_line(tmp_path):
    path = tmp_path / "rev.csv"
    path.write_text("B1,u1,5.0,7\nB2,u1,4.0,soon\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        read_reviews(path)
    message = str(raised.value)
    assert "line 2: expected 'item,user,rating,timestamp' with an integer timestamp" in message
    assert "header" not in message


def test_rating_csv_superscript_digit_is_rejected(tmp_path):
    # str.isdigit accepts "²", which int() cannot parse.
    path = tmp_path / "rev.csv"
    path.write_text("B1,u1,5.0,7\nB2,u1,4.0,\u00b2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"rev\.csv, line 2: expected 'item,user,rating,timestamp'"):
        read_reviews(path)


def test_deep_metadata_line_named(tmp_path):
    path = _write_review_lines(
        tmp_path / "meta.json.gz",
        [json.dumps({"asin": "B1", "title": "fine"}), "[" * 100_000],
    )
    expected = r"meta\.json\.gz, line 2: the record nests lists or dicts too deeply"
    with pytest.raises(DataError, match=expected):
        read_metadata(path)


def test_unhashable_literal_key_named(tmp_path):
    path = _write_review_lines(tmp_path / "meta.json.gz", ["{['asin']: 'B1'}"])
    expected = r"meta\.json\.gz, line 1: not a JSON object or Python dict"
    with pytest.raises(DataError, match=expected):
        read_metadata(path)


def test_deep_released_json_named(tmp_path):
    from clairo_bench.data.importers import read_inter_json

    path = tmp_path / "Toy.inter.json"
    path.write_text("[" * 100_000, encoding="utf-8")
    expected = r"Toy\.inter\.json nests JSON arrays or objects too deeply"
    with pytest.raises(DataError, match=expected):
        read_inter_json(path)


# RecBole atomic files


def test_recbole_header_only_file(tmp_path):
    path = tmp_path / "toy.inter"
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        import_recbole_interactions("toy", path)
    assert str(raised.value) == (
        f"{path} has a header but no data rows; the file is empty or truncated."
    )


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_recbole_non_finite_timestamp(tmp_path, value):
    path = tmp_path / "toy.inter"
    path.write_text(
        f"user_id:token\titem_id:token\ttimestamp:float\nu1\tA\t1\nu1\tB\t{value}\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError) as raised:
        read_atomic_file(path)
    assert str(raised.value).startswith(
        f"{path}, line 3: column timestamp must be a finite number, got {value!r}"
    )


def test_recbole_duplicate_column_rejected(tmp_path):
    path = tmp_path / "toy.inter"
    path.write_text(
        "user_id:token\titem_id:token\titem_id:token\nu1\tA\t1\n", encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"toy\.inter: the header declares column 'item_id' twice"):
        read_atomic_file(path)


# Dataset cards

CARD = """
name = "{name}"
title = "Toy"
category = "Musical_Instruments"
year = {year}
default_source = "raw"
{source}
"""

RAW_TABLE = """
[raw]
format = "amazon2018"
base_url = "http://127.0.0.1:9/data/"
reviews = "Toy_5.json.gz"
"""


def _write_card(folder: Path, name: str, *, year: int = 2018, source: str = RAW_TABLE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(CARD.format(name=name, year=year, source=source), encoding="utf-8")
    return path


@pytest.mark.parametrize("year", [2014, 2018])
def test_card_release_years_are_accepted(tmp_path, year):
    _write_card(tmp_path, "toy", year=year)
    assert load_card("toy", tmp_path).year == year


def test_card_other_year_is_rejected(tmp_path):
    path = _write_card(tmp_path, "toy", year=2020)
    with pytest.raises(DataError) as raised:
        load_card("toy", tmp_path)
    assert str(raised.value) == (
        f"Dataset card {path}: invalid year = 2020; use 2014 or 2018, the release of the "
        "Amazon review data."
    )


def test_card_without_source_rejected(tmp_path):
    path = _write_card(tmp_path, "toy", source="")
    with pytest.raises(DataError) as raised:
        load_card("toy", tmp_path)
    message = str(raised.value)
    assert message.startswith(f"Dataset card {path} declares no source")
    assert "add a [released] table" in message
    assert "or a [raw] table" in message


def test_card_invalid_utf8_named(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_bytes(b'name = "toy"\ntitle = "\xff"\n')
    with pytest.raises(DataError, match=r"toy\.toml is not valid UTF-8 at byte 22"):
        load_card("toy", tmp_path)


def test_scan_keeps_valid_cards(tmp_path):
    _write_card(tmp_path, "alpha")
    bad = _write_card(tmp_path, "beta", year=2020)
    _write_card(tmp_path, "gamma")
    scan = scan_datasets(tmp_path)
    assert [card.name for card in scan.cards] == ["alpha", "gamma"]
    assert len(scan.invalid) == 1
    assert scan.invalid[0].path == bad
    assert scan.invalid[0].message.startswith(f"Dataset card {bad}: invalid year = 2020")


def test_scan_of_valid_folder_has_no_errors(tmp_path):
    _write_card(tmp_path, "alpha")
    scan = scan_datasets(tmp_path)
    assert [card.name for card in scan.cards] == ["alpha"]
    assert scan.invalid == []


def test_cli_list_reports_invalid_card_below_table(tmp_path, monkeypatch):
    _write_card(tmp_path, "alpha")
    bad = _write_card(tmp_path, "beta", year=2020)
    monkeypatch.setenv("CLAIRO_BENCH_DATASETS_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["datasets", "list"], env={"COLUMNS": "1000"})
    assert result.exit_code == 1
    assert "│ alpha" in result.output
    assert f"Invalid card: Dataset card {bad}: invalid year = 2020" in result.output


def test_scan_of_missing_folder_raises(tmp_path):
    with pytest.raises(DataError, match=r"Datasets folder .*missing not found"):
        scan_datasets(tmp_path / "missing")


# Datasets without users that the split can keep


def test_split_without_usable_users():
    with pytest.raises(DataError) as raised:
        build_split(_dataset([2, 1, 2]))
    message = str(raised.value)
    assert message.startswith(
        "Dataset 'toy' has no user with at least 3 interactions (all 3 users have fewer)"
    )
    assert "set k_core to 3 or more" in message


def test_split_of_empty_dataset():
    with pytest.raises(DataError, match=r"at least 3 interactions \(it has no users\)"):
        build_split(_dataset([]))


def test_stats_count_split_users(caplog):
    assert dataset_stats(_dataset([5, 2, 3, 1]))["split_users"] == 2
    with caplog.at_level(logging.WARNING, logger="clairo_bench.data.stats"):
        stats = dataset_stats(_dataset([2, 1]))
    assert stats["split_users"] == 0
    assert "Dataset toy: no user has 3 or more interactions (2 users in all)" in caplog.text


def test_card_names_skip_folders_and_dangling_links(tmp_path):
    _write_card(tmp_path, "alpha")
    (tmp_path / "folder.toml").mkdir()
    (tmp_path / "dangling.toml").symlink_to(tmp_path / "nowhere.toml")
    scan = scan_datasets(tmp_path)
    assert [card.name for card in scan.cards] == ["alpha"]
    assert scan.invalid == []
