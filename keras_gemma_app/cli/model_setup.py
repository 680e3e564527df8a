"""Getting a model ready for a CLI verb: first-use imports with a progress bar, then loading."""

from __future__ import annotations

import time

from keras_gemma_app.backend import requested_backend
from keras_gemma_app.cli.console import progress_bar, status
from keras_gemma_app.loading import check_dtype
from keras_gemma_app.quantization import check_quantize
from keras_gemma_app.model_ref import ModelRef, model_or_default, parse_model


def check_model_options(model: str | None, backend: str | None, dtype: str | None,
                        quantize: str | None = None) -> tuple[ModelRef, str]:
    """Validates -m/--backend/--dtype/--quantize before anything slow; returns (model, backend)."""
    ref = parse_model(model_or_default(model))
    check_dtype(dtype)
    check_quantize(quantize)
    return ref, requested_backend(backend)


def prepare_model(console, ref: ModelRef) -> None:
    """Imports the bundled model or a GGUF file into the cache on first use, with a progress bar."""
    from keras_gemma_app.resolve import needs_import, prepare_import

    if not needs_import(ref):
        return
    what = "the bundled model" if ref.kind == "bundled" else "the GGUF file"
    console.print(f"Importing {what} {ref.text} into the cache as a Keras preset (first use only)…")
    with progress_bar(console, "Importing") as progress:
        prepare_import(ref, progress=progress)


def load_model(console, ref: ModelRef, backend: str, **options):
    """Prepares and loads ``ref`` with a status line; returns (pipeline, seconds to load)."""
    from keras_gemma_app.loading import load

    prepare_model(console, ref)
    doing = f"Loading {ref.text} on {backend}"
    if options.get("quantize"):
        doing += f" and quantizing it to {options['quantize']} (about half a minute for 270M parameters)"
    with status(console, doing + "…"):
        start = time.perf_counter()
        pipe = load(ref.text, backend=backend, **options)
    return pipe, time.perf_counter() - start


def check_keep_alive(keep_alive: str | None) -> None:
    """Validates --keep-alive before anything slow."""
    from keras_gemma_app.cli.serve import parse_duration

    if keep_alive is not None:
        parse_duration(keep_alive)


def served_or_loaded(console, ref: ModelRef, chosen: str, *, keep_alive: str | None, no_server: bool,
                     **settings):
    """The model for a verb: a running `keras-gemma serve` that holds ``ref`` (started first with
    --keep-alive), else loaded on backend ``chosen`` here. Returns (pipeline or server client, backend,
    where it came from).

    ``settings``: backend, dtype, quantize and template as the flags gave them (None: any, for a
    server), plus offline, force and sampler for loading.
    """
    from keras_gemma_app.cli.serve import parse_duration

    from keras_gemma_app.server_client import connect

    wanted = {key: settings.get(key) for key in ("backend", "dtype", "quantize", "template")}
    running = None if no_server else connect(timeout=1.0)
    server = running if running is not None and running.serves(ref.source, **wanted) else None
    if server is None and not no_server and keep_alive is not None and parse_duration(keep_alive):
        launch = {**wanted, "offline": settings.get("offline"), "force": settings.get("force")}
        server = _start_server(console, ref, keep_alive, running, launch)
    if server is not None:
        console.print(f"[dim]Using the model served at {server.address} "
                      f"({server.backend} · {server.info['dtype']}).[/dim]")
        return server, server.backend, f"served at {server.address}"
    loading = {key: value for key, value in settings.items() if key != "backend"}
    pipe, seconds = load_model(console, ref, chosen, **loading)
    return pipe, chosen, f"loaded in {seconds:.1f} s"


def _start_server(console, ref: ModelRef, keep_alive: str, other, options: dict):
    """Starts a background server for ``ref``; ``other``: a server already at the address (holding
    another model, or the same with other settings), which refuses the start."""
    from keras_gemma_app import server_launch
    from keras_gemma_app.errors import SettingsError

    if other is not None:
        raise SettingsError(
            f"The server at {other.address} holds {other.model} ({other.backend} · {other.info.get('dtype')}); "
            f"expected it free to keep {ref.text} loaded: stop it, or choose another address with "
            f"$KERAS_GEMMA_HOST.")
    prepare_model(console, ref)  # a first-use import shows its progress here, not in the server's log
    with status(console, f"Starting a server that keeps {ref.text} loaded until {keep_alive} pass without a "
                         f"request (log: {server_launch.log_path()})…"):
        return server_launch.start_server(ref.text, keep_alive=keep_alive, **options)
