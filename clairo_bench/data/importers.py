"""Importers for processed datasets that other projects released.

Supported layouts:
- MQL4GRec / LC-Rec: X.inter.json (`{"<user idx>": [item idx, ...]}`, chronological),
  X.item2id (`ASIN<TAB>item idx` lines) and X.index*.json semantic code files
  (`{"<item idx>": ["<a_137>", "<b_112>", ...]}`; lowercase prefixes are text codes, uppercase
  prefixes image codes). Zhai et al., "Multimodal Quantitative Language for Generative
  Recommendation", ICLR 2025.
- P5 / S3Rec user_sequence.txt: one `USER ITEM ITEM ...` line per user, chronological.
- RecBole atomic .inter files: a TSV whose header types each column (`user_id:token`), either
  one interaction per row (`user_id:token item_id:token timestamp:float`) or the sequential
  variant (`user_id:token item_id_list:token_seq item_id:token`).

Every file is joined on identifiers named in the files (item idx, ASIN, user id), never on row
positions. Each importer returns a Dataset whose `processing` lists the files read with the
SHA-256 of their decompressed content and the count of every policy applied.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clairo_bench.data.dataset import DataError, Dataset, ItemCodes
from clairo_bench.data.files import TextFile, parse_json, read_text
from clairo_bench.data.interactions import (
    ITEM,
    TIMESTAMP,
    USER,
    apply_repeat_policy,
    build_sequences,
    order_interactions,
    sort_identifiers,
)

logger = logging.getLogger(__name__)

_CODE_TOKEN = re.compile(r"<([A-Za-z])_(\d+)>")


@dataclass
class ImportReport:
    """Files read and policy counts of one import; becomes part of Dataset.processing."""

    format: str
    files: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add_file(self, text_file: TextFile) -> None:
        self.files[text_file.path.name] = text_file.sha256

    def count(self, key: str, value: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + int(value)

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.format, "files": dict(self.files), "counts": dict(self.counts)}


def _drop_empty_sequences(
    user_ids: list[str], sequences: list[np.ndarray], path: Path, report: ImportReport
) -> tuple[list[str], list[np.ndarray]]:
    non_empty = [(user, sequence) for user, sequence in zip(user_ids, sequences) if len(sequence)]
    dropped = len(user_ids) - len(non_empty)
    report.count("dropped_empty_users", dropped)
    if dropped:
        logger.warning("%s: dropped %d users with no interactions.", path, dropped)
    return [user for user, _ in non_empty], [sequence for _, sequence in non_empty]


def _count_repeats(sequences: list[np.ndarray], path: Path, report: ImportReport) -> None:
    repeats = sum(len(sequence) - len(np.unique(sequence)) for sequence in sequences)
    report.count("repeated_interactions", repeats)
    if repeats:
        logger.warning(
            "%s: %d interactions repeat an item already in the same user's sequence; "
            "they are kept as released.",
            path, repeats,
        )


def _count_short_sequences(
    sequences: list[np.ndarray], path: Path, report: ImportReport, minimum: int
) -> None:
    short = sum(1 for sequence in sequences if len(sequence) < minimum)
    report.count("users_below_min_length", short)
    if short:
        logger.warning(
            "%s: %d users have fewer than %d interactions; they are kept, and the split drops "
            "those below 3.",
            path, short, minimum,
        )


def read_item2id(path: Path) -> tuple[dict[str, int], TextFile]:
    """Read `ASIN<TAB>item idx` lines into {ASIN: item idx}."""
    text_file = read_text(path)
    item_to_index: dict[str, int] = {}
    index_to_item: dict[int, str] = {}
    for line_number, line in enumerate(text_file.text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[1].strip().isdigit():
            raise DataError(
                f"{path}, line {line_number}: expected 'ASIN<TAB>item index', got {line!r}. "
                "Fix or re-copy the file."
            )
        item_id, index = fields[0].strip(), int(fields[1])
        if item_id in item_to_index:
            raise DataError(
                f"{path}, line {line_number}: item {item_id!r} is listed twice (indices "
                f"{item_to_index[item_id]} and {index}); remove the duplicate line."
            )
        if index in index_to_item:
            raise DataError(
                f"{path}, line {line_number}: item index {index} is given to both "
                f"{index_to_item[index]!r} and {item_id!r}; the file is damaged."
            )
        item_to_index[item_id] = index
        index_to_item[index] = item_id
    if not item_to_index:
        raise DataError(f"{path} lists no items; the file is empty or truncated.")
    return item_to_index, text_file


def read_inter_json(path: Path) -> tuple[dict[str, list[int]], TextFile]:
    """Read `{"<user idx>": [item idx, ...]}` with chronological item lists."""
    text_file = read_text(path)
    document = parse_json(text_file)
    if not isinstance(document, dict):
        raise DataError(
            f"{path} must contain a JSON object mapping user ids to item lists, "
            f"got {type(document).__name__}."
        )
    histories: dict[str, list[int]] = {}
    for user_id, items in document.items():
        if not isinstance(items, list) or not all(
            isinstance(item, int) and not isinstance(item, bool) for item in items
        ):
            raise DataError(
                f"{path}: user {user_id!r} must map to a list of integer item indices, "
                f"got {str(items)[:80]}. Fix or re-copy the file."
            )
        histories[user_id] = items
    return histories, text_file


@dataclass(frozen=True)
class CodeFile:
    """Semantic codes parsed from an X.index*.json file.

    Attributes:
        modality: "text" for lowercase prefixes (<a_..>), "image" for uppercase (<A_..>).
        codes: code values of each item key, one per level.
        text_file: the file read.
    """

    modality: str
    codes: dict[str, list[int]]
    text_file: TextFile

    @property
    def path(self) -> Path:
        return self.text_file.path


def read_code_file(path: Path) -> CodeFile:
    """Parse a semantic code file; every item must have the same levels a, b, c, ... in order."""
    text_file = read_text(path)
    document = parse_json(text_file)
    if not isinstance(document, dict) or not document:
        raise DataError(
            f"{path} must contain a non-empty JSON object mapping item indices to code tokens."
        )
    codes: dict[str, list[int]] = {}
    detected_case: str | None = None
    n_levels: int | None = None
    first_item: str | None = None
    for item_key, tokens in document.items():
        if not isinstance(tokens, list) or not tokens:
            raise DataError(
                f"{path}: item {item_key!r} must map to a non-empty list of tokens like "
                f"'<a_12>', got {tokens!r}."
            )
        if n_levels is None:
            n_levels, first_item = len(tokens), item_key
        elif len(tokens) != n_levels:
            raise DataError(
                f"{path}: item {item_key!r} has {len(tokens)} code levels but item "
                f"{first_item!r} has {n_levels}; every item needs the same number of levels. "
                "Regenerate the code file."
            )
        values = []
        for level, token in enumerate(tokens):
            match = _CODE_TOKEN.fullmatch(token) if isinstance(token, str) else None
            if match is None:
                raise DataError(
                    f"{path}: item {item_key!r} has the malformed code token {token!r}; "
                    "expected '<letter_number>' such as '<a_12>'."
                )
            letter, value = match.group(1), int(match.group(2))
            case = "lower" if letter.islower() else "upper"
            expected_letter = chr(ord("a") + level)
            if case == "upper":
                expected_letter = expected_letter.upper()
            if letter != expected_letter:
                raise DataError(
                    f"{path}: item {item_key!r} level {level} has the unknown prefix {letter!r} in "
                    f"{token!r}; level {level} must use {expected_letter!r}. The file mixes code "
                    "layouts or is damaged; regenerate it."
                )
            if detected_case is None:
                detected_case = case
            elif case != detected_case:
                raise DataError(
                    f"{path}: item {item_key!r} uses {case}case prefix {token!r} but earlier items "
                    f"use {detected_case}case; one file must hold one modality (lowercase = text, "
                    "uppercase = image)."
                )
            values.append(value)
        codes[str(item_key)] = values
    modality = "text" if detected_case == "lower" else "image"
    return CodeFile(modality=modality, codes=codes, text_file=text_file)


def align_codes(
    code_file: CodeFile,
    item_keys: list[str],
    item_ids: list[str],
    *,
    modality: str,
    codebook_size: int | None,
) -> ItemCodes:
    """Arrange codes by item index, joining on the item key each row is stored under.

    `item_keys[i]` is the key of item index i in the code file (its released item idx) and
    `item_ids[i]` its ASIN, used in messages. Raises DataError for an item missing from the file,
    a key the dataset does not know, a modality other than the card's, or a code outside the
    codebook.
    """
    path = code_file.path
    if code_file.modality != modality:
        raise DataError(
            f"{path} contains {code_file.modality} codes (lowercase prefixes are text, uppercase "
            f"are image), but the card declares it as {modality} codes; move it to [released.codes.{code_file.modality}]."
        )
    known = set(item_keys)
    unknown = [key for key in code_file.codes if key not in known]
    if unknown:
        raise DataError(
            f"{path} has codes for {len(unknown)} item(s) the dataset does not contain, first "
            f"{unknown[0]!r}; the code file belongs to another release or item2id is incomplete."
        )
    rows = []
    for index, key in enumerate(item_keys):
        values = code_file.codes.get(key)
        if values is None:
            raise DataError(
                f"{path} has no codes for item {key!r} ({item_ids[index]}); every item needs "
                "codes. Regenerate the code file for this release."
            )
        rows.append(values)
    codes = np.asarray(rows, dtype=np.int64)
    observed_size = int(codes.max()) + 1 if codes.size else 0
    if codebook_size is None:
        codebook_size = observed_size
        logger.warning(
            "%s: the card declares no codebook_size; using the largest code + 1 = %d. "
            "Declare it in the card, because a codebook may have unused trailing entries.",
            path, codebook_size,
        )
    elif observed_size > codebook_size:
        raise DataError(
            f"{path} contains code {observed_size - 1}, outside the declared codebook_size "
            f"{codebook_size}; fix codebook_size in the card."
        )
    return ItemCodes(modality=modality, codes=codes, codebook_size=codebook_size, source=path.name)


@dataclass(frozen=True)
class CodeFileRequest:
    """A code file to import and how the card declares it."""

    modality: str
    path: Path
    codebook_size: int | None


def import_mql4grec(
    name: str,
    inter_path: Path,
    item2id_path: Path,
    code_files: tuple[CodeFileRequest, ...] | list[CodeFileRequest] = (),
    *,
    min_length: int = 1,
) -> Dataset:
    """Import an MQL4GRec / LC-Rec release; item index i is the release's item idx order.

    Item indices in the release need not be contiguous: they are mapped to 0..n-1 in ascending
    order. Users without interactions are dropped and counted; items listed in item2id that no
    user interacted with are kept and counted. `min_length` only sets the warning threshold
    for short sequences.
    """
    report = ImportReport(format="mql4grec")
    item_to_index, item2id_file = read_item2id(item2id_path)
    report.add_file(item2id_file)
    histories, inter_file = read_inter_json(inter_path)
    report.add_file(inter_file)

    release_indices = sorted(item_to_index.values())
    dense_index = {release: dense for dense, release in enumerate(release_indices)}
    index_to_item = {index: item_id for item_id, index in item_to_index.items()}
    item_ids = [index_to_item[release] for release in release_indices]
    item_keys = [str(release) for release in release_indices]

    user_ids = sort_identifiers(histories.keys())
    sequences = []
    for user_id in user_ids:
        dense = []
        for item in histories[user_id]:
            if item not in dense_index:
                raise DataError(
                    f"{inter_path}: user {user_id!r} refers to item index {item}, which "
                    f"{item2id_path} does not list; both files must come from the same release."
                )
            dense.append(dense_index[item])
        sequences.append(np.asarray(dense, dtype=np.int64))
    user_ids, sequences = _drop_empty_sequences(user_ids, sequences, inter_path, report)
    _count_repeats(sequences, inter_path, report)
    _count_short_sequences(sequences, inter_path, report, min_length)

    interacted = np.zeros(len(item_ids), dtype=bool)
    for sequence in sequences:
        interacted[sequence] = True
    report.count("items_without_interactions", int((~interacted).sum()))
    if not interacted.all():
        logger.warning(
            "%s lists %d items that no user in %s interacted with; they stay in the catalogue.",
            item2id_path, int((~interacted).sum()), inter_path,
        )

    codes: dict[str, ItemCodes] = {}
    for request in code_files:
        if request.modality in codes:
            raise DataError(
                f"Two code files for modality {request.modality}: {codes[request.modality].source} "
                f"and {request.path.name}; keep one."
            )
        code_file = read_code_file(request.path)
        report.add_file(code_file.text_file)
        codes[request.modality] = align_codes(
            code_file,
            item_keys,
            item_ids,
            modality=request.modality,
            codebook_size=request.codebook_size,
        )

    return Dataset(
        name=name,
        item_ids=item_ids,
        user_ids=user_ids,
        sequences=sequences,
        codes=codes,
        processing=report.as_dict(),
    )


def read_user_sequence(path: Path) -> tuple[list[tuple[str, list[str]]], TextFile]:
    """Read `USER ITEM ITEM ...` lines (whitespace separated) in file order."""
    text_file = read_text(path)
    rows: list[tuple[str, list[str]]] = []
    first_line: dict[str, int] = {}
    for line_number, line in enumerate(text_file.text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        user_id = fields[0]
        if user_id in first_line:
            raise DataError(
                f"{path}, line {line_number}: user {user_id!r} already appeared on line "
                f"{first_line[user_id]}; each user needs exactly one line. Merge or remove the "
                "duplicate."
            )
        first_line[user_id] = line_number
        rows.append((user_id, fields[1:]))
    if not rows:
        raise DataError(f"{path} contains no user lines; the file is empty or truncated.")
    return rows, text_file


def import_user_sequence(name: str, path: Path, *, min_length: int = 1) -> Dataset:
    """Import a P5/S3Rec user_sequence.txt.

    Item indices follow the sorted item ids, not the order of first appearance: first-appearance
    ids correlate with time and leak it when ids are used as features. Users are sorted by id.
    """
    report = ImportReport(format="user_sequence")
    rows, text_file = read_user_sequence(path)
    report.add_file(text_file)
    item_ids = sort_identifiers({item for _, items in rows for item in items})
    item_index = {item_id: index for index, item_id in enumerate(item_ids)}
    by_user = dict(rows)
    user_ids = sort_identifiers(by_user.keys())
    sequences = [
        np.asarray([item_index[item] for item in by_user[user_id]], dtype=np.int64)
        for user_id in user_ids
    ]
    user_ids, sequences = _drop_empty_sequences(user_ids, sequences, path, report)
    _count_repeats(sequences, path, report)
    _count_short_sequences(sequences, path, report, min_length)
    return Dataset(
        name=name,
        item_ids=item_ids,
        user_ids=user_ids,
        sequences=sequences,
        processing=report.as_dict(),
    )


_ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


@dataclass(frozen=True)
class AtomicTable:
    """A RecBole atomic file: typed columns of string fields.

    Attributes:
        columns: (name, type) of each column, type one of token, token_seq, float, float_seq.
        rows: the fields of each data row, as strings.
        text_file: the file read.
    """

    columns: list[tuple[str, str]]
    rows: list[list[str]]
    text_file: TextFile

    @property
    def path(self) -> Path:
        return self.text_file.path

    def column_index(self, name: str) -> int | None:
        for index, (column, _) in enumerate(self.columns):
            if column == name:
                return index
        return None


def read_atomic_file(path: Path) -> AtomicTable:
    """Read a RecBole atomic file (tab separated, header `name:type` per column)."""
    text_file = read_text(path)
    lines = text_file.text.splitlines()
    if not lines:
        raise DataError(f"{path} is empty; expected a header such as 'user_id:token\\titem_id:token'.")
    columns = []
    for header_field in lines[0].split("\t"):
        column, separator, column_type = header_field.strip().partition(":")
        if not separator or column_type not in _ATOMIC_TYPES:
            raise DataError(
                f"{path}: header field {header_field!r} must be 'name:type' with type one of "
                f"{', '.join(_ATOMIC_TYPES)}."
            )
        if any(column == declared for declared, _ in columns):
            raise DataError(
                f"{path}: the header declares column {column!r} twice, so it is unclear which "
                "one holds the data; remove or rename one of them."
            )
        columns.append((column, column_type))
    rows = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise DataError(
                f"{path}, line {line_number}: {len(fields)} tab-separated fields, but the header "
                f"declares {len(columns)}; the file is truncated or damaged."
            )
        for (column, column_type), value in zip(columns, fields):
            if column_type == "float":
                try:
                    number = float(value)
                except ValueError:
                    raise DataError(
                        f"{path}, line {line_number}: column {column} must be a number, "
                        f"got {value!r}."
                    ) from None
                # A NaN timestamp would leave the order of a user's interactions undefined.
                if not math.isfinite(number):
                    raise DataError(
                        f"{path}, line {line_number}: column {column} must be a finite number, "
                        f"got {value!r}; fix or remove the line."
                    )
        rows.append(fields)
    if not rows:
        raise DataError(
            f"{path} has a header but no data rows; the file is empty or truncated."
        )
    return AtomicTable(columns=columns, rows=rows, text_file=text_file)


def _require_column(table: AtomicTable, name: str) -> int:
    index = table.column_index(name)
    if index is None:
        raise DataError(
            f"{table.path} has no column {name!r}; found "
            f"{', '.join(f'{c}:{t}' for c, t in table.columns)}."
        )
    return index


def import_recbole_interactions(
    name: str, path: Path, *, repeat_policy: str = "keep_first"
) -> Dataset:
    """Import a RecBole interaction file (`user_id`, `item_id`, optional `timestamp`).

    Rows are ordered by (timestamp, item id) within each user. Without a timestamp column the
    file order is the chronological order. Repeated (user, item) pairs follow `repeat_policy`,
    and exact duplicate rows are removed by it as well (both are counted).
    """
    report = ImportReport(format="recbole")
    table = read_atomic_file(path)
    report.add_file(table.text_file)
    user_column = _require_column(table, "user_id")
    item_column = _require_column(table, "item_id")
    time_column = table.column_index("timestamp")
    if time_column is None:
        logger.warning("%s has no timestamp column; the file order is taken as chronological.", path)
        timestamps = np.arange(len(table.rows), dtype=np.float64)
    else:
        timestamps = np.asarray([float(row[time_column]) for row in table.rows], dtype=np.float64)
    frame = pd.DataFrame(
        {
            USER: [row[user_column] for row in table.rows],
            ITEM: [row[item_column] for row in table.rows],
            TIMESTAMP: timestamps,
        }
    )
    exact_duplicates = int(frame.duplicated().sum())
    report.count("duplicate_rows", exact_duplicates)
    if exact_duplicates:
        logger.warning("%s: %d rows duplicate another row exactly.", path, exact_duplicates)
    frame, removed = apply_repeat_policy(order_interactions(frame), repeat_policy)
    report.count("removed_repeats", removed)
    if removed:
        logger.info("%s: %s removed %d repeated interactions.", path, repeat_policy, removed)
    sequences = build_sequences(frame)
    return Dataset(
        name=name,
        item_ids=sequences.item_ids,
        user_ids=sequences.user_ids,
        sequences=sequences.sequences,
        processing=report.as_dict(),
    )


@dataclass(frozen=True)
class SequentialRows:
    """Rows of a sequential RecBole file: each user's (history, target) pairs in file order."""

    user_ids: list[str]
    histories: list[list[str]]
    targets: list[str]
    text_file: TextFile


def read_sequential_rows(path: Path) -> SequentialRows:
    """Read a file with columns user_id:token, item_id_list:token_seq, item_id:token."""
    table = read_atomic_file(path)
    user_column = _require_column(table, "user_id")
    history_column = _require_column(table, "item_id_list")
    item_column = _require_column(table, "item_id")
    return SequentialRows(
        user_ids=[row[user_column] for row in table.rows],
        histories=[row[history_column].split() for row in table.rows],
        targets=[row[item_column] for row in table.rows],
        text_file=table.text_file,
    )


def _reconstruct_sequence(
    user_id: str, pairs: list[tuple[tuple[str, ...], str]], max_history_items: int, paths: str
) -> list[str]:
    """Chain one user's (capped history, target) pairs into the full sequence.

    Each pair at position p has history s[max(0, p - cap):p]. Starting from the shortest history,
    the next pair is the one whose history equals the last `cap` items built so far.
    """
    by_history: dict[tuple[str, ...], str] = {}
    for history, target in pairs:
        if history in by_history and by_history[history] != target:
            raise DataError(
                f"{paths}: user {user_id!r} has the history {' '.join(history[-5:])} (last 5 "
                f"shown) with two targets, {by_history[history]!r} and {target!r}; the files "
                "disagree."
            )
        by_history[history] = target
    start = min(by_history, key=len)
    if len(start) >= max_history_items:
        raise DataError(
            f"{paths}: the shortest history of user {user_id!r} has {len(start)} items, at the "
            f"cap of {max_history_items}, so the start of the sequence is lost; add the training "
            "file, which holds the shortest prefixes."
        )
    sequence = list(start) + [by_history.pop(start)]
    while by_history:
        key = tuple(sequence[-max_history_items:])
        if key not in by_history:
            raise DataError(
                f"{paths}: user {user_id!r} has {len(by_history)} rows that do not continue the "
                f"sequence built from the others (length {len(sequence)}); the files are "
                "inconsistent or written with another history cap than "
                f"max_history_items={max_history_items}."
            )
        sequence.append(by_history.pop(key))
    return sequence


def import_recbole_sequential(
    name: str, paths: list[Path], *, max_history_items: int
) -> Dataset:
    """Rebuild full sequences from sequential RecBole files (e.g. X.train/.valid/.test.inter).

    `max_history_items` must be the cap the files were written with. Exact duplicate rows are
    removed and counted. Item and user indices follow the sorted ids.
    """
    report = ImportReport(format="recbole_sequential")
    by_user: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    rows_read = 0
    for path in paths:
        rows = read_sequential_rows(path)
        report.add_file(rows.text_file)
        rows_read += len(rows.targets)
        for user_id, history, target in zip(rows.user_ids, rows.histories, rows.targets):
            by_user.setdefault(user_id, []).append((tuple(history), target))
    names = ", ".join(str(path) for path in paths)
    duplicates = 0
    sequences_by_user: dict[str, list[str]] = {}
    for user_id, pairs in by_user.items():
        unique_pairs = list(dict.fromkeys(pairs))
        duplicates += len(pairs) - len(unique_pairs)
        sequences_by_user[user_id] = _reconstruct_sequence(
            user_id, unique_pairs, max_history_items, names
        )
    report.count("duplicate_rows", duplicates)
    if duplicates:
        logger.warning("%s: removed %d duplicate rows of %d.", names, duplicates, rows_read)
    item_ids = sort_identifiers({item for items in sequences_by_user.values() for item in items})
    item_index = {item_id: index for index, item_id in enumerate(item_ids)}
    user_ids = sort_identifiers(sequences_by_user.keys())
    sequences = [
        np.asarray([item_index[item] for item in sequences_by_user[user]], dtype=np.int64)
        for user in user_ids
    ]
    _count_repeats(sequences, Path(names), report)
    return Dataset(
        name=name,
        item_ids=item_ids,
        user_ids=user_ids,
        sequences=sequences,
        processing=report.as_dict(),
    )
