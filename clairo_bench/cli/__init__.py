"""The `clairo-bench` command line: a typer app whose sub-commands live in sibling modules."""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.logging import RichHandler

from clairo_bench.cli import datasets, features, methods, reporting, runs

app = typer.Typer(
    help="Train and compare generative recommenders on identical data, splits and metrics.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(datasets.app, name="datasets", help="List, download and describe datasets.")
app.add_typer(features.app, name="features", help="Build and cache discrete item features.")
app.add_typer(methods.app, name="methods", help="List the registered methods.")
runs.register(app)
reporting.register(app)


@app.callback()
def configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        # Log lines go to stderr, like the job processes' logs, so that stdout holds only the
        # command's result (tables, recommendations) and can be piped or saved on its own.
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)],
        force=True,
    )


def main() -> None:
    app()
