"""``keras-gemma show``: everything the catalogue knows about one model."""

from __future__ import annotations

import dataclasses
import json

import click
from rich.table import Table

from keras_gemma_app.backend import BACKENDS, requested_backend
from keras_gemma_app.cli.console import stdout_console
from keras_gemma_app.catalogue import cached_location, get, human_count
from keras_gemma_app.hardware import format_bytes
from keras_gemma_app.memory_estimate import PRECISIONS, estimate_memory
from keras_gemma_app.memory_guard import available_ram

_TUNING = {"pt": "pretrained", "it": "instruction-tuned", "ft": "fine-tuned", "mix": "multi-task (mix)"}


@click.command()
@click.argument("model")
@click.option("--backend", type=click.Choice(BACKENDS, case_sensitive=False), default=None,
              help="Backend the memory estimate is for [default: $KERAS_BACKEND, else jax].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(model, backend, as_json):
    """Show one catalogue MODEL: size, tuning, context, prompt format, memory, cache."""
    entry = get(model)
    backend = requested_backend(backend)
    where = cached_location(entry)
    available = available_ram()
    estimates = {precision: estimate_memory(entry.params, precision, backend, available_bytes=available,
                                             eight_bit_params=entry.int4_eight_bit_params)
                 for precision in PRECISIONS}
    if as_json:
        click.echo(json.dumps({
            **dataclasses.asdict(entry),
            "weights_bytes": {p: e.weights_bytes for p, e in estimates.items()},
            "memory_bytes": {p: e.total_bytes for p, e in estimates.items()},
            "memory_backend": backend,
            "cached": str(where) if where else None,
        }, indent=1, ensure_ascii=False))
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
        ("weights", " · ".join(f"{p} {format_bytes(e.weights_bytes)}" for p, e in estimates.items())),
        (f"memory to run ({backend}, CPU)",
         " · ".join(f"{p} {format_bytes(e.total_bytes)}" for p, e in estimates.items())),
        ("source", entry.kaggle_handle or entry.source),
        ("licence", entry.licence),
        ("cached", str(where) if where else "no"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    stdout_console().print(table)
