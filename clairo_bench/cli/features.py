"""`clairo-bench features ...`: build and cache discrete item features."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clairo_bench.data.dataset import DataError
from clairo_bench.features import FeatureSettings, MissingWeightsError, apply_overrides
from clairo_bench.features.settings import LAYOUTS, SOURCES, parse_assignments
from clairo_bench.io import folder_path_error

app = typer.Typer(no_args_is_help=True)
console = Console()
error_console = Console(stderr=True)
logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path(".cache")  # the folder `clairo-bench run` reads


@app.command("build")
def build(
    dataset_name: str = typer.Option(..., "--dataset", help="Dataset name, as in its card."),
    layout: str = typer.Option(
        None, "--layout", help=f"Quantizer layout: {' or '.join(LAYOUTS)} (default fused)."
    ),
    source: str = typer.Option(
        None,
        "--source",
        help=f"Feature source: {', '.join(SOURCES)} (default auto: the dataset's codes if it "
        "ships them for every modality, else build from content).",
    ),
    assignments: list[str] = typer.Option(
        [], "--set", help="Feature setting as key=value, for example text_pca_dim=256; repeatable."
    ),
    cache_dir: Path = typer.Option(
        DEFAULT_CACHE_DIR, "--cache-dir", help="Cache folder for the split, images and stages."
    ),
) -> None:
    """Build the item features of one dataset, stage by stage, and print a summary."""
    from clairo_bench.data.catalog import load_dataset
    from clairo_bench.data.split import SplitSettings, load_or_build_split
    from clairo_bench.features import build_item_features

    overrides = {}
    if layout is not None:
        overrides["layout"] = layout
    if source is not None:
        overrides["source"] = source
    try:
        overrides.update(parse_assignments(assignments))
        settings = apply_overrides(FeatureSettings(), overrides)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error

    try:
        problem = folder_path_error(cache_dir, "--cache-dir")
        if problem:
            raise DataError(problem)
        dataset = load_dataset(dataset_name, cache_dir=cache_dir)
        # The training items do not depend on max_history_items, so the default split settings
        # give the same PCA and OPQ training set as any other split of this dataset.
        split = load_or_build_split(dataset, SplitSettings(), cache_dir)
    except DataError as error:
        error_console.print("[red]Error:[/red] " + escape(str(error)), highlight=False)
        raise typer.Exit(code=1) from error

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        tasks: dict[str, int] = {}

        def report(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = progress.add_task(task, total=total)
            progress.update(tasks[task], completed=done, total=total)

        try:
            features = build_item_features(dataset, split, settings, cache_dir, progress=report)
        except (MissingWeightsError, DataError, ValueError) as error:
            console.print("[red]Feature build failed:[/red] " + escape(str(error)))
            raise typer.Exit(code=1) from error

    stages = features.provenance.get("stages", [])
    hits = sum(record["cache_hit"] for record in stages)
    table = Table(title=f"Item features of {dataset.name}")
    table.add_column("quantity")
    table.add_column("value")
    table.add_row("source", features.provenance.get("source_choice", ""))
    table.add_row("items", str(features.n_items))
    table.add_row("categories", str(features.n_categories))
    table.add_row("category modalities", ", ".join(features.category_modalities))
    table.add_row("codebook sizes", ", ".join(map(str, features.codebook_sizes)))
    table.add_row("collision rate before dedup", f"{features.collision_rate:.4f}")
    table.add_row("cache hits", f"{hits} of {len(stages)} stages" if stages else "no cached stages")
    console.print(table)
