"""``keras-gemma show``: everything the catalogue knows about one model."""

from __future__ import annotations

import dataclasses
import json

import click
from rich.table import Table

from keras_gemma_app.cli.console import stdout_console
from keras_gemma_app.catalogue import BYTES_PER_PARAM, cached_location, get, human_count

_TUNING = {"pt": "pretrained", "it": "instruction-tuned", "ft": "fine-tuned", "mix": "multi-task (mix)"}


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


@click.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(model, as_json):
    """Show one catalogue MODEL: size, tuning, context, prompt format, memory, cache."""
    entry = get(model)
    where = cached_location(entry)
    memory = {precision: entry.weights_bytes(precision) for precision in BYTES_PER_PARAM}
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(entry), "weights_bytes": memory,
                               "cached": str(where) if where else None}, indent=1, ensure_ascii=False))
        return
    table = Table(show_header=False, title=entry.name)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("description", entry.description),
        ("family", f"{entry.family} (Gemma {entry.generation})"),
        ("parameters", f"{human_count(entry.params)} ({entry.params:,})"),
        ("layers", str(entry.layers) if entry.layers else "-"),
        ("context", f"{entry.context_length:,} tokens" if entry.context_length else "-"),
        ("tuning", _TUNING[entry.tuning]),
        ("modality", entry.modality),
        ("prompt format", entry.prompt_format),
        ("weights", " · ".join(f"{p} {_gb(size)}" for p, size in memory.items())),
        ("source", entry.kaggle_handle or entry.source),
        ("licence", entry.licence),
        ("cached", str(where) if where else "no"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    stdout_console().print(table)
