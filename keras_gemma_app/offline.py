"""Offline mode: never reach for the network, and say what the cache lacks."""

from __future__ import annotations

import os

OFFLINE_ENV = "KERAS_GEMMA_OFFLINE"
_TRUE = {"1", "true", "yes", "on"}


def offline_requested(flag: bool | None = None) -> bool:
    """``flag`` if given, else whether $KERAS_GEMMA_OFFLINE is set to a true value."""
    if flag is not None:
        return flag
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE


def enter_offline_mode() -> None:
    """Tells the hub clients underneath to stay off the network too."""
    os.environ[OFFLINE_ENV] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
