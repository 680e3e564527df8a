"""Click options shared by the verbs that run a model."""

from __future__ import annotations

import functools

import click

from keras_gemma_app.backend import BACKENDS
from keras_gemma_app.loading import DTYPES
from keras_gemma_app.quantization import QUANTIZE_MODES
from keras_gemma_app.model_ref import DEFAULT_MODEL, MODEL_ENV
from keras_gemma_app.samplers import SAMPLERS
from keras_gemma_app.server_launch import KEEP_ALIVE_ENV

SAMPLER_FLAGS = ("sampler_name", "temperature", "top_k", "top_p", "num_beams", "alpha", "seed")


def _stack(*decorators):
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def model_options(function):
    """-m/--model, --backend, --dtype, --quantize, --offline and --force."""
    return _stack(
        click.option("-m", "--model", default=None, metavar="MODEL",
                     help=f"Preset name, kaggle://… or hf://… handle, local directory or .gguf file "
                          f"[default: ${MODEL_ENV}, else {DEFAULT_MODEL}]."),
        click.option("--backend", type=click.Choice(BACKENDS, case_sensitive=False), default=None,
                     help="Keras backend [default: $KERAS_BACKEND, else jax]."),
        click.option("--dtype", type=click.Choice(DTYPES), default=None,
                     help="Compute dtype [default: the preset's]."),
        click.option("--quantize", type=click.Choice(QUANTIZE_MODES), default=None,
                     help="Quantize the weights after loading (about half a minute for 270M; "
                          "`keras-gemma quantize` saves a quantized copy that loads directly)."),
        click.option("--offline", is_flag=True, default=None,
                     help="Never use the network; fail clearly if the model is not cached "
                          "[default: $KERAS_GEMMA_OFFLINE]."),
        click.option("--force", is_flag=True,
                     help="Load even if the model looks too large for the memory free "
                          "[memory: detected, or $KERAS_GEMMA_MEMORY]."),
    )(function)


def sampler_options(function):
    """--sampler and its settings, passed to the command as one ``sampler_flags`` dict."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        kwargs["sampler_flags"] = {name: kwargs.pop(name) for name in SAMPLER_FLAGS}
        return function(*args, **kwargs)

    return _stack(
        click.option("--sampler", "sampler_name", type=click.Choice(list(SAMPLERS)), default=None,
                     help="Decoding strategy [default: greedy, or inferred from the options below]."),
        click.option("--temperature", type=float, default=None, help="Softmax temperature (0 = greedy)."),
        click.option("--top-k", type=int, default=None, help="Candidates kept by top_k/top_p/contrastive."),
        click.option("--top-p", type=float, default=None, help="Probability mass kept by top_p, in (0, 1]."),
        click.option("--num-beams", type=int, default=None, help="Beams kept by beam search."),
        click.option("--alpha", type=float, default=None, help="Degeneration penalty of contrastive search, in [0, 1]."),
        click.option("--seed", type=int, default=None, help="Random seed for reproducible sampling."),
    )(wrapper)


def server_options(function):
    """--keep-alive and --no-server: generating through a `keras-gemma serve` process."""
    return _stack(
        click.option("--keep-alive", default=None, metavar="DURATION", envvar=KEEP_ALIVE_ENV,
                     help="Keep the model loaded in a background `keras-gemma serve` for later commands, until "
                          f"DURATION (90, 30s, 5m, 1h; 0: off) passes without a request "
                          f"[default: ${KEEP_ALIVE_ENV}, else off]."),
        click.option("--no-server", is_flag=True,
                     help="Load the model in this process even when `keras-gemma serve` holds it."),
    )(function)


def quiet_option(function):
    """-q/--quiet."""
    return click.option("-q", "--quiet", is_flag=True, help="No status or timing on stderr.")(function)
