"""`clairo-bench methods ...`: list registered methods and where each comes from."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clairo_bench.methods.registry import UnknownMethodError, available_methods, load_class, register_plugin

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_methods(
    plugin: list[str] = typer.Option([], "--plugin", help="Also load a method given as module:Class."),
) -> None:
    """List every method: built-ins, entry-point plugins and --plugin references."""
    try:
        for reference in plugin:
            register_plugin(reference)
    except UnknownMethodError as error:
        Console().print("[red]Error:[/red] " + escape(str(error)))
        raise typer.Exit(2)
    table = Table("name", "origin", "class", "description")
    for entry in sorted(available_methods().values(), key=lambda e: e.name):
        try:
            description = load_class(entry.target).description
        except UnknownMethodError as error:
            description = f"[red]cannot load: {error}[/red]"
        table.add_row(entry.name, entry.origin, entry.target, description)
    Console().print(table)
