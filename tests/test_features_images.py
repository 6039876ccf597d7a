"""Tests of the image downloader against an HTTP server on 127.0.0.1 started by the test."""

from __future__ import annotations

import collections
import http.server
import io
import threading
import time

import pytest
from PIL import Image

from clairo_bench.features.images import (
    FAILURES_FILE,
    download_images,
    find_image_file,
    image_file_stem,
    load_image,
)


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


PNG_BYTES = {
    "/red.png": _png((255, 0, 0)),
    "/green.png": _png((0, 255, 0)),
    "/blue.png": _png((0, 0, 255)),
}
CORRUPT_PATH = "/corrupt.png"
FLAKY_PATH = "/flaky.png"
SLOW_PATH = "/slow.png"
TIMEOUT_S = 0.5


class _Handler(http.server.BaseHTTPRequestHandler):
    requests: collections.Counter = collections.Counter()

    def do_GET(self) -> None:
        type(self).requests[self.path] += 1
        if self.path == CORRUPT_PATH:
            self._send(200, b"\x89PNG but not really")
        elif self.path == FLAKY_PATH and type(self).requests[self.path] == 1:
            self._send(503, b"busy")
        elif self.path == FLAKY_PATH:
            self._send(200, PNG_BYTES["/red.png"])
        elif self.path == SLOW_PATH:
            time.sleep(TIMEOUT_S * 3)
            self._send(200, PNG_BYTES["/red.png"])
        elif self.path in PNG_BYTES:
            self._send(200, PNG_BYTES[self.path])
        else:
            self._send(404, b"not found")

    def _send(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(monkeypatch):
    proxies = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
    for variable in proxies:
        monkeypatch.delenv(variable, raising=False)
    _Handler.requests = collections.Counter()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.requests
    httpd.shutdown()
    httpd.server_close()


def _urls(base: str) -> dict[str, str | None]:
    return {
        "B0RED": f"{base}/red.png",
        "B0GREEN": f"{base}/green.png",
        "B0BLUE": f"{base}/blue.png",
        "B0GONE": f"{base}/missing.png",
        "B0CORRUPT": f"{base}{CORRUPT_PATH}",
        "B0FLAKY": f"{base}{FLAKY_PATH}",
        "B0NOURL": None,
    }


def _download(urls, folder, **options):
    settings = {"retries": 2, "timeout_s": TIMEOUT_S, "backoff_s": 0.0, "workers": 4}
    settings.update(options)
    return download_images(urls, folder, **settings)


def test_download_stores_images_by_identifier(server, tmp_path):
    base, _ = server
    _download(_urls(base), tmp_path)
    stored = load_image(find_image_file(tmp_path, "B0GREEN"))
    assert stored.getpixel((0, 0)) == (0, 255, 0)


def test_download_counts_outcomes(server, tmp_path):
    base, _ = server
    report = _download(_urls(base), tmp_path)
    # red, green, blue and flaky (after one retry) succeed.
    assert report.downloaded == 4
    assert report.no_url == 1
    assert set(report.failed) == {"B0GONE", "B0CORRUPT"}


def test_download_reasons_name_status_and_decoding(server, tmp_path):
    base, _ = server
    report = _download(_urls(base), tmp_path)
    assert report.failed["B0GONE"] == "HTTP 404"
    assert report.failed["B0CORRUPT"].startswith("content is not a decodable image")


def test_download_keeps_no_file_for_failures(server, tmp_path):
    base, _ = server
    _download(_urls(base), tmp_path)
    assert find_image_file(tmp_path, "B0CORRUPT") is None
    assert find_image_file(tmp_path, "B0GONE") is None


def test_download_retries_transient_error(server, tmp_path):
    base, requests = server
    _download({"B0FLAKY": f"{base}{FLAKY_PATH}"}, tmp_path)
    assert requests[FLAKY_PATH] == 2


def test_download_attempts_bounded_by_retries(server, tmp_path):
    base, requests = server
    started = time.monotonic()
    report = _download({"B0SLOW": f"{base}{SLOW_PATH}"}, tmp_path, retries=1)
    elapsed = time.monotonic() - started
    assert requests[SLOW_PATH] == 2
    assert "after 2 attempts" in report.failed["B0SLOW"]
    # Two attempts of at most TIMEOUT_S each, plus slack for a busy machine.
    assert elapsed < 2 * TIMEOUT_S + 5


def test_download_resumes_without_refetching(server, tmp_path):
    base, requests = server
    _download(_urls(base), tmp_path)
    before = requests.copy()
    report = _download(_urls(base), tmp_path)
    assert requests == before
    assert report.already_present == 4


def test_download_skips_recorded_permanent_failures(server, tmp_path):
    base, _ = server
    _download(_urls(base), tmp_path)
    report = _download(_urls(base), tmp_path)
    assert report.failed["B0GONE"] == "HTTP 404"
    assert (tmp_path / FAILURES_FILE).exists()


def test_download_retry_failed_fetches_again(server, tmp_path):
    base, requests = server
    _download(_urls(base), tmp_path)
    _download(_urls(base), tmp_path, retry_failed=True)
    assert requests["/missing.png"] == 2


def test_image_file_stem_hashes_unsafe_identifiers():
    assert image_file_stem("B00ABC") == "B00ABC"
    assert image_file_stem("../etc/passwd").startswith("id-")


def test_load_image_returns_none_for_broken_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert load_image(tmp_path / "broken.png") is None
