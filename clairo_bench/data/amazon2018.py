"""Loader for raw Amazon review and metadata files (Amazon Review Data 2018: Ni, Li and McAuley,
"Justifying Recommendations using Distantly-Labeled Reviews and Fine-Grained Aspects",
EMNLP 2019; the 2014 release: McAuley et al., SIGIR 2015).

Input formats:
- reviews: gzipped (or plain) JSON lines with reviewerID, asin and unixReviewTime, as in the
  k-core "_5.json.gz" files of both releases. A file name ending in .csv or .csv.gz is read as a
  ratings-only CSV without header (`item,user,rating,timestamp`), the input MQL4GRec used.
- metadata: one record per line, either JSON (2018 metaFiles2) or a Python dict literal (2014
  files and the first 2018 dumps); both are read. 2018 fields: title, brand, category (list),
  description (list or string), imageURL / imageURLHighRes (lists). 2014 fields: title, brand,
  categories (list of lists), description (string), imUrl (string).

Processing order, each step counted in Dataset.processing["counts"]:
1. order each user's reviews by (unixReviewTime, asin), so ties never depend on row order;
2. apply the repeat policy (MQL4GRec keeps the first interaction of each user-item pair);
3. apply the missing-metadata policy to reviewed items absent from the metadata file;
4. if require_image, drop items whose metadata has no image URL;
5. k-core filtering, repeated until every user and item has at least k interactions.
Users and items are indexed in sorted id order.

NOTE: this loader has only run on files written by the tests. No real Amazon file could be
fetched here, so its output on the real Musical_Instruments files was never compared with the
17,112 users of MQL4GRec's release (which filtered by downloadable images, not by image URL).
"""

from __future__ import annotations

import ast
import html
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clairo_bench.data.cards import ProcessingSettings
from clairo_bench.data.dataset import DataError, Dataset, ItemMeta
from clairo_bench.data.files import file_sha256, iter_text_lines
from clairo_bench.data.interactions import (
    ITEM,
    TIMESTAMP,
    USER,
    apply_repeat_policy,
    build_sequences,
    kcore_filter,
    order_interactions,
)

logger = logging.getLogger(__name__)

# Finds the asin of a metadata line without parsing it, so lines of unreviewed items are skipped
# cheaply (metadata files hold far more items than the 5-core review files).
_ASIN_FIELD = re.compile(r"""["']asin["']\s*:\s*["']([^"']+)["']""")
_HTML_TAG = re.compile(r"<[^>]*>")
_WHITESPACE = re.compile(r"\s+")
_MISSING_EXAMPLES = 5
# Timestamps are stored as int64 Unix seconds.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _parse_record(line: str, path: Path, line_number: int) -> dict[str, Any]:
    """Parse one JSON or Python-literal dict line."""
    try:
        record = json.loads(line)
    except RecursionError:
        raise DataError(
            f"{path}, line {line_number}: the record nests lists or dicts too deeply to "
            "parse, so the file is damaged; download it again."
        ) from None
    except json.JSONDecodeError as json_error:
        try:
            record = ast.literal_eval(line)
        # TypeError: a dict literal with an unhashable key, such as {[1]: 2}.
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise DataError(
                f"{path}, line {line_number}: not a JSON object or Python dict literal "
                f"({json_error.msg} at column {json_error.colno}). The file is truncated or "
                "damaged; download it again."
            ) from None
    if not isinstance(record, dict):
        raise DataError(
            f"{path}, line {line_number}: expected one record (a dict) per line, "
            f"got {type(record).__name__}."
        )
    return record


def read_reviews(path: Path) -> pd.DataFrame:
    """Read reviews into a frame with columns user, item, timestamp (Unix seconds), file order."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        return _read_rating_csv(path)
    users, items, timestamps = [], [], []
    for line_number, line in iter_text_lines(path):
        if not line.strip():
            continue
        record = _parse_record(line, path, line_number)
        try:
            user, item, timestamp = record["reviewerID"], record["asin"], record["unixReviewTime"]
        except KeyError as error:
            raise DataError(
                f"{path}, line {line_number}: review has no {error.args[0]!r} field; a review "
                "needs reviewerID, asin and unixReviewTime. Use an Amazon review file."
            ) from None
        if not isinstance(timestamp, int) or isinstance(timestamp, bool):
            raise DataError(
                f"{path}, line {line_number}: unixReviewTime must be an integer, "
                f"got {timestamp!r}."
            )
        _check_timestamp_range(timestamp, "unixReviewTime", path, line_number)
        users.append(str(user))
        items.append(str(item))
        timestamps.append(timestamp)
    if not users:
        raise DataError(f"{path} contains no reviews; the file is empty or truncated.")
    return pd.DataFrame(
        {USER: users, ITEM: items, TIMESTAMP: np.asarray(timestamps, dtype=np.int64)}
    )


def _check_timestamp_range(timestamp: int, field: str, path: Path, line_number: int) -> None:
    if not _INT64_MIN <= timestamp <= _INT64_MAX:
        raise DataError(
            f"{path}, line {line_number}: {field} {timestamp} is outside the 64-bit integer "
            "range; it must be a time in Unix seconds. The file is damaged or not an Amazon "
            "review file."
        )


def _read_rating_csv(path: Path) -> pd.DataFrame:
    users, items, timestamps = [], [], []
    for line_number, line in iter_text_lines(path):
        if not line.strip():
            continue
        fields = line.split(",")
        # isdecimal, unlike isdigit, accepts only characters that int() can parse.
        if len(fields) == 4 and not fields[3].strip().isdecimal() and not users:
            raise DataError(
                f"{path}, line {line_number}: the first line {line[:80]!r} has no integer "
                "timestamp in its fourth field. A ratings CSV has no header line: every line is "
                "'item,user,rating,timestamp' with the timestamp in Unix seconds. If this line "
                "is a header, remove it."
            )
        if len(fields) != 4 or not fields[3].strip().isdecimal():
            raise DataError(
                f"{path}, line {line_number}: expected 'item,user,rating,timestamp' with an "
                f"integer timestamp in Unix seconds, got {line[:80]!r}."
            )
        timestamp = int(fields[3])
        _check_timestamp_range(timestamp, "timestamp", path, line_number)
        items.append(fields[0])
        users.append(fields[1])
        timestamps.append(timestamp)
    if not users:
        raise DataError(f"{path} contains no ratings; the file is empty or truncated.")
    return pd.DataFrame(
        {USER: users, ITEM: items, TIMESTAMP: np.asarray(timestamps, dtype=np.int64)}
    )


def _clean_text(value: Any) -> str | None:
    if isinstance(value, list):
        value = " ".join(str(part) for part in value)
    if not isinstance(value, str):
        return None
    text = _HTML_TAG.sub(" ", html.unescape(value))
    text = _WHITESPACE.sub(" ", text).strip()
    return text or None


def _categories(record: dict[str, Any]) -> tuple[str, ...]:
    raw = record.get("category")
    if raw is None:
        # The 2014 files store several category paths as a list of lists.
        paths = record.get("categories") or []
        raw = [
            name
            for category_path in paths
            if isinstance(category_path, list)
            for name in category_path
        ]
    if not isinstance(raw, list):
        return ()
    names: list[str] = []
    for entry in raw:
        # Some 2018 records end their category list with HTML fragments; they are no categories.
        if not isinstance(entry, str) or "<" in entry:
            continue
        cleaned = _clean_text(entry)
        if cleaned and cleaned not in names:
            names.append(cleaned)
    return tuple(names)


def _image_url(record: dict[str, Any]) -> str | None:
    for key in ("imageURLHighRes", "imageURL"):
        urls = record.get(key)
        if isinstance(urls, list):
            for url in urls:
                if isinstance(url, str) and url.strip():
                    return url.strip()
    url = record.get("imUrl")
    if isinstance(url, str) and url.strip():
        return url.strip()
    return None


def item_meta_from_record(record: dict[str, Any]) -> ItemMeta:
    """Build ItemMeta from one 2018 or 2014 metadata record (HTML unescaped, tags removed)."""
    return ItemMeta(
        title=_clean_text(record.get("title")),
        brand=_clean_text(record.get("brand")),
        categories=_categories(record),
        description=_clean_text(record.get("description")),
        image_url=_image_url(record),
    )


@dataclass(frozen=True)
class MetadataResult:
    """Metadata of the requested items.

    Attributes:
        items: ItemMeta by ASIN, for the requested ASINs found in the file.
        duplicate_lines: lines of a requested ASIN after its first line (ignored).
    """

    items: dict[str, ItemMeta]
    duplicate_lines: int


def read_metadata(path: Path, asins: set[str] | None = None) -> MetadataResult:
    """Read metadata lines of the given ASINs (all when None); the first line of an ASIN wins."""
    path = Path(path)
    items: dict[str, ItemMeta] = {}
    duplicates = 0
    for line_number, line in iter_text_lines(path):
        if not line.strip():
            continue
        quick = _ASIN_FIELD.search(line)
        if quick is not None and asins is not None and quick.group(1) not in asins:
            continue
        record = _parse_record(line, path, line_number)
        asin = record.get("asin")
        if not isinstance(asin, str):
            raise DataError(
                f"{path}, line {line_number}: metadata record has no string 'asin' field; use an "
                "Amazon metadata file."
            )
        if asins is not None and asin not in asins:
            continue
        if asin in items:
            duplicates += 1
            continue
        items[asin] = item_meta_from_record(record)
    if duplicates:
        logger.warning("%s: ignored %d repeated metadata lines (the first line of an item wins).",
                       path, duplicates)
    return MetadataResult(items=items, duplicate_lines=duplicates)


def _drop_items(frame: pd.DataFrame, items: set[str]) -> pd.DataFrame:
    return frame[~frame[ITEM].isin(items).to_numpy()].reset_index(drop=True)


def load_raw_amazon(
    name: str,
    reviews_path: Path,
    metadata_path: Path | None,
    settings: ProcessingSettings,
    *,
    file_hashes: dict[str, str] | None = None,
) -> Dataset:
    """Process raw review and metadata files into a Dataset with item_meta filled.

    `file_hashes` are precomputed SHA-256 of the stored files by file name; missing entries are
    computed. Raises DataError for unreadable files, for missing metadata under the "error" policy, and
    when no interaction survives the filters.
    """
    reviews_path = Path(reviews_path)
    counts: dict[str, int] = {}
    known_hashes = file_hashes or {}

    def stored_hash(path: Path) -> str:
        return known_hashes.get(path.name) or file_sha256(path)

    files = {reviews_path.name: stored_hash(reviews_path)}

    frame = read_reviews(reviews_path)
    counts["review_rows"] = len(frame)
    frame, counts["removed_repeats"] = apply_repeat_policy(
        order_interactions(frame), settings.repeat_policy
    )
    reviewed = set(frame[ITEM].unique())

    if metadata_path is None:
        if settings.missing_metadata != "keep":
            raise DataError(
                f"Dataset {name!r} has no metadata file but missing_metadata = "
                f"{settings.missing_metadata!r}; add [raw] metadata to the card or set "
                "missing_metadata = \"keep\"."
            )
        metadata = MetadataResult(items={}, duplicate_lines=0)
    else:
        metadata_path = Path(metadata_path)
        files[metadata_path.name] = stored_hash(metadata_path)
        metadata = read_metadata(metadata_path, reviewed)
    counts["metadata_duplicate_lines"] = metadata.duplicate_lines

    missing = sorted(reviewed - set(metadata.items))
    counts["items_missing_metadata"] = len(missing)
    counts["interactions_missing_metadata"] = int(frame[ITEM].isin(missing).sum())
    if missing:
        examples = ", ".join(missing[:_MISSING_EXAMPLES])
        if settings.missing_metadata == "error":
            raise DataError(
                f"{metadata_path}: {len(missing)} reviewed items have no metadata (e.g. "
                f"{examples}); use the metadata file of the same category, or set "
                "missing_metadata = \"drop\" or \"keep\" in the card."
            )
        logger.warning(
            "%s: %d of %d reviewed items have no metadata (e.g. %s); policy %r.",
            metadata_path, len(missing), len(reviewed), examples, settings.missing_metadata,
        )
        if settings.missing_metadata == "drop":
            frame = _drop_items(frame, set(missing))

    counts["items_without_image"] = 0
    if settings.require_image:
        no_image = {
            item for item in frame[ITEM].unique()
            if metadata.items.get(item) is None or metadata.items[item].image_url is None
        }
        counts["items_without_image"] = len(no_image)
        if no_image:
            logger.info("Dropped %d items without an image URL (require_image).", len(no_image))
            frame = _drop_items(frame, no_image)

    kcore = kcore_filter(frame, settings.k_core)
    counts["kcore_rounds"] = kcore.rounds
    counts["kcore_removed_users"] = kcore.removed_users
    counts["kcore_removed_items"] = kcore.removed_items
    frame = kcore.frame
    if frame.empty:
        raise DataError(
            f"No interaction of {reviews_path} survives the filters of dataset {name!r} "
            f"(k_core={settings.k_core}, require_image={settings.require_image}); check the "
            "files and the card's [processing] settings."
        )
    logger.info(
        "%s: %d review rows -> %d interactions after %d k-core rounds.",
        reviews_path, counts["review_rows"], len(frame), kcore.rounds,
    )

    sequences = build_sequences(order_interactions(frame))
    item_meta = [metadata.items.get(item_id) for item_id in sequences.item_ids]
    return Dataset(
        name=name,
        item_ids=sequences.item_ids,
        user_ids=sequences.user_ids,
        sequences=sequences.sequences,
        item_meta=item_meta,
        processing={"format": "amazon_raw", "files": files, "counts": counts},
    )
