"""``keras-gemma list``: the Gemma catalogue as a table."""

from __future__ import annotations

import dataclasses
import json

import click
from rich.table import Table

from keras_gemma_app.cli.console import stdout_console
from keras_gemma_app.catalogue import TUNINGS, cached_location, human_count, parse_count, select


@click.command("list")
@click.option("--family", default=None, help="Only this family (gemma, gemma2, gemma3, codegemma, paligemma2, …).")
@click.option("--tuning", type=click.Choice(TUNINGS), default=None,
              help="pt = pretrained, it = instruction-tuned, ft = fine-tuned, mix = multi-task.")
@click.option("--max-params", default=None, metavar="COUNT", help="At most this many parameters (e.g. 2b, 270m).")
@click.option("--cached", is_flag=True, help="Only models already on this machine.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_models(family, tuning, max_params, cached, as_json):
    """List the Gemma models the app knows, with where they are cached."""
    limit = parse_count(max_params) if max_params is not None else None
    rows = [(entry, cached_location(entry)) for entry in select(family=family, tuning=tuning, max_params=limit)]
    if cached:
        rows = [(entry, where) for entry, where in rows if where is not None]
    if as_json:
        click.echo(json.dumps(
            [{**dataclasses.asdict(entry), "cached": str(where) if where else None} for entry, where in rows],
            indent=1, ensure_ascii=False,
        ))
        return
    table = Table(title=f"Gemma models ({len(rows)})")
    for column in ("name", "family", "params", "tuning", "modality", "context", "cached"):
        table.add_column(column, justify="right" if column in ("params", "context") else "left")
    for entry, where in rows:
        table.add_row(
            entry.name, entry.family, human_count(entry.params), entry.tuning, entry.modality,
            f"{entry.context_length:,}" if entry.context_length else "-", "yes" if where else "",
        )
    stdout_console().print(table)
