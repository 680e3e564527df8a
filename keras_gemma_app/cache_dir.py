"""Where the app keeps what it makes: imported GGUF models and other converted presets."""

from __future__ import annotations

import os
import pathlib

CACHE_ENV = "KERAS_GEMMA_CACHE"


def app_cache_dir() -> pathlib.Path:
    """$KERAS_GEMMA_CACHE, else $XDG_CACHE_HOME/keras-gemma-app, else ~/.cache/keras-gemma-app."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return pathlib.Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "keras-gemma-app"
