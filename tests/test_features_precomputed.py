"""Tests of precomputed embedding files joined to items by identifier."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clairo_bench.data.dataset import DataError
from clairo_bench.features.precomputed import join_embeddings, load_embeddings

ITEM_IDS = ["A1", "A2", "A3", "A4"]
# Row i of the true matrix belongs to ITEM_IDS[i]; each row is distinct.
TRUE_VECTORS = np.array(
    [[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [-1.0, 3.0]], dtype=np.float32
)
FILE_ORDER = [2, 0, 3, 1]


def _write_npy(tmp_path, ids, rows):
    np.save(tmp_path / "emb.npy", rows)
    return tmp_path / "emb.npy"


def test_npy_with_txt_ids_joins_by_identifier(tmp_path):
    path = _write_npy(tmp_path, None, TRUE_VECTORS[FILE_ORDER])
    (tmp_path / "ids.txt").write_text("\n".join(ITEM_IDS[i] for i in FILE_ORDER) + "\n")
    joined = load_embeddings(path, tmp_path / "ids.txt", ITEM_IDS)
    np.testing.assert_array_equal(joined.vectors, TRUE_VECTORS)


def test_npy_with_json_row_map_joins_by_identifier(tmp_path):
    path = _write_npy(tmp_path, None, TRUE_VECTORS[FILE_ORDER])
    row_map = {ITEM_IDS[item]: row for row, item in enumerate(FILE_ORDER)}
    (tmp_path / "ids.json").write_text(json.dumps(row_map))
    joined = load_embeddings(path, tmp_path / "ids.json", ITEM_IDS)
    np.testing.assert_array_equal(joined.vectors, TRUE_VECTORS)


def test_parquet_list_column_joins_by_identifier(tmp_path):
    table = pd.DataFrame({
        "item_id": [ITEM_IDS[i] for i in FILE_ORDER],
        "embedding": [TRUE_VECTORS[i].tolist() for i in FILE_ORDER],
    })
    table.to_parquet(tmp_path / "emb.parquet")
    joined = load_embeddings(tmp_path / "emb.parquet", None, ITEM_IDS)
    np.testing.assert_array_equal(joined.vectors, TRUE_VECTORS)


def test_parquet_numeric_columns_join_by_identifier(tmp_path):
    table = pd.DataFrame({
        "asin": [ITEM_IDS[i] for i in FILE_ORDER],
        "d0": TRUE_VECTORS[FILE_ORDER, 0],
        "d1": TRUE_VECTORS[FILE_ORDER, 1],
    })
    table.to_parquet(tmp_path / "emb.parquet")
    joined = load_embeddings(tmp_path / "emb.parquet", None, ITEM_IDS, id_column="asin")
    np.testing.assert_array_equal(joined.vectors, TRUE_VECTORS)


def test_parquet_without_id_column_names_columns(tmp_path):
    pd.DataFrame({"id": ["A1"], "d0": [1.0]}).to_parquet(tmp_path / "emb.parquet")
    with pytest.raises(DataError, match="no identifier column 'item_id' \\(columns: id, d0\\)"):
        load_embeddings(tmp_path / "emb.parquet", None, ITEM_IDS)


def test_unknown_identifiers_counted():
    joined = join_embeddings(["A1", "Z9", "Z8"], np.ones((3, 2), np.float32), ITEM_IDS, "f.npy")
    assert joined.unknown_ids == 2


def test_missing_identifiers_marked_absent():
    joined = join_embeddings(["A3"], np.ones((1, 2), np.float32), ITEM_IDS, "f.npy")
    assert joined.present.tolist() == [False, False, True, False]


def test_duplicate_identifier_raises():
    with pytest.raises(DataError, match="lists item 'A1' more than once"):
        join_embeddings(["A1", "A1"], np.ones((2, 2), np.float32), ITEM_IDS, "f.npy")


def test_id_list_length_mismatch_raises(tmp_path):
    path = _write_npy(tmp_path, None, TRUE_VECTORS)
    (tmp_path / "ids.txt").write_text("A1\nA2\n")
    with pytest.raises(DataError, match="names 2 items, but the embedding matrix has 4 rows"):
        load_embeddings(path, tmp_path / "ids.txt", ITEM_IDS)


def test_blank_line_in_id_list_raises(tmp_path):
    path = _write_npy(tmp_path, None, TRUE_VECTORS)
    (tmp_path / "ids.txt").write_text("A1\n\nA3\nA4\n")
    with pytest.raises(DataError, match="blank lines \\(first at line 2\\)"):
        load_embeddings(path, tmp_path / "ids.txt", ITEM_IDS)


def test_npy_without_id_list_raises(tmp_path):
    path = _write_npy(tmp_path, None, TRUE_VECTORS)
    with pytest.raises(DataError, match="stores no item identifiers"):
        load_embeddings(path, None, ITEM_IDS)
