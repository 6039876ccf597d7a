"""Raw downloads against an HTTP server on 127.0.0.1 that the tests start; never the internet."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clairo_bench.cli import app
from clairo_bench.data.cards import DATASETS_DIR_ENV, load_card
from clairo_bench.data.download import (
    DownloadError,
    NetworkUnavailableError,
    download_raw,
)

REVIEWS = bytes(range(256)) * 40  # 10,240 bytes
METADATA = b"metadata-" * 500

CARD = """
name = "toy"
title = "Toy"
category = "Musical_Instruments"
year = 2018
default_source = "raw"

[raw]
format = "amazon2018"
base_url = "{base_url}"
reviews = "files/Toy_5.json.gz"
metadata = "meta/meta_Toy.json.gz"

[raw.sha256]
{hashes}
"""


class RangeServer:
    """Serve fixed files, honouring `Range: bytes=N-`, and record the Range headers received."""

    def __init__(self, files: dict[str, bytes], *, honour_range: bool = True) -> None:
        self.files = files
        self.honour_range = honour_range
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                body = server.files.get(self.path)
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                if body is None:
                    self.send_error(404)
                    return
                if requested and server.honour_range:
                    start = int(requested.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                    body = body[start:]
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self) -> "RangeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_toy_card(folder: Path, base_url: str, hashes: dict[str, str]) -> Path:
    lines = "\n".join(f'"{name}" = "{value}"' for name, value in hashes.items())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.toml").write_text(CARD.format(base_url=base_url, hashes=lines), encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # A proxy from the environment would swallow requests meant for the local server.
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                     "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def server():
    files = {"/files/Toy_5.json.gz": REVIEWS, "/meta/meta_Toy.json.gz": METADATA}
    with RangeServer(files) as running:
        yield running


def full_hashes() -> dict[str, str]:
    return {"Toy_5.json.gz": sha(REVIEWS), "meta_Toy.json.gz": sha(METADATA)}


def test_download_fetches_and_verifies(tmp_path, server):
    card = load_card("toy", write_toy_card(tmp_path / "cards", server.base_url, full_hashes()))
    results = download_raw(card, raw_dir=tmp_path / "raw")
    assert (tmp_path / "raw" / "toy" / "Toy_5.json.gz").read_bytes() == REVIEWS
    assert (tmp_path / "raw" / "toy" / "meta_Toy.json.gz").read_bytes() == METADATA
    assert [result.verified for result in results] == [True, True]
    assert not list((tmp_path / "raw" / "toy").glob("*.part"))


def test_download_resumes_partial_file(tmp_path, server):
    card = load_card("toy", write_toy_card(tmp_path / "cards", server.base_url, full_hashes()))
    folder = tmp_path / "raw" / "toy"
    folder.mkdir(parents=True)
    (folder / "Toy_5.json.gz.part").write_bytes(REVIEWS[:4000])
    results = download_raw(card, raw_dir=tmp_path / "raw")
    assert (folder / "Toy_5.json.gz").read_bytes() == REVIEWS
    assert server.ranges[0] == "bytes=4000-"
    assert results[0].resumed_from_bytes == 4000


def test_download_restarts_when_range_ignored(tmp_path):
    files = {"/files/Toy_5.json.gz": REVIEWS, "/meta/meta_Toy.json.gz": METADATA}
    with RangeServer(files, honour_range=False) as running:
        card = load_card("toy", write_toy_card(tmp_path / "cards", running.base_url, full_hashes()))
        folder = tmp_path / "raw" / "toy"
        folder.mkdir(parents=True)
        (folder / "Toy_5.json.gz.part").write_bytes(b"garbage that is not a prefix")
        download_raw(card, raw_dir=tmp_path / "raw")
    assert (folder / "Toy_5.json.gz").read_bytes() == REVIEWS


def test_download_checksum_mismatch_deletes_part(tmp_path, server):
    hashes = {**full_hashes(), "Toy_5.json.gz": "0" * 64}
    card = load_card("toy", write_toy_card(tmp_path / "cards", server.base_url, hashes))
    with pytest.raises(DownloadError, match=r"Toy_5\.json\.gz: downloaded SHA-256 .* differs"):
        download_raw(card, raw_dir=tmp_path / "raw")
    folder = tmp_path / "raw" / "toy"
    assert not (folder / "Toy_5.json.gz").exists()
    assert not (folder / "Toy_5.json.gz.part").exists()


def test_download_skips_present_file(tmp_path, server):
    card = load_card("toy", write_toy_card(tmp_path / "cards", server.base_url, full_hashes()))
    download_raw(card, raw_dir=tmp_path / "raw")
    requests_after_first = len(server.ranges)
    results = download_raw(card, raw_dir=tmp_path / "raw")
    assert [result.skipped for result in results] == [True, True]
    assert len(server.ranges) == requests_after_first


def test_download_http_error_names_url(tmp_path, server):
    server.files.pop("/meta/meta_Toy.json.gz")
    card = load_card("toy", write_toy_card(tmp_path / "cards", server.base_url, {}))
    with pytest.raises(DownloadError, match=r"meta/meta_Toy\.json\.gz failed with HTTP 404"):
        download_raw(card, raw_dir=tmp_path / "raw")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_no_network_fails_fast_with_placement(tmp_path):
    base_url = f"http://127.0.0.1:{closed_port()}/"
    card = load_card("toy", write_toy_card(tmp_path / "cards", base_url, {}))
    started = time.monotonic()
    with pytest.raises(NetworkUnavailableError) as caught:
        download_raw(card, raw_dir=tmp_path / "raw", connect_timeout_s=2.0)
    assert time.monotonic() - started < 5.0
    message = str(caught.value)
    assert f"{base_url}files/Toy_5.json.gz" in message
    assert str(tmp_path / "raw" / "toy" / "Toy_5.json.gz") in message
    assert str(tmp_path / "raw" / "toy" / "meta_Toy.json.gz") in message


def test_cli_download_reports_hashes(tmp_path, server, monkeypatch):
    cards = write_toy_card(tmp_path / "cards", server.base_url, {})
    monkeypatch.setenv(DATASETS_DIR_ENV, str(cards))
    result = CliRunner().invoke(
        app, ["datasets", "download", "toy", "--raw-dir", str(tmp_path / "raw")],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert sha(REVIEWS) in result.output
    assert "not verified" in result.output


def test_cli_download_without_network_exits_1(tmp_path, monkeypatch):
    cards = write_toy_card(tmp_path / "cards", f"http://127.0.0.1:{closed_port()}/", {})
    monkeypatch.setenv(DATASETS_DIR_ENV, str(cards))
    result = CliRunner().invoke(
        app, ["datasets", "download", "toy", "--raw-dir", str(tmp_path / "raw"),
              "--connect-timeout", "2"],
    )
    assert result.exit_code == 1
    assert "Toy_5.json.gz" in result.output
    assert os.fspath(tmp_path / "raw" / "toy") in result.output.replace("\n", "")
