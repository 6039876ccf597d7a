"""`clairo-bench datasets list | items | download | stats`: dataset cards, items, raw downloads, statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from clairo_bench.data.cards import load_card
from clairo_bench.data.catalog import available_sources, load_dataset, scan_datasets
from clairo_bench.data.dataset import DataError, Dataset
from clairo_bench.data.download import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DownloadError,
    download_raw,
)
from clairo_bench.data.stats import dataset_stats

app = typer.Typer(no_args_is_help=True)
console = Console()
error_console = Console(stderr=True)

_RAW_DIR_HELP = (
    "Root folder of raw downloads; files go to <folder>/<name>/. "
    "Default: CLAIRO_BENCH_RAW_DIR or raw/ in the datasets folder."
)
_NAME_HELP = "Dataset card name, e.g. instruments."
_SOURCE_HELP = "released or raw; default: the card's default_source."


def _fail(message: str) -> NoReturn:
    error_console.print("[red]Error:[/red] " + escape(message), markup=True, highlight=False)
    raise typer.Exit(code=1)


def _load_or_fail(name: str, source: str | None, raw_dir: Path | None) -> Dataset:
    try:
        return load_dataset(name, source=source, raw_dir=raw_dir)
    except DataError as error:
        _fail(str(error))


@app.command("list")
def list_command(
    raw_dir: Optional[Path] = typer.Option(None, "--raw-dir", help=_RAW_DIR_HELP),
) -> None:
    """List the dataset cards, their sources and whether each source's files are present."""
    try:
        scan = scan_datasets()
    except DataError as error:
        _fail(str(error))
    cards = scan.cards
    table = Table(title="Datasets")
    # Names are what users type next, so the category column shrinks first on a narrow terminal.
    table.add_column("name", style="bold", no_wrap=True,
                     min_width=max((len(card.name) for card in cards), default=4))
    table.add_column("category")
    table.add_column("year", justify="right")
    table.add_column("default source")
    table.add_column("released files")
    table.add_column("raw files")
    table.add_column("ready")
    not_ready = []
    for card in cards:
        available = available_sources(card, raw_dir)

        def describe(source: str) -> str:
            if source not in available:
                return "-"
            if available[source]:
                return "[green]present[/green]"
            # Missing raw files matter only where raw is the default source.
            return "[yellow]missing[/yellow]" if source == card.default_source else "optional"

        ready = bool(available.get(card.default_source))
        if not ready:
            not_ready.append(card.name)
        table.add_row(
            card.name,
            card.category,
            str(card.year),
            card.default_source,
            describe("released"),
            describe("raw"),
            "[green]yes[/green]" if ready else "no",
        )
    console.print(table)
    console.print("A ready dataset runs offline from the files of its default source.")
    if not_ready:
        console.print(
            f"To make {', '.join(not_ready)} ready, download the raw files (needs network): "
            f"clairo-bench datasets download {not_ready[0]}",
            highlight=False,
        )
    # One invalid card must not hide the others, so it is reported after the table.
    for invalid in scan.invalid:
        error_console.print("[red]Invalid card:[/red] " + escape(invalid.message), highlight=False)
    if scan.invalid:
        raise typer.Exit(code=1)


@app.command("items")
def items_command(
    name: str = typer.Argument(..., help=_NAME_HELP),
    search: Optional[str] = typer.Option(
        None, "--search", "-s", help="Show only items whose identifier or title contains this text (any case)."
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Rows to show, most interacted items first."),
    source: Optional[str] = typer.Option(None, "--source", help=_SOURCE_HELP),
    raw_dir: Optional[Path] = typer.Option(None, "--raw-dir", help=_RAW_DIR_HELP),
) -> None:
    """List item identifiers, indices and titles, to write a `recommend --history`."""
    dataset = _load_or_fail(name, source, raw_dir)

    # All interactions, not the training part of a split: this only helps a user pick items.
    counts = np.zeros(dataset.n_items, dtype=np.int64)
    if dataset.sequences:
        counts += np.bincount(np.concatenate(dataset.sequences), minlength=dataset.n_items)
    has_titles = dataset.item_meta is not None
    titles: list[str | None] = [None] * dataset.n_items
    if has_titles:
        titles = [meta.title if meta is not None else None for meta in dataset.item_meta]

    rows = list(range(dataset.n_items))
    if search:
        needle = search.casefold()
        rows = [row for row in rows if needle in dataset.item_ids[row].casefold()
                or (titles[row] is not None and needle in titles[row].casefold())]
    if not rows:
        _fail(f"No item of dataset {dataset.name!r} has {search!r} in its identifier or title.")
    # Equal counts keep index order, so the listing is the same on every call.
    rows.sort(key=lambda row: (-int(counts[row]), row))

    title = f"Items of {dataset.name}" + (f" matching {search!r}" if search else "")
    caption = f"{len(rows):,} item{'s' if len(rows) > 1 else ''}, most interacted first"
    table = Table(title=escape(title), caption=caption)
    table.add_column("index", justify="right")
    table.add_column("identifier")
    table.add_column("interactions", justify="right")
    if has_titles:
        table.add_column("title")
    for row in rows[:limit]:
        cells = [f"#{row}", dataset.item_ids[row], f"{int(counts[row]):,}"]
        if has_titles:
            cells.append(escape(titles[row]) if titles[row] else "-")
        table.add_row(*cells)
    console.print(table)
    if len(rows) > limit:
        console.print(f"{len(rows) - limit:,} more; raise --limit or narrow --search.", highlight=False)
    if not has_titles:
        console.print(f"Dataset {dataset.name!r} has no item metadata, so no titles are shown.")
    console.print(
        f"Give items to `clairo-bench recommend --history` as identifiers or as indices "
        f"#0 to #{dataset.n_items - 1}.",
        highlight=False,
    )


@app.command("download")
def download_command(
    name: str = typer.Argument(..., help=_NAME_HELP),
    raw_dir: Optional[Path] = typer.Option(None, "--raw-dir", help=_RAW_DIR_HELP),
    connect_timeout: float = typer.Option(
        DEFAULT_CONNECT_TIMEOUT_S,
        "--connect-timeout",
        min=0.1,
        help="Seconds to wait for the connection to the download host before giving up.",
    ),
) -> None:
    """Download the raw review and metadata files of a dataset (resumable)."""
    try:
        card = load_card(name)
    except DataError as error:
        _fail(str(error))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def report(file_name: str, done: int, total: int | None) -> None:
            if file_name not in tasks:
                tasks[file_name] = progress.add_task(file_name, total=total)
            progress.update(tasks[file_name], completed=done, total=total)

        try:
            results = download_raw(
                card, raw_dir=raw_dir, connect_timeout_s=connect_timeout, progress=report
            )
        except DownloadError as error:
            progress.stop()
            _fail(str(error))
    table = Table(title=f"Raw files of {card.name}")
    table.add_column("file")
    table.add_column("status")
    table.add_column("sha256")
    for result in results:
        if result.skipped:
            status = "already present"
        elif result.resumed_from_bytes:
            status = f"resumed at {result.resumed_from_bytes:,} bytes"
        else:
            status = "downloaded"
        status += ", verified" if result.verified else ", not verified"
        table.add_row(str(result.path), status, result.sha256)
    console.print(table)
    if not all(result.verified for result in results):
        console.print(
            f"The card {card.path} declares no hash for some files; add the values above to "
            "its [raw.sha256] table to verify future downloads."
        )


def _format_fraction(value: float) -> str:
    return f"{value:.1%}"


def _render_stats(stats: dict[str, Any], source: str) -> None:
    table = Table(title=f"{stats['name']} ({source})", show_header=False)
    table.add_column("statistic", style="bold")
    table.add_column("value", justify="right")
    lengths = stats["sequence_length"]
    table.add_row("users", f"{stats['users']:,}")
    table.add_row("items", f"{stats['items']:,}")
    table.add_row("interactions", f"{stats['interactions']:,}")
    table.add_row("density", f"{stats['density']:.6f}")
    table.add_row("sequence length min", f"{lengths['min']:,}")
    table.add_row("sequence length mean", f"{lengths['mean']:.2f}")
    table.add_row("sequence length median", f"{lengths['median']:.1f}")
    table.add_row("sequence length max", f"{lengths['max']:,}")
    table.add_row("items without interactions", f"{stats['cold_items']:,}")
    console.print(table)

    popularity = Table(title="Interactions per item (quantiles)")
    for quantile in stats["item_popularity"]:
        popularity.add_column(quantile, justify="right")
    popularity.add_row(*(f"{value:g}" for value in stats["item_popularity"].values()))
    console.print(popularity)

    coverage = Table(title="Feature coverage (fraction of items)")
    coverage.add_column("modality")
    coverage.add_column("coverage", justify="right")
    for modality, value in stats["coverage"].items():
        coverage.add_row(modality, _format_fraction(value))
    console.print(coverage)

    if stats["codes"]:
        codes = Table(title="Released codes")
        for column in ("modality", "file", "levels", "codebook", "distinct tuples", "colliding"):
            codes.add_column(column)
        for modality, code_stats in stats["codes"].items():
            codes.add_row(
                modality,
                code_stats["source"],
                str(code_stats["levels"]),
                str(code_stats["codebook_size"]),
                f"{code_stats['distinct_tuples']:,}",
                f"{code_stats['colliding_items']:,}",
            )
        console.print(codes)


@app.command("stats")
def stats_command(
    name: str = typer.Argument(..., help=_NAME_HELP),
    source: Optional[str] = typer.Option(None, "--source", help=_SOURCE_HELP),
    raw_dir: Optional[Path] = typer.Option(None, "--raw-dir", help=_RAW_DIR_HELP),
) -> None:
    """Print users, items, interactions, sequence lengths, popularity and feature coverage."""
    dataset = _load_or_fail(name, source, raw_dir)
    _render_stats(dataset_stats(dataset), dataset.processing.get("source", "?"))
