"""Item images: resumable download from metadata URLs into a folder keyed by item identifier.

Each item's image is stored as `<folder>/<name>.<ext>`, where name is the item identifier (an
ASIN) when it is a plain file name, else "id-" plus a SHA-1 of the identifier, and ext follows the
decoded image format. A download is kept only when PIL can decode it. Items whose file exists are
skipped, so an interrupted run resumes where it stopped. Permanent failures (HTTP 4xx other than
408 and 429, undecodable content) are recorded in `download_failures.json` with their URL and are
not retried until the URL changes or `retry_failed` is set.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from PIL import Image, UnidentifiedImageError

from clairo_bench.features.settings import ProgressCallback
from clairo_bench.io import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)

FAILURES_FILE = "download_failures.json"
# Largest accepted response; product photos are far smaller.
MAX_IMAGE_BYTES = 32 * 1024 * 1024
IMAGE_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
_LOOKUP_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".img")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_RETRYABLE_STATUS = {408, 429}
_USER_AGENT = "clairo-bench image fetcher"


@dataclass
class DownloadReport:
    """Outcome of one `download_images` call.

    Attributes:
        downloaded: items fetched and stored in this call.
        already_present: items whose file existed before the call.
        no_url: items without an http(s) image URL.
        failed: item identifier -> reason, for items still without an image after this call
            (including permanent failures recorded by an earlier call).
    """

    downloaded: int = 0
    already_present: int = 0
    no_url: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def missing(self) -> int:
        return self.no_url + len(self.failed)


class _PermanentFailure(Exception):
    pass


class _TransientFailure(Exception):
    pass


def image_file_stem(item_id: str) -> str:
    """Return the file name (without suffix) that stores `item_id`'s image."""
    if _PLAIN_NAME.match(item_id):
        return item_id
    return "id-" + hashlib.sha1(item_id.encode()).hexdigest()


def find_image_file(folder: Path, item_id: str) -> Path | None:
    """Return the stored image file of `item_id` in `folder`, or None."""
    stem = image_file_stem(item_id)
    for suffix in _LOOKUP_SUFFIXES:
        candidate = Path(folder) / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def load_image(path: Path) -> Image.Image | None:
    """Decode an image file to RGB; return None (and log) when it cannot be decoded."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        logger.warning("Image %s cannot be decoded: %s", path, error)
        return None


def download_images(
    urls: Mapping[str, str | None],
    folder: Path,
    *,
    retries: int = 3,
    timeout_s: float = 10.0,
    backoff_s: float = 1.0,
    workers: int = 8,
    retry_failed: bool = False,
    progress: ProgressCallback | None = None,
) -> DownloadReport:
    """Download each item's image from its URL into `folder`, skipping items already there.

    Args:
        urls: item identifier -> image URL (None or a non-http(s) URL counts as no URL).
        folder: image folder; created when missing.
        retries: extra attempts after a transient failure (timeout, connection error, HTTP 5xx,
            408 or 429). Attempts per item are at most retries + 1.
        timeout_s: timeout of one HTTP request in seconds.
        backoff_s: wait before the first retry in seconds, doubled on each further retry.
        workers: parallel download threads.
        retry_failed: also retry items recorded as permanent failures by an earlier call.
        progress: called with ("download images", done, total) as items finish.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    failures_path = folder / FAILURES_FILE
    recorded = _read_failures(failures_path)
    report = DownloadReport()
    pending: list[tuple[str, str]] = []
    for item_id, url in urls.items():
        if find_image_file(folder, item_id) is not None:
            report.already_present += 1
        elif not url or not url.startswith(("http://", "https://")):
            report.no_url += 1
        elif not retry_failed and recorded.get(item_id, {}).get("url") == url:
            report.failed[item_id] = recorded[item_id]["reason"]
        else:
            pending.append((item_id, url))

    opener = urllib.request.build_opener()
    lock = threading.Lock()
    done = 0
    total = len(pending)

    def fetch(item: tuple[str, str]) -> None:
        nonlocal done
        item_id, url = item
        outcome: str | None = None
        try:
            _download_one(opener, item_id, url, folder, retries, timeout_s, backoff_s)
        except _PermanentFailure as error:
            outcome = str(error)
            with lock:
                recorded[item_id] = {"url": url, "reason": outcome}
        except _TransientFailure as error:
            outcome = str(error)
        with lock:
            if outcome is None:
                report.downloaded += 1
                recorded.pop(item_id, None)
            else:
                report.failed[item_id] = outcome
                logger.warning("Image of item %s not downloaded from %s: %s", item_id, url, outcome)
            done += 1
            if progress is not None:
                progress("download images", done, total)

    if pending:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(fetch, pending))
        atomic_write_json(failures_path, recorded)
    logger.info(
        "Images in %s: %d downloaded, %d already present, %d without URL, %d failed.",
        folder, report.downloaded, report.already_present, report.no_url, len(report.failed),
    )
    return report


def _download_one(
    opener: urllib.request.OpenerDirector,
    item_id: str,
    url: str,
    folder: Path,
    retries: int,
    timeout_s: float,
    backoff_s: float,
) -> Path:
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            content = _fetch(opener, url, timeout_s)
        except _TransientFailure as error:
            last_error = str(error)
            logger.debug("Attempt %d for item %s failed: %s", attempt + 1, item_id, error)
            continue
        return _store(item_id, content, folder)
    raise _TransientFailure(f"{last_error} (after {retries + 1} attempts)")


def _fetch(opener: urllib.request.OpenerDirector, url: str, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with opener.open(request, timeout=timeout_s) as response:
            content = response.read(MAX_IMAGE_BYTES + 1)
    except urllib.error.HTTPError as error:
        message = f"HTTP {error.code}"
        if error.code >= 500 or error.code in _RETRYABLE_STATUS:
            raise _TransientFailure(message) from error
        raise _PermanentFailure(message) from error
    except (
        urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError
    ) as error:
        raise _TransientFailure(f"request failed: {getattr(error, 'reason', error)}") from error
    if len(content) > MAX_IMAGE_BYTES:
        raise _PermanentFailure(f"response larger than {MAX_IMAGE_BYTES} bytes")
    return content


def _store(item_id: str, content: bytes, folder: Path) -> Path:
    try:
        with Image.open(io.BytesIO(content)) as image:
            image_format = image.format
            image.load()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise _PermanentFailure(f"content is not a decodable image ({error})") from error
    suffix = IMAGE_SUFFIXES.get(image_format or "", ".img")
    path = folder / f"{image_file_stem(item_id)}{suffix}"
    with atomic_path(path) as temporary:
        temporary.write_bytes(content)
    return path


def _read_failures(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        logger.warning(
            "Ignoring unreadable %s (%s); failed downloads will be retried.", path, error
        )
        return {}
