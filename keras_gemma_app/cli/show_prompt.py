"""``keras-gemma show-prompt``: the exact text a request sends to the tokenizer."""

from __future__ import annotations

import click

from keras_gemma_app.model_ref import DEFAULT_MODEL, MODEL_ENV, model_or_default, parse_model
from keras_gemma_app.template_choice import choose_template
from keras_gemma_app.templates import TEMPLATES, build_prompt


@click.command("show-prompt")
@click.argument("prompt", required=False)
@click.option("-m", "--model", default=None, metavar="MODEL",
              help=f"The model whose prompt format to use [default: ${MODEL_ENV}, else {DEFAULT_MODEL}].")
@click.option("--system", default=None, help="A system instruction.")
@click.option("--template", type=click.Choice(TEMPLATES), default=None,
              help="Override the model's prompt format (gemma = Gemma 1/2).")
@click.option("--raw", is_flag=True, help="Send the prompt as it is.")
@click.option("--fim-prefix", default=None, help="Code before the gap (CodeGemma fill-in-the-middle).")
@click.option("--fim-suffix", default=None, help="Code after the gap (CodeGemma fill-in-the-middle).")
def show_prompt(prompt, model, system, template, raw, fim_prefix, fim_suffix):
    """Print exactly the text that `generate` would send to the tokenizer (no <bos>: it adds one).

    \b
    Example:
      keras-gemma show-prompt -m gemma3_instruct_1b --system "Be brief." "Hi"
    """
    ref = parse_model(model_or_default(model))
    text = build_prompt(prompt, template or choose_template(ref), system=system, raw=raw,
                        fim_prefix=fim_prefix, fim_suffix=fim_suffix)
    click.echo(text, nl=False)
