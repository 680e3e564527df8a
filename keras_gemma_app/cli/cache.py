"""``keras-gemma cache``: what is cached, where, and how big."""

from __future__ import annotations

import json

import click
from rich.table import Table

from keras_gemma_app.cli.console import stdout_console


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def cache(as_json):
    """Show cached models: Kaggle downloads and imported GGUF files, with their sizes."""
    from keras_gemma_app.cache_dir import app_cache_dir
    from keras_gemma_app.cache_inventory import cached_models
    from keras_gemma_app.hardware import format_bytes
    from keras_gemma_app.kaggle_cache import kaggle_cache_root

    items = cached_models()
    if as_json:
        click.echo(json.dumps([
            {"name": item.name, "source": item.source, "location": str(item.location), "size_bytes": item.size_bytes,
             "complete": item.complete, "handle": item.handle} for item in items
        ], indent=1))
        return
    out = stdout_console()
    total = sum(item.size_bytes for item in items)
    table = Table(title=f"Cached models ({len(items)}, {format_bytes(total)})")
    for column in ("name", "source", "size", "state", "location"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for item in items:
        state = "ready" if item.complete else "[red]partial: pull --force[/]"
        table.add_row(item.name, item.handle or item.source, format_bytes(item.size_bytes), state, str(item.location))
    out.print(table)
    out.print(f"Kaggle cache: {kaggle_cache_root()} · app cache: {app_cache_dir()}")
