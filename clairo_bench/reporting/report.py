"""Write leaderboard files for one or more datasets from finished run directories.

Per dataset (`<out>/<dataset>.md`, `.tex`, `.csv`): the leaderboard, gains over the reference,
paired tests, missing runs and, in the Markdown file, metrics by slice (also `<dataset>-slices.csv`).
Across datasets: `<out>/combined.md`, `.tex`, `.csv`. Figures go to `<out>/plots/`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clairo_bench.data.dataset import DataError
from clairo_bench.io import atomic_write_text
from clairo_bench.reporting.collect import ReportError, collect_runs, list_datasets
from clairo_bench.reporting.leaderboard import DEFAULT_METRICS, Leaderboard, build_leaderboard
from clairo_bench.reporting.plots import file_stem, plot_methods, plot_slices
from clairo_bench.reporting.slices import SliceReport, slice_metrics, training_item_counts
from clairo_bench.reporting.tables import (
    render_combined_latex,
    render_combined_markdown,
    render_csv,
    render_latex,
    render_markdown,
    render_slices_markdown,
)

logger = logging.getLogger(__name__)

FORMATS = ("md", "latex", "csv")
ItemCountsLoader = Callable[[Mapping[str, Any]], np.ndarray]


@dataclass(frozen=True)
class ReportOptions:
    """Options of a leaderboard report: what it computes and writes.

    Attributes:
        metrics: metric columns, for example ("recall@5", "ndcg@10").
        reference: method others are compared with; None picks "clairo" when it has runs.
        profile: profile of the runs to use; None requires the runs to share one.
        formats: subset of FORMATS.
        slices: compute metrics by item popularity and history length.
        plots: write PNG and PDF figures.
        history_buckets: number of history-length quantile buckets.
        head_share, tail_share: shares of training interactions held by head and tail items.
    """

    metrics: tuple[str, ...] = DEFAULT_METRICS
    reference: str | None = None
    profile: str | None = None
    formats: tuple[str, ...] = FORMATS
    slices: bool = True
    plots: bool = True
    history_buckets: int = 4
    head_share: float = 0.2
    tail_share: float = 0.2

    def __post_init__(self) -> None:
        unknown = [name for name in self.formats if name not in FORMATS]
        if unknown:
            raise ReportError(f"Unknown format {', '.join(unknown)}; use md, latex, csv or all.")


def resolve_datasets(runs_dir: Path, requested: str) -> list[str]:
    """Expand "all" or a comma-separated list of dataset names."""
    if requested == "all":
        datasets = list_datasets(runs_dir)
        if not datasets:
            raise ReportError(f"No run directories under {runs_dir}; run `clairo-bench run` first.")
        return datasets
    return [name.strip() for name in requested.split(",") if name.strip()]


def write_dataset_report(
    runs_dir: Path,
    dataset: str,
    out_dir: Path,
    options: ReportOptions,
    item_counts_loader: ItemCountsLoader | None = training_item_counts,
) -> tuple[Leaderboard, list[Path]]:
    """Build one dataset's leaderboard and write its files; return the leaderboard and the paths.

    `item_counts_loader` turns a run's config into training counts per item for popularity slices.
    When it is None or fails, only history-length slices are written, and a failure is logged.
    """
    selection = collect_runs(runs_dir, dataset, options.profile)
    board = build_leaderboard(selection, options.metrics, options.reference)
    first = selection.runs[0]
    slices = (
        _slices(board, {**first.config, "run_dir": str(first.run_dir)}, options, item_counts_loader)
        if options.slices
        else None
    )
    out_dir = Path(out_dir)
    written: list[Path] = []
    if "md" in options.formats:
        text = render_markdown(board)
        if slices is not None:
            text += "\n" + render_slices_markdown(slices, options.metrics)
        written.append(_write(out_dir / f"{dataset}.md", text))
    if "latex" in options.formats:
        written.append(_write(out_dir / f"{dataset}.tex", render_latex(board)))
    if "csv" in options.formats:
        written.append(_write(out_dir / f"{dataset}.csv", render_csv([board])))
        if slices is not None:
            written.append(_write(out_dir / f"{dataset}-slices.csv", slices.table.to_csv(index=False)))
    if options.plots:
        plots = out_dir / "plots"
        written += plot_methods([board], options.metrics, plots / f"{file_stem(dataset)}-methods")
        if slices is not None:
            for kind in dict.fromkeys(slices.table["kind"]):
                stem = plots / f"{file_stem(dataset)}-slices-{file_stem(kind.replace(' ', '-'))}"
                written += plot_slices(slices, kind, options.metrics, stem)
    return board, written


def _slices(
    board: Leaderboard, config: Mapping[str, Any], options: ReportOptions, loader: ItemCountsLoader | None,
) -> SliceReport:
    counts = None
    skipped = None
    if loader is not None:
        try:
            counts = loader(config)
        except (ImportError, DataError, ReportError, OSError, KeyError) as error:
            skipped = f"Popularity slices skipped: training counts of {board.dataset} are unavailable ({error})."
            logger.warning(skipped)
    report = slice_metrics(board.per_user, options.metrics, counts, options.history_buckets,
                           options.head_share, options.tail_share)
    if skipped:
        report = SliceReport(report.table, report.notes + (skipped,))
    return report


def write_combined_report(boards: Sequence[Leaderboard], out_dir: Path, options: ReportOptions) -> list[Path]:
    """Write the table across datasets (combined.md, .tex, .csv) and its figure."""
    out_dir = Path(out_dir)
    written = []
    if "md" in options.formats:
        written.append(_write(out_dir / "combined.md", render_combined_markdown(boards)))
    if "latex" in options.formats:
        written.append(_write(out_dir / "combined.tex", render_combined_latex(boards)))
    if "csv" in options.formats:
        written.append(_write(out_dir / "combined.csv", render_csv(boards)))
    if options.plots:
        written += plot_methods(boards, options.metrics, out_dir / "plots" / "combined-methods")
    return written


def generate_reports(
    runs_dir: Path,
    datasets: Sequence[str],
    out_dir: Path,
    options: ReportOptions,
    combined: bool = False,
    item_counts_loader: ItemCountsLoader | None = training_item_counts,
) -> list[Path]:
    """Write every requested dataset's files and, with `combined`, the table across them."""
    boards = []
    written: list[Path] = []
    for dataset in datasets:
        board, paths = write_dataset_report(runs_dir, dataset, out_dir, options, item_counts_loader)
        boards.append(board)
        written += paths
    if combined:
        written += write_combined_report(boards, out_dir, options)
    return written


def _write(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    logger.debug("Wrote %s", path)  # the command lists every written file itself
    return path
