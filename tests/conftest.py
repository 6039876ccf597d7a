"""Shared fixtures: a tiny dataset card that runs through the whole harness in seconds."""

from __future__ import annotations

import lzma
import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def write_tiny_datasets_dir(root: Path, n_users: int = 40, n_items: int = 24, seed: int = 0) -> Path:
    """Write a datasets folder with one card, `tiny`, in the P5 user_sequence format.

    Every user walks through the items in order from a random start (item i is followed by
    item i+1), so a sequential model can learn the pattern and a popularity ranking cannot.
    """
    import numpy as np

    generator = np.random.default_rng(seed)
    folder = root / "embedded" / "tiny"
    folder.mkdir(parents=True)
    lines = []
    for user in range(n_users):
        start = int(generator.integers(0, n_items))
        length = int(generator.integers(5, 9))
        items = [f"I{(start + step) % n_items:04d}" for step in range(length)]
        lines.append(f"U{user:05d} " + " ".join(items))
    with lzma.open(folder / "user_sequence.txt.xz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    (root / "tiny.toml").write_text(
        'name = "tiny"\n'
        'title = "Synthetic walks through the catalogue, for tests"\n'
        'category = "Synthetic"\n'
        "year = 2018\n"
        'default_source = "released"\n\n'
        "[processing]\n"
        "k_core = 0\n"
        'repeat_policy = "keep_first"\n'
        'missing_metadata = "keep"\n'
        "require_image = false\n"
        "max_history_items = 20\n\n"
        "[released]\n"
        'format = "user_sequence"\n'
        'path = "embedded/tiny"\n'
        'provenance = "written by the test suite"\n'
        'user_sequence = "user_sequence.txt.xz"\n'
    )
    return root


@pytest.fixture
def tiny_datasets_dir(tmp_path, monkeypatch) -> Path:
    """A datasets folder holding the `tiny` card, active through CLAIRO_BENCH_DATASETS_DIR."""
    root = write_tiny_datasets_dir(tmp_path / "datasets")
    monkeypatch.setenv("CLAIRO_BENCH_DATASETS_DIR", str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPOSITORY / "tests"), os.environ.get("PYTHONPATH")])))
    return root
