"""``keras-gemma export``: write a model in another format."""

from __future__ import annotations

import click

from keras_gemma_app.backend import BACKENDS
from keras_gemma_app.cli.console import status, stderr_console
from keras_gemma_app.cli.model_setup import check_model_options, load_model


@click.command()
@click.argument("model")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--to", "target", type=click.Choice(["transformers"]), required=True,
              help="Output format (Hugging Face transformers: config.json + model.safetensors + tokenizer).")
@click.option("--backend", type=click.Choice(BACKENDS, case_sensitive=False), default=None,
              help="Keras backend used to export [default: $KERAS_BACKEND, else jax].")
@click.option("--offline", is_flag=True, default=None, help="Never use the network.")
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No status on stderr.")
def export(model, out_dir, target, backend, offline, force, quiet):
    """Export MODEL to OUT_DIR in another format.

    \b
    Example:
      keras-gemma export gemma3_270m_pypi --to transformers ./gemma3_270m_hf
    """
    import pathlib

    from keras_gemma_app.atomic_dir import check_new_dir
    from keras_gemma_app.transformers_format import export_transformers

    ref, chosen = check_model_options(model, backend, None)
    check_new_dir(pathlib.Path(out_dir), force)
    console = stderr_console(quiet)
    pipe, _ = load_model(console, ref, chosen, offline=offline)
    with status(console, f"Writing {target} checkpoint to {out_dir}…"):
        export_transformers(pipe, out_dir, force=force)
    console.print(f"Wrote a Hugging Face {target} checkpoint to {out_dir}.")
    click.echo(out_dir)
