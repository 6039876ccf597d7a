"""Reading plain, gzip, xz and bzip2 data files with errors that name the file and the fix.

Every reader here turns decompression and decoding failures (a truncated download, a file that
is not gzip, invalid UTF-8) into `DataError`, so callers only handle one exception type.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from clairo_bench.data.dataset import DataError

# The exceptions that the stdlib decompressors raise for corrupt or truncated input:
# gzip.BadGzipFile and lzma.LZMAError for bad headers, EOFError for a missing end-of-stream
# marker, zlib.error for a damaged deflate stream, OSError for bzip2 "Invalid data stream".
# Permission and file-type errors are OSErrors too but are re-raised unchanged.
_DECOMPRESSION_ERRORS = (EOFError, lzma.LZMAError, zlib.error, OSError)
_ACCESS_ERRORS = (PermissionError, IsADirectoryError, FileNotFoundError)

_HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class TextFile:
    """Decoded content of a data file.

    Attributes:
        path: the file as stored (possibly compressed).
        text: the decompressed content, decoded as UTF-8.
        sha256: hex SHA-256 of the decompressed bytes, so a compressed copy of a published file
            has the same hash as the published file.
    """

    path: Path
    text: str
    sha256: str


def _open_binary(path: Path) -> BinaryIO:
    suffix = path.suffix.lower()
    if suffix == ".xz":
        return lzma.open(path, "rb")
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"Data file {path} not found; check the path or the dataset card.")


def _corrupt_file_error(path: Path, error: Exception) -> DataError:
    return DataError(
        f"Cannot decompress {path}: {error}. The file is corrupt or truncated; "
        "copy or download it again."
    )


def read_bytes(path: Path) -> bytes:
    """Read and decompress a whole file (decompression is chosen by suffix)."""
    path = Path(path)
    _require_file(path)
    try:
        with _open_binary(path) as handle:
            return handle.read()
    except _ACCESS_ERRORS:
        raise
    except _DECOMPRESSION_ERRORS as error:
        raise _corrupt_file_error(path, error) from error


def read_text(path: Path) -> TextFile:
    """Read, decompress and decode a UTF-8 file, hashing the decompressed bytes."""
    path = Path(path)
    data = read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path} is not valid UTF-8 at byte {error.start}; the file is damaged or in another "
            "encoding. Copy or download it again."
        ) from error
    return TextFile(path=path, text=text, sha256=hashlib.sha256(data).hexdigest())


def iter_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its newline) while decompressing on the fly."""
    path = Path(path)
    _require_file(path)
    line_number = 0
    try:
        with _open_binary(path) as binary:
            with io.TextIOWrapper(binary, encoding="utf-8", newline=None) as handle:
                for line_number, line in enumerate(handle, start=1):
                    yield line_number, line.rstrip("\n")
    except _ACCESS_ERRORS:
        raise
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path} is not valid UTF-8 near line {line_number + 1}; the file is damaged or in "
            "another encoding. Copy or download it again."
        ) from error
    except _DECOMPRESSION_ERRORS as error:
        raise DataError(
            f"Cannot decompress {path} after line {line_number}: {error}. The file is corrupt or "
            "truncated; copy or download it again."
        ) from error


def parse_json(text_file: TextFile) -> Any:
    """Parse a JSON document, rejecting duplicate object keys (json.loads keeps the last one)."""

    def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise DataError(
                    f"{text_file.path} contains the key {key!r} twice; each user or item may "
                    "appear once. Remove the duplicate entry or re-create the file."
                )
            result[key] = value
        return result

    try:
        return json.loads(text_file.text, object_pairs_hook=reject_duplicates)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{text_file.path} is not valid JSON at line {error.lineno}, column {error.colno}: "
            f"{error.msg}. The file is truncated or damaged; copy or download it again."
        ) from error
    except RecursionError:
        raise DataError(
            f"{text_file.path} nests JSON arrays or objects too deeply to parse; the file is "
            "damaged. Copy or download it again."
        ) from None


def file_sha256(path: Path) -> str:
    """Hash the stored bytes of a file (compressed files are not decompressed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()

