"""``keras-gemma generate``: complete one or more prompts."""

from __future__ import annotations

import json
import sys

import click

from keras_gemma_app.cli.console import status, stderr_console
from keras_gemma_app.cli.model_setup import check_keep_alive, check_model_options, served_or_loaded
from keras_gemma_app.cli.options import model_options, quiet_option, sampler_options, server_options
from keras_gemma_app.errors import SettingsError
from keras_gemma_app.samplers import sampler_from_options
from keras_gemma_app.templates import TEMPLATES, fim_prompt
from keras_gemma_app.text_stream import check_stop_strings


def _read_lines(stream) -> list[str]:
    return [line.rstrip("\r\n") for line in stream if line.strip()]


def sampler_from_flags(flags: dict):
    """Sampler settings from the --sampler/--temperature/… flags."""
    flags = dict(flags)
    return sampler_from_options(flags.pop("sampler_name"), **flags)


def collect_prompts(arguments: tuple[str, ...], prompts_file) -> list[str]:
    """Prompts from the arguments, then the file, else standard input (one per line)."""
    prompts = list(arguments)
    if prompts_file is not None:
        prompts += _read_lines(prompts_file)
    if not prompts and prompts_file is None and not sys.stdin.isatty():
        prompts = _read_lines(sys.stdin)
    if not prompts:
        raise SettingsError(
            "Expected a prompt: give it as an argument, with --prompts-file, or on standard input."
        )
    for prompt in prompts:
        if not prompt.strip():
            raise SettingsError("Expected a non-empty prompt, received an empty one.")
    return prompts


@click.command()
@click.argument("prompts", nargs=-1)
@model_options
@click.option("--prompts-file", type=click.File("r", encoding="utf-8"),
              help="Read prompts from FILE, one per line ('-' for standard input).")
@click.option("--max-new-tokens", type=int, default=64, show_default=True,
              help="Most tokens to generate per prompt.")
@sampler_options
@click.option("--stop-token-id", "stop_token_ids", type=int, multiple=True, metavar="ID",
              help="Extra token id that ends generation (repeatable); <eos> and <end_of_turn> always do.")
@click.option("--stop", "stop_strings", multiple=True, metavar="TEXT",
              help="Stop when the text contains TEXT (repeatable); TEXT is not printed.")
@click.option("--system", default=None, help="A system instruction, in the model's prompt format.")
@click.option("--template", type=click.Choice(TEMPLATES), default=None,
              help="Prompt format [default: chosen from the model; pretrained models get raw text].")
@click.option("--raw", is_flag=True, help="Send the prompt as it is, whatever the model's format.")
@click.option("--fim-prefix", default=None, help="Code before the gap: a CodeGemma fill-in-the-middle request.")
@click.option("--fim-suffix", default=None, help="Code after the gap (with --fim-prefix).")
@click.option("--stream/--no-stream", default=None,
              help="Print tokens as they come [default: when stdout is a terminal and there is one prompt].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per prompt.")
@server_options
@quiet_option
def generate(prompts, model, backend, dtype, quantize, offline, force, prompts_file, max_new_tokens, sampler_flags,
             stop_token_ids, stop_strings, system, template, raw, fim_prefix, fim_suffix, stream, as_json,
             keep_alive, no_server, quiet):
    """Complete PROMPTS and print only the completions on stdout.

    Several prompts (repeated arguments, --prompts-file, or lines on standard
    input) are generated as one batch. When `keras-gemma serve` holds the same
    model, the prompts go to it and nothing is loaded here (--no-server: load
    anyway); --keep-alive starts such a server when none is running.

    \b
    Examples:
      keras-gemma generate "The capital of France is"
      keras-gemma generate -m gemma3_instruct_1b --backend torch --dtype bfloat16 "Hi"
      keras-gemma generate --sampler top_p --top-p 0.9 --temperature 0.7 --seed 1 "Once"
    """
    # Check every input before the slow imports.
    fim = fim_prefix is not None or fim_suffix is not None
    if fim and (prompts or prompts_file):
        raise SettingsError("Expected either prompts or --fim-prefix/--fim-suffix, received both.")
    batch = [fim_prompt(fim_prefix or "", fim_suffix or "")] if fim else collect_prompts(prompts, prompts_file)
    check_stop_strings(stop_strings)
    sampler = sampler_from_flags(sampler_flags)
    if max_new_tokens < 1:
        raise SettingsError(f"--max-new-tokens must be >= 1, but is {max_new_tokens}.")
    ref, chosen = check_model_options(model, backend, dtype, quantize)
    check_keep_alive(keep_alive)

    console = stderr_console(quiet)
    pipe, chosen, origin = served_or_loaded(console, ref, chosen, keep_alive=keep_alive, no_server=no_server,
                                            backend=backend, dtype=dtype, quantize=quantize, template=template,
                                            offline=offline, force=force)
    options = dict(max_new_tokens=max_new_tokens, sampler=sampler, stop_token_ids=stop_token_ids, stop=stop_strings,
                   system=system, raw=raw or fim)
    if stream is None:
        stream = sys.stdout.isatty() and len(batch) == 1 and not as_json
    if stream and len(batch) == 1 and not as_json:
        new_tokens, seconds = stream_to_stdout(pipe, batch[0], options)
    else:
        with status(console, f"Generating with {sampler.describe()}…"):
            results = pipe.completions(batch, **options)
        print_results(results, as_json)
        new_tokens = sum(len(result.token_ids) for result in results)
        seconds = results[0].seconds
    console.print(
        f"[dim]{ref.text} · {chosen}{' · ' + pipe.quantization if pipe.quantization else ''} · "
        f"{origin} · "
        f"{new_tokens} tokens in {seconds:.2f} s ({new_tokens / max(seconds, 1e-9):.1f} tok/s)[/dim]"
    )


def stream_to_stdout(pipe, prompt: str, options: dict) -> tuple[int, float]:
    """Prints the completion as it is generated; returns (tokens, seconds)."""
    count, elapsed = 0, 0.0
    for piece in pipe.stream(prompt, **options):
        click.echo(piece.text, nl=False)
        sys.stdout.flush()
        count, elapsed = piece.index + 1, piece.elapsed
    click.echo()
    return count, elapsed


def print_results(results, as_json: bool) -> None:
    """Prints completions, one per prompt (JSON objects with --json)."""
    for result in results:
        if as_json:
            click.echo(json.dumps({
                "prompt": result.prompt,
                "completion": result.text,
                "prompt_tokens": result.prompt_tokens,
                "new_tokens": len(result.token_ids),
                "finish_reason": result.finish_reason,
            }, ensure_ascii=False))
        else:
            click.echo(result.text)
