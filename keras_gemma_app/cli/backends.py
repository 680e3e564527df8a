"""``keras-gemma backends``: which backends are installed and what they see."""

from __future__ import annotations

import dataclasses
import json

import click
from rich.table import Table

from keras_gemma_app.cli.console import status, stderr_console, stdout_console


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-q", "--quiet", is_flag=True, help="No status on stderr.")
def backends(as_json, quiet):
    """Show jax, tensorflow and torch: installed, version, devices, default."""
    from keras_gemma_app.backend_info import describe_backend
    from keras_gemma_app.backend import BACKENDS

    console = stderr_console(quiet)
    infos = []
    for name in BACKENDS:
        with status(console, f"Inspecting {name}…"):
            infos.append(describe_backend(name))
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(info) for info in infos], indent=2))
        return
    table = Table(title="Keras backends")
    for column in ("backend", "installed", "version", "devices", "default"):
        table.add_column(column)
    for info in infos:
        default = []
        if info.selected:
            default.append("selected")
        if info.builtin_default:
            default.append("built-in default")
        table.add_row(
            info.name,
            "yes" if info.installed else "no",
            info.version or "-",
            info.error or ", ".join(info.devices) or "-",
            ", ".join(default),
        )
    stdout_console().print(table)
    click.echo("Choose one with --backend NAME or KERAS_BACKEND=NAME.")
