"""Content-addressed cache of pipeline stage outputs.

A stage's key hashes the keys or content hashes of its inputs together with every setting that
shaped its output, so a changed setting misses only the stages downstream of it and an unchanged
rebuild hits every stage. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from clairo_bench.io import atomic_write_npz

logger = logging.getLogger(__name__)

# Bump when a stage's output format or algorithm changes, so that old entries are not reused.
FEATURE_CACHE_VERSION = 1
_META_ARRAY = "__meta__"

StageBuilder = Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]


@dataclass(frozen=True)
class StageResult:
    """Output of one stage.

    Attributes:
        stage: stage name, for example "pca:text".
        key: cache key of the output.
        arrays: the stage's arrays by name.
        meta: JSON-serialisable facts about the output (counts, effective settings).
        cache_hit: whether the output was read from the cache.
    """

    stage: str
    key: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    cache_hit: bool


@dataclass
class StageCache:
    """Stage outputs stored as `<root>/features/<stage>/<key>.npz`.

    Attributes:
        root: cache folder shared with the other caches of the harness.
        records: one {"stage", "key", "cache_hit"} entry per stage run through this object.
    """

    root: Path
    records: list[dict[str, Any]] = field(default_factory=list)

    def key(self, stage: str, inputs: dict[str, Any]) -> str:
        """Hash the stage name, the cache version and `inputs` (JSON-serialisable) into a key."""
        payload = {"stage": stage, "version": FEATURE_CACHE_VERSION, "inputs": inputs}
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def path(self, stage: str, key: str) -> Path:
        return Path(self.root) / "features" / stage.replace(":", "-") / f"{key}.npz"

    def run(self, stage: str, inputs: dict[str, Any], build: StageBuilder) -> StageResult:
        """Return the cached output for (stage, inputs); on a miss, call `build` and store it."""
        key = self.key(stage, inputs)
        path = self.path(stage, key)
        loaded = self._load(path)
        if loaded is not None:
            arrays, meta = loaded
            logger.info("Stage %s: cache hit (%s)", stage, key)
            return self._record(StageResult(stage, key, arrays, meta, cache_hit=True))
        logger.info("Stage %s: building (%s)", stage, key)
        arrays, meta = build()
        stored = dict(arrays)
        stored[_META_ARRAY] = np.frombuffer(
            json.dumps(meta, sort_keys=True, default=str).encode(), dtype=np.uint8
        )
        atomic_write_npz(path, stored)
        return self._record(StageResult(stage, key, dict(arrays), meta, cache_hit=False))

    def _record(self, result: StageResult) -> StageResult:
        record = {"stage": result.stage, "key": result.key, "cache_hit": result.cache_hit}
        self.records.append(record)
        return result

    @staticmethod
    def _load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files if name != _META_ARRAY}
                meta = json.loads(bytes(data[_META_ARRAY]).decode())
        # EOFError comes from an empty file and zlib.error from a damaged member.
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as error:
            logger.warning("Cache file %s is unreadable (%s); rebuilding it.", path, error)
            return None
        return arrays, meta


def hash_strings(strings: Iterable[str]) -> str:
    """Hash a sequence of strings in order.

    Each string is length-prefixed, so ["ab", "c"] and ["a", "bc"] hash differently.
    """
    digest = hashlib.sha256()
    for text in strings:
        encoded = text.encode()
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()[:20]


def hash_array(array: np.ndarray) -> str:
    """Hash an array's dtype, shape and values."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()[:20]


def hash_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hash a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()[:20]
