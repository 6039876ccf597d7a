"""The embedded Instruments, Arts and Sports 2014 data, the catalogue and the datasets CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from clairo_bench.cli import app
from clairo_bench.data.catalog import available_sources, list_datasets, load_dataset
from clairo_bench.data.dataset import DataError
from clairo_bench.data.stats import dataset_stats

PUBLISHED_COUNTS = {
    "instruments": (17_112, 6_250, 136_226),
    "arts": (22_171, 9_416, 174_079),
    "sports2014": (35_598, 18_357, 296_337),
}


@pytest.fixture(scope="module")
def embedded():
    return {name: load_dataset(name) for name in PUBLISHED_COUNTS}


@pytest.mark.parametrize("name", sorted(PUBLISHED_COUNTS))
def test_embedded_dataset_has_published_counts(embedded, name):
    dataset = embedded[name]
    users, items, interactions = PUBLISHED_COUNTS[name]
    assert dataset.n_users == users
    assert dataset.n_items == items
    assert dataset.n_interactions == interactions


@pytest.mark.parametrize("name", sorted(PUBLISHED_COUNTS))
def test_embedded_dataset_name_is_card_name(embedded, name):
    assert embedded[name].name == name


@pytest.mark.parametrize("name", ["instruments", "arts"])
def test_embedded_codes_cover_every_item(embedded, name):
    dataset = embedded[name]
    assert sorted(dataset.codes) == ["image", "text"]
    for item_codes in dataset.codes.values():
        assert item_codes.codes.shape == (dataset.n_items, 4)
        assert item_codes.codebook_size == 256


def test_instruments_codes_joined_by_item_index(embedded):
    # Item idx 0 of the release (ASIN B002SQJL9U) has text codes <a_170><b_224><c_251><d_151>
    # and image codes <A_154><B_106><C_221><D_144> in the released index files.
    dataset = embedded["instruments"]
    assert dataset.item_ids[0] == "B002SQJL9U"
    assert dataset.codes["text"].codes[0].tolist() == [170, 224, 251, 151]
    assert dataset.codes["image"].codes[0].tolist() == [154, 106, 221, 144]


def test_instruments_text_codes_collide(embedded):
    stats = dataset_stats(embedded["instruments"])
    assert stats["codes"]["text"]["distinct_tuples"] == 5_988
    assert stats["codes"]["image"]["distinct_tuples"] == 6_250


def test_processing_records_card_and_hashes(embedded):
    processing = embedded["instruments"].processing
    assert processing["card"] == "instruments"
    assert processing["source"] == "released"
    assert processing["settings"]["k_core"] == 5
    assert processing["files"]["Instruments.inter.json.xz"] == (
        "757c6695bbc742b3acc285f96609f6ad579af30a5ea45f726d951efe7d04fdfe"
    )
    assert len(processing["files"]) == 4


def test_sports2014_items_sorted_not_first_seen(embedded):
    dataset = embedded["sports2014"]
    assert dataset.item_ids == sorted(dataset.item_ids)
    assert dataset.user_ids[0] == "U000001"


def test_datasets_differ_in_content_hash(embedded):
    hashes = {dataset.content_hash() for dataset in embedded.values()}
    assert len(hashes) == 3


def test_list_datasets_marks_embedded_available():
    cards = {card.name: card for card in list_datasets()}
    assert available_sources(cards["instruments"])["released"] is True
    assert "released" not in available_sources(cards["cds"])


def test_raw_source_missing_names_download(tmp_path):
    with pytest.raises(DataError, match=r"meta_Musical_Instruments\.json\.gz.*datasets download"):
        load_dataset("instruments", source="raw", raw_dir=tmp_path)


def test_cli_stats_prints_instruments_counts():
    result = CliRunner().invoke(app, ["datasets", "stats", "instruments"])
    assert result.exit_code == 0, result.output
    assert "17,112" in result.output
    assert "6,250" in result.output
    assert "136,226" in result.output


def test_cli_list_shows_cards():
    result = CliRunner().invoke(app, ["datasets", "list"])
    assert result.exit_code == 0, result.output
    for name in ("arts", "cds", "instruments", "sports", "sports2014"):
        assert name in result.output


def _table_rows(output: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines()
            if line.startswith("│")]


def test_cli_list_says_which_datasets_run_offline():
    result = CliRunner().invoke(app, ["datasets", "list"])
    assert result.exit_code == 0, result.output
    rows = {row[0]: row for row in _table_rows(result.output)}
    # Embedded datasets need no raw files; raw-only cards do until they are downloaded.
    assert rows["arts"][-2:] == ["optional", "yes"]
    assert rows["cds"][-2:] == ["missing", "no"]
    assert "clairo-bench datasets download cds" in " ".join(result.output.split())


def test_cli_items_lists_most_interacted_first(embedded):
    dataset = embedded["instruments"]
    counts = {}
    for sequence in dataset.sequences:
        for item in sequence.tolist():
            counts[item] = counts.get(item, 0) + 1
    result = CliRunner().invoke(app, ["datasets", "items", "instruments", "--limit", "3"])
    assert result.exit_code == 0, result.output
    rows = _table_rows(result.output)
    assert len(rows) == 3
    shown_counts = [int(row[2].replace(",", "")) for row in rows]
    assert shown_counts[0] == max(counts.values())
    assert shown_counts == sorted(shown_counts, reverse=True)
    for index, identifier, count in (row[:3] for row in rows):
        assert dataset.item_ids[int(index[1:])] == identifier
        assert counts[int(index[1:])] == int(count.replace(",", ""))
    assert "#0 to #6249" in " ".join(result.output.split())


def test_cli_items_search_matches_identifier_in_any_case(embedded):
    identifier = embedded["instruments"].item_ids[17]
    result = CliRunner().invoke(app, ["datasets", "items", "instruments", "--search", identifier.lower()])
    assert result.exit_code == 0, result.output
    assert [row[:2] for row in _table_rows(result.output)] == [["#17", identifier]]
    missing = CliRunner().invoke(app, ["datasets", "items", "instruments", "--search", "no such item"])
    assert missing.exit_code == 1
    assert "No item of dataset 'instruments' has 'no such item'" in " ".join(missing.output.split())


def test_cli_stats_unknown_name_fails():
    result = CliRunner().invoke(app, ["datasets", "stats", "nope"])
    assert result.exit_code == 1
    assert "No dataset card" in result.output
