"""Saving a parsed Dataset to one .npz file and reading it back, for the dataset cache.

Strings, item metadata and the processing record are stored as UTF-8 JSON in uint8 arrays, so
the file loads with allow_pickle=False.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from clairo_bench.data.dataset import Dataset, ItemCodes, ItemMeta
from clairo_bench.io import atomic_write_npz

STORE_FORMAT_VERSION = 1

# Exceptions that numpy and zipfile raise for a cache file that is cut short, empty or
# overwritten. An empty file gives EOFError, a missing zip directory BadZipFile and a damaged
# member zlib.error. A missing array or a malformed JSON header gives ValueError, KeyError or
# TypeError. Readers of the dataset and split caches treat all of them as a cache miss.
CACHE_READ_ERRORS = (
    OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error
)


def _json_array(payload: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(payload).encode("utf-8"), dtype=np.uint8)


def _from_json_array(array: np.ndarray) -> Any:
    return json.loads(bytes(array).decode("utf-8"))


def save_dataset(dataset: Dataset, path: Path) -> None:
    """Write `dataset` to `path` atomically."""
    lengths = np.asarray([len(sequence) for sequence in dataset.sequences], dtype=np.int64)
    flat = (
        np.concatenate([np.asarray(s, dtype=np.int64) for s in dataset.sequences])
        if dataset.sequences
        else np.zeros(0, dtype=np.int64)
    )
    item_meta = (
        None
        if dataset.item_meta is None
        else [None if meta is None else asdict(meta) for meta in dataset.item_meta]
    )
    header = {
        "version": STORE_FORMAT_VERSION,
        "name": dataset.name,
        "item_ids": dataset.item_ids,
        "user_ids": dataset.user_ids,
        "item_meta": item_meta,
        "processing": dataset.processing,
        "codes": {
            modality: {"codebook_size": codes.codebook_size, "source": codes.source}
            for modality, codes in dataset.codes.items()
        },
    }
    arrays = {"header": _json_array(header), "lengths": lengths, "items": flat}
    for modality, codes in dataset.codes.items():
        arrays[f"codes_{modality}"] = np.asarray(codes.codes, dtype=np.int64)
    atomic_write_npz(path, arrays)


def load_stored_dataset(path: Path) -> Dataset | None:
    """Read a file written by `save_dataset`; return None if it has another format version."""
    with np.load(path, allow_pickle=False) as data:
        header = _from_json_array(data["header"])
        if header.get("version") != STORE_FORMAT_VERSION:
            return None
        lengths = data["lengths"]
        flat = data["items"]
        bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        sequences = [flat[bounds[i] : bounds[i + 1]] for i in range(len(lengths))]
        codes = {
            modality: ItemCodes(
                modality=modality,
                codes=data[f"codes_{modality}"],
                codebook_size=int(spec["codebook_size"]),
                source=spec["source"],
            )
            for modality, spec in header["codes"].items()
        }
    item_meta = header["item_meta"]
    if item_meta is not None:
        item_meta = [
            None
            if meta is None
            else ItemMeta(**{**meta, "categories": tuple(meta["categories"])})
            for meta in item_meta
        ]
    return Dataset(
        name=header["name"],
        item_ids=header["item_ids"],
        user_ids=header["user_ids"],
        sequences=sequences,
        codes=codes,
        item_meta=item_meta,
        processing=header["processing"],
    )
