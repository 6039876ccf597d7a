"""Jobs: one (method, dataset, seed, profile, overrides) each, run independently and resumably.

Run directory layout (`<runs_dir>/<dataset>/<method>/<profile>-seed<seed>-<job key>/`):
- job.json: the job as requested.
- config.json: the fully resolved configuration (method config, split and evaluation settings,
  dataset name, content hash and processing, seed, profile, device).
- provenance.json: package versions, git commit, Python, platform, device, start time.
- train_log.jsonl: one JSON record per epoch (training loss, validation metrics, seconds).
- work/: the method's checkpoints and artifacts; a resumed job continues from them.
- records.json: facts the method reported (vocabulary statistics, code sources, ...).
- train_item_counts.npy: each item's number of occurrences in the training sequences.
- per_user_test.csv: one row per test user (ids, target, uncapped history length, rank, every
  metric).
- summary.json: test and validation metrics, chosen epoch, wall time, peak memory. Its presence
  marks the job as finished; a re-run skips such jobs.
- error.json: written instead of summary.json when the job failed, with the traceback.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from clairo_bench.data.dataset import DataError
from clairo_bench.evaluation import EvalSettings, Evaluator
from clairo_bench.io import (
    DamagedFileError,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    read_json_file,
)
from clairo_bench.methods.base import ConfigError, Method, RunContext, build_config, parse_value
from clairo_bench.methods.registry import get_method_class, register_plugin

logger = logging.getLogger(__name__)

RUN_FORMAT_VERSION = 1
TRAIN_ITEM_COUNTS_FILE = "train_item_counts.npy"
TRACKED_PACKAGES = (
    "clairo-bench", "torch", "torchvision", "transformers", "sentence-transformers",
    "open_clip_torch", "faiss-cpu", "faiss-gpu", "numpy", "scipy", "pandas", "accelerate",
)


@dataclass(frozen=True)
class Job:
    """One unit of work; the job key hashes every field, with overrides in their resolved form.

    Attributes:
        method: registered method name.
        dataset: dataset card name.
        seed: random seed for Python, NumPy and torch.
        profile: "smoke", "quick" or "paper".
        overrides: "key=value" settings from `--set`, as given (see `split_overrides`).
        plugins: `module:Class` references to register in the job's process before it starts.
        dataset_hash: `Dataset.content_hash()` of the data the job must run on. A job whose
            dataset has changed since then fails instead of mixing results of two datasets.
    """

    method: str
    dataset: str
    seed: int
    profile: str = "quick"
    overrides: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    dataset_hash: str = ""

    def resolved_overrides(self) -> dict[str, dict[str, Any]]:
        """Parse the overrides that apply to this job into typed values, by target."""
        for reference in self.plugins:
            register_plugin(reference)
        method_class = get_method_class(self.method)
        parts = split_overrides(self.overrides, self.method, list(method_class.config_class.__dataclass_fields__))
        from clairo_bench.data.split import SplitSettings

        return {
            "split": typed_values(SplitSettings, parts.split, "split"),
            "eval": typed_values(EvalSettings, parts.evaluation, "eval"),
            "method": typed_values(method_class.config_class, parts.method, self.method),
        }

    @functools.cached_property
    def key(self) -> str:
        payload = json.dumps(
            {"method": self.method, "dataset": self.dataset, "dataset_hash": self.dataset_hash,
             "seed": self.seed, "profile": self.profile, "overrides": self.resolved_overrides(),
             "plugins": sorted(self.plugins), "version": RUN_FORMAT_VERSION},
            sort_keys=True, default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:10]

    def run_dir(self, runs_dir: Path) -> Path:
        return Path(runs_dir) / self.dataset / self.method / f"{self.profile}-seed{self.seed}-{self.key}"


def typed_values(config_class: type, values: Mapping[str, str], owner: str) -> dict[str, Any]:
    """Parse `values` into the types `config_class` declares; unknown keys raise ConfigError."""
    build_config(config_class, values, owner=owner)  # validates names and values
    hints = typing.get_type_hints(config_class)
    return {key: parse_value(value, hints[key], f"{owner}.{key}") for key, value in sorted(values.items())}


@dataclass
class JobOutcome:
    """Result of one job: "finished", "skipped" (finished earlier), "failed", "interrupted" or
    "not started" (still queued when the run was interrupted)."""

    job: Job
    status: str
    run_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class ResolvedOverrides:
    """`--set` values sorted by target: split settings, evaluation settings and method fields."""

    split: dict[str, str]
    evaluation: dict[str, str]
    method: dict[str, str]


def split_overrides(overrides: Sequence[str], method: str, method_fields: Sequence[str]) -> ResolvedOverrides:
    """Sort `key=value` strings by what they configure.

    `split.KEY` and `eval.KEY` set split and evaluation settings. `METHOD.KEY` sets a field of
    that method only and takes precedence over a bare `KEY`, which sets that field on every
    method that has it. Giving the same key twice raises ConfigError, so the order of `--set`
    options never matters.
    """
    split: dict[str, str] = {}
    evaluation: dict[str, str] = {}
    scoped: dict[str, str] = {}
    bare: dict[str, str] = {}
    seen: set[str] = set()
    for item in overrides:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise ConfigError(f"Invalid --set {item!r}; write it as key=value, e.g. sasrec.lr=0.001.")
        if key in seen:
            raise ConfigError(f"--set gives {key!r} more than once; keep one value.")
        seen.add(key)
        scope, dot, name = key.partition(".")
        if dot and scope == "split":
            split[name] = value
        elif dot and scope == "eval":
            evaluation[name] = value
        elif dot:
            if scope == method:
                scoped[name] = value
        elif key in method_fields:
            bare[key] = value
    return ResolvedOverrides(split=split, evaluation=evaluation, method={**bare, **scoped})


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> dict[str, Any]:
    """Describe the git commit of the clairo-bench checkout, if it is one."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"Device {requested!r} was requested but torch sees no CUDA device; use --device cpu.")
    return requested


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports ru_maxrss in KiB)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    divisor = 1024 * 1024 if sys.platform == "darwin" else 1024
    return maxrss / divisor


def _write_per_user(path: Path, result, dataset, histories) -> None:
    """Write one row per test user; `history_length` counts all earlier interactions (uncapped)."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "user_index": result.users,
            "user_id": [dataset.user_ids[u] for u in result.users],
            "target_index": result.targets,
            "target_id": [dataset.item_ids[t] for t in result.targets],
            # The test target is each user's last interaction, so every earlier one is history.
            "history_length": [len(dataset.sequences[u]) - 1 for u in result.users],
            "model_input_length": [len(h) for h in histories],
            "rank": result.ranks,
        }
    )
    for name, values in result.per_user.items():
        frame[name] = values
    atomic_write_text(path, frame.to_csv(index=False))


def execute_job(job: Job, runs_dir: Path, cache_dir: Path, device: str = "auto") -> JobOutcome:
    """Run one job to completion in this process, or skip it when it already finished."""
    run_dir = job.run_dir(runs_dir)
    if (run_dir / "summary.json").exists():
        try:
            return JobOutcome(job, "skipped", run_dir, read_summary(run_dir))
        except DamagedFileError as error:
            return _damaged_summary(job, run_dir, error)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir / ".lock", "w")
    try:
        # Two processes writing one run directory would interleave logs and checkpoints.
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        message = _locked_message(run_dir)
        logger.error("Job %s on %s (seed %d): %s.", job.method, job.dataset, job.seed, message)
        return JobOutcome(job, "failed", run_dir, error=message)
    started = time.perf_counter()
    try:
        summary = _run_job(job, run_dir, cache_dir, device, started)
    except Exception as error:  # a failing job is recorded and must not stop the others
        logger.error("Job %s on %s (seed %d) failed: %s", job.method, job.dataset, job.seed, error)
        atomic_write_json(
            run_dir / "error.json",
            {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(),
             "failed_at": datetime.now(timezone.utc).isoformat()},
        )
        return JobOutcome(job, "failed", run_dir, error=f"{type(error).__name__}: {error}")
    finally:
        lock.close()
    return JobOutcome(job, "finished", run_dir, summary)


# A job process that finds its run directory locked exits with this code (EX_TEMPFAIL of
# sysexits.h): it writes nothing there, because the files belong to the process that holds the lock.
LOCKED_EXIT_CODE = 75


def _locked_message(run_dir: Path) -> str:
    return f"another process is running this job in {run_dir}; wait for it to finish"


def _run_job(job: Job, run_dir: Path, cache_dir: Path, device: str, started: float) -> dict[str, Any]:
    from clairo_bench.data.catalog import load_dataset
    from clairo_bench.data.split import SplitSettings, load_or_build_split, training_view

    for reference in job.plugins:
        register_plugin(reference)
    method_class = get_method_class(job.method)
    fields = [f for f in method_class.config_class.__dataclass_fields__]
    logger.info("Starting job %s on %s, seed %d, in %s.", job.method, job.dataset, job.seed, run_dir)
    overrides = split_overrides(job.overrides, job.method, fields)
    eval_settings = build_config(EvalSettings, overrides.evaluation, owner="eval")
    method_config = method_class.resolve_config(job.profile, overrides.method)
    device = resolve_device(device)

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.json").unlink(missing_ok=True)
    atomic_write_json(run_dir / "job.json", asdict(job))
    seed_everything(job.seed)

    dataset = load_dataset(job.dataset)
    if job.dataset_hash and dataset.content_hash() != job.dataset_hash:
        raise DataError(
            f"Dataset {job.dataset!r} has content hash {dataset.content_hash()}, but the job was "
            f"created for {job.dataset_hash}; the data changed while jobs were queued, so rerun "
            "the command."
        )
    # The dataset card's history cap is the default; `--set split.KEY=VALUE` overrides it.
    split_values: dict[str, Any] = {}
    card_cap = dataset.processing.get("settings", {}).get("max_history_items")
    if card_cap is not None:
        split_values["max_history_items"] = card_cap
    split_values.update(overrides.split)
    split_settings = build_config(SplitSettings, split_values, owner="split")
    split = load_or_build_split(dataset, split_settings, cache_dir)
    config = {
        "format_version": RUN_FORMAT_VERSION,
        "method": job.method,
        "method_class": f"{method_class.__module__}:{method_class.__qualname__}",
        "method_config": asdict(method_config),
        "profile": job.profile,
        "seed": job.seed,
        "device": device,
        "dataset": {"name": dataset.name, "content_hash": dataset.content_hash(),
                    "processing": dataset.processing, "n_users": dataset.n_users,
                    "n_items": dataset.n_items, "n_interactions": dataset.n_interactions},
        "split": {"key": split.key, "protocol": "leave-one-out", **asdict(split_settings),
                  "dropped_users": split.dropped_users},
        "evaluation": eval_settings.protocol(),
    }
    atomic_write_json(run_dir / "config.json", config)
    # Reports slice metrics by item popularity; storing the counts keeps them valid even after
    # the dataset files change.
    with atomic_path(run_dir / TRAIN_ITEM_COUNTS_FILE) as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, split.item_popularity())
    atomic_write_json(
        run_dir / "provenance.json",
        {"packages": package_versions(), "git": git_commit(), "python": sys.version,
         "platform": platform.platform(), "processor": platform.processor(),
         "cpu_count": os.cpu_count(), "torch_threads": _torch_threads(), "device": device,
         "started_at": datetime.now(timezone.utc).isoformat()},
    )

    evaluator = Evaluator(eval_settings)
    log_path = run_dir / "train_log.jsonl"
    if not (run_dir / "work").exists():
        log_path.unlink(missing_ok=True)  # a log without checkpoints belongs to no resumable state
    _drop_partial_log_line(log_path)

    def log_epoch(record: dict[str, Any]) -> None:
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=float) + "\n")
        logger.info("%s seed %d: %s", job.method, job.seed,
                    ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in record.items()))

    # Early stopping reads ndcg@10, so validation always includes K=10 whatever eval.ks sets.
    validation_evaluator = Evaluator(
        dataclasses.replace(eval_settings, ks=tuple(sorted(set(eval_settings.ks) | {10})))
    )

    # Every dict handed out, so that a method's `final_validation` can be checked to be one of them.
    validations: list[dict[str, float]] = []

    def validate(method: Method) -> dict[str, float]:
        summary = validation_evaluator.evaluate(method, split.valid, split.n_items).summary()
        validations.append(summary)
        return summary

    context = RunContext(
        seed=job.seed, profile=job.profile, device=device, work_dir=run_dir / "work",
        cache_dir=Path(cache_dir), validate=validate, log_epoch=log_epoch,
    )
    context.work_dir.mkdir(parents=True, exist_ok=True)
    method = method_class(method_config)
    fit_started = time.perf_counter()
    method.fit(training_view(dataset, split), split, context)
    fit_seconds = time.perf_counter() - fit_started

    valid_summary = _reused_validation(context.final_validation, validations, eval_settings.ks)
    valid_source = "kept epoch" if valid_summary is not None else "after training"
    if valid_summary is None:
        valid_summary = evaluator.evaluate(method, split.valid, split.n_items).summary()
    else:
        logger.info("%s seed %d: validation metrics of the kept epoch reused; no second pass.",
                    job.method, job.seed)
    test_started = time.perf_counter()
    test_result = evaluator.evaluate(method, split.test, split.n_items)
    test_seconds = time.perf_counter() - test_started
    _write_per_user(run_dir / "per_user_test.csv", test_result, dataset, split.test.histories)
    try:
        method.save(run_dir / "model")
    except NotImplementedError:
        logger.info("Method %s does not support saving; `recommend` cannot use this run.", job.method)
    atomic_write_json(run_dir / "records.json", context.records)

    # A crash between logging an epoch and checkpointing it makes the resumed run log that epoch
    # again. The later record belongs to the weights that the checkpoint contains.
    records = read_train_log(log_path)
    history = list({record["epoch"]: record for record in records}.values())
    metric = "valid_ndcg@10"
    scored = [record for record in history if metric in record]
    best = max(scored, key=lambda record: record[metric]) if scored else None
    summary = {
        "status": "finished",
        "test": test_result.summary(),
        "valid": valid_summary,
        # "kept epoch": the metrics that chose the kept weights; "after training": a fresh pass.
        "valid_source": valid_source,
        "best_epoch": best["epoch"] if best else None,
        "epochs_run": len(history),
        "fit_seconds": fit_seconds,
        "test_seconds": test_seconds,
        # NOTE: wall time and peak memory cover this process only. After a resume, the time of
        # earlier processes is in logged_epoch_seconds (from train_log.jsonl), not here.
        "wall_time_s": time.perf_counter() - started,
        "logged_epoch_seconds": sum(float(record.get("seconds", 0.0)) for record in history),
        "peak_memory_mb": peak_memory_mb(),
        "n_test_users": len(test_result.users),
        "finished_at": datetime.now(timezone.utc).isoformat(),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


def _reused_validation(final: Mapping[str, float] | None, handed_out: Sequence[Mapping[str, float]],
                       ks: Sequence[int]) -> dict[str, float] | None:
    """Return the run's validation metrics from `final` if the run's `validate` returned that dict.

    Identity, not equality, is checked, because equal numbers from a validation subset must not
    pass. The validation evaluator also scores K=10 for early stopping, so metrics at cut-offs
    outside `ks` are dropped.
    """
    if final is None or not any(valid is final for valid in handed_out):
        return None
    kept_ks = {str(k) for k in ks}
    return {name: float(value) for name, value in final.items()
            if "@" not in name or name.rsplit("@", 1)[1] in kept_ks}


def run_jobs(
    jobs: Sequence[Job],
    runs_dir: Path,
    cache_dir: Path,
    device: str = "auto",
    workers: int = 1,
    isolate: bool = True,
    on_outcome=None,
) -> list[JobOutcome]:
    """Run jobs independently; with `isolate`, each unfinished one in a fresh process.

    A job that fails is recorded and reported; the other jobs still run. Ctrl-C (SIGINT) stops
    the running jobs at their next Python instruction, keeps their checkpoints, and raises
    `RunInterrupted` with one outcome per job.
    """
    outcomes: list[JobOutcome] = []

    def record(outcome: JobOutcome) -> None:
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    if not isolate:
        try:
            for job in jobs:
                record(execute_job(job, runs_dir, cache_dir, device))
        except KeyboardInterrupt:
            current, queued = jobs[len(outcomes):len(outcomes) + 1], jobs[len(outcomes) + 1:]
            stopped = ([_interrupted(job, runs_dir) for job in current]
                       + [_interrupted(job, runs_dir, started=False) for job in queued])
            raise RunInterrupted(outcomes + stopped) from None
        return outcomes
    # One fresh process per job: a job that crashes or is killed (out of memory, a signal) takes
    # only itself down, and ru_maxrss then measures that job alone.
    context = multiprocessing.get_context("spawn")
    pending = list(jobs)
    running: dict[Any, Job] = {}
    with _StopRequests() as stop:
        while (pending and not stop.requested) or running:
            while pending and not stop.requested and len(running) < max(1, workers):
                job = pending.pop(0)
                if (job.run_dir(runs_dir) / "summary.json").exists():
                    # A finished job needs no process: spawning one costs seconds of imports.
                    record(_outcome_from_run_dir(job, runs_dir, 0, skipped=True))
                    continue
                process = context.Process(
                    target=_job_process,
                    args=(job, runs_dir, cache_dir, device, logging.getLogger().level,
                          threads_per_job(workers)),
                    name=f"clairo-bench job {job.method} seed {job.seed}",
                )
                process.start()
                running[process] = job
            if stop.requested:
                stop.forward(running)
            if not running:
                continue
            finished = multiprocessing.connection.wait([p.sentinel for p in running], timeout=1.0)
            for process in [p for p in running if p.sentinel in finished]:
                job = running.pop(process)
                process.join()
                if stop.requested and not (job.run_dir(runs_dir) / "summary.json").exists():
                    record(_interrupted(job, runs_dir))
                else:
                    record(_outcome_from_run_dir(job, runs_dir, process.exitcode))
    if stop.requested:
        raise RunInterrupted(outcomes + [_interrupted(job, runs_dir, started=False) for job in pending])
    return outcomes


class RunInterrupted(Exception):
    """Ctrl-C stopped `run_jobs`; `outcomes` lists the jobs that ended and those that were stopped."""

    def __init__(self, outcomes: list[JobOutcome]):
        super().__init__("interrupted")
        self.outcomes = outcomes


class _StopRequests:
    """Turn SIGINT in the parent into a flag that the scheduling loop reads once a second.

    A flag rather than KeyboardInterrupt: the exception could land between starting a process and
    recording it, losing the job from the report. Job processes ignore SIGINT, which a terminal
    sends to the whole process group, and stop on the SIGTERM that `forward` sends. A second
    Ctrl-C, or `KILL_AFTER_S` seconds without an exit, kills them. Outside the main thread signal handlers cannot be
    set, and SIGINT keeps its default behaviour.
    """

    KILL_AFTER_S = 60.0

    def __init__(self) -> None:
        self.count = 0
        self._terminated_at: float | None = None
        self._previous = None

    @property
    def requested(self) -> bool:
        return self.count > 0

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._request)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _request(self, signum, frame) -> None:
        self.count += 1
        if self.count == 1:
            logger.warning("Stopping: running jobs exit now and keep their last checkpoints; rerun "
                           "the same command to resume them. Press Ctrl-C again to kill them at once.")

    def forward(self, running: Mapping[Any, Job]) -> None:
        """Ask every running job process to stop; kill those that have not after a grace period."""
        now = time.monotonic()
        if self._terminated_at is None:
            self._terminated_at = now
            for process in running:
                process.terminate()
        elif self.count > 1 or now - self._terminated_at > self.KILL_AFTER_S:
            for process in running:
                if process.is_alive():
                    process.kill()


def _interrupted(job: Job, runs_dir: Path, started: bool = True) -> JobOutcome:
    """Outcome of a job that the stop reached; `started` is False for jobs still queued."""
    run_dir = job.run_dir(runs_dir)
    if (run_dir / "summary.json").exists():  # finished just before the signal, or in an earlier run
        return _outcome_from_run_dir(job, runs_dir, 0, skipped=not started)
    if not started:
        return JobOutcome(job, "not started", run_dir, error="not started before the interruption")
    return JobOutcome(job, "interrupted", run_dir,
                      error="interrupted; rerun the same command to resume from the last checkpoint")


def threads_per_job(workers: int) -> int | None:
    """Return the torch CPU threads each of `workers` concurrent jobs gets, or None to keep
    torch's default.

    torch starts one thread per core in every process, so several jobs at once oversubscribe
    the cores. On a 2-core machine, a 2-thread ActionPiece job slowed from 0.47 s to 4.7 s per
    training step while one other process kept a core busy. OMP_NUM_THREADS, when set, wins.
    """
    if workers <= 1 or os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def _job_process(job: Job, runs_dir: Path, cache_dir: Path, device: str, level: int,
                 threads: int | None = None) -> None:
    # The parent decides when to stop (see _StopRequests): Ctrl-C reaches it, and it sends
    # SIGTERM, which unwinds this process like KeyboardInterrupt so that temporary files go away.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", force=True)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        outcome = execute_job(job, runs_dir, cache_dir, device)
    except KeyboardInterrupt:
        # The parent reports the interruption; a traceback per job would bury that report.
        raise SystemExit(130) from None
    if outcome.status == "skipped":
        atomic_write_text(job.run_dir(runs_dir) / ".skipped", "")
    if outcome.status == "failed" and outcome.error == _locked_message(job.run_dir(runs_dir)):
        raise SystemExit(LOCKED_EXIT_CODE)


def _raise_interrupt(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one unwinding is enough
    raise KeyboardInterrupt


def _outcome_from_run_dir(job: Job, runs_dir: Path, exitcode: int | None,
                          skipped: bool = False) -> JobOutcome:
    """Read what a job process left behind; a process that died early left neither file."""
    run_dir = job.run_dir(runs_dir)
    if exitcode == LOCKED_EXIT_CODE:
        return JobOutcome(job, "failed", run_dir, error=_locked_message(run_dir))
    skipped_marker = run_dir / ".skipped"
    if (run_dir / "summary.json").exists():
        status = "skipped" if skipped or skipped_marker.exists() else "finished"
        skipped_marker.unlink(missing_ok=True)
        try:
            return JobOutcome(job, status, run_dir, read_summary(run_dir))
        except DamagedFileError as error:
            return _damaged_summary(job, run_dir, error)
    if (run_dir / "error.json").exists() and exitcode == 0:
        try:
            error = str(read_json_file(run_dir / "error.json").get("error", "unknown error"))
        except DamagedFileError as damaged:
            error = f"the job failed, and {damaged}"
        return JobOutcome(job, "failed", run_dir, error=error)
    error = f"worker process died with exit code {exitcode} before the job finished"
    logger.error("Job %s on %s (seed %d): %s; rerun to resume from its last checkpoint.",
                 job.method, job.dataset, job.seed, error)
    return JobOutcome(job, "failed", run_dir, error=error)


def _drop_partial_log_line(log_path: Path) -> None:
    """Cut a last line that a killed process left without its newline.

    Records are appended, not written atomically, so a kill during a write can leave half a line.
    Without this cut, the next record would be glued onto it. The epoch it belonged to was not
    checkpointed yet (checkpoints follow the log line), so the resumed run logs it again.
    """
    if not log_path.exists():
        return
    content = log_path.read_bytes()
    if not content or content.endswith(b"\n"):
        return
    complete_lines = content[: content.rfind(b"\n") + 1]
    logger.warning("%s ends in an unfinished line (%d bytes), left by an interrupted write; "
                   "dropping it.", log_path, len(content) - len(complete_lines))
    with atomic_path(log_path) as temporary:
        temporary.write_bytes(complete_lines)


def read_train_log(log_path: Path) -> list[dict[str, Any]]:
    """Read train_log.jsonl, skipping lines that are not JSON objects with a warning each."""
    if not log_path.exists():
        return []
    records = []
    for number, line in enumerate(log_path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            record = None
        if not _is_epoch_record(record):
            logger.warning("%s line %d is not an epoch record; skipping it (%.60s).", log_path, number, line)
            continue
        records.append(record)
    return records


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_epoch_record(record: Any) -> bool:
    """Check the fields that the summary reads: an integer epoch and numeric loss, time, metrics."""
    if not isinstance(record, dict) or type(record.get("epoch")) is not int:
        return False
    return all(_is_number(value) for name, value in record.items()
               if name in ("train_loss", "seconds") or name.startswith("valid_"))


def read_summary(run_dir: Path) -> dict[str, Any]:
    """Read a finished run's summary.json and check the fields that tables and reports read.

    Raises DamagedFileError, naming the file, when it is not a JSON object with numeric test
    metrics, wall time and peak memory.
    """
    path = Path(run_dir) / "summary.json"
    summary = read_json_file(path)
    problems = []
    test = summary.get("test")
    if not isinstance(test, dict) or not all(_is_number(value) for value in test.values()):
        problems.append("'test' is not a mapping of metric names to numbers")
    for key in ("wall_time_s", "peak_memory_mb"):
        if key in summary and not _is_number(summary[key]):
            problems.append(f"{key!r} is {summary[key]!r}, not a number")
    if problems:
        raise DamagedFileError(f"{path} is damaged: {'; '.join(problems)}")
    return summary


def _damaged_summary(job: Job, run_dir: Path, error: DamagedFileError) -> JobOutcome:
    # The job's checkpoints stay in work/, so deleting the summary reruns only what is missing.
    message = (f"{error}. Delete {run_dir / 'summary.json'} and rerun: the job then resumes "
               "from its checkpoint and writes a new summary")
    logger.error("Job %s on %s (seed %d): %s.", job.method, job.dataset, job.seed, message)
    return JobOutcome(job, "failed", run_dir, error=message)


def expand_jobs(
    methods: Sequence[str], dataset: str, seeds: Sequence[int], profile: str,
    overrides: Sequence[str] = (), plugins: Sequence[str] = (), dataset_hash: str = "",
) -> list[Job]:
    """List one job per (method, seed); repeated methods or seeds give one job each."""
    return [
        Job(method=m, dataset=dataset, seed=s, profile=profile, overrides=tuple(overrides),
            plugins=tuple(plugins), dataset_hash=dataset_hash)
        for m in dict.fromkeys(methods) for s in dict.fromkeys(seeds)
    ]
