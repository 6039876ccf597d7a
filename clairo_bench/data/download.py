"""Fetching the raw files that a dataset card lists.

Downloads go to `<file>.part` and resume with an HTTP Range request when a partial file exists.
A finished file is checked against the card's SHA-256, when the card has one, and then renamed
into place. Before any transfer the host is probed with a short connect timeout. A machine
without network therefore fails at once, with a message that lists which files to place where.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from clairo_bench.data.cards import DatasetCard, RawFile
from clairo_bench.data.files import file_sha256

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 60.0

# Called with (file name, bytes present so far, total bytes or None when the server sends no
# length) after every chunk and once before the transfer starts.
ProgressCallback = Callable[[str, int, int | None], None]


class DownloadError(RuntimeError):
    """A download failed: HTTP error, checksum mismatch, or an unusable local file."""


class NetworkUnavailableError(DownloadError):
    """The host of a raw file cannot be reached; the message names where to place the files."""


@dataclass(frozen=True)
class DownloadResult:
    """Outcome for one file.

    Attributes:
        path: the final file.
        sha256: hex SHA-256 of the file as stored.
        verified: whether the card had a hash and it matched.
        skipped: whether the file already existed, so nothing was transferred.
        resumed_from_bytes: size of the partial file the transfer continued from (0 if none).
    """

    path: Path
    sha256: str
    verified: bool
    skipped: bool
    resumed_from_bytes: int


def manual_placement(card: DatasetCard, raw_dir: Path | None = None) -> str:
    """Describe, one line per file, which URL to fetch and where to put it."""
    assert card.raw is not None
    folder = card.raw_dir(raw_dir)
    return "\n".join(f"  {raw_file.url}\n    -> {folder / raw_file.file_name}"
                     for raw_file in card.raw.files())


def _probe_target(url: str) -> tuple[str, int]:
    """Return the (host, port) a request for `url` connects to first, honouring proxy settings."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return proxy_parts.hostname or "", proxy_parts.port or 80
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def check_reachable(url: str, connect_timeout_s: float) -> None:
    """Open and close a TCP connection to the host of `url`; raise OSError if that fails."""
    host, port = _probe_target(url)
    with socket.create_connection((host, port), timeout=connect_timeout_s):
        pass


def _content_range_start(header: str | None) -> int | None:
    # "bytes 1000-1999/2000" -> 1000
    if not header or not header.startswith("bytes "):
        return None
    start, _, _ = header[len("bytes "):].partition("-")
    return int(start) if start.isdigit() else None


def _content_range_total(header: str | None) -> int | None:
    if not header or "/" not in header:
        return None
    total = header.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None


def _transfer(
    url: str,
    part: Path,
    *,
    read_timeout_s: float,
    progress: ProgressCallback | None,
    name: str,
) -> int:
    """Append the rest of `url` to `part`; return the byte count the transfer resumed from."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "clairo-bench"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=read_timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            total = _content_range_total(error.headers.get("Content-Range"))
            if total == offset:
                logger.info("%s: the partial file is already complete (%d bytes).", part, offset)
                return offset
            logger.warning("%s: the server rejected resuming at byte %d; starting over.", part, offset)
            part.unlink()
            return _transfer(url, part, read_timeout_s=read_timeout_s, progress=progress, name=name)
        raise DownloadError(
            f"Downloading {url} failed with HTTP {error.code} {error.reason}; check [raw] "
            "base_url and the file names in the dataset card."
        ) from error
    with response:
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                raise DownloadError(
                    f"{url}: asked to resume at byte {offset}, but the server sent a range that "
                    f"starts at {start}; delete {part} and run the download again."
                )
            mode = "ab"
        else:
            if offset:
                logger.warning("%s: the server ignored the Range request; starting over.", url)
            offset = 0
            mode = "wb"
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        done = offset
        if progress:
            progress(name, done, total)
        with open(part, mode) as handle:
            while chunk := response.read(CHUNK_BYTES):
                handle.write(chunk)
                done += len(chunk)
                if progress:
                    progress(name, done, total)
    if total is not None and done != total:
        raise DownloadError(
            f"{url}: the connection closed after {done} of {total} bytes; run the download "
            f"again to resume from {part}."
        )
    return offset


def download_file(
    raw_file: RawFile,
    destination: Path,
    *,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    progress: ProgressCallback | None = None,
) -> DownloadResult:
    """Fetch one file into `destination`, resuming from `<destination>.part` if it exists.

    An existing `destination` is kept when it matches the expected hash (or when none is
    declared). Raises DownloadError on HTTP errors, hash mismatches and truncated transfers.
    """
    destination = Path(destination)
    if destination.exists():
        actual = file_sha256(destination)
        if raw_file.sha256 and actual != raw_file.sha256.lower():
            raise DownloadError(
                f"{destination} exists but its SHA-256 is {actual}, not {raw_file.sha256} as the "
                "card expects; delete it to download it again."
            )
        logger.info("%s already present; skipped.", destination)
        return DownloadResult(destination, actual, bool(raw_file.sha256), True, 0)

    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    resumed_from = _transfer(
        raw_file.url, part, read_timeout_s=read_timeout_s, progress=progress,
        name=raw_file.file_name,
    )
    digest = hashlib.sha256()
    with open(part, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    actual = digest.hexdigest()
    if raw_file.sha256 and actual != raw_file.sha256.lower():
        part.unlink()
        raise DownloadError(
            f"{raw_file.url}: downloaded SHA-256 {actual} differs from the card's "
            f"{raw_file.sha256}; the partial file was deleted. Run the download again, and if the "
            "mismatch stays, the published file has changed: check it and update the card."
        )
    os.replace(part, destination)
    if not raw_file.sha256:
        logger.info("%s: SHA-256 %s (the card declares none).", destination, actual)
    return DownloadResult(destination, actual, bool(raw_file.sha256), False, resumed_from)


def download_raw(
    card: DatasetCard,
    *,
    raw_dir: Path | None = None,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    progress: ProgressCallback | None = None,
) -> list[DownloadResult]:
    """Fetch every raw file of a card into `card.raw_dir(raw_dir)`.

    Raises NetworkUnavailableError at once when the host cannot be reached within
    `connect_timeout_s`, and DownloadError for other failures.
    """
    if card.raw is None:
        raise DownloadError(
            f"Dataset {card.name!r} has no [raw] source in {card.path}; only raw files can be "
            "downloaded."
        )
    folder = card.raw_dir(raw_dir)
    pending = [f for f in card.raw.files() if not (folder / f.file_name).exists()]
    if pending:
        try:
            check_reachable(pending[0].url, connect_timeout_s)
        except OSError as error:
            raise NetworkUnavailableError(
                f"Cannot reach {urlsplit(pending[0].url).netloc} ({error}). Without network "
                f"access, fetch the files of {card.name!r} on another machine and place them "
                f"here:\n{manual_placement(card, raw_dir)}"
            ) from error
    results = []
    for raw_file in card.raw.files():
        try:
            results.append(
                download_file(
                    raw_file,
                    folder / raw_file.file_name,
                    read_timeout_s=read_timeout_s,
                    progress=progress,
                )
            )
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise NetworkUnavailableError(
                f"Downloading {raw_file.url} failed: {error}. Run the download again to resume, "
                f"or place the files by hand:\n{manual_placement(card, raw_dir)}"
            ) from error
    return results
