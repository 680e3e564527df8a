"""GGUF files used as models: imported once into the app cache, keyed by content hash."""

from __future__ import annotations

import hashlib
import pathlib
import re

from keras_gemma_app.cache_dir import app_cache_dir

# The dtype GGUF models are stored in once imported; load with dtype=… to change it.
CACHE_DTYPE = "bfloat16"


def file_sha256(path: str | pathlib.Path) -> str:
    """The hex SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(4 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_preset_dir(stem: str, sha256: str) -> pathlib.Path:
    """Where the preset imported from a GGUF file with this name and hash lives."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "model"
    return app_cache_dir() / "gguf" / f"{safe}-{sha256[:16]}"


def is_imported(directory: pathlib.Path) -> bool:
    """Whether ``directory`` holds a finished import (imports are renamed into place)."""
    return (directory / "config.json").is_file() and (directory / "model.weights.h5").is_file()


def import_into_cache(gguf_path: str | pathlib.Path, directory: pathlib.Path, progress=None) -> pathlib.Path:
    """Imports ``gguf_path`` into ``directory`` unless it is already there."""
    from keras_gemma_app.gguf_import import import_gguf

    if not is_imported(directory):
        import_gguf(gguf_path, directory, dtype=CACHE_DTYPE, force=True, progress=progress)
    return directory


def gguf_preset_dir(gguf_path: str | pathlib.Path) -> pathlib.Path:
    """The cache directory for a GGUF file (hashes the file; does not import)."""
    path = pathlib.Path(gguf_path)
    return cached_preset_dir(path.stem, file_sha256(path))
