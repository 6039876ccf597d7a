"""Raw Amazon 2018 loader on small review and metadata files written by the tests."""

from __future__ import annotations

import gzip
import json
import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clairo_bench.data.amazon2018 import load_raw_amazon, read_metadata, read_reviews
from clairo_bench.data.cards import ProcessingSettings
from clairo_bench.data.dataset import DataError
from clairo_bench.data.interactions import kcore_filter
from clairo_bench.data.split import SplitSettings, build_split

NO_FILTERS = ProcessingSettings(k_core=0, require_image=False, missing_metadata="keep")


def write_reviews(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    """Write (reviewerID, asin, unixReviewTime) rows as gzipped JSON lines in the 2018 layout."""
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for user, item, timestamp in rows:
            record = {
                "overall": 5.0,
                "verified": True,
                "reviewTime": "01 1, 2015",
                "reviewerID": user,
                "asin": item,
                "reviewerName": "someone",
                "reviewText": "fine",
                "summary": "ok",
                "unixReviewTime": timestamp,
            }
            handle.write(json.dumps(record) + "\n")
    return path


def meta_record(asin: str, *, image: bool = True) -> dict:
    return {
        "asin": asin,
        "title": f"Item {asin} &amp; case",
        "brand": "Acme",
        "category": ["Musical Instruments", "Strings", '<span class="a">x</span>'],
        "description": ["First part.", "<b>Second</b> part."],
        "imageURL": [f"https://example.invalid/{asin}.jpg"] if image else [],
        "imageURLHighRes": [f"https://example.invalid/{asin}-hr.jpg"] if image else [],
    }


def write_metadata(path: Path, records: list[dict], *, python_literal: bool = False) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            line = repr(record) if python_literal else json.dumps(record)
            handle.write(line + "\n")
    return path


# k = 2 cascade: item E has one review, so it goes; that leaves u5 with only D, so u5 goes;
# then D has one review (u4), so D goes; then u4 has only C, C has only u3, u3 has only B.
# Only u1 and u2 with items A and B remain, and every step needs its own pass.
CASCADE_ROWS = [
    ("u1", "A", 10), ("u1", "B", 11),
    ("u2", "A", 12), ("u2", "B", 13),
    ("u3", "B", 14), ("u3", "C", 15),
    ("u4", "C", 16), ("u4", "D", 17),
    ("u5", "D", 18), ("u5", "E", 19),
]


def test_kcore_reaches_fixed_point():
    frame = pd.DataFrame(CASCADE_ROWS, columns=["user", "item", "timestamp"])
    result = kcore_filter(frame, 2)
    assert sorted(result.frame["user"].unique()) == ["u1", "u2"]
    assert sorted(result.frame["item"].unique()) == ["A", "B"]
    assert result.frame["user"].value_counts().min() >= 2
    assert result.frame["item"].value_counts().min() >= 2
    # E, u5, D, u4, C, u3 fall one per pass, then a seventh pass removes nothing.
    assert result.rounds == 7
    assert result.removed_users == 3
    assert result.removed_items == 3


def test_kcore_is_idempotent():
    frame = pd.DataFrame(CASCADE_ROWS, columns=["user", "item", "timestamp"])
    once = kcore_filter(frame, 2).frame
    twice = kcore_filter(once, 2)
    assert twice.rounds == 1
    assert len(twice.frame) == len(once)


def test_raw_loader_applies_kcore_cascade(tmp_path):
    reviews = write_reviews(tmp_path / "r.json.gz", CASCADE_ROWS)
    metadata = write_metadata(tmp_path / "m.json.gz", [meta_record(a) for a in "ABCDE"])
    settings = ProcessingSettings(k_core=2, require_image=True, missing_metadata="drop")
    dataset = load_raw_amazon("toy", reviews, metadata, settings)
    assert dataset.user_ids == ["u1", "u2"]
    assert dataset.item_ids == ["A", "B"]
    assert [s.tolist() for s in dataset.sequences] == [[0, 1], [0, 1]]
    assert dataset.processing["counts"]["kcore_rounds"] == 7


def test_raw_loader_fills_item_meta(tmp_path):
    reviews = write_reviews(tmp_path / "r.json.gz", [("u1", "A", 1), ("u1", "B", 2)])
    metadata = write_metadata(tmp_path / "m.json.gz", [meta_record("A"), meta_record("B")])
    dataset = load_raw_amazon("toy", reviews, metadata, NO_FILTERS)
    meta = dataset.item_meta[0]
    assert meta.title == "Item A & case"
    assert meta.brand == "Acme"
    assert meta.categories == ("Musical Instruments", "Strings")
    assert meta.description == "First part. Second part."
    assert meta.image_url == "https://example.invalid/A-hr.jpg"


def test_metadata_python_literal_lines_are_read(tmp_path):
    records = [meta_record("A"), {"asin": "B", "title": "It's 2014", "imUrl": "http://x/b.jpg",
                                  "categories": [["Sports", "Golf"], ["Sports"]]}]
    path = write_metadata(tmp_path / "m.json.gz", records, python_literal=True)
    result = read_metadata(path)
    assert result.items["A"].title == "Item A & case"
    assert result.items["B"].title == "It's 2014"
    assert result.items["B"].image_url == "http://x/b.jpg"
    assert result.items["B"].categories == ("Sports", "Golf")


def test_metadata_repeated_asin_keeps_first_line(tmp_path):
    first = meta_record("A")
    second = {**meta_record("A"), "title": "other"}
    path = write_metadata(tmp_path / "m.json.gz", [first, second])
    result = read_metadata(path)
    assert result.items["A"].title == "Item A & case"
    assert result.duplicate_lines == 1


def test_missing_metadata_drop_is_counted(tmp_path, caplog):
    rows = [("u1", "A", 1), ("u1", "B", 2), ("u1", "X", 3), ("u2", "X", 4), ("u2", "A", 5)]
    reviews = write_reviews(tmp_path / "r.json.gz", rows)
    metadata = write_metadata(tmp_path / "m.json.gz", [meta_record("A"), meta_record("B")])
    settings = ProcessingSettings(k_core=0, missing_metadata="drop")
    with caplog.at_level(logging.WARNING):
        dataset = load_raw_amazon("toy", reviews, metadata, settings)
    counts = dataset.processing["counts"]
    assert counts["items_missing_metadata"] == 1
    assert counts["interactions_missing_metadata"] == 2
    assert "X" not in dataset.item_ids
    assert dataset.n_interactions == 3
    assert "1 of 3 reviewed items have no metadata" in caplog.text


def test_missing_metadata_keep_leaves_none(tmp_path):
    reviews = write_reviews(tmp_path / "r.json.gz", [("u1", "A", 1), ("u1", "X", 2)])
    metadata = write_metadata(tmp_path / "m.json.gz", [meta_record("A")])
    settings = ProcessingSettings(k_core=0, missing_metadata="keep")
    dataset = load_raw_amazon("toy", reviews, metadata, settings)
    assert dataset.item_ids == ["A", "X"]
    assert dataset.item_meta[1] is None
    assert dataset.processing["counts"]["items_missing_metadata"] == 1


def test_missing_metadata_error_names_item(tmp_path):
    reviews = write_reviews(tmp_path / "r.json.gz", [("u1", "A", 1), ("u1", "X", 2)])
    metadata = write_metadata(tmp_path / "m.json.gz", [meta_record("A")])
    settings = ProcessingSettings(k_core=0, missing_metadata="error")
    with pytest.raises(DataError, match=r"m\.json\.gz.*1 reviewed items.*X"):
        load_raw_amazon("toy", reviews, metadata, settings)


def test_require_image_drops_items_without_url(tmp_path):
    rows = [("u1", "A", 1), ("u1", "B", 2)]
    reviews = write_reviews(tmp_path / "r.json.gz", rows)
    metadata = write_metadata(
        tmp_path / "m.json.gz", [meta_record("A"), meta_record("B", image=False)]
    )
    settings = ProcessingSettings(k_core=0, require_image=True)
    dataset = load_raw_amazon("toy", reviews, metadata, settings)
    assert dataset.item_ids == ["A"]
    assert dataset.processing["counts"]["items_without_image"] == 1


def test_repeat_policy_keep_first(tmp_path):
    rows = [("u1", "A", 1), ("u1", "B", 2), ("u1", "A", 3), ("u1", "C", 4)]
    reviews = write_reviews(tmp_path / "r.json.gz", rows)
    metadata = write_metadata(tmp_path / "m.json.gz", [meta_record(a) for a in "ABC"])
    settings = ProcessingSettings(k_core=0, repeat_policy="keep_first")
    dataset = load_raw_amazon("toy", reviews, metadata, settings)
    assert dataset.sequences[0].tolist() == [0, 1, 2]
    assert dataset.processing["counts"]["removed_repeats"] == 1


def test_repeat_policy_keep_last(tmp_path):
    rows = [("u1", "A", 1), ("u1", "B", 2), ("u1", "A", 3), ("u1", "C", 4)]
    reviews = write_reviews(tmp_path / "r.json.gz", rows)
    metadata = write_metadata(tmp_path / "m.json.gz", [meta_record(a) for a in "ABC"])
    settings = ProcessingSettings(k_core=0, repeat_policy="keep_last")
    dataset = load_raw_amazon("toy", reviews, metadata, settings)
    assert dataset.sequences[0].tolist() == [1, 0, 2]


def test_repeats_removed_before_kcore(tmp_path):
    # u1 reviews only A, twice. Counting rows, u1 and A would reach k = 2 and u1 would stay with
    # a one-item sequence; removing the repeat first leaves u1 with one interaction, so it goes.
    rows = [("u1", "A", 1), ("u1", "A", 2), ("u2", "B", 3), ("u2", "C", 4),
            ("u3", "B", 5), ("u3", "C", 6)]
    reviews = write_reviews(tmp_path / "r.json.gz", rows)
    metadata = write_metadata(tmp_path / "m.json.gz", [meta_record(a) for a in "ABC"])
    settings = ProcessingSettings(k_core=2, repeat_policy="keep_first")
    dataset = load_raw_amazon("toy", reviews, metadata, settings)
    assert dataset.user_ids == ["u2", "u3"]
    assert dataset.item_ids == ["B", "C"]


TIE_ROWS = [
    # u1 reviews C, A and B in the same second; the order must be A, B, C (asin tie-break).
    ("u1", "C", 100), ("u1", "A", 100), ("u1", "B", 100), ("u1", "D", 50), ("u1", "E", 200),
    ("u2", "E", 7), ("u2", "D", 7), ("u2", "A", 9), ("u2", "B", 9), ("u2", "C", 8),
    ("u3", "B", 1), ("u3", "A", 1), ("u3", "E", 1), ("u3", "C", 1), ("u3", "D", 1),
]


def _split_signature(tmp_path: Path, rows: list[tuple[str, str, int]], tag: str) -> tuple:
    reviews = write_reviews(tmp_path / f"r{tag}.json.gz", rows)
    metadata = write_metadata(tmp_path / f"m{tag}.json.gz", [meta_record(a) for a in "ABCDE"])
    dataset = load_raw_amazon("toy", reviews, metadata, NO_FILTERS)
    split = build_split(dataset, SplitSettings(max_history_items=3))
    return (
        tuple(dataset.user_ids),
        tuple(dataset.item_ids),
        tuple(tuple(s.tolist()) for s in split.train_sequences),
        tuple(tuple(h.tolist()) for h in split.valid.histories),
        tuple(split.valid.targets.tolist()),
        tuple(tuple(h.tolist()) for h in split.test.histories),
        tuple(split.test.targets.tolist()),
    )


def test_equal_timestamps_order_by_asin(tmp_path):
    reviews = write_reviews(tmp_path / "r.json.gz", TIE_ROWS)
    metadata = write_metadata(tmp_path / "m.json.gz", [meta_record(a) for a in "ABCDE"])
    dataset = load_raw_amazon("toy", reviews, metadata, NO_FILTERS)
    letters = [[dataset.item_ids[i] for i in s] for s in dataset.sequences]
    assert letters == [
        ["D", "A", "B", "C", "E"],
        ["D", "E", "C", "A", "B"],
        ["A", "B", "C", "D", "E"],
    ]


def test_equal_timestamps_split_ignores_row_order(tmp_path):
    reference = _split_signature(tmp_path, TIE_ROWS, "base")
    rng = random.Random(7)
    for attempt in range(5):
        shuffled = list(TIE_ROWS)
        rng.shuffle(shuffled)
        assert _split_signature(tmp_path, shuffled, str(attempt)) == reference


def test_eval_history_precedes_target_in_time(tmp_path):
    rows = [(f"u{u}", f"I{(u * 3 + k) % 7}", 1000 + 10 * k + (u % 2)) for u in range(6)
            for k in range(6)]
    reviews = write_reviews(tmp_path / "r.json.gz", rows)
    metadata = write_metadata(tmp_path / "m.json.gz", [meta_record(f"I{i}") for i in range(7)])
    dataset = load_raw_amazon("toy", reviews, metadata, NO_FILTERS)
    time_of = {(user, item): timestamp for user, item, timestamp in rows}
    split = build_split(dataset, SplitSettings(max_history_items=10))
    for stage in (split.valid, split.test):
        for user, history, target in zip(stage.users, stage.histories, stage.targets):
            user_id = dataset.user_ids[user]
            target_time = time_of[(user_id, dataset.item_ids[target])]
            for item in history:
                assert time_of[(user_id, dataset.item_ids[item])] < target_time


def test_ratings_csv_is_read(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("A,u1,5.0,100\nB,u1,4.0,50\n", encoding="utf-8")
    frame = read_reviews(path)
    assert frame["user"].tolist() == ["u1", "u1"]
    assert frame["item"].tolist() == ["A", "B"]
    assert frame["timestamp"].tolist() == [100, 50]


def test_corrupt_gzip_names_file(tmp_path):
    path = tmp_path / "Musical_Instruments_5.json.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match=r"Musical_Instruments_5\.json\.gz.*download it again"):
        read_reviews(path)


def test_truncated_gzip_names_file(tmp_path):
    full = write_reviews(tmp_path / "full.json.gz", [("u1", "A", 1)] * 50)
    truncated = tmp_path / "cut.json.gz"
    truncated.write_bytes(full.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"cut\.json\.gz.*corrupt or truncated"):
        read_reviews(truncated)


def test_truncated_json_line_names_line(tmp_path):
    path = tmp_path / "reviews.json"
    good = json.dumps({"reviewerID": "u1", "asin": "A", "unixReviewTime": 1})
    path.write_text(good + "\n" + good[:25] + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"reviews\.json, line 2"):
        read_reviews(path)


def test_review_without_timestamp_names_field(tmp_path):
    path = tmp_path / "reviews.json"
    path.write_text(json.dumps({"reviewerID": "u1", "asin": "B00X"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1.*'unixReviewTime'"):
        read_reviews(path)


def test_raw_item_indices_follow_sorted_asins(tmp_path):
    rows = [("u2", "Z", 1), ("u2", "B", 2), ("u1", "M", 3)]
    reviews = write_reviews(tmp_path / "r.json.gz", rows)
    metadata = write_metadata(tmp_path / "m.json.gz", [meta_record(a) for a in "ZBM"])
    dataset = load_raw_amazon("toy", reviews, metadata, NO_FILTERS)
    assert dataset.item_ids == ["B", "M", "Z"]
    assert dataset.user_ids == ["u1", "u2"]
    assert [s.tolist() for s in dataset.sequences] == [[1], [2, 0]]
    assert np.all([len(s) > 0 for s in dataset.sequences])
