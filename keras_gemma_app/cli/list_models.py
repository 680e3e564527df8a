"""``keras-gemma list``: the Gemma catalogue as a table."""

from __future__ import annotations

import json

import click

from keras_gemma_app import catalogue
from keras_gemma_app.cli.console import stdout_console
from keras_gemma_app.catalogue import TUNINGS


@click.command("list")
@click.option("--family", default=None, help="Only this family (gemma, gemma2, gemma3, codegemma, paligemma2, …).")
@click.option("--tuning", type=click.Choice(TUNINGS), default=None,
              help="pt = pretrained, it = instruction-tuned, ft = fine-tuned, mix = multi-task.")
@click.option("--max-params", default=None, metavar="COUNT", help="At most this many parameters (e.g. 2b, 270m).")
@click.option("--cached", is_flag=True, help="Only models already on this machine.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_models(family, tuning, max_params, cached, as_json):
    """List the Gemma models the app knows, with where they are cached."""
    rows = catalogue.list_models(family=family, tuning=tuning, max_params=max_params, cached=cached)
    if as_json:
        click.echo(json.dumps(rows, indent=1, ensure_ascii=False))
        return
    stdout_console().print(rows.table())
