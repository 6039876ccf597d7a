"""Find run directories, keep the latest finished run per (method, seed, profile), check comparability.

Reporting reads the run directory layout that `clairo_bench.runner` writes
(`<runs_dir>/<dataset>/<method>/<profile>-seed<seed>-<job key>/`) and never retrains. A run is
finished when summary.json exists, failed when error.json exists instead, and incomplete when it
has neither (still running or interrupted). Only finished runs enter a report; the others are
listed as missing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clairo_bench.io import DamagedFileError, read_json_file
from clairo_bench.runner import read_summary

logger = logging.getLogger(__name__)

METRIC_COLUMN = re.compile(r"(recall|ndcg|mrr)@[0-9]+")
RUN_DIR_PATTERN = re.compile(r"^(?P<profile>.+)-seed(?P<seed>-?\d+)-(?P<key>[0-9a-f]+)$")
PER_USER_FILE = "per_user_test.csv"

# Evaluation settings that cannot change a metric value; runs that differ only here are comparable.
# The evaluator caps and splits batches itself, so batch_size never changes a rank.
IGNORED_EVALUATION_SETTINGS = ("batch_size",)


class ReportError(ValueError):
    """Run directories that cannot be reported as requested; the message names the file or value."""


class IncomparableRunsError(ReportError):
    """Runs that differ in data, split or evaluation protocol were asked to share a table."""


@dataclass(frozen=True)
class RunRecord:
    """One run directory and what it contains.

    Attributes:
        run_dir: the directory.
        dataset, method, seed, profile: the job, from job.json or the directory names.
        status: "finished" (summary.json), "failed" (error.json), "damaged" (an unreadable
            config.json, job.json or summary.json) or "incomplete" (none of these).
        config, summary, provenance: the parsed JSON files; empty where the file is missing.
        error: the error message of a failed run.
        finished_at: summary.json's `finished_at`, or the file's modification time without it.
        per_user: per_user_test.csv once `collect_runs` has read and checked it, else None.
    """

    run_dir: Path
    dataset: str
    method: str
    seed: int
    profile: str
    status: str
    config: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    finished_at: datetime | None = None
    per_user: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.method} seed {self.seed} ({self.run_dir})"

    @property
    def per_user_path(self) -> Path:
        return self.run_dir / PER_USER_FILE


@dataclass(frozen=True)
class MissingRun:
    """A (method, seed, profile) without a finished run, and why."""

    dataset: str
    method: str
    seed: int
    profile: str
    reason: str
    run_dir: Path


@dataclass(frozen=True)
class RunSelection:
    """The runs one report uses: the latest finished run per (method, seed) of one profile.

    Attributes:
        dataset: the dataset all runs belong to.
        profile: the profile all runs share.
        runs: finished runs, sorted by method and seed.
        missing: (method, seed) pairs of that profile that have no finished run.
    """

    dataset: str
    profile: str
    runs: tuple[RunRecord, ...]
    missing: tuple[MissingRun, ...] = ()

    @property
    def methods(self) -> list[str]:
        return sorted({run.method for run in self.runs})

    def runs_of(self, method: str) -> list[RunRecord]:
        return [run for run in self.runs if run.method == method]


def list_datasets(runs_dir: Path) -> list[str]:
    """Return the dataset folders under `runs_dir` that contain at least one run directory."""
    runs_dir = Path(runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise ReportError(f"Runs folder {runs_dir} is a file; pass --runs-dir with the folder `run` wrote to.")
    if not runs_dir.is_dir():
        raise ReportError(f"Runs folder {runs_dir} does not exist; pass --runs-dir with the folder `run` wrote to.")
    return sorted(
        path.name for path in runs_dir.iterdir()
        if path.is_dir() and any(child.is_dir() for child in path.iterdir())
    )


def discover_runs(runs_dir: Path, dataset: str) -> list[RunRecord]:
    """Read every run directory of `dataset` under `runs_dir`, finished or not."""
    dataset_dir = Path(runs_dir) / dataset
    if not dataset_dir.is_dir():
        available = ", ".join(list_datasets(runs_dir)) or "none"
        raise ReportError(
            f"No runs of dataset {dataset!r}: {dataset_dir} does not exist. "
            f"Datasets with runs in {runs_dir}: {available}."
        )
    records = []
    for method_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
        for run_dir in sorted(p for p in method_dir.iterdir() if p.is_dir()):
            record = read_run_record(run_dir, dataset, method_dir.name)
            if record is not None:
                records.append(record)
    return records


def read_run_record(run_dir: Path, dataset: str, method: str) -> RunRecord | None:
    """Read one run directory; return None for a folder that is not a run directory."""
    files: dict[str, Any] = {}
    damaged: dict[str, str] = {}
    for name in ("config", "summary", "provenance", "job"):
        path = run_dir / f"{name}.json"
        if not path.exists():
            continue
        try:
            files[name] = read_summary(run_dir) if name == "summary" else read_json_file(path)
        except DamagedFileError as problem:
            damaged[name] = str(problem)
    if "provenance" in damaged:
        # Provenance only annotates the report (versions, commit), so its loss hides no number.
        logger.warning("%s; the report shows no package versions or commit for this run.",
                       damaged.pop("provenance"))

    job = files.get("job", {})
    match = RUN_DIR_PATTERN.match(run_dir.name)
    if not job and match is None and not damaged:
        logger.debug("Skipping %s: neither job.json nor a run directory name.", run_dir)
        return None
    try:
        seed = int(job["seed"]) if "seed" in job else int(match["seed"])
    except (TypeError, ValueError):
        if match is None:
            raise ReportError(
                f"{run_dir / 'job.json'} names seed {job.get('seed')!r}, and the folder name "
                "gives none; restore the file or move the folder out of the runs folder."
            ) from None
        logger.warning("%s names seed %r; using seed %s from the folder name.",
                       run_dir / "job.json", job.get("seed"), match["seed"])
        seed = int(match["seed"])
    profile = str(job["profile"]) if "profile" in job else match["profile"]

    summary = files.get("summary", {})
    error_path = run_dir / "error.json"
    error = None
    finished_at = None
    if damaged:
        status = "damaged"
        error = "; ".join(damaged.values())
        logger.warning("Run %s is left out: %s.", run_dir, error)
    elif summary:
        status = "finished"
        finished_at = _finished_at(summary, run_dir / "summary.json")
    elif error_path.exists():
        status = "failed"
        try:
            error = str(read_json_file(error_path).get("error", "unknown error"))
        except DamagedFileError as problem:
            error = str(problem)
    else:
        status = "incomplete"

    return RunRecord(
        run_dir=run_dir,
        dataset=str(job.get("dataset", dataset)),
        method=str(job.get("method", method)),
        seed=seed,
        profile=profile,
        status=status,
        config=files.get("config", {}),
        summary=summary,
        provenance=files.get("provenance", {}),
        error=error,
        finished_at=finished_at,
    )


def _finished_at(summary: Mapping[str, Any], path: Path) -> datetime:
    text = summary.get("finished_at")
    if text:
        try:
            moment = datetime.fromisoformat(str(text))
            return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        except ValueError:
            logger.warning("%s has an invalid finished_at %r; using the file time.", path, text)
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)


def select_runs(runs: Sequence[RunRecord], dataset: str, profile: str | None = None) -> RunSelection:
    """Keep the latest finished run per (method, seed) of one profile; list the rest as missing.

    Without `profile`, the finished runs must all share one profile. Older finished runs of the
    same (method, seed, profile), for example with other `--set` overrides, are ignored and logged.
    """
    profiles = sorted({run.profile for run in runs})
    if profile is None:
        finished_profiles = sorted({run.profile for run in runs if run.status == "finished"})
        if len(finished_profiles) > 1:
            raise ReportError(
                f"Dataset {dataset!r} has finished runs of several profiles ({', '.join(finished_profiles)}); "
                "pass --profile to choose one."
            )
        if finished_profiles:
            profile = finished_profiles[0]
        elif profiles:
            profile = profiles[0]
    if profile is None or profile not in profiles:
        raise ReportError(
            f"Dataset {dataset!r} has no runs of profile {profile!r}; "
            f"profiles with runs: {', '.join(profiles) or 'none'}."
        )
    chosen: list[RunRecord] = []
    missing: list[MissingRun] = []
    keys = sorted({(run.method, run.seed) for run in runs if run.profile == profile})
    for method, seed in keys:
        candidates = [r for r in runs if r.profile == profile and r.method == method and r.seed == seed]
        finished = sorted((r for r in candidates if r.status == "finished"), key=lambda r: r.finished_at)
        if finished:
            chosen.append(finished[-1])
            for older in finished[:-1]:
                logger.info("Using %s; ignoring the older finished run %s.", finished[-1].run_dir, older.run_dir)
            continue
        failed = [r for r in candidates if r.status in ("failed", "damaged")]
        if failed:
            reported_run = failed[-1]
            reason = f"{reported_run.status}: {reported_run.error}"
        else:
            reported_run = candidates[-1]
            reason = "incomplete: neither summary.json nor error.json (still running or interrupted)"
        missing.append(MissingRun(dataset, method, seed, profile, reason, reported_run.run_dir))
    return RunSelection(dataset=dataset, profile=profile, runs=tuple(chosen), missing=tuple(missing))


def collect_runs(runs_dir: Path, dataset: str, profile: str | None = None) -> RunSelection:
    """Discover, select and check the runs of one dataset for a report."""
    runs = discover_runs(runs_dir, dataset)
    selection = _leave_out_damaged_per_user(select_runs(runs, dataset, profile))
    if not selection.runs:
        others = sorted({run.profile for run in runs if run.status == "finished"} - {selection.profile})
        hint = (f" Finished runs exist for profile(s) {', '.join(others)}; pass --profile with one of them."
                if others else "")
        raise ReportError(
            f"Dataset {dataset!r} has no finished run of profile {selection.profile!r} in {runs_dir}; "
            f"{len(selection.missing)} failed or incomplete run(s) found.{hint}"
        )
    check_comparable(selection.runs)
    return selection


def _leave_out_damaged_per_user(selection: RunSelection) -> RunSelection:
    """Move runs whose per_user_test.csv cannot be read to the missing runs, with the reason."""
    usable, missing = [], list(selection.missing)
    for run in selection.runs:
        try:
            frame = load_per_user(run, ())
        except ReportError as error:
            logger.warning("Run %s is left out: %s", run.run_dir, error)
            missing.append(MissingRun(run.dataset, run.method, run.seed, run.profile, f"damaged: {error}",
                                      run.run_dir))
        else:
            # The checked frame travels with the run, so the report does not read the file again.
            usable.append(dataclasses.replace(run, per_user=frame))
    return dataclasses.replace(selection, runs=tuple(usable), missing=tuple(missing))


def comparison_fields(run: RunRecord) -> dict[str, Any]:
    """Return the values that must be equal for two runs to share a table."""
    config = run.config
    if not config:
        raise ReportError(f"Run {run.run_dir} has summary.json but no config.json; re-run the job.")
    try:
        evaluation = {
            key: value for key, value in config["evaluation"].items()
            if key not in IGNORED_EVALUATION_SETTINGS
        }
        return {
            "dataset.content_hash": config["dataset"]["content_hash"],
            "split.key": config["split"]["key"],
            "evaluation": evaluation,
        }
    except (KeyError, TypeError, AttributeError) as error:
        raise ReportError(
            f"{run.run_dir / 'config.json'} lacks {error}; it was not written by this version of the runner."
        ) from error


def check_comparable(runs: Iterable[RunRecord]) -> None:
    """Raise IncomparableRunsError unless all runs share data, split and evaluation protocol.

    The message names every differing field with two runs and their values.
    """
    runs = list(runs)
    if len(runs) < 2:
        return
    first = runs[0]
    reference = comparison_fields(first)
    differences = []
    for run in runs[1:]:
        values = comparison_fields(run)
        for name, value in values.items():
            if _canonical(value) != _canonical(reference[name]):
                differences.append(
                    f"{name} differs: {first.label} has {_canonical(reference[name])}, "
                    f"{run.label} has {_canonical(value)}"
                )
    if differences:
        raise IncomparableRunsError(
            "Runs on different data, splits or evaluation protocols cannot share a table:\n- "
            + "\n- ".join(differences)
            + "\nRe-run the differing jobs with the same data and settings, or move the stale run "
            "directories out of the runs folder."
        )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def load_per_user(run: RunRecord, metrics: Sequence[str]) -> pd.DataFrame:
    """Read a run's per_user_test.csv, checking that it has the user id and every metric."""
    path = run.per_user_path
    frame = run.per_user if run.per_user is not None else _read_per_user_file(run)
    required = ["user_id", "target_index", "history_length", *metrics]
    absent = [name for name in required if name not in frame.columns]
    if absent:
        raise ReportError(
            f"{path} lacks the columns {', '.join(absent)}; it has {', '.join(frame.columns)}. "
            "Choose metrics the evaluation computed (its cut-offs are in config.json)."
        )
    # Every metric column is checked, not only the requested ones: a hole in any of them means
    # the file was damaged after the evaluator wrote it.
    scored = [column for column in frame.columns if METRIC_COLUMN.fullmatch(column)]
    unscored = frame[scored].isna().any(axis=1)
    if unscored.any():
        row = int(unscored.to_numpy().argmax())
        empty = [column for column in scored if pd.isna(frame[column].iloc[row])]
        raise ReportError(
            f"{path} has no value for {', '.join(empty)} "
            f"of user {frame['user_id'].iloc[row]!r} (data row {row + 1}); the file is damaged. "
            f"Delete {run.run_dir / 'summary.json'} and rerun the job to write it again."
        )
    if frame["user_id"].duplicated().any():
        duplicate = frame.loc[frame["user_id"].duplicated(), "user_id"].iloc[0]
        raise ReportError(f"{path} lists user {duplicate!r} more than once; the file is corrupt.")
    return frame


def _read_per_user_file(run: RunRecord) -> pd.DataFrame:
    path = run.per_user_path
    if not path.exists():
        raise ReportError(f"Run {run.run_dir} is finished but has no {PER_USER_FILE}; re-run the job.")
    try:
        return pd.read_csv(path, dtype={"user_id": str, "target_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise ReportError(
            f"{path} is damaged ({error}); delete {run.run_dir / 'summary.json'} and rerun the job, "
            "which resumes from its checkpoint and writes the file again."
        ) from None


def seed_averaged_per_user(runs: Sequence[RunRecord], metrics: Sequence[str]) -> pd.DataFrame:
    """Average each user's metrics over the seeds of one method.

    Returns one row per user, indexed by user_id, with target_index, history_length and the metrics.
    All seeds must cover the same users, which the shared split guarantees.
    """
    frames = [load_per_user(run, metrics) for run in runs]
    users = set(frames[0]["user_id"])
    for run, frame in zip(runs[1:], frames[1:]):
        if set(frame["user_id"]) != users:
            raise ReportError(
                f"{run.per_user_path} covers {frame['user_id'].nunique()} users and "
                f"{runs[0].per_user_path} covers {len(users)}; runs on one split must score the same users."
            )
    stacked = pd.concat(frames, ignore_index=True)
    grouped = stacked.groupby("user_id", sort=True)
    averaged = grouped[list(metrics)].mean()
    averaged.insert(0, "target_index", grouped["target_index"].first())
    averaged.insert(1, "history_length", grouped["history_length"].first())
    return averaged


def paired_user_values(
    reference: pd.DataFrame, other: pd.DataFrame, metric: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Align two seed-averaged per-user frames by user id and return both metric arrays."""
    if set(reference.index) != set(other.index):
        raise ReportError(
            f"Paired tests need the same test users: one method has {len(reference)} users, the other "
            f"{len(other)}, and {len(set(reference.index) ^ set(other.index))} user ids differ."
        )
    aligned = other.loc[reference.index]
    return reference[metric].to_numpy(float), aligned[metric].to_numpy(float)
