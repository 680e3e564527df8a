"""Turning a parsed model reference into something KerasHub can load, offline when possible.

* the bundled model and ``.gguf`` files are imported once into the app cache;
* preset names and Kaggle handles already in kagglehub's cache load from
  there with no network; offline, anything missing is a clear error;
* Hugging Face handles and local directories pass through.
"""

from __future__ import annotations


from keras_gemma_app import bundled, gguf_cache
from keras_gemma_app.errors import OfflineError
from keras_gemma_app.kaggle_cache import KaggleHandle, cached_preset, describe_missing
from keras_gemma_app.model_ref import ModelRef
from keras_gemma_app.network import HF_HOST, KAGGLE_HOST, kaggle_endpoint_overridden, reachable


def needs_import(ref: ModelRef) -> bool:
    """Whether loading ``ref`` first imports a GGUF file into the cache (seconds, not instant)."""
    if ref.kind == "bundled":
        return not bundled.bundled_is_imported()
    if ref.kind == "gguf":
        return not gguf_cache.is_imported(gguf_cache.gguf_preset_dir(ref.source))
    return False


def prepare_import(ref: ModelRef, progress=None) -> str | None:
    """Imports the bundled model or a GGUF file if needed; returns its preset directory.

    Returns None for references that need no import.
    """
    if ref.kind == "bundled":
        return str(bundled.ensure_bundled(progress=progress))
    if ref.kind == "gguf":
        directory = gguf_cache.gguf_preset_dir(ref.source)
        return str(gguf_cache.import_into_cache(ref.source, directory, progress=progress))
    return None


def kaggle_handle(ref: ModelRef, registry: dict[str, dict]) -> KaggleHandle | None:
    """The Kaggle handle behind a preset name or ``kaggle://`` reference, else None."""
    if ref.kind == "kaggle":
        return KaggleHandle.parse(ref.source)
    if ref.kind == "preset":
        handle = registry.get(ref.source, {}).get("kaggle_handle", "")
        if handle.startswith("kaggle://"):
            return KaggleHandle.parse(handle)
    return None


def resolve_source(ref: ModelRef, *, offline: bool, registry: dict[str, dict], progress=None) -> str:
    """What to hand to ``from_preset`` for ``ref``.

    Raises:
        OfflineError: offline and the model is not in the cache.
    """
    imported = prepare_import(ref, progress)
    if imported is not None:
        return imported
    handle = kaggle_handle(ref, registry)
    if handle is not None:
        cached = cached_preset(handle)
        if cached is not None:
            return str(cached)
        if offline:
            raise OfflineError(
                f"{ref.text!r} is not available offline: {describe_missing(handle)}. "
                "Run once without --offline (with Kaggle credentials) to download it, "
                "or choose a cached or local model."
            )
        if not kaggle_endpoint_overridden():
            _require_network(ref, KAGGLE_HOST)
    elif ref.kind == "hf" and not offline:
        _require_network(ref, HF_HOST)
    return ref.source


def _require_network(ref: ModelRef, host: str) -> None:
    if not reachable(host):
        raise OfflineError(
            f"Cannot reach {host} to download {ref.text!r}: check the network connection, "
            "or use a cached or local model (--offline never tries the network)."
        )
