"""``keras-gemma quantize``: save an int8 or int4 copy of a model as a Keras preset."""

from __future__ import annotations

import click

from keras_gemma_app.backend import BACKENDS
from keras_gemma_app.cli.console import status, stderr_console
from keras_gemma_app.cli.model_setup import check_model_options, load_model
from keras_gemma_app.loading import DTYPES
from keras_gemma_app.quantization import QUANTIZE_MODES


@click.command()
@click.argument("model")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--mode", type=click.Choice(QUANTIZE_MODES), required=True,
              help="int8 (one scale per output) or int4 (groups of 32 inputs, scale and zero point; the "
                   "embedding table and the first two blocks at int8).")
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="Compute dtype stored with the preset [default: the model's].")
@click.option("--backend", type=click.Choice(BACKENDS, case_sensitive=False), default=None,
              help="Keras backend used to quantize; the preset runs on every backend "
                   "[default: $KERAS_BACKEND, else jax].")
@click.option("--offline", is_flag=True, default=None, help="Never use the network.")
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No status on stderr.")
def quantize(model, out_dir, mode, dtype, backend, offline, force, quiet):
    """Quantize MODEL's weights to int8 or int4 and save it as a Keras preset in OUT_DIR.

    The preset loads already quantized (-m OUT_DIR), with no quantizing at start.

    \b
    Examples:
      keras-gemma quantize gemma3_270m_pypi ./gemma3_270m_int4 --mode int4
      keras-gemma generate -m ./gemma3_270m_int4 --backend torch "The capital of France is"
    """
    import pathlib

    from keras_gemma_app.atomic_dir import check_new_dir
    from keras_gemma_app.cache_inventory import folder_size
    from keras_gemma_app.hardware import format_bytes
    from keras_gemma_app.quantized_preset import save_quantized_pipeline

    ref, chosen = check_model_options(model, backend, dtype, mode)
    check_new_dir(pathlib.Path(out_dir), force)
    console = stderr_console(quiet)
    pipe, seconds = load_model(console, ref, chosen, dtype=dtype, quantize=mode, offline=offline)
    with status(console, f"Saving the {mode} preset to {out_dir}…"):
        save_quantized_pipeline(pipe, out_dir, force=force)
    console.print(f"Saved {ref.text} at {mode} to {out_dir} ({format_bytes(folder_size(pathlib.Path(out_dir)))}; "
                  f"loaded and quantized in {seconds:.0f} s).")
    click.echo(out_dir)
