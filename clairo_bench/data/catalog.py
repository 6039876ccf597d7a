"""Loading datasets by card name: `load_dataset("instruments")`.

The card decides the source (the released files by default where a card has them, the raw
Amazon files when asked) and the processing settings. `Dataset.processing` records the card, the
source, the settings, every file read with its SHA-256, and the importer's policy counts, so
`Dataset.content_hash()` differs whenever the data or its making differs.

Parsed datasets can be cached as .npz under `<cache_dir>/datasets/`, keyed by the hashes of the
stored source files, the card's settings and LOADER_VERSION. The cache folder is the `cache_dir`
argument or CLAIRO_BENCH_CACHE_DIR; without either nothing is cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clairo_bench.data.amazon2018 import load_raw_amazon
from clairo_bench.data.cards import (
    DatasetCard,
    card_names,
    datasets_dir,
    load_card,
)
from clairo_bench.data.dataset import DataError, Dataset
from clairo_bench.data.files import file_sha256
from clairo_bench.data.importers import (
    CodeFileRequest,
    SequentialRows,
    import_mql4grec,
    import_recbole_interactions,
    import_recbole_sequential,
    import_user_sequence,
    read_atomic_file,
    read_sequential_rows,
)
from clairo_bench.data.store import CACHE_READ_ERRORS, load_stored_dataset, save_dataset

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "CLAIRO_BENCH_CACHE_DIR"

# Bump when a loader's output changes for the same input files, so caches and run records of the
# old output are not mistaken for the new one.
LOADER_VERSION = 1


def list_datasets(data_dir: Path | str | None = None) -> list[DatasetCard]:
    """Return the cards of all datasets in the datasets folder, sorted by name.

    Raises:
        DataError: the folder is missing or a card is invalid (the first one found).
    """
    return [load_card(name, data_dir) for name in card_names(data_dir)]


@dataclass(frozen=True)
class InvalidCard:
    """A card file that failed to load.

    Attributes:
        path: the card file.
        message: the DataError message, which names the file, the key and the fix.
    """

    path: Path
    message: str


@dataclass(frozen=True)
class CardScan:
    """Every card of the datasets folder, sorted by name, split into valid and invalid ones."""

    cards: list[DatasetCard]
    invalid: list[InvalidCard]


def scan_datasets(data_dir: Path | str | None = None) -> CardScan:
    """Load every card in the datasets folder, collecting the errors of invalid cards.

    Unlike `list_datasets`, an invalid card does not hide the valid ones, so a listing can show
    them and report each invalid card below.

    Raises:
        DataError: the datasets folder does not exist.
    """
    folder = datasets_dir(data_dir)
    cards: list[DatasetCard] = []
    invalid: list[InvalidCard] = []
    for name in card_names(folder):
        try:
            cards.append(load_card(name, folder))
        except DataError as error:
            invalid.append(InvalidCard(path=folder / f"{name}.toml", message=str(error)))
    return CardScan(cards=cards, invalid=invalid)


def released_paths(card: DatasetCard) -> list[Path]:
    """Return the files the released source reads (empty without a released source)."""
    if card.released is None:
        return []
    return [card.released.path(name) for name in card.released.all_files()]


def raw_paths(card: DatasetCard, raw_dir: Path | None = None) -> list[Path]:
    """Return where the raw files are stored locally (empty without a raw source)."""
    if card.raw is None:
        return []
    folder = card.raw_dir(raw_dir)
    return [folder / raw_file.file_name for raw_file in card.raw.files()]


def available_sources(card: DatasetCard, raw_dir: Path | None = None) -> dict[str, bool]:
    """Report for each declared source whether all its files exist locally."""
    available = {}
    if card.released is not None:
        available["released"] = all(path.is_file() for path in released_paths(card))
    if card.raw is not None:
        available["raw"] = all(path.is_file() for path in raw_paths(card, raw_dir))
    return available


def _resolve_cache_dir(cache_dir: Path | str | None) -> Path | None:
    if cache_dir is not None:
        return Path(cache_dir)
    from_environment = os.environ.get(CACHE_DIR_ENV)
    return Path(from_environment) if from_environment else None


def _require_files(card: DatasetCard, source: str, paths: list[Path]) -> None:
    missing = [path for path in paths if not path.is_file()]
    if not missing:
        return
    if source == "raw":
        assert card.raw is not None
        urls = {raw_file.file_name: raw_file.url for raw_file in card.raw.files()}
        listing = "; ".join(f"{urls[path.name]} -> {path}" for path in missing)
        raise DataError(
            f"Dataset {card.name!r}: raw files missing: {listing}. Run `clairo-bench datasets "
            f"download {card.name}` or place the files there by hand."
        )
    raise DataError(
        f"Dataset {card.name!r}: released files missing: {', '.join(map(str, missing))}. "
        f"Restore them (they are part of the repository for embedded data) or fix [released] in "
        f"{card.path}."
    )


def _cache_key(card: DatasetCard, source: str, stored_hashes: dict[str, str]) -> str:
    payload = {
        "loader_version": LOADER_VERSION,
        "card": card.name,
        "source": source,
        "settings": card.processing.as_dict(),
        "released_format": card.released.format if card.released else None,
        "codes": [
            [spec.modality, spec.file, spec.codebook_size]
            for spec in (card.released.codes if card.released else ())
        ],
        "files": stored_hashes,
    }
    encoded = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def _verify_hashes(card: DatasetCard, source: str, files: dict[str, str]) -> None:
    """Compare the hashes an importer recorded with the card's expected hashes."""
    if source == "released":
        assert card.released is not None
        expected = {Path(name).name: value for name, value in card.released.sha256.items()}
        kind = "decompressed content"
    else:
        assert card.raw is not None
        expected = card.raw.sha256
        kind = "file"
    for file_name, actual in files.items():
        expected_hash = expected.get(file_name)
        if expected_hash and expected_hash.lower() != actual:
            raise DataError(
                f"Dataset {card.name!r}: {file_name} has {kind} SHA-256 {actual}, but the card "
                f"{card.path} expects {expected_hash}. The file was changed or replaced; restore the "
                "original or, if the new file is intended, update the card."
            )


def _read_cached_dataset(path: Path) -> Dataset | None:
    """Read a dataset cache file; return None when it is unreadable or of another format."""
    try:
        return load_stored_dataset(path)
    except CACHE_READ_ERRORS as error:
        logger.warning(
            "Dataset cache file %s is unreadable (%s: %s); rebuilding it.",
            path, type(error).__name__, error,
        )
        return None


def _import_released(card: DatasetCard) -> Dataset:
    released = card.released
    assert released is not None
    minimum = max(card.processing.k_core, 1)
    if released.format == "mql4grec":
        return import_mql4grec(
            card.name,
            released.path(released.files["inter"]),
            released.path(released.files["item2id"]),
            [
                CodeFileRequest(
                    modality=spec.modality,
                    path=released.path(spec.file),
                    codebook_size=spec.codebook_size,
                )
                for spec in released.codes
            ],
            min_length=minimum,
        )
    if released.codes:
        raise DataError(
            f"{card.path}: code files are only supported for the mql4grec format, not "
            f"{released.format!r}; remove [released.codes]."
        )
    if released.format == "user_sequence":
        return import_user_sequence(
            card.name, released.path(released.files["user_sequence"]), min_length=minimum
        )
    path = released.path(released.files["inter"])
    table = read_atomic_file(path)
    if table.column_index("item_id_list") is not None:
        return import_recbole_sequential(
            card.name, [path], max_history_items=card.processing.max_history_items
        )
    return import_recbole_interactions(
        card.name, path, repeat_policy=card.processing.repeat_policy
    )


def _import_raw(card: DatasetCard, paths: list[Path], stored_hashes: dict[str, str]) -> Dataset:
    # Raw files are verified before processing, which takes minutes for large categories.
    _verify_hashes(card, "raw", stored_hashes)
    metadata_path = paths[1] if len(paths) > 1 else None
    return load_raw_amazon(
        card.name, paths[0], metadata_path, card.processing, file_hashes=stored_hashes
    )


def _processing_record(card: DatasetCard, source: str, imported: dict[str, Any]) -> dict[str, Any]:
    if source == "released":
        assert card.released is not None
        origin = card.released.provenance
    else:
        assert card.raw is not None
        origin = card.raw.base_url
    return {
        "card": card.name,
        "category": card.category,
        "year": card.year,
        "source": source,
        "format": imported.get("format"),
        "origin": origin,
        "settings": card.processing.as_dict(),
        "files": imported.get("files", {}),
        "counts": imported.get("counts", {}),
        "loader_version": LOADER_VERSION,
    }


def load_dataset(
    name: str | DatasetCard,
    *,
    source: str | None = None,
    data_dir: Path | str | None = None,
    raw_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
) -> Dataset:
    """Load a dataset by card name (or card).

    Args:
        name: card name, e.g. "instruments", or a card from `list_datasets`.
        source: "released" or "raw"; None uses the card's default_source.
        data_dir: the datasets folder with the cards; None uses CLAIRO_BENCH_DATASETS_DIR or the
            repository's datasets/ folder.
        raw_dir: root folder of raw downloads (files in <raw_dir>/<name>/); None uses
            CLAIRO_BENCH_RAW_DIR or raw/ inside the datasets folder.
        cache_dir: cache folder for parsed datasets; None uses CLAIRO_BENCH_CACHE_DIR, and
            without it nothing is cached.

    Raises:
        DataError: unknown name or source, missing files, hash mismatch, or invalid content.
    """
    card = name if isinstance(name, DatasetCard) else load_card(name, data_dir)
    chosen = card.resolve_source(source)
    raw_root = Path(raw_dir) if raw_dir is not None else None
    paths = released_paths(card) if chosen == "released" else raw_paths(card, raw_root)
    _require_files(card, chosen, paths)

    cache_folder = _resolve_cache_dir(cache_dir)
    stored_hashes = (
        {path.name: file_sha256(path) for path in paths}
        if cache_folder is not None or chosen == "raw"
        else {}
    )
    cache_path = None
    if cache_folder is not None:
        key = _cache_key(card, chosen, stored_hashes)
        cache_path = cache_folder / "datasets" / f"{card.name}-{chosen}-{key}.npz"
        if cache_path.is_file():
            cached = _read_cached_dataset(cache_path)
            if cached is not None:
                logger.info("Dataset cache hit: %s", cache_path)
                return cached

    if chosen == "released":
        imported = _import_released(card)
        _verify_hashes(card, chosen, imported.processing.get("files", {}))
    else:
        imported = _import_raw(card, paths, stored_hashes)
    dataset = Dataset(
        name=card.name,
        item_ids=imported.item_ids,
        user_ids=imported.user_ids,
        sequences=imported.sequences,
        codes=imported.codes,
        item_meta=imported.item_meta,
        processing=_processing_record(card, chosen, imported.processing),
    )
    logger.info(
        "Loaded %s (%s): %d users, %d items, %d interactions.",
        card.name, chosen, dataset.n_users, dataset.n_items, dataset.n_interactions,
    )
    if cache_path is not None:
        save_dataset(dataset, cache_path)
        logger.info("Dataset cached: %s", cache_path)
    return dataset


def load_reference_split(
    name: str | DatasetCard, *, data_dir: Path | str | None = None
) -> dict[str, SequentialRows]:
    """Read the released split files of a card (stage -> rows), verifying their hashes."""
    card = name if isinstance(name, DatasetCard) else load_card(name, data_dir)
    if card.released is None or not card.released.reference_split:
        raise DataError(
            f"Dataset {card.name!r} has no [released.reference_split] in {card.path}."
        )
    stages = {}
    for stage, file_name in card.released.reference_split.items():
        path = card.released.path(file_name)
        rows = read_sequential_rows(path)
        expected = card.released.sha256.get(file_name)
        if expected and expected.lower() != rows.text_file.sha256:
            raise DataError(
                f"{path} has decompressed SHA-256 {rows.text_file.sha256}, but {card.path} "
                f"expects {expected}; restore the original file."
            )
        stages[stage] = rows
    return stages

