"""``keras-gemma rm``: delete a cached model."""

from __future__ import annotations

import click

from keras_gemma_app.cli.console import stderr_console
from keras_gemma_app.cli.options import quiet_option


@click.command("rm")
@click.argument("models", nargs=-1, required=True)
@quiet_option
def remove(models, quiet):
    """Delete cached MODELS (preset names, kaggle:// handles, or names `keras-gemma cache` shows)."""
    from keras_gemma_app.cache_inventory import remove_cached

    console = stderr_console(quiet)
    for model in models:
        for path in remove_cached(model):
            console.print(f"Removed {path}")
