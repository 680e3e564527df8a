"""The one place that chooses the Keras backend.

Keras fixes its backend the first time ``keras`` is imported, so the choice
must be made before that. Everything in the app that needs keras calls
:func:`activate` first; nothing else reads or writes ``KERAS_BACKEND``.
"""

from __future__ import annotations

import os
import sys
from importlib import util as importlib_util

from keras_gemma_app.errors import BackendError

BACKENDS = ("jax", "tensorflow", "torch")
DEFAULT_BACKEND = "jax"

# Import name of each backend's framework.
_MODULES = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}


def _check_name(name: str) -> str:
    name = name.strip().lower()
    if name not in BACKENDS:
        raise BackendError(
            f"Unknown backend {name!r}: expected one of {', '.join(BACKENDS)}."
        )
    return name


def is_installed(name: str) -> bool:
    """Returns whether the framework behind backend ``name`` can be imported."""
    module = _MODULES[_check_name(name)]
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib_util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def keras_backend_loaded() -> str | None:
    """Returns the backend keras was imported with, or None if keras is not loaded."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        return keras.config.backend()
    except AttributeError:  # keras is still being imported
        return os.environ.get("KERAS_BACKEND")


def requested_backend(name: str | None = None) -> str:
    """Resolves the backend to use: ``name``, else KERAS_BACKEND, else the default.

    Args:
        name: an explicit choice (the ``--backend`` flag); wins over the
            environment.

    Returns:
        The validated backend name.
    """
    if name:
        return _check_name(name)
    loaded = keras_backend_loaded()
    if loaded:
        return loaded
    env = os.environ.get("KERAS_BACKEND")
    if env:
        try:
            return _check_name(env)
        except BackendError:
            raise BackendError(
                f"KERAS_BACKEND={env!r} is not a backend this app runs: "
                f"expected one of {', '.join(BACKENDS)}."
            ) from None
    return DEFAULT_BACKEND


def use_backend(name: str | None = None) -> str:
    """Chooses the Keras backend for this process, before keras is imported.

    Call it first thing in a script or notebook; calling it again with the
    same name is harmless.

    Args:
        name: "jax", "tensorflow" or "torch"; None means KERAS_BACKEND or the
            default ("jax").

    Returns:
        The active backend name.

    Raises:
        BackendError: unknown name, framework not installed, or keras already
            imported with another backend.

    Example:
        >>> import keras_gemma_app as kga
        >>> kga.use_backend("torch")
        'torch'
    """
    chosen = requested_backend(name)
    if not is_installed(chosen):
        raise BackendError(
            f"Backend {chosen!r} is not installed: pip install {_MODULES[chosen]}, "
            f"or choose one of {', '.join(b for b in BACKENDS if is_installed(b))}."
        )
    loaded = keras_backend_loaded()
    if loaded is not None:
        if loaded != chosen:
            raise BackendError(
                f"Keras is already loaded with the {loaded!r} backend, so "
                f"{chosen!r} cannot be used in this process: restart the "
                f"Python process or notebook kernel and call "
                f"use_backend({chosen!r}) before anything imports keras."
            )
        return chosen
    os.environ["KERAS_BACKEND"] = chosen
    # Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return chosen


def activate(name: str | None = None) -> str:
    """Fixes the backend (see :func:`use_backend`) and imports keras with it."""
    chosen = use_backend(name)
    import keras  # noqa: F401  (the first import fixes the backend)

    return chosen
