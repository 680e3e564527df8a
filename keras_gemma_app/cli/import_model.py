"""``keras-gemma import``: turn GGUF files and Hugging Face checkpoints into Keras-native presets."""

from __future__ import annotations

import time

import click

from keras_gemma_app.backend import BACKENDS, requested_backend
from keras_gemma_app.cli.console import progress_bar, status, stderr_console


@click.group("import")
def import_group():
    """Convert a checkpoint into a KerasHub preset (Keras native format)."""


@import_group.command("gguf")
@click.argument("gguf_file", type=click.Path(dir_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--dtype", type=click.Choice(["bfloat16", "float32"]), default="bfloat16", show_default=True,
              help="Weight dtype of the preset.")
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def import_gguf_command(gguf_file, out_dir, dtype, force, quiet):
    """Convert a Gemma 3 GGUF file (llama.cpp, Ollama) into a KerasHub preset in OUT_DIR.

    \b
    Example:
      keras-gemma import gguf gemma-3-270m-q4_k_m.gguf ./gemma3_270m
      keras-gemma generate -m ./gemma3_270m "The capital of France is"
    """
    from keras_gemma_app.gguf_import import import_gguf

    console = stderr_console(quiet)
    start = time.perf_counter()
    with progress_bar(console, "Importing") as progress:
        import_gguf(gguf_file, out_dir, dtype=dtype, force=force, progress=progress)
    console.print(f"Wrote a {dtype} KerasHub preset to {out_dir} in {time.perf_counter() - start:.1f} s.")
    click.echo(out_dir)


@import_group.command("hf")
@click.argument("hf_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--dtype", type=click.Choice(["bfloat16", "float32", "float16"]), default=None,
              help="Weight dtype of the preset [default: the checkpoint's].")
@click.option("--backend", type=click.Choice(BACKENDS, case_sensitive=False), default=None,
              help="Keras backend used to convert [default: $KERAS_BACKEND, else jax].")
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No status on stderr.")
def import_hf_command(hf_dir, out_dir, dtype, backend, force, quiet):
    """Convert a local Hugging Face safetensors checkpoint into a KerasHub preset in OUT_DIR."""
    from keras_gemma_app.transformers_format import import_transformers

    console = stderr_console(quiet)
    chosen = requested_backend(backend)
    with status(console, f"Converting {hf_dir} with KerasHub on {chosen}…"):
        import_transformers(hf_dir, out_dir, dtype=dtype, force=force, backend=chosen)
    console.print(f"Wrote a KerasHub preset to {out_dir}.")
    click.echo(out_dir)
