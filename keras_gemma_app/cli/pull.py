"""``keras-gemma pull``: download a Kaggle preset into the cache."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from keras_gemma_app.cli.console import stderr_console
from keras_gemma_app.cli.options import quiet_option


@click.command()
@click.argument("model")
@click.option("--force", is_flag=True, help="Download again even if cached (after a download was cut off, say).")
@quiet_option
def pull(model, force, quiet):
    """Download MODEL (a preset name or kaggle:// handle) from Kaggle; later commands use the cache.

    Needs Kaggle credentials (~/.kaggle/kaggle.json, or KAGGLE_USERNAME and
    KAGGLE_KEY) and the Gemma licence accepted on the model's Kaggle page.
    Prints the folder the files are in.

    \b
    Example:
      keras-gemma pull gemma3_instruct_1b
    """
    from keras_gemma_app.cache_inventory import folder_size
    from keras_gemma_app.hardware import format_bytes
    from keras_gemma_app.kaggle_cache import kaggle_cache_root
    from keras_gemma_app.kaggle_download import handle_for, pull as download

    console = stderr_console(quiet)
    handle = handle_for(model)
    console.print(f"Pulling {model} ({handle}) into {kaggle_cache_root()}…")
    # kagglehub draws its progress bars on stderr; anything it prints goes there too.
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(os.devnull, "w")) if quiet else sys.stderr
        stack.enter_context(contextlib.redirect_stdout(sink))
        stack.enter_context(contextlib.redirect_stderr(sink))
        pulled = download(model, force=force)
    size = format_bytes(folder_size(pulled.path))
    if pulled.downloaded:
        console.print(f"Downloaded {model}: {size} in {pulled.path}")
    else:
        console.print(f"{model} is already cached ({size}); `pull --force` downloads it again.")
    click.echo(str(pulled.path))
