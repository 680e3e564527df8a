"""Choosing a model's prompt format automatically, without loading it.

The catalogue knows the format of every named preset. For other models
(directories, handles, GGUF files) the architecture comes from ``config.json``
and the tuning from the name: instruction-tuned names ("instruct", "-it",
"_it") get their generation's chat format, anything else raw text.
"""

from __future__ import annotations

import json
import pathlib
import re

from keras_gemma_app import catalogue
from keras_gemma_app.kaggle_cache import KaggleHandle
from keras_gemma_app.model_ref import ModelRef

_INSTRUCT = re.compile(r"(instruct|(^|[-_/])it($|[-_/]))", re.IGNORECASE)
_ARCHITECTURES = (("gemma4", "gemma4"), ("gemma3", "gemma3"), ("gemma", "gemma"))


def _architecture_format(text: str) -> str | None:
    text = re.sub(r"[-_ ]", "", text.lower())
    for marker, template in _ARCHITECTURES:
        if marker in text:
            return template
    return None


def _local_architecture(path: pathlib.Path) -> str | None:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return _architecture_format(str(config.get("class_name") or config.get("model_type") or ""))


def _name_of(ref: ModelRef) -> str:
    name = ref.text.rstrip("/")
    if ref.kind in ("local", "gguf"):
        name = pathlib.Path(name).name
    return name


def choose_template(ref: ModelRef) -> str:
    """The prompt format for ``ref``: "raw", "gemma", "gemma3" or "gemma4"."""
    entry = catalogue.find(ref.text)
    if entry is None and ref.kind == "kaggle":
        variation = KaggleHandle.parse(ref.text).variation
        entry = next((e for e in catalogue.entries()
                      if e.kaggle_handle and KaggleHandle.parse(e.kaggle_handle).variation == variation), None)
    if entry is not None:
        return entry.prompt_format if entry.prompt_format in ("raw", "gemma", "gemma3", "gemma4") else "raw"
    if not _INSTRUCT.search(_name_of(ref)):
        return "raw"
    if ref.kind == "local":
        return _local_architecture(pathlib.Path(ref.source)) or "gemma"
    if ref.kind == "gguf":
        return "gemma3"
    return _architecture_format(ref.text) or "gemma"
