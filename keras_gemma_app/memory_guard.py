"""Stopping before a load that cannot fit, and naming what would.

A model too large for the machine does not fail cleanly: the process swaps
for minutes or is killed. :func:`check_fits` compares the estimate of
:mod:`keras_gemma_app.memory_estimate` with the memory free now (the
accelerator's, or the RAM available) and raises before any weight is read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

from keras_gemma_app import catalogue
from keras_gemma_app.errors import InsufficientMemoryError
from keras_gemma_app.hardware import Machine, detect_machine, format_bytes, parse_memory, ram
from keras_gemma_app.kaggle_cache import KaggleHandle
from keras_gemma_app.memory_estimate import BYTES_PER_PRECISION, RUNTIME_BYTES, estimate_memory
from keras_gemma_app.model_ref import ModelRef
from keras_gemma_app.quantized_preset import stored_quantization

MEMORY_ENV = "KERAS_GEMMA_MEMORY"


def _dtype_name(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _dtype_name(value.get("config", {}).get("name"))
    return None


def _read_json(path: pathlib.Path) -> dict:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def params_in_directory(directory: str | os.PathLike) -> int | None:
    """Parameters of the preset or checkpoint in ``directory``, from its weight files' size."""
    path = pathlib.Path(directory)
    config = _read_json(path / "config.json")
    if (path / "model.weights.h5").is_file():
        stored = stored_quantization(path) or _dtype_name(config.get("config", {}).get("dtype")) or "float32"
        size = (path / "model.weights.h5").stat().st_size
    else:
        files = list(path.glob("*.safetensors"))
        if not files:
            return None
        stored = config.get("torch_dtype") or config.get("dtype") or "float32"
        size = sum(file.stat().st_size for file in files)
    return int(size / BYTES_PER_PRECISION.get(stored, 4))


def model_params(ref: ModelRef, source: str) -> int | None:
    """Parameters of the model ``ref`` names (``source``: what it resolved to), or None if unknown."""
    entry = catalogue.find(ref.text)
    if entry is None and ref.kind == "kaggle":
        wanted = dataclasses.replace(KaggleHandle.parse(ref.source), version=None)
        entry = next((e for e in catalogue.entries() if e.kaggle_handle
                      and dataclasses.replace(KaggleHandle.parse(e.kaggle_handle), version=None) == wanted), None)
    if entry is not None:
        return entry.params
    if os.path.isdir(source):
        return params_in_directory(source)
    return None


def memory_limit() -> int | None:
    """The memory set with $KERAS_GEMMA_MEMORY (e.g. "8GB"), or None."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    return parse_memory(text) if text else None


def available_ram() -> int:
    """The RAM a model on this machine may take now: $KERAS_GEMMA_MEMORY where set, else the RAM
    available (the total where that is unknown)."""
    limit = memory_limit()
    if limit is not None:
        return limit
    total, available = ram()
    return available or total


def free_memory(machine: Machine) -> tuple[int, str]:
    """(bytes a new model can take, where): the accelerator's memory, else the RAM available."""
    limit = memory_limit()
    if limit is not None:
        return limit, f"${MEMORY_ENV}"
    if machine.accelerators:
        return machine.model_memory_bytes, f"{machine.accelerators[0].name} memory"
    return machine.available_ram_bytes or machine.ram_bytes, "RAM available"


def check_fits(ref: ModelRef, source: str, precision: str, backend: str, machine: Machine | None = None) -> None:
    """Raises :class:`InsufficientMemoryError` if ``ref`` at ``precision`` cannot fit.

    Does nothing when the model's size is unknown (a remote Hugging Face
    handle, say). On a CPU the backend is taken to be imported already, so
    only the model's own share is compared with the RAM available.
    """
    params = model_params(ref, source)
    if params is None:
        return
    machine = machine if machine is not None else detect_machine(backend)
    free, where = free_memory(machine)
    device = machine.device
    need = _model_share(params, precision, backend, device, free)
    if need <= free:
        return
    raise InsufficientMemoryError(
        f"{ref.text} needs about {format_bytes(need)} at {precision} on {backend}, but only "
        f"{format_bytes(free)} is free ({where}). {_suggestion(ref, params, precision, backend, device, free)} "
        "To try anyway, pass --force (force=True in Python)."
    )


def _model_share(params: int, precision: str, backend: str, device: str, free: int) -> int:
    total = estimate_memory(params, precision, backend, device, available_bytes=free).total_bytes
    return total - int(RUNTIME_BYTES[backend]) if device == "cpu" else total


def _suggestion(ref: ModelRef, params: int, precision: str, backend: str, device: str, free: int) -> str:
    if precision == "float32":
        half = _model_share(params, "bfloat16", backend, device, free)
        if half <= free:
            return f"At bfloat16 it needs about {format_bytes(half)}: add --dtype bfloat16."
    entry = catalogue.find(ref.text)
    smaller = [e for e in catalogue.entries() if e.kaggle_handle and not e.is_draft and e.params < params]
    fitting = [e for e in smaller if _model_share(e.params, "bfloat16", backend, device, free) <= free]
    if entry is not None:
        # The nearest in kind first: same family, tuning and modality; then looser.
        from keras_gemma_app.variant_guide import CORE_FAMILIES

        for same in (
            lambda e: (e.family, e.tuning, e.modality) == (entry.family, entry.tuning, entry.modality),
            lambda e: (e.family, e.tuning) == (entry.family, entry.tuning),
            lambda e: e.tuning == entry.tuning and e.family in CORE_FAMILIES,
            lambda e: e.tuning == entry.tuning,
        ):
            if any(same(e) for e in fitting):
                fitting = [e for e in fitting if same(e)]
                break
    if not fitting:
        return "No smaller Gemma fits either."
    nearest = max(fitting, key=lambda e: (e.params, e.generation))
    need = format_bytes(_model_share(nearest.params, "bfloat16", backend, device, free))
    return f"The nearest model that fits is {nearest.name} (about {need} at bfloat16)."
