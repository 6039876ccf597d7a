"""Figures for leaderboards: methods per dataset with 95% confidence intervals, and metrics by slice.

Figures are drawn on matplotlib `Figure` objects with the Agg canvas, so no display or pyplot
state is involved, and each is written as PNG and PDF. Error bars are 95% t-intervals over test
users of the seed-averaged per-user metric (`significance.t_interval`); they show the spread over
users, not over seeds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clairo_bench.io import atomic_path
from clairo_bench.reporting.leaderboard import Leaderboard, method_order
from clairo_bench.reporting.slices import SliceReport
from clairo_bench.reporting.tables import method_name, metric_name

logger = logging.getLogger(__name__)

PNG_DPI = 150


def file_stem(text: str) -> str:
    """Turn a metric or dataset name into a file-name part ("ndcg@10" -> "ndcg10")."""
    return "".join(character for character in text.replace("@", "") if character.isalnum() or character in "-_")


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    """Write `figure` to stem.png and stem.pdf atomically and return both paths."""
    FigureCanvasAgg(figure)
    paths = []
    for suffix in (".png", ".pdf"):
        path = stem.with_suffix(suffix)
        with atomic_path(path) as temporary:
            # An empty CreationDate keeps the PDF identical when the same runs are plotted again.
            metadata = {"CreationDate": None} if suffix == ".pdf" else None
            figure.savefig(temporary, format=suffix[1:], dpi=PNG_DPI, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    return paths


def _grouped_bars(axes, groups: Sequence[str], methods: Sequence[str], height, error) -> None:
    """Draw one bar per (group, method); height(group, method) and error(...) return NaN when absent."""
    width = 0.8 / max(len(methods), 1)
    positions = np.arange(len(groups))
    for index, method in enumerate(methods):
        heights = np.array([height(group, method) for group in groups], dtype=float)
        errors = np.array([error(group, method) for group in groups], dtype=float).T if error else None
        axes.bar(positions + (index - (len(methods) - 1) / 2) * width, heights, width,
                 yerr=errors, capsize=2, label=method_name(method))
    axes.set_xticks(positions)
    axes.set_xticklabels(groups)
    axes.set_ylim(bottom=0)
    axes.grid(axis="y", alpha=0.3)


def plot_methods(boards: Sequence[Leaderboard], metrics: Sequence[str], stem: Path) -> list[Path]:
    """Plot each method's mean per dataset with 95% t-interval error bars, one panel per metric."""
    methods = method_order({scores.method for board in boards for scores in board.methods})
    datasets = [board.dataset for board in boards]
    by_dataset = {board.dataset: board for board in boards}
    figure = Figure(figsize=(max(4.0, 1.2 * len(methods) * len(boards)), 3.2 * len(metrics)))
    for row, metric in enumerate(metrics):
        axes = figure.add_subplot(len(metrics), 1, row + 1)

        def interval(dataset: str, method: str, metric: str = metric) -> tuple[float, float, float]:
            try:
                return by_dataset[dataset].scores(method).interval[metric]
            except KeyError:
                return (np.nan, np.nan, np.nan)

        def height(dataset: str, method: str) -> float:
            return interval(dataset, method)[0]

        def error(dataset: str, method: str) -> tuple[float, float]:
            mean, low, high = interval(dataset, method)
            return (mean - low, high - mean)

        _grouped_bars(axes, datasets, methods, height, error)
        axes.set_ylabel(metric_name(metric))
        if row == 0:
            axes.set_title("Test metrics with 95% t-intervals over users")
            axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(figure, stem)


def plot_slices(report: SliceReport, kind: str, metrics: Sequence[str], stem: Path) -> list[Path]:
    """Plot each method's mean metric per slice of one kind, one panel per metric."""
    table = report.table[report.table["kind"] == kind]
    if table.empty:
        raise ValueError(f"The slice report has no slices of kind {kind!r}.")
    slices = list(dict.fromkeys(table["slice"]))
    methods = method_order(set(table["method"]))
    values = table.set_index(["slice", "method", "metric"])["mean"]
    counts = table.drop_duplicates("slice").set_index("slice")["n_users"]
    figure = Figure(figsize=(max(4.0, 1.0 * len(methods) * len(slices)), 3.2 * len(metrics)))
    for row, metric in enumerate(metrics):
        axes = figure.add_subplot(len(metrics), 1, row + 1)
        _grouped_bars(axes, [f"{name}\n({counts[name]} users)" for name in slices], methods,
                      lambda group, method: values.get((group.split("\n")[0], method, metric), np.nan), None)
        axes.set_ylabel(metric_name(metric))
        if row == 0:
            axes.set_title(f"Test metrics by {kind}")
            axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(figure, stem)
