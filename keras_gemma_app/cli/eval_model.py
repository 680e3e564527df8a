"""``keras-gemma eval``: memory, perplexity and agreement with float32 for one precision level."""

from __future__ import annotations

import json
import pathlib

import click
from rich.table import Table

from keras_gemma_app.cli.console import status, stderr_console, stdout_console
from keras_gemma_app.cli.model_setup import check_model_options, load_model
from keras_gemma_app.cli.options import model_options, quiet_option


@click.command()
@model_options
@click.option("--reference", default=None, metavar="MODEL",
              help="Float model whose greedy tokens the evaluated ones are compared with, run at float32 "
                   "[default: MODEL itself at float32, unless MODEL is float32 already or a quantized preset].")
@click.option("--text", "text_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Text for perplexity [default: chapter 1 of Alice's Adventures in Wonderland, shipped].")
@click.option("--new-tokens", type=int, default=64, show_default=True, help="Greedy tokens per prompt.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@quiet_option
def eval_model(model, backend, dtype, quantize, offline, force, reference, text_file, new_tokens, as_json, quiet):
    """Measure a model at one precision: memory, perplexity, greedy agreement with float32.

    Reports the weights' size in memory and on disk, peak resident memory after
    loading, perplexity on a fixed text, and how many of the greedy tokens for
    ten prompts match the float32 model's.

    \b
    Examples:
      keras-gemma eval --quantize int4 --backend torch
      keras-gemma eval -m ./gemma3_270m_int8 --reference gemma3_270m_pypi --json
    """
    from keras_gemma_app.errors import SettingsError

    if new_tokens < 1:
        raise SettingsError(f"--new-tokens must be >= 1, but is {new_tokens}.")
    ref, chosen = check_model_options(model, backend, dtype, quantize)
    reference_ref = check_model_options(reference, chosen, "float32")[0] if reference else None
    text = pathlib.Path(text_file).read_text("utf-8") if text_file else None
    console = stderr_console(quiet)
    evaluation = _evaluate(console, ref, chosen, dtype, quantize, offline, force, reference_ref, text, new_tokens)
    if as_json:
        click.echo(json.dumps(evaluation.as_dict()))
    else:
        stdout_console().print(_table(evaluation))


def _evaluate(console, ref, backend, dtype, quantize, offline, force, reference_ref, text, new_tokens):
    import dataclasses
    import gc

    from keras_gemma_app.cache_inventory import folder_size
    from keras_gemma_app.quality_eval import agreement, evaluate, greedy_tokens, peak_rss_mb

    pipe, _ = load_model(console, ref, backend, dtype=dtype, quantize=quantize, offline=offline, force=force)
    peak = peak_rss_mb()
    local = pathlib.Path(ref.source)
    disk_mb = folder_size(local) / 1e6 if ref.kind == "local" and local.is_dir() else None
    with status(console, "Measuring perplexity and greedy tokens…"):
        evaluation = evaluate(pipe, text=text, new_tokens=new_tokens, disk_mb=disk_mb, peak_mb=peak)
    plain = pipe.quantization is None and str(pipe.causal_lm.compute_dtype) == "float32"
    if reference_ref is None and (plain or pipe.quantization is not None and not quantize):
        return evaluation
    reference_ref = reference_ref or ref
    del pipe
    gc.collect()
    base, _ = load_model(console, reference_ref, backend, dtype="float32", offline=offline, force=force)
    with status(console, f"Greedy tokens of {reference_ref.text} at float32…"):
        reference = greedy_tokens(base, new_tokens=new_tokens)
    return dataclasses.replace(evaluation, agreement=agreement(evaluation.token_ids, reference))


def _table(evaluation) -> Table:
    level = evaluation.quantize or evaluation.dtype
    table = Table(show_header=False, title=f"{evaluation.model} · {evaluation.backend} · {level}")
    table.add_row("compute dtype", evaluation.dtype)
    table.add_row("weights in memory", f"{evaluation.weights_mb:,.0f} MB")
    table.add_row("preset on disk", f"{evaluation.disk_mb:,.0f} MB" if evaluation.disk_mb is not None else "-")
    table.add_row("peak RSS after load", f"{evaluation.peak_rss_mb:,.0f} MB")
    table.add_row("perplexity", f"{evaluation.perplexity:.3f} ({evaluation.tokens:,} tokens)")
    agree = evaluation.agreement
    if agree is not None:
        table.add_row("greedy agreement with float32",
                      f"{agree.positions:.1%} of tokens; {agree.identical}/{agree.prompts} prompts identical; "
                      f"first difference after {agree.prefix:.1f} tokens on average")
    return table
