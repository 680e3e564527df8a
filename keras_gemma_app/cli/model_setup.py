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
