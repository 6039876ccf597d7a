"""Bad input to the features pipeline: damaged or invalid embedding files and id lists,
feature settings given in the wrong place, and items without images.

Each test writes the bad file by hand and checks that the DataError names the file and, where
there is one, the row and item.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clairo_bench.data.dataset import DataError, Dataset, ItemMeta
from clairo_bench.data.split import build_split
from clairo_bench.features import FeatureSettings, build_item_features
from clairo_bench.features.cache import StageResult
from clairo_bench.features.embeddings import item_texts
from clairo_bench.features.pipeline import _check_missing_images
from clairo_bench.features.precomputed import load_embeddings
from clairo_bench.features.settings import SETTINGS_SYNTAX_HINT, apply_overrides, parse_assignments
from clairo_bench.methods.registry import get_method_class
from clairo_bench.runner import split_overrides

ITEM_IDS = ["A1", "A2", "A3", "A4"]
VECTORS = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [-1.0, 3.0]], dtype=np.float32)


def _write_pair(folder: Path, matrix: np.ndarray, ids: list[str] = ITEM_IDS) -> tuple[Path, Path]:
    np.save(folder / "emb.npy", matrix)
    (folder / "ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    return folder / "emb.npy", folder / "ids.txt"


# NaN and infinite values


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_npy_row_named(tmp_path, bad_value):
    matrix = VECTORS.copy()
    matrix[2, 1] = bad_value
    path, ids = _write_pair(tmp_path, matrix)
    with pytest.raises(DataError) as raised:
        load_embeddings(path, ids, ITEM_IDS)
    message = str(raised.value)
    assert message.startswith(f"Embedding file {path} has NaN or infinite values in 1 row(s)")
    assert "first in row 2 (item 'A3'" in message
    assert "regenerate the embeddings" in message


def test_all_rows_non_finite_counted(tmp_path):
    path, ids = _write_pair(tmp_path, np.full_like(VECTORS, np.nan))
    expected = r"in 4 row\(s\) of this dataset's items, first in row 0 \(item 'A1'"
    with pytest.raises(DataError, match=expected):
        load_embeddings(path, ids, ITEM_IDS)


def test_float32_overflow_rejected(tmp_path):
    matrix = VECTORS.astype(np.float64)
    matrix[1, 0] = 1e300
    path, ids = _write_pair(tmp_path, matrix)
    with pytest.raises(DataError, match=r"first in row 1 \(item 'A2'"):
        load_embeddings(path, ids, ITEM_IDS)


def test_non_finite_unknown_item_ignored(tmp_path):
    matrix = np.concatenate([VECTORS, np.full((1, 2), np.nan, dtype=np.float32)])
    path, ids = _write_pair(tmp_path, matrix, ITEM_IDS + ["NOT_IN_DATASET"])
    joined = load_embeddings(path, ids, ITEM_IDS)
    np.testing.assert_array_equal(joined.vectors, VECTORS)
    assert joined.unknown_ids == 1


def test_non_finite_parquet_row_named(tmp_path):
    rows = VECTORS.tolist()
    rows[3][0] = float("nan")
    pd.DataFrame({"item_id": ITEM_IDS, "embedding": rows}).to_parquet(tmp_path / "emb.parquet")
    with pytest.raises(DataError, match=r"emb\.parquet has NaN .* first in row 3 \(item 'A4'"):
        load_embeddings(tmp_path / "emb.parquet", None, ITEM_IDS)


# Files numpy, pandas or json cannot read


def test_cut_off_npy_names_file(tmp_path):
    path, ids = _write_pair(tmp_path, VECTORS)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError) as raised:
        load_embeddings(path, ids, ITEM_IDS)
    assert str(raised.value).startswith(f"Embedding file {path} cannot be read as a .npy array")


def test_empty_npy_names_file(tmp_path):
    path, ids = _write_pair(tmp_path, VECTORS)
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"emb\.npy cannot be read as a \.npy array"):
        load_embeddings(path, ids, ITEM_IDS)


def test_pickle_in_npy_file_is_rejected(tmp_path):
    path, ids = _write_pair(tmp_path, VECTORS)
    path.write_bytes(pickle.dumps(VECTORS.tolist()))
    with pytest.raises(DataError) as raised:
        load_embeddings(path, ids, ITEM_IDS)
    assert str(raised.value).startswith(
        f"Embedding file {path} is not a numeric .npy array: it is a pickle, an object array"
    )


def test_text_file_named_npy_is_rejected(tmp_path):
    path, ids = _write_pair(tmp_path, VECTORS)
    path.write_text("0.1 0.2\n0.3 0.4\n")
    with pytest.raises(DataError, match=r"emb\.npy is not a numeric \.npy array: .* or another file type"):
        load_embeddings(path, ids, ITEM_IDS)


def test_object_array_is_rejected(tmp_path):
    matrix = np.array([[1.0, "x"]] * 4, dtype=object)
    path, ids = _write_pair(tmp_path, matrix)
    expected = r"emb\.npy is not a numeric \.npy array: it is a pickle, an object array"
    with pytest.raises(DataError, match=expected):
        load_embeddings(path, ids, ITEM_IDS)


def test_string_matrix_is_rejected(tmp_path):
    path, ids = _write_pair(tmp_path, np.array([["a", "b"]] * 4))
    with pytest.raises(DataError) as raised:
        load_embeddings(path, ids, ITEM_IDS)
    assert str(raised.value) == (
        f"Embedding file {path} contains <U1 values, not numbers; save a float array."
    )


def test_complex_matrix_is_rejected(tmp_path):
    path, ids = _write_pair(tmp_path, VECTORS + 1j)
    with pytest.raises(DataError, match=r"emb\.npy contains complex numbers \(complex64\)"):
        load_embeddings(path, ids, ITEM_IDS)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_, np.float16])
def test_real_numeric_dtypes_are_read(tmp_path, dtype):
    matrix = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=dtype)
    path, ids = _write_pair(tmp_path, matrix)
    joined = load_embeddings(path, ids, ITEM_IDS)
    np.testing.assert_array_equal(joined.vectors, matrix.astype(np.float32))


def test_ragged_parquet_row_named(tmp_path):
    rows = [[1.0, 0.0], [0.0, 1.0], [2.0], [-1.0, 3.0]]
    pd.DataFrame({"item_id": ITEM_IDS, "vec": rows}).to_parquet(tmp_path / "emb.parquet")
    with pytest.raises(DataError) as raised:
        load_embeddings(tmp_path / "emb.parquet", None, ITEM_IDS)
    assert str(raised.value) == (
        f"Parquet file {tmp_path / 'emb.parquet'}, row 2 (item 'A3'): column 'vec' has 1 "
        "values, but row 0 has 2; every embedding needs the same dimension."
    )


def test_parquet_string_list_row_named(tmp_path):
    rows = [["1.0", "0.0"], ["x", "y"], ["2.0", "2.0"], ["-1.0", "3.0"]]
    pd.DataFrame({"item_id": ITEM_IDS, "vec": rows}).to_parquet(tmp_path / "emb.parquet")
    expected = r"row 1 \(item 'A2'\): column 'vec' must hold a list of numbers"
    with pytest.raises(DataError, match=expected):
        load_embeddings(tmp_path / "emb.parquet", None, ITEM_IDS)


def test_damaged_parquet_names_file(tmp_path):
    path = tmp_path / "emb.parquet"
    pd.DataFrame({"item_id": ITEM_IDS, "embedding": VECTORS.tolist()}).to_parquet(path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError) as raised:
        load_embeddings(path, None, ITEM_IDS)
    assert str(raised.value).startswith(f"Embedding file {path} cannot be read as a parquet table")


def test_cut_off_json_ids_named(tmp_path):
    path, _ = _write_pair(tmp_path, VECTORS)
    ids = tmp_path / "ids.json"
    ids.write_text('["A1", "A2", ', encoding="utf-8")
    with pytest.raises(DataError) as raised:
        load_embeddings(path, ids, ITEM_IDS)
    assert str(raised.value).startswith(
        f"Identifier list {ids} is not valid JSON at line 1, column 14: Expecting value."
    )


def test_deep_json_ids_named(tmp_path):
    path, _ = _write_pair(tmp_path, VECTORS)
    ids = tmp_path / "ids.json"
    ids.write_text("[" * 100_000, encoding="utf-8")
    with pytest.raises(DataError, match=r"ids\.json nests JSON too deeply"):
        load_embeddings(path, ids, ITEM_IDS)


def test_non_utf8_ids_named(tmp_path):
    path, ids = _write_pair(tmp_path, VECTORS)
    ids.write_bytes(b"A1\nA2\n\xffA3\nA4\n")
    with pytest.raises(DataError, match=r"ids\.txt is not valid UTF-8 at byte 6"):
        load_embeddings(path, ids, ITEM_IDS)


# Where feature settings go in `run`


def test_settings_errors_have_hint():
    with pytest.raises(ValueError) as raised:
        FeatureSettings(text_embeddings="/data/text.npy")
    assert str(raised.value).endswith(SETTINGS_SYNTAX_HINT)
    with pytest.raises(ValueError) as raised:
        FeatureSettings(image_embedding_ids="/data/ids.txt")
    assert str(raised.value).endswith(SETTINGS_SYNTAX_HINT)


def test_no_metadata_error_has_hint():
    dataset = Dataset(name="toy", item_ids=ITEM_IDS, user_ids=["u"], sequences=[np.arange(4)])
    with pytest.raises(DataError) as raised:
        item_texts(dataset)
    assert "set text_embeddings (with text_embedding_ids for a .npy file)" in str(raised.value)
    assert str(raised.value).endswith(SETTINGS_SYNTAX_HINT)


@pytest.mark.parametrize(
    "method, field",
    [("tiger", "features"), ("mql4grec", "features"),
     ("actionpiece", "feature_settings"), ("clairo", "feature_settings")],
)
def test_hint_run_syntax_works(method, field):
    assert method in SETTINGS_SYNTAX_HINT
    assert field in SETTINGS_SYNTAX_HINT
    method_class = get_method_class(method)
    fields = [f.name for f in dataclasses.fields(method_class.config_class)]
    assignment = f"{method}.{field}=text_embeddings=/d/a.npy,text_embedding_ids=/d/a.txt"
    overrides = split_overrides([assignment], method, fields)
    config = method_class.resolve_config("smoke", overrides.method)
    settings = apply_overrides(FeatureSettings(), parse_assignments(list(getattr(config, field))))
    assert settings.text_embeddings == "/d/a.npy"
    assert settings.text_embedding_ids == "/d/a.txt"


# Items without images


def _small_dataset() -> Dataset:
    metas = [ItemMeta(title=f"item {index}") for index in range(len(ITEM_IDS))]
    sequences = [np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0]), np.array([2, 3, 0, 1])]
    return Dataset(
        name="toy", item_ids=ITEM_IDS, user_ids=["u1", "u2", "u3"], sequences=sequences,
        item_meta=metas,
    )


def test_unmatched_image_file_named(tmp_path):
    dataset = _small_dataset()
    text, text_ids = _write_pair(tmp_path, VECTORS)
    np.save(tmp_path / "img.npy", VECTORS)
    (tmp_path / "img_ids.txt").write_text("Z1\nZ2\nZ3\nZ4\n", encoding="utf-8")
    settings = FeatureSettings(
        source="content", text_embeddings=str(text), text_embedding_ids=str(text_ids),
        image_embeddings=str(tmp_path / "img.npy"),
        image_embedding_ids=str(tmp_path / "img_ids.txt"),
        text_pca_dim=None, image_pca_dim=None, opq_subquantizers=2, opq_bits=1,
    )
    with pytest.raises(DataError) as raised:
        build_item_features(dataset, build_split(dataset), settings, tmp_path / "cache")
    message = str(raised.value)
    assert message.startswith(
        f"None of the 4 items of dataset 'toy' has a row in the image embedding file "
        f"{tmp_path / 'img.npy'}"
    )
    assert "such as 'A1'" in message
    assert "image folder" not in message


@pytest.mark.parametrize("image_dir", [None, "pictures"])
def test_no_image_names_folder_used(tmp_path, image_dir):
    dataset = _small_dataset()
    settings = FeatureSettings(
        image_dir=None if image_dir is None else str(tmp_path / image_dir)
    )
    # A cached stage stores what it was built with; the folder must come from the settings.
    images = StageResult(
        stage="embed:image", key="k",
        arrays={"vectors": np.zeros((4, 2), np.float32), "present": np.zeros(4, bool)},
        meta={"source": "test encoder"}, cache_hit=True,
    )
    expected = tmp_path / "cache" / "images" if image_dir is None else tmp_path / image_dir
    with pytest.raises(DataError) as raised:
        _check_missing_images(dataset, settings, images, tmp_path / "cache")
    assert f"(test encoder, image folder {expected})" in str(raised.value)
