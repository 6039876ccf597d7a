"""Atomic file writes (a crash leaves either the old file or the new one) and checked JSON reads."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp creates the file with mode 0600; give the result the mode open() would give it,
    # so that run directories can be shared with co-authors and read by web servers.
    os.fchmod(handle, 0o666 & ~_current_umask())
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)


def _current_umask() -> int:
    # Linux shows the mask in /proc without changing it. Elsewhere os.umask must set it to read
    # it, which for a moment affects files that other threads create (images are written from a
    # thread pool).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, **arrays)


class DamagedFileError(ValueError):
    """A file that the project wrote earlier cannot be read back; the message names the file."""


def read_json_file(path: Path, expected: type = dict) -> Any:
    """Read a JSON file whose top-level value must be an `expected` (dict by default).

    Raises DamagedFileError naming the file for unreadable text, invalid JSON or another type.
    Callers add the fix, which depends on what the file is for.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedFileError(f"{path} is damaged: not valid JSON ({error})") from None
    except RecursionError:
        raise DamagedFileError(f"{path} is damaged: its JSON nests too deeply to read") from None
    except IsADirectoryError:
        raise DamagedFileError(f"{path} is a folder, not a file") from None
    if not isinstance(payload, expected):
        raise DamagedFileError(
            f"{path} is damaged: it contains a JSON {type(payload).__name__}, expected a "
            f"{'JSON object' if expected is dict else expected.__name__}"
        )
    return payload


def folder_path_error(path: Path, option: str) -> str | None:
    """Describe why `path` cannot be used or created as a folder, or return None when it can.

    Only the nearest existing part of the path is checked, because the rest gets created.
    """
    path = Path(path)
    for existing in (path, *path.parents):
        if existing.exists():
            if existing.is_dir():
                return None
            if existing == path:
                return f"{option} {path} is a file, not a folder; give a folder path."
            return f"{option} {path} cannot be created because {existing} is a file; give a folder path."
    return None
