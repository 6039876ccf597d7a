"""Leaderboard of one dataset: per-method scores over seeds, gains over a reference and paired tests.

Scores per method are the mean and the sample standard deviation (ddof=1) over seeds of the test
metrics in each run's summary.json. Paired tests compare each method with the reference on
per-user metrics: each user's metric is first averaged over that method's seeds, then users are
paired by user id. Holm's correction runs over all (method, metric) comparisons of the table,
separately for the Wilcoxon and the t-test p-values. Confidence intervals are 95% t-intervals over
users of the seed-averaged per-user metric.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from clairo_bench.reporting.collect import (
    ReportError,
    RunRecord,
    RunSelection,
    paired_user_values,
    seed_averaged_per_user,
)
from clairo_bench.reporting.significance import (
    PairedTest,
    holm_adjust,
    paired_tests,
    relative_gain_percent,
    t_interval,
)

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
DEFAULT_REFERENCE = "clairo"
SIGNIFICANCE_LEVEL = 0.05
CONFIDENCE_LEVEL = 0.95


@dataclass(frozen=True)
class MethodScores:
    """Scores of one method over its seeds.

    Attributes:
        method: method name.
        seeds: seeds of the runs used.
        mean, std: metric -> mean and sample standard deviation over seeds (NaN with one seed).
        n_users: test users per run.
        interval: metric -> (mean, low, high) of the 95% t-interval over users.
    """

    method: str
    seeds: tuple[int, ...]
    mean: Mapping[str, float]
    std: Mapping[str, float]
    n_users: int
    interval: Mapping[str, tuple[float, float, float]]


@dataclass(frozen=True)
class Comparison:
    """The reference against one other method on one metric.

    Attributes:
        gain_percent: relative gain of the reference over `method`, 100 * (ref - method) / method.
        test: paired tests of the method against the reference on seed-averaged per-user values.
        wilcoxon_p_holm, ttest_p_holm: Holm-adjusted p-values over the table's comparisons.
    """

    method: str
    reference: str
    metric: str
    method_mean: float
    reference_mean: float
    gain_percent: float
    test: PairedTest
    wilcoxon_p_holm: float
    ttest_p_holm: float

    def significant(self, test: str, alpha: float = SIGNIFICANCE_LEVEL) -> bool:
        """Return whether the Holm-adjusted p-value of "wilcoxon" or "ttest" is below alpha."""
        value = self.wilcoxon_p_holm if test == "wilcoxon" else self.ttest_p_holm
        return bool(value < alpha)


@dataclass(frozen=True)
class Leaderboard:
    """Everything one dataset's tables show.

    Attributes:
        dataset, profile: what the runs share.
        metrics: metric names in column order.
        reference: the method others are compared with, or None.
        methods: per-method scores, in row order.
        comparisons: reference against every other method on every metric.
        header: (label, text) lines describing data, split, protocol, seeds and software.
        missing: (method, seed, reason) of runs that failed or did not finish.
        per_user: method -> seed-averaged per-user frame (for slices and plots).
    """

    dataset: str
    profile: str
    metrics: tuple[str, ...]
    reference: str | None
    methods: tuple[MethodScores, ...]
    comparisons: tuple[Comparison, ...]
    header: tuple[tuple[str, str], ...]
    missing: tuple[tuple[str, int, str], ...] = ()
    per_user: Mapping[str, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    def scores(self, method: str) -> MethodScores:
        for scores in self.methods:
            if scores.method == method:
                return scores
        raise KeyError(method)

    def comparison(self, method: str, metric: str) -> Comparison | None:
        for comparison in self.comparisons:
            if comparison.method == method and comparison.metric == metric:
                return comparison
        return None


def choose_reference(methods: Sequence[str], requested: str | None) -> str | None:
    """Return the requested reference, or "clairo" when present and none was requested."""
    if requested is None:
        return DEFAULT_REFERENCE if DEFAULT_REFERENCE in methods else None
    if requested not in methods:
        raise ReportError(
            f"Reference method {requested!r} has no finished run; methods with runs: {', '.join(methods)}."
        )
    return requested


def build_leaderboard(
    selection: RunSelection,
    metrics: Sequence[str] = DEFAULT_METRICS,
    reference: str | None = None,
) -> Leaderboard:
    """Compute scores, gains and paired tests for the selected runs of one dataset."""
    metrics = tuple(metrics)
    methods = method_order(selection.methods)
    reference = choose_reference(methods, reference)
    per_user = {method: seed_averaged_per_user(selection.runs_of(method), metrics) for method in methods}
    scores = tuple(_method_scores(method, selection.runs_of(method), per_user[method], metrics) for method in methods)
    comparisons = _compare(scores, per_user, reference, metrics) if reference else ()
    return Leaderboard(
        dataset=selection.dataset,
        profile=selection.profile,
        metrics=metrics,
        reference=reference,
        methods=scores,
        comparisons=comparisons,
        header=describe_runs(selection),
        missing=tuple((m.method, m.seed, m.reason) for m in selection.missing),
        per_user=per_user,
    )


def method_order(methods: Sequence[str]) -> list[str]:
    """Sort method names into table row order."""
    # Baselines first, then CLAIRO's variants, then CLAIRO itself, so the proposed method closes the table.
    return sorted(methods, key=lambda name: (name.startswith("clairo"), name == "clairo", name))


def _method_scores(
    method: str, runs: Sequence[RunRecord], per_user: pd.DataFrame, metrics: Sequence[str],
) -> MethodScores:
    values: dict[str, list[float]] = {metric: [] for metric in metrics}
    for run in runs:
        test = run.summary.get("test", {})
        for metric in metrics:
            if metric not in test:
                raise ReportError(
                    f"{run.run_dir / 'summary.json'} has no test metric {metric!r}; it has "
                    f"{', '.join(sorted(test))}. Choose --metrics among those."
                )
            values[metric].append(float(test[metric]))
    mean = {metric: float(np.mean(v)) for metric, v in values.items()}
    std = {metric: float(np.std(v, ddof=1)) if len(v) > 1 else math.nan for metric, v in values.items()}
    interval = {metric: t_interval(per_user[metric].to_numpy(float), CONFIDENCE_LEVEL) for metric in metrics}
    n_users = int(runs[0].summary.get("n_test_users", len(per_user)))
    return MethodScores(method, tuple(run.seed for run in runs), mean, std, n_users, interval)


def _compare(
    scores: Sequence[MethodScores],
    per_user: Mapping[str, pd.DataFrame],
    reference: str,
    metrics: Sequence[str],
) -> tuple[Comparison, ...]:
    reference_scores = next(s for s in scores if s.method == reference)
    pending = []
    for other in scores:
        if other.method == reference:
            continue
        for metric in metrics:
            reference_values, other_values = paired_user_values(per_user[reference], per_user[other.method], metric)
            pending.append((other, metric, paired_tests(reference_values, other_values)))
    wilcoxon_holm = holm_adjust(np.array([test.wilcoxon_p for _, _, test in pending]))
    ttest_holm = holm_adjust(np.array([test.ttest_p for _, _, test in pending]))
    return tuple(
        Comparison(
            method=other.method,
            reference=reference,
            metric=metric,
            method_mean=other.mean[metric],
            reference_mean=reference_scores.mean[metric],
            gain_percent=relative_gain_percent(reference_scores.mean[metric], other.mean[metric]),
            test=test,
            wilcoxon_p_holm=float(wilcoxon_holm[index]),
            ttest_p_holm=float(ttest_holm[index]),
        )
        for index, (other, metric, test) in enumerate(pending)
    )


def _short_list_methods(selection: RunSelection, largest_cutoff: int) -> str:
    """Name the methods whose recorded num_beams is below `largest_cutoff`, with their beams."""
    beams: dict[str, set[int]] = {}
    for run in selection.runs:
        value = run.config.get("method_config", {}).get("num_beams")
        if isinstance(value, int) and value < largest_cutoff:
            beams.setdefault(run.method, set()).add(value)
    return ", ".join(
        f"{method} ({'/'.join(str(value) for value in sorted(values))} beams)"
        for method, values in sorted(beams.items())
    )


def describe_runs(selection: RunSelection) -> tuple[tuple[str, str], ...]:
    """Describe data, processing, split, protocol, seeds, profile, software and dates of the runs.

    Data, split and protocol come from the first run; `check_comparable` guarantees the others match.
    """
    runs = selection.runs
    config = runs[0].config
    dataset = config.get("dataset", {})
    split = config.get("split", {})
    evaluation = config.get("evaluation", {})
    lines: list[tuple[str, str]] = []
    lines.append(("Dataset", (
        f"{dataset.get('name', selection.dataset)}: {_count(dataset.get('n_users'))} users, "
        f"{_count(dataset.get('n_items'))} items, {_count(dataset.get('n_interactions'))} interactions "
        f"(content hash {str(dataset.get('content_hash', 'not recorded'))[:16]})"
    )))
    lines.append(("Processing", _describe_value(dataset.get("processing", "not recorded"))))
    split_settings = ", ".join(
        f"{key}={value}" for key, value in split.items() if key not in ("key", "protocol", "dropped_users")
    )
    lines.append(("Split", (
        f"{split.get('protocol', 'not recorded')} ({split_settings}); split key {split.get('key')}; "
        f"{split.get('dropped_users', 0)} users with fewer than 3 interactions dropped"
    )))
    masked = evaluation.get("exclude_history_items")
    lines.append(("Evaluation", (
        f"ranking over the {evaluation.get('ranking', 'not recorded')}, "
        f"{evaluation.get('targets_per_user', '?')} target per user, ties counted "
        f"{evaluation.get('tie_break', 'not recorded')}; history items "
        f"{'masked' if masked else 'not masked' if masked is not None else 'masking not recorded'}; "
        f"cut-offs {', '.join(str(k) for k in evaluation.get('ks', []))}"
    )))
    lines.append(("Profile", selection.profile))
    short_lists = _short_list_methods(selection, max(evaluation.get("ks", []) or [0]))
    if short_lists:
        lines.append(("Generation", (
            f"{short_lists} decode a fixed number of beams per segmentation or ID space, fewer "
            f"than the largest cut-off {max(evaluation['ks'])}, so their lists may hold fewer items "
            "and their Recall and NDCG at the larger cut-offs are capped"
        )))
    seeds = "; ".join(
        f"{method}: {', '.join(str(run.seed) for run in selection.runs_of(method))}"
        for method in selection.methods
    )
    lines.append(("Seeds", seeds))
    lines.append(("Packages", _describe_packages(runs)))
    commits = sorted({
        f"{run.provenance.get('git', {}).get('commit') or 'unknown'}"
        f"{' (uncommitted changes)' if run.provenance.get('git', {}).get('dirty') else ''}"
        for run in runs
    })
    lines.append(("clairo-bench commit", ", ".join(commits)))
    devices = sorted({str(run.config.get("device", run.provenance.get("device", "unknown"))) for run in runs})
    lines.append(("Devices", ", ".join(devices)))
    finished = sorted(run.finished_at for run in runs if run.finished_at)
    if finished:
        lines.append(("Runs finished", f"{finished[0]:%Y-%m-%d} to {finished[-1]:%Y-%m-%d}"))
    lines.append(("Generated", f"{datetime.now(timezone.utc):%Y-%m-%d}"))
    return tuple(lines)


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


# Keys of the recorded processing left out of headers: per-file checksums are long and already
# covered by the content hash shown on the Dataset line.
HIDDEN_PROCESSING_KEYS = ("files",)


def _describe_value(value: Any, nested: bool = False) -> str:
    if isinstance(value, Mapping):
        text = ", ".join(
            f"{key}={_describe_value(item, nested=True)}" for key, item in value.items()
            if key not in HIDDEN_PROCESSING_KEYS
        )
        return f"({text})" if nested else text
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_describe_value(item, nested=True) for item in value) + "]"
    return str(value)


def _describe_packages(runs: Sequence[RunRecord]) -> str:
    versions: dict[str, dict[str, list[str]]] = {}
    for run in runs:
        for package, version in run.provenance.get("packages", {}).items():
            versions.setdefault(package, {}).setdefault(version, []).append(run.method)
    parts = []
    for package in sorted(versions):
        by_version = versions[package]
        if len(by_version) == 1:
            parts.append(f"{package} {next(iter(by_version))}")
        else:
            detail = ", ".join(
                f"{version} ({', '.join(sorted(set(methods)))})" for version, methods in sorted(by_version.items())
            )
            parts.append(f"{package} {detail}")
    return "; ".join(parts) or "not recorded"
