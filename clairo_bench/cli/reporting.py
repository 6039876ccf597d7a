"""`clairo-bench leaderboard` and `clairo-bench claims`: reports from finished run directories.

Both commands only read run directories; they never train. The reporting modules (pandas, scipy,
matplotlib) are imported inside the commands so that other commands start fast.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

logger = logging.getLogger(__name__)

DEFAULT_METRICS = "recall@5,recall@10,ndcg@5,ndcg@10"


def _parse_metrics(text: str) -> tuple[str, ...]:
    metrics = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not metrics:
        raise typer.BadParameter("Give at least one metric, for example --metrics ndcg@10.")
    invalid = [metric for metric in metrics if not re.fullmatch(r"(recall|ndcg|mrr)@[1-9][0-9]*", metric)]
    if invalid:
        raise typer.BadParameter(
            f"Invalid metric {invalid[0]!r}; write NAME@K with NAME recall, ndcg or mrr, e.g. ndcg@10."
        )
    return metrics


def _parse_formats(text: str) -> tuple[str, ...]:
    from clairo_bench.reporting.report import FORMATS

    if text == "all":
        return FORMATS
    formats = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise typer.BadParameter(f"Invalid --format {text!r}; use md, latex, csv, all, or a comma-separated list.")
    return formats


def leaderboard(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name as in the runs folder, a comma-separated "
                                "list, or 'all' (every dataset with runs, plus the combined table)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Folder of run directories."),
    reference: str | None = typer.Option(None, "--reference", help="Method the others are compared with "
                                         "(gains and paired tests); default: clairo when it has runs."),
    output_format: str = typer.Option("all", "--format", help="md, latex, csv or all; comma-separated for several."),
    metrics: str = typer.Option(DEFAULT_METRICS, "--metrics", help="Comma-separated metric columns, "
                                "e.g. recall@10,ndcg@10 (available: recall, ndcg, mrr at the evaluated cut-offs)."),
    profile: str | None = typer.Option(None, "--profile", help="Profile of the runs to use (smoke, quick, paper); "
                                       "required when a dataset has finished runs of several profiles."),
    out: Path = typer.Option(Path("leaderboards"), "--out", help="Folder for the tables; figures go to OUT/plots."),
    combined: bool = typer.Option(False, "--combined", help="Also write combined.{md,tex,csv} across the datasets "
                                  "given (implied by --dataset all)."),
    slices: bool = typer.Option(True, "--slices/--no-slices", help="Add metrics by item popularity and history length."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG and PDF figures."),
    history_buckets: int = typer.Option(4, "--history-buckets", help="Number of history-length quantile buckets."),
    head_share: float = typer.Option(0.2, "--head-share", help="Share of training interactions held by head items (0-1)."),
    tail_share: float = typer.Option(0.2, "--tail-share", help="Share of training interactions held by tail items (0-1)."),
) -> None:
    """Write leaderboards of finished runs: mean and standard deviation over seeds, gains, paired tests.

    Uses the latest finished run per (method, seed) of one profile; failed and unfinished runs are
    listed as missing. Runs on different data, splits or evaluation protocols are rejected.
    """
    from clairo_bench.reporting.collect import ReportError
    from clairo_bench.reporting.report import ReportOptions, generate_reports, resolve_datasets

    console = Console()
    try:
        options = ReportOptions(
            metrics=_parse_metrics(metrics), reference=reference, profile=profile,
            formats=_parse_formats(output_format), slices=slices, plots=plots,
            history_buckets=history_buckets, head_share=head_share, tail_share=tail_share,
        )
        if out.exists() and not out.is_dir():
            raise ReportError(f"--out {out} is a file, not a folder; give a folder for the tables.")
        datasets = resolve_datasets(runs_dir, dataset)
        written = generate_reports(runs_dir, datasets, out, options, combined=combined or dataset == "all")
    except (ReportError, ValueError) as error:
        console.print("[red]Error:[/red]", escape(str(error)))
        raise typer.Exit(code=2)
    except OSError as error:
        console.print("[red]Error:[/red]", escape(f"Writing the leaderboards to {out} failed: {error}."))
        raise typer.Exit(code=1)
    for path in written:
        console.print(f"wrote {path}")


def claims(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name as in the runs folder."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Folder of run directories."),
    profile: str | None = typer.Option(None, "--profile", help="Profile of the runs to use (smoke, quick, paper)."),
    metric: str = typer.Option("ndcg@10", "--metric", help="Metric for claims whose published metric is not stated."),
) -> None:
    """Check the CLAIRO paper's claims against finished runs: published figure, measured figure, p-value, verdict.

    Claims whose runs are missing are listed as untested.
    """
    from clairo_bench.reporting.claims import CLOSE_TOLERANCE_PERCENT, check_claims
    from clairo_bench.reporting.collect import ReportError, discover_runs, select_runs
    from clairo_bench.reporting.tables import format_p, metric_name

    console = Console()
    try:
        parsed = _parse_metrics(metric)
        if len(parsed) != 1:
            raise typer.BadParameter(f"Give one metric to --metric, got {metric!r}.")
        metric = parsed[0]
        selection = select_runs(discover_runs(runs_dir, dataset), dataset, profile)
        results = check_claims(selection, default_metric=metric)
    except (ReportError, ValueError) as error:
        console.print("[red]Error:[/red]", escape(str(error)))
        raise typer.Exit(code=2)
    console.print(f"[bold]CLAIRO claims on {dataset}[/bold] (profile {selection.profile})")
    colors = {"supported": "green", "contradicted": "red", "untested": "yellow"}
    for result in results:
        color = colors.get(result.verdict, "white")
        console.print(f"\n[bold]{result.claim.statement}[/bold]: [{color}]{result.verdict}[/{color}]")
        console.print(f"  published: {result.claim.published_text}", markup=False)
        if not result.tested:
            console.print(f"  not tested: {result.reason}", markup=False)
            continue
        measured = "n/a" if math.isnan(result.measured_percent) else f"{result.measured_percent:+.1f}%"
        console.print(
            f"  measured: {measured} {metric_name(result.metric)} ({result.claim.method} "
            f"{result.method_mean:.4f} vs {result.claim.baseline} {result.baseline_mean:.4f}); "
            f"{result.magnitude}", markup=False,
        )
        console.print(
            f"  Wilcoxon p {format_p(result.test.wilcoxon_p)} (Holm {format_p(result.wilcoxon_p_holm)}), "
            f"paired t-test p {format_p(result.test.ttest_p)} (Holm {format_p(result.ttest_p_holm)}), "
            f"{result.test.n_users} users", markup=False,
        )
    console.print()
    console.print(
        "Measured = 100 x (method - baseline) / baseline of means over seeds. p-values: two-sided paired tests on "
        "per-user metrics averaged over seeds, Holm-adjusted over the claims tested; verdicts use the Wilcoxon "
        f"p at 0.05. 'Close' means within ±{CLOSE_TOLERANCE_PERCENT:g}%, a threshold of this project, not the paper."
    )
    if selection.missing:
        console.print("Missing runs: " + "; ".join(f"{m.method} seed {m.seed} ({m.reason})" for m in selection.missing))


def register(app: typer.Typer) -> None:
    """Add the `leaderboard` and `claims` commands to the top-level app."""
    app.command("leaderboard")(leaderboard)
    app.command("claims")(claims)
