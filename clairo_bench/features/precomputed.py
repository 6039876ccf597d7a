"""Precomputed item embeddings read from files and joined to items by identifier.

Two formats are read: a .npy matrix plus an identifier list (.txt with one identifier per line,
or .json with a list or an {identifier: row} object), and a .parquet table with an identifier
column. Rows are always matched to item indices through identifiers, never through row order.
Identifiers in the file that the dataset lacks are counted and ignored, because released
embedding files usually cover the catalogue before k-core filtering.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from clairo_bench.data.dataset import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JoinedEmbeddings:
    """Embeddings aligned to item indices.

    Attributes:
        vectors: (n_items, dimension) float32; row i belongs to item index i, zeros where absent.
        present: (n_items,) bool; False for items the file does not cover.
        unknown_ids: identifiers in the file that the dataset does not contain.
        source: the file the embeddings came from.
    """

    vectors: np.ndarray
    present: np.ndarray
    unknown_ids: int
    source: str

    @property
    def missing(self) -> int:
        return int((~self.present).sum())


def read_embedding_file(
    path: Path, ids_path: Path | None = None, id_column: str = "item_id"
) -> tuple[list[str], np.ndarray]:
    """Read (identifiers, float32 matrix) from a .npy + id list pair or from a .parquet table."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Embedding file {path} does not exist; check the *_embeddings setting.")
    if path.suffix == ".parquet":
        return _read_parquet(path, id_column)
    if path.suffix != ".npy":
        raise DataError(
            f"Embedding file {path} has suffix {path.suffix!r}; use .npy (with an id list) or "
            ".parquet (with an identifier column)."
        )
    if ids_path is None:
        raise DataError(
            f"Embedding file {path} stores no item identifiers; pass the matching id list "
            "(*_embedding_ids) as a .txt or .json file."
        )
    try:
        vectors = np.load(path, allow_pickle=False)
    # np.load raises EOFError for an empty file and ValueError for a cut-off array, a pickle or
    # an object array.
    except (OSError, EOFError, ValueError) as error:
        if "pickle" in str(error):
            # numpy reports "pickled" data for any file without the .npy header, so the cause may be
            # a file of another type under a .npy name.
            raise DataError(
                f"Embedding file {path} is not a numeric .npy array: it is a pickle, an object "
                "array or another file type. Pickles are not loaded because unpickling can run "
                "code; save a float array with numpy.save."
            ) from error
        raise DataError(
            f"Embedding file {path} cannot be read as a .npy array ({error}). Write it with "
            "numpy.save from a float array, or copy it again if it is cut off."
        ) from error
    if not isinstance(vectors, np.ndarray):
        raise DataError(
            f"Embedding file {path} is not a .npy array file; write it with numpy.save."
        )
    if vectors.ndim != 2:
        raise DataError(
            f"Embedding file {path} must hold a 2-D array (items x dimensions), "
            f"got shape {vectors.shape}."
        )
    _check_numeric_dtype(path, vectors.dtype)
    ids = read_id_list(Path(ids_path), n_rows=vectors.shape[0])
    # Values beyond the float32 range become infinite here; join_embeddings reports them.
    with np.errstate(over="ignore"):
        return ids, vectors.astype(np.float32, copy=False)


def _check_numeric_dtype(path: Path, dtype: np.dtype) -> None:
    # Booleans, integers and real floats convert to float32. A complex array would lose its
    # imaginary part in that conversion, so it is rejected.
    if dtype.kind == "c":
        raise DataError(
            f"Embedding file {path} contains complex numbers ({dtype}); embeddings must be real. "
            "Save the real-valued vectors instead."
        )
    if dtype.kind not in "biuf":
        raise DataError(
            f"Embedding file {path} contains {dtype} values, not numbers; save a float array."
        )


def read_id_list(path: Path, n_rows: int) -> list[str]:
    """Read the identifier of each of `n_rows` matrix rows from a .txt or .json file."""
    if not path.is_file():
        raise DataError(f"Identifier list {path} does not exist; check *_embedding_ids.")
    text = _read_id_text(path)
    if path.suffix == ".json":
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(
                f"Identifier list {path} is not valid JSON at line {error.lineno}, column "
                f"{error.colno}: {error.msg}. The file is cut off or damaged; write it again."
            ) from error
        except RecursionError:
            raise DataError(
                f"Identifier list {path} nests JSON too deeply to parse; it must contain a flat "
                "list of identifiers or an {identifier: row} object."
            ) from None
        if isinstance(payload, list):
            ids = [str(item_id) for item_id in payload]
        elif isinstance(payload, dict):
            ids = _ids_from_row_map(path, payload, n_rows)
        else:
            raise DataError(
                f"Identifier list {path} must hold a JSON list of identifiers or an "
                f"{{identifier: row}} object, got {type(payload).__name__}."
            )
    else:
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        ids = [line.strip() for line in lines]
        blank = [number for number, item_id in enumerate(ids, start=1) if not item_id]
        if blank:
            raise DataError(
                f"Identifier list {path} has blank lines (first at line {blank[0]}), which would "
                "shift the rows after them; remove them."
            )
    if len(ids) != n_rows:
        raise DataError(
            f"Identifier list {path} names {len(ids)} items, but the embedding matrix has "
            f"{n_rows} rows; pass the id list written with that matrix."
        )
    return ids


def _read_id_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"Identifier list {path} is not valid UTF-8 at byte {error.start}; write it as UTF-8 "
            "text."
        ) from error


def _ids_from_row_map(path: Path, payload: dict, n_rows: int) -> list[str]:
    ids: list[str | None] = [None] * n_rows
    for item_id, row in payload.items():
        if not isinstance(row, int) or not 0 <= row < n_rows:
            raise DataError(
                f"Identifier list {path} maps {item_id!r} to row {row!r}, outside 0..{n_rows - 1}."
            )
        if ids[row] is not None:
            raise DataError(
                f"Identifier list {path} maps both {ids[row]!r} and {item_id!r} to row {row}."
            )
        ids[row] = str(item_id)
    unnamed = [row for row, item_id in enumerate(ids) if item_id is None]
    if unnamed:
        raise DataError(
            f"Identifier list {path} names no item for {len(unnamed)} rows (first: row "
            f"{unnamed[0]}); every row needs an identifier."
        )
    return [str(item_id) for item_id in ids]


def _read_parquet(path: Path, id_column: str) -> tuple[list[str], np.ndarray]:
    import pandas as pd

    try:
        table = pd.read_parquet(path)
    # pyarrow's ArrowInvalid is a ValueError and its ArrowIOError an OSError.
    except (OSError, ValueError) as error:
        raise DataError(
            f"Embedding file {path} cannot be read as a parquet table ({error}); write it "
            "again, or copy it again if it is cut off."
        ) from error
    if id_column not in table.columns:
        raise DataError(
            f"Parquet file {path} has no identifier column {id_column!r} (columns: "
            f"{', '.join(map(str, table.columns))}); set embedding_id_column."
        )
    ids = [str(item_id) for item_id in table[id_column]]
    value_columns = [column for column in table.columns if column != id_column]
    if len(value_columns) == 1 and table[value_columns[0]].dtype == object:
        # One column of per-row sequences, as pyarrow reads a list<float> column.
        vectors = _stack_list_column(path, value_columns[0], table[value_columns[0]], ids)
    else:
        non_numeric = [c for c in value_columns if not pd.api.types.is_numeric_dtype(table[c])]
        if non_numeric or not value_columns:
            raise DataError(
                f"Parquet file {path} must hold the identifier column and either one list column "
                f"or numeric columns only; non-numeric columns: {', '.join(map(str, non_numeric))}."
            )
        vectors = table[value_columns].to_numpy(dtype=np.float32)
    return ids, vectors


def _stack_list_column(path: Path, column: str, values: Sequence, ids: list[str]) -> np.ndarray:
    rows = []
    for row, value in enumerate(values):
        try:
            vector = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            vector = None
        if vector is None or vector.ndim != 1:
            raise DataError(
                f"Parquet file {path}, row {row} (item {ids[row]!r}): column {column!r} must "
                f"hold a list of numbers, got {str(value)[:80]}."
            )
        if rows and len(vector) != len(rows[0]):
            raise DataError(
                f"Parquet file {path}, row {row} (item {ids[row]!r}): column {column!r} has "
                f"{len(vector)} values, but row 0 has {len(rows[0])}; every embedding needs the "
                "same dimension."
            )
        rows.append(vector)
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(rows)


def join_embeddings(
    file_ids: Sequence[str], vectors: np.ndarray, item_ids: Sequence[str], source: str
) -> JoinedEmbeddings:
    """Place each file row at the item index of its identifier.

    Raises:
        DataError: the file names an identifier twice, or a row joined to an item contains NaN or
            infinite values (rows of items outside the dataset are not checked).
    """
    item_index = {item_id: index for index, item_id in enumerate(item_ids)}
    aligned = np.zeros((len(item_ids), vectors.shape[1]), dtype=np.float32)
    present = np.zeros(len(item_ids), dtype=bool)
    seen: set[str] = set()
    unknown = 0
    # Values beyond the float32 range became infinite when the file was read as float32.
    finite_rows = np.isfinite(vectors).all(axis=1)
    non_finite: list[tuple[int, str]] = []
    for row, item_id in enumerate(file_ids):
        if item_id in seen:
            raise DataError(
                f"Embedding file {source} lists item {item_id!r} more than once; "
                "keep one row per item."
            )
        seen.add(item_id)
        index = item_index.get(item_id)
        if index is None:
            unknown += 1
            continue
        if not finite_rows[row]:
            non_finite.append((row, item_id))
        aligned[index] = vectors[row]
        present[index] = True
    if non_finite:
        row, item_id = non_finite[0]
        raise DataError(
            f"Embedding file {source} has NaN or infinite values in {len(non_finite)} row(s) "
            f"of this dataset's items, first in row {row} (item {item_id!r}; rows count from "
            "0). Fix or regenerate the embeddings."
        )
    if unknown:
        logger.info(
            "Embedding file %s: ignored %d of %d rows whose items are not in the dataset.",
            source, unknown, len(file_ids),
        )
    return JoinedEmbeddings(aligned, present, unknown, source)


def load_embeddings(
    path: Path, ids_path: Path | None, item_ids: Sequence[str], id_column: str = "item_id"
) -> JoinedEmbeddings:
    """Read an embedding file and join its rows to `item_ids`."""
    file_ids, vectors = read_embedding_file(path, ids_path, id_column)
    return join_embeddings(file_ids, vectors, item_ids, str(path))
