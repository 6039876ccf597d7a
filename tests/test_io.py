"""Atomic writes keep the old file on failure and give new files the process's default mode."""

from __future__ import annotations

import os
import stat

import pytest

from clairo_bench.io import atomic_path, atomic_write_json, atomic_write_text


def test_new_file_gets_the_mode_the_umask_allows(tmp_path):
    previous = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("torn", encoding="utf-8")
            raise RuntimeError("crash while writing")
    assert target.read_text(encoding="utf-8") == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
