"""``keras-gemma serve``: keep a model loaded so later commands start generating at once."""

from __future__ import annotations

import re
import time

import click

from keras_gemma_app.cli.console import status, stderr_console
from keras_gemma_app.cli.model_setup import check_model_options, load_model
from keras_gemma_app.cli.options import model_options, quiet_option
from keras_gemma_app.errors import SettingsError
from keras_gemma_app.model_server import ADDRESS_ENV, DEFAULT_ADDRESS, ModelServer, check_free
from keras_gemma_app.templates import TEMPLATES

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | None) -> float | None:
    """``90``, ``30s``, ``5m`` or ``1h`` as seconds; None or ``0`` for no limit."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise SettingsError(f"Expected a duration such as 90, 30s, 5m or 1h for --keep-alive, received {text!r}.")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    return seconds or None


def _request_line(record: dict) -> str:
    """One status line per request, as `serve` prints them."""
    what = f"{record['prompts']} prompt{'s' * (record['prompts'] != 1)}"
    if record["stream"]:
        what += ", streamed"
    outcome = f"error: {record['error']}" if record["error"] else f"{record['tokens']} tokens"
    return f"[dim]{time.strftime('%H:%M:%S')} generate · {what} · {outcome} · {record['seconds']:.2f} s[/dim]"


@click.command()
@model_options
@click.option("--template", type=click.Choice(TEMPLATES), default=None,
              help="Prompt format [default: chosen from the model; pretrained models get raw text].")
@click.option("--address", default=None, metavar="HOST:PORT",
              help=f"Where to listen [default: ${ADDRESS_ENV}, else {DEFAULT_ADDRESS}].")
@click.option("--keep-alive", default=None, metavar="DURATION",
              help="Stop after this long without a request (90, 30s, 5m, 1h) [default: run until Ctrl-C].")
@quiet_option
def serve(model, backend, dtype, quantize, offline, force, template, address, keep_alive, quiet):
    """Load MODEL once and keep it loaded for later commands.

    While it runs, `keras-gemma generate` with the same model (and no
    --backend/--dtype/--quantize/--template that differ) sends its prompts
    here instead of loading the model again, and Python code reaches it with
    `keras_gemma_app.connect()`. It listens on this machine only, unless
    --address names another interface.

    \b
    Examples:
      keras-gemma serve --backend torch
      keras-gemma serve -m gemma3_instruct_1b --keep-alive 30m
      keras-gemma serve --address 127.0.0.1:9000     # then KERAS_GEMMA_HOST=127.0.0.1:9000 keras-gemma generate …
    """
    ref, chosen = check_model_options(model, backend, dtype, quantize)
    check_free(address)
    idle = parse_duration(keep_alive)
    console = stderr_console(quiet)
    pipe, load_seconds = load_model(console, ref, chosen, dtype=dtype, quantize=quantize, offline=offline,
                                    template=template, force=force)
    server = ModelServer(pipe, source=ref.source, address=address, keep_alive=idle,
                         on_request=lambda record: console.print(_request_line(record)))
    with status(console, "Warming up (the first generation compiles the model)…"):
        pipe.generate("Hello", max_new_tokens=2)
    held = f"{ref.text} · {chosen} · {server.info['dtype']}"
    if pipe.quantization:
        held += f" · {pipe.quantization}"
    console.print(f"Serving {held} at http://{server.address} (loaded in {load_seconds:.1f} s). "
                  f"`keras-gemma generate` uses it; "
                  + (f"stops after {keep_alive} without a request." if idle else "Ctrl-C stops it."))
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    console.print("Server stopped.")
