"""Dataset cards: the shipped cards, folder overrides and validation of card content."""

from __future__ import annotations

from pathlib import Path

import pytest

from clairo_bench.data.cards import (
    DATASETS_DIR_ENV,
    RAW_DIR_ENV,
    card_names,
    datasets_dir,
    load_card,
)
from clairo_bench.data.dataset import DataError

MINIMAL_CARD = """
name = "{name}"
title = "Toy"
category = "Musical_Instruments"
year = 2018
default_source = "raw"

[raw]
format = "amazon2018"
base_url = "http://127.0.0.1:9/data/"
reviews = "Toy_5.json.gz"
metadata = "meta_Toy.json.gz"
"""


def write_card(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_cards_are_listed():
    assert card_names() == ["arts", "cds", "instruments", "sports", "sports2014"]


@pytest.mark.parametrize(
    ("name", "category", "reviews", "metadata"),
    [
        ("arts", "Arts_Crafts_and_Sewing", "Arts_Crafts_and_Sewing_5.json.gz",
         "meta_Arts_Crafts_and_Sewing.json.gz"),
        ("cds", "CDs_and_Vinyl", "CDs_and_Vinyl_5.json.gz", "meta_CDs_and_Vinyl.json.gz"),
        ("instruments", "Musical_Instruments", "Musical_Instruments_5.json.gz",
         "meta_Musical_Instruments.json.gz"),
        ("sports", "Sports_and_Outdoors", "Sports_and_Outdoors_5.json.gz",
         "meta_Sports_and_Outdoors.json.gz"),
    ],
)
def test_shipped_card_names_amazon2018_files(name, category, reviews, metadata):
    card = load_card(name)
    assert card.category == category
    assert card.year == 2018
    assert [raw_file.file_name for raw_file in card.raw.files()] == [reviews, metadata]
    assert card.raw.files()[0].url.startswith("https://")


def test_instruments_card_defaults_to_embedded_release():
    card = load_card("instruments")
    assert card.default_source == "released"
    assert card.sources == ("released", "raw")
    assert card.released.format == "mql4grec"
    assert [spec.modality for spec in card.released.codes] == ["text", "image"]
    assert card.released.directory.is_dir()
    assert card.processing.k_core == 5
    assert card.processing.require_image is True
    assert card.processing.max_history_items == 20


def test_resolve_source_rejects_undeclared_source():
    card = load_card("cds")
    with pytest.raises(DataError, match="has no released source"):
        card.resolve_source("released")


def test_datasets_dir_argument_beats_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DATASETS_DIR_ENV, str(tmp_path / "from_env"))
    assert datasets_dir(tmp_path / "argument") == tmp_path / "argument"
    assert datasets_dir() == tmp_path / "from_env"


def test_environment_folder_is_used_for_cards(tmp_path, monkeypatch):
    write_card(tmp_path, "toy", MINIMAL_CARD.format(name="toy"))
    monkeypatch.setenv(DATASETS_DIR_ENV, str(tmp_path))
    assert card_names() == ["toy"]
    assert load_card("toy").raw.files()[0].url == "http://127.0.0.1:9/data/Toy_5.json.gz"


def test_raw_dir_defaults_beside_cards(tmp_path, monkeypatch):
    monkeypatch.delenv(RAW_DIR_ENV, raising=False)
    write_card(tmp_path, "toy", MINIMAL_CARD.format(name="toy"))
    card = load_card("toy", tmp_path)
    assert card.raw_dir() == tmp_path / "raw" / "toy"
    monkeypatch.setenv(RAW_DIR_ENV, str(tmp_path / "elsewhere"))
    assert card.raw_dir() == tmp_path / "elsewhere" / "toy"
    assert card.raw_dir(tmp_path / "given") == tmp_path / "given" / "toy"


def test_unknown_card_lists_known_names(tmp_path):
    write_card(tmp_path, "toy", MINIMAL_CARD.format(name="toy"))
    with pytest.raises(DataError, match=r"No dataset card .*nope\.toml; known datasets: toy"):
        load_card("nope", tmp_path)


def test_card_name_must_match_file(tmp_path):
    write_card(tmp_path, "toy", MINIMAL_CARD.format(name="other"))
    with pytest.raises(DataError, match=r"declares name 'other'.*file stem 'toy'"):
        load_card("toy", tmp_path)


def test_card_unknown_key_is_rejected(tmp_path):
    text = MINIMAL_CARD.format(name="toy") + "\n[processing]\nkcore = 5\n"
    write_card(tmp_path, "toy", text)
    with pytest.raises(DataError, match=r"unknown key\(s\) processing\.kcore"):
        load_card("toy", tmp_path)


def test_card_invalid_repeat_policy_is_rejected(tmp_path):
    text = MINIMAL_CARD.format(name="toy") + '\n[processing]\nrepeat_policy = "first"\n'
    write_card(tmp_path, "toy", text)
    with pytest.raises(DataError, match=r"repeat_policy 'first' is unknown"):
        load_card("toy", tmp_path)


def test_card_wrong_type_is_rejected(tmp_path):
    text = MINIMAL_CARD.format(name="toy") + '\n[processing]\nk_core = "5"\n'
    write_card(tmp_path, "toy", text)
    with pytest.raises(DataError, match=r"invalid processing\.k_core = '5'; it must be an integer"):
        load_card("toy", tmp_path)


def test_card_default_source_needs_its_table(tmp_path):
    text = MINIMAL_CARD.format(name="toy").replace('default_source = "raw"',
                                                   'default_source = "released"')
    write_card(tmp_path, "toy", text)
    with pytest.raises(DataError, match=r"has no released source"):
        load_card("toy", tmp_path)


def test_card_invalid_toml_names_file(tmp_path):
    write_card(tmp_path, "toy", "name = \n")
    with pytest.raises(DataError, match=r"toy\.toml is not valid TOML"):
        load_card("toy", tmp_path)
