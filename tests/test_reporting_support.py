"""Helpers for the reporting tests: fake run directories in the layout `clairo_bench.runner` writes.

This module contains no tests. The per-user metrics come from target ranks through the real
`metrics_from_ranks`, and summary.json contains their means, as the runner writes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from clairo_bench.evaluation import metrics_from_ranks

KS = (5, 10)


def write_run(
    runs_dir: Path,
    method: str,
    seed: int,
    ranks: Sequence[int],
    *,
    dataset: str = "toy",
    profile: str = "quick",
    content_hash: str = "data-hash-1",
    split_key: str = "split-key-1",
    exclude_history_items: bool = False,
    batch_size: int = 256,
    targets: Sequence[int] | None = None,
    history_lengths: Sequence[int] | None = None,
    finished_at: str = "2026-01-02T00:00:00+00:00",
    status: str = "finished",
    overrides: Sequence[str] = (),
    method_config: dict | None = None,
) -> Path:
    """Write one run directory with job, config, provenance, log, records, per-user CSV and summary.

    Users are "U0", "U1", ...; target i defaults to item i and history length to 3 + i % 4.
    status "failed" writes error.json instead of summary.json; "incomplete" writes neither.
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    n_users = len(ranks)
    key = hashlib.sha256(f"{method}{seed}{profile}{sorted(overrides)}".encode()).hexdigest()[:10]
    run_dir = Path(runs_dir) / dataset / method / f"{profile}-seed{seed}-{key}"
    run_dir.mkdir(parents=True, exist_ok=True)
    job = {"method": method, "dataset": dataset, "seed": seed, "profile": profile,
           "overrides": list(overrides), "plugins": []}
    config = {
        "format_version": 1,
        "method": method,
        "method_class": f"fake:{method}",
        "method_config": dict(method_config or {}),
        "profile": profile,
        "seed": seed,
        "device": "cpu",
        "dataset": {"name": dataset, "content_hash": content_hash, "processing": "5-core, chronological",
                    "n_users": n_users, "n_items": 50, "n_interactions": 400},
        "split": {"key": split_key, "protocol": "leave-one-out", "max_history_items": 20, "dropped_users": 0},
        "evaluation": {"ranking": "full catalogue", "targets_per_user": 1, "tie_break": "against the target",
                       "ks": list(KS), "exclude_history_items": exclude_history_items, "batch_size": batch_size},
    }
    provenance = {"packages": {"numpy": "2.4.0", "torch": "2.14.1", "open_clip_torch": "3.3.0"},
                  "git": {"commit": "abc123", "dirty": False}, "python": "3.11", "platform": "linux",
                  "device": "cpu", "started_at": "2026-01-01T00:00:00+00:00"}
    _write_json(run_dir / "job.json", job)
    _write_json(run_dir / "config.json", config)
    _write_json(run_dir / "provenance.json", provenance)
    (run_dir / "train_log.jsonl").write_text(json.dumps({"epoch": 1, "loss": 1.0}) + "\n")
    if status == "incomplete":
        return run_dir
    if status == "failed":
        _write_json(run_dir / "error.json", {"error": "RuntimeError: out of memory", "traceback": "..."})
        return run_dir
    metrics = metrics_from_ranks(ranks, KS)
    frame = pd.DataFrame({
        "user_index": np.arange(n_users),
        "user_id": [f"U{i}" for i in range(n_users)],
        "target_index": np.asarray(targets if targets is not None else np.arange(n_users) % 50),
        "target_id": [f"I{i}" for i in range(n_users)],
        "history_length": np.asarray(history_lengths if history_lengths is not None else 3 + np.arange(n_users) % 4),
        "rank": ranks,
    })
    for name, values in metrics.items():
        frame[name] = values
    frame.to_csv(run_dir / "per_user_test.csv", index=False)
    _write_json(run_dir / "records.json", {})
    summary = {"status": "finished", "test": {name: float(values.mean()) for name, values in metrics.items()},
               "valid": {}, "best_epoch": 1, "epochs_run": 1, "fit_seconds": 1.0, "test_seconds": 0.1,
               "wall_time_s": 1.2, "peak_memory_mb": 100.0, "n_test_users": n_users, "finished_at": finished_at}
    _write_json(run_dir / "summary.json", summary)
    return run_dir


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2))


def ranks_with_hits(n_users: int, hits: int, hit_rank: int = 1, miss_rank: int = 1000) -> list[int]:
    """Return ranks where the first `hits` users rank their target at `hit_rank`, the rest at `miss_rank`."""
    return [hit_rank] * hits + [miss_rank] * (n_users - hits)
