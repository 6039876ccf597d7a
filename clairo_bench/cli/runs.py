"""`clairo-bench run`: train and score methods as independent, resumable jobs."""

from __future__ import annotations

import difflib
import json
import logging
import re
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from clairo_bench.data.catalog import load_dataset
from clairo_bench.data.dataset import DataError
from clairo_bench.data.split import MIN_SEQUENCE_LENGTH
from clairo_bench.io import folder_path_error
from clairo_bench.methods.base import PROFILES, ConfigError
from clairo_bench.methods.registry import UnknownMethodError, get_method_class, register_plugin
from clairo_bench.runner import RunInterrupted, expand_jobs, resolve_device, run_jobs

logger = logging.getLogger(__name__)

REPORTED_METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"Invalid seeds {text!r}; write a comma-separated list such as 0,1,2.")
    if any(seed < 0 or seed >= 2**32 for seed in seeds):
        raise typer.BadParameter(f"Seeds must be in 0..2**32-1, got {text!r}.")
    if not seeds:
        raise typer.BadParameter("Give at least one seed, for example --seeds 0.")
    return seeds


def _check_overrides(overrides: list[str], methods: list[str]) -> None:
    """Reject --set keys that configure nothing, before any job starts."""
    fields = {name: set(get_method_class(name).config_class.__dataclass_fields__) for name in methods}
    for item in overrides:
        key = item.partition("=")[0]
        scope, dot, name = key.partition(".")
        if dot and scope in ("split", "eval"):
            continue
        if dot:
            if scope not in fields:
                raise ConfigError(f"--set {item!r} names method {scope!r}, which is not in --methods.")
            if name not in fields[scope]:
                raise ConfigError(
                    f"--set {item!r}: {scope} has no setting {name!r}. "
                    + (f"Available: {', '.join(sorted(fields[scope]))}." if fields[scope]
                       else f"{scope} has no settings at all.")
                )
        elif not any(key in f for f in fields.values()):
            raise ConfigError(_unknown_key_message(item, key, fields))


def _unknown_key_message(item: str, key: str, fields: dict[str, set[str]]) -> str:
    """Explain an unprefixed --set key that no method has, naming the likeliest intended key."""
    from clairo_bench.data.split import SplitSettings
    from clairo_bench.evaluation import EvalSettings

    candidates = sorted(set().union(*fields.values()))
    candidates += [f"split.{name}" for name in SplitSettings.__dataclass_fields__]
    candidates += [f"eval.{name}" for name in EvalSettings.__dataclass_fields__]
    bare = {candidate.partition(".")[2] or candidate: candidate for candidate in candidates}
    close = [bare[name] for name in difflib.get_close_matches(key, list(bare), n=3)]
    message = f"--set {item!r}: no method in --methods has a setting {key!r}."
    if close:
        return message + f" Did you mean {' or '.join(close)}?"
    listing = "; ".join(f"{method}: {', '.join(sorted(names))}" for method, names in fields.items())
    return (message + f" Settings per method: {listing}. Split and evaluation settings take the "
            "prefix split. or eval.")


def run(
    methods: str = typer.Option(..., "--methods", "-m", help="Comma-separated method names (see `methods list`)."),
    dataset: str = typer.Option("instruments", "--dataset", "-d", help="Dataset card name (see `datasets list`)."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated random seeds; one job per method and seed."),
    profile: str = typer.Option("quick", "--profile", help=f"Hyperparameter profile: {', '.join(PROFILES)}. "
                                "smoke only checks that a method runs, quick is sized for a CPU, paper uses published settings."),
    overrides: list[str] = typer.Option([], "--set", help="Override a setting: KEY=VALUE (all methods with KEY), "
                                        "METHOD.KEY=VALUE, split.max_history_items=N or eval.KEY=VALUE. Repeatable."),
    plugin: list[str] = typer.Option([], "--plugin", help="Load a third-party method given as module:Class. Repeatable."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Folder of run directories."),
    cache_dir: Path = typer.Option(Path(".cache"), "--cache-dir", help="Folder for cached splits, features and vocabularies."),
    device: str = typer.Option("auto", "--device", help="torch device: auto (CUDA when available), cpu, cuda, cuda:N."),
    workers: int = typer.Option(1, "--workers", help="Jobs run at once, each in its own process."),
) -> None:
    """Train and evaluate each (method, seed) on DATASET as an independent, resumable job.

    Finished jobs are skipped. An interrupted job resumes from its last checkpoint. A failing
    job is reported, and the others go on.
    """
    console = Console()
    if profile not in PROFILES:
        raise typer.BadParameter(f"Unknown profile {profile!r}. Available: {', '.join(PROFILES)}.")
    try:
        for reference in plugin:
            register_plugin(reference)
        names = [name.strip() for name in methods.split(",") if name.strip()]
        if not names:
            raise ConfigError("No method given; pass --methods NAME[,NAME...] (see `methods list`).")
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}.")
        if device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", device):
            raise ConfigError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N.")
        if device.startswith("cuda"):
            resolve_device(device)  # without CUDA this fails once here instead of once per job
        for option, folder in (("--runs-dir", runs_dir), ("--cache-dir", cache_dir)):
            problem = folder_path_error(folder, option)
            if problem:
                raise ConfigError(problem)
        for name in names:
            get_method_class(name)
        _check_overrides(overrides, names)
    except (UnknownMethodError, ConfigError) as error:
        console.print("[red]Error:[/red] " + escape(str(error)))
        raise typer.Exit(2)

    try:
        loaded = load_dataset(dataset)
        if not any(len(sequence) >= MIN_SEQUENCE_LENGTH for sequence in loaded.sequences):
            # Checked once here; otherwise every job would fail with the same split error.
            raise DataError(
                f"Dataset {dataset!r} has no user with at least {MIN_SEQUENCE_LENGTH} interactions, "
                "so no leave-one-out split can be built; `clairo-bench datasets stats "
                f"{dataset}` shows its sequence lengths."
            )
        dataset_hash = loaded.content_hash()
        jobs = expand_jobs(names, dataset, _parse_seeds(seeds), profile, overrides, plugin, dataset_hash)
        for job in jobs:
            job.resolved_overrides()  # rejects invalid split., eval. and method values up front
    except (DataError, ConfigError) as error:
        console.print("[red]Error:[/red] " + escape(str(error)))
        raise typer.Exit(2)
    too_large = [k for k in jobs[0].resolved_overrides()["eval"].get("ks", ()) if k > loaded.n_items]
    if too_large:
        logger.warning("Cut-offs %s exceed the %d items of %s, so those metrics count every ranked "
                       "target as a hit.", ", ".join(map(str, too_large)), loaded.n_items, dataset)
    interrupted = False
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"Jobs on {dataset} ({profile})", total=len(jobs))
        try:
            outcomes = run_jobs(jobs, runs_dir, cache_dir, device=device, workers=workers,
                                on_outcome=lambda outcome: _advance(progress, task, outcome))
        except RunInterrupted as stop:
            outcomes, interrupted = stop.outcomes, True
    order = {name: position for position, name in enumerate(names)}
    _print_outcomes(console, sorted(outcomes, key=lambda o: (order.get(o.job.method, len(order)), o.job.seed)))
    if interrupted:
        console.print("[yellow]Interrupted.[/yellow] Finished runs are kept; rerun the same command "
                      "to skip them and resume the others from their last checkpoints (written at "
                      "the end of each epoch, so a job stopped in its first epoch starts over).")
        raise typer.Exit(130)
    if any(outcome.status == "failed" for outcome in outcomes):
        raise typer.Exit(1)


def _advance(progress: Progress, task, outcome) -> None:
    # Jobs stopped by Ctrl-C or never started did not complete, so the bar does not count them.
    if outcome.status in ("finished", "skipped", "failed"):
        progress.advance(task)


def _table_metrics(outcomes) -> list[str]:
    """Choose the usual metric columns, or the runs' own cut-offs when `--set eval.ks` left them out."""
    present = {name for outcome in outcomes for name in outcome.summary.get("test", {})}
    usual = [name for name in REPORTED_METRICS if name in present]
    if usual or not present:
        return usual or list(REPORTED_METRICS)
    own = [name for name in present if name.split("@")[0] in ("recall", "ndcg")]
    own.sort(key=lambda name: (int(name.split("@")[1]), name.startswith("ndcg")))  # recall first at each K
    return own[:4] or list(REPORTED_METRICS)


def _print_outcomes(console: Console, outcomes) -> None:
    """Print one row per job in the given order, then CLAIRO's vocabulary shares for the runs that recorded them."""
    if not console.is_terminal:
        console.width = max(console.width, 200)  # a log file has no terminal width to fit
    metrics = _table_metrics(outcomes)
    headers = ["method", "seed", "status", *metrics, "wall time (s)", "peak memory (MiB)", "run directory"]
    # Fold long cells instead of cutting them: the run directory is what `recommend --run` needs.
    table = Table(*[Column(header, overflow="fold") for header in headers])
    for outcome in outcomes:
        test = outcome.summary.get("test", {})
        status = outcome.status
        if outcome.status == "failed":
            status = "[red]failed[/red]: " + escape(str(outcome.error))
        elif outcome.status in ("interrupted", "not started"):
            status = f"[yellow]{outcome.status}[/yellow]"
        table.add_row(
            outcome.job.method, str(outcome.job.seed), status,
            *[f"{test[m]:.4f}" if m in test else "-" for m in metrics],
            f"{outcome.summary['wall_time_s']:.0f}" if "wall_time_s" in outcome.summary else "-",
            f"{outcome.summary['peak_memory_mb']:.0f}" if "peak_memory_mb" in outcome.summary else "-",
            # A job that never started has no directory yet.
            escape(str(outcome.run_dir)) if outcome.run_dir.exists() else "-",
        )
    console.print(table)
    for outcome in outcomes:
        line = vocabulary_modality_line(outcome.run_dir)
        if line:
            console.print(f"{outcome.job.method} seed {outcome.job.seed}: {line}")


def vocabulary_modality_line(run_dir: Path) -> str | None:
    """Describe the modality shares of a run's merged vocabulary tokens, if it recorded them.

    Returns None for runs without a multimodal vocabulary (baselines, ActionPiece, failed jobs).
    """
    try:
        records = json.loads((Path(run_dir) / "records.json").read_text())
    except (OSError, ValueError):
        return None
    modality = records.get("vocabulary", {}).get("modality") if isinstance(records, dict) else None
    if not modality or not sum(modality.get("counts", {}).values()):
        return None
    shares = modality["shares"]
    return (
        f"merged vocabulary tokens are {shares.get('cross_modal', 0.0):.1%} cross-modal, "
        f"{shares.get('text_only', 0.0):.1%} text-only, {shares.get('image_only', 0.0):.1%} "
        "image-only (records.json, vocabulary.modality)"
    )


def recommend(
    run_dir: Path = typer.Option(..., "--run", help="A finished run directory (see `run`)."),
    history: str = typer.Option(..., "--history", help="Comma-separated items, oldest first: ASINs or #INDEX."),
    k: int = typer.Option(10, "--k", help="Number of items to list."),
    exclude_history: bool = typer.Option(False, "--exclude-history",
                                         help="Leave the items of HISTORY out of the list."),
    cache_dir: Path = typer.Option(Path(".cache"), "--cache-dir", help="Folder for cached splits and features."),
) -> None:
    """Print the top-K items that a trained run recommends after HISTORY.

    As in the run's evaluation, the method receives only the most recent split.max_history_items items.
    """
    from clairo_bench.inference import load_trained_method, parse_history, recommend_for_history

    console = Console()
    if k < 1:
        raise typer.BadParameter(f"--k must be at least 1, got {k}.")
    try:
        problem = folder_path_error(cache_dir, "--cache-dir")
        if problem:
            raise DataError(problem)
        trained = load_trained_method(run_dir, cache_dir)
        items = parse_history(history.split(","), trained.dataset)
    except (FileNotFoundError, DataError, ConfigError, NotImplementedError, UnknownMethodError) as error:
        console.print("[red]Error:[/red] " + escape(str(error)))
        raise typer.Exit(2)
    dataset = trained.dataset
    cap = trained.max_history_items
    if len(items) > cap:
        console.print(f"Evaluation gives this run's method the last {cap} items of a history, so the "
                      f"first {len(items) - cap} of the {len(items)} given do not inform the ranking"
                      + (" (--exclude-history still leaves them out)." if exclude_history else "."))
    ranked = recommend_for_history(trained.method, dataset, items, k, cap, exclude_history)
    # Indices are written as --history takes them (#N), so a row can be pasted back.
    has_titles = any(item.title for item in ranked)
    columns = ["rank", "item index", "item id", *(["title"] if has_titles else [])]
    table = Table(*columns, title=f"{trained.method.name} on {dataset.name}")
    for item in ranked:
        cells = [str(item.rank), f"#{item.item_index}", escape(item.item_id)]
        table.add_row(*cells, *([escape(item.title or "")] if has_titles else []))
    console.print(table)
    if ranked and not has_titles:
        console.print(f"Dataset {dataset.name} has no titles for these items (its metadata has none).")
    if len(ranked) < k:
        seen = len(set(items.tolist())) if exclude_history else 0
        if len(ranked) >= dataset.n_items - seen:
            reason = f"the catalogue holds {dataset.n_items} items"
            reason += f", {seen} of them in the history" if seen else ""
        else:
            reason = ("the method returned fewer valid items (beam search keeps at most num_beams "
                      "candidates, and some may map to no item)")
            reason += "; items of the history were left out" if seen else ""
        console.print(f"{len(ranked)} of the {k} items asked for: {reason}.")


def register(app: typer.Typer) -> None:
    """Add `run` and `recommend` to the top-level app."""
    app.command("run")(run)
    app.command("recommend")(recommend)
