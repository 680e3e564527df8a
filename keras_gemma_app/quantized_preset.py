"""Saving a quantized model as a Keras-native preset that loads with no quantizing at start.

Keras saves a quantized backbone's dtype as a ``DTypePolicyMap`` whose
policies name no float type, so the preset would load computing in float32
whatever it was quantized in; and KerasHub's ``from_preset(dtype=...)``
replaces the map with a plain policy, which then fails to load the int
weights. Here the compute dtype is written into the map on saving, and a
requested dtype is applied to the map (each policy's source type) on loading.
"""

from __future__ import annotations

import copy
import json
import pathlib

from keras_gemma_app.atomic_dir import staged_directory
from keras_gemma_app.quantization import check_quantize, quantization_of


def _with_compute_dtype(config: dict, dtype: str) -> dict:
    """A backbone config whose ``DTypePolicyMap`` computes in ``dtype``."""
    config = copy.deepcopy(config)
    policy = config["config"]["dtype"]["config"]
    policy["default_policy"] = dtype
    for entry in policy["policy_map"].values():
        entry["config"]["source_name"] = dtype
    return config


def quantized_config(preset_dir) -> dict | None:
    """The backbone config of a preset saved quantized (its dtype a ``DTypePolicyMap``); None otherwise."""
    path = pathlib.Path(preset_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    dtype = config.get("config", {}).get("dtype") if isinstance(config, dict) else None
    if isinstance(dtype, dict) and "DTypePolicyMap" in str(dtype.get("class_name")):
        return config
    return None


def stored_quantization(preset_dir) -> str | None:
    """"int8" or "int4" when ``preset_dir`` holds a preset saved quantized (int4 if it mixes both)."""
    config = quantized_config(preset_dir)
    if config is None:
        return None
    policies = (config["config"]["dtype"].get("config") or {}).get("policy_map") or {}
    modes = {str(p.get("config", {}).get("mode", "")).split("/")[0] for p in policies.values() if isinstance(p, dict)}
    return next((mode for mode in ("int4", "int8") if mode in modes), None)


def dtype_policy_for(preset_dir, dtype: str):
    """The dtype to pass ``from_preset`` to run a quantized preset in ``dtype``; None if not quantized."""
    import keras

    config = quantized_config(preset_dir)
    if config is None:
        return None
    return keras.saving.deserialize_keras_object(_with_compute_dtype(config, dtype)["config"]["dtype"])


def save_quantized_pipeline(pipe, out_dir, *, force: bool = False) -> pathlib.Path:
    """Writes a loaded, quantized pipeline's model to ``out_dir`` (config, weights, tokenizer)."""
    dtype = str(pipe.causal_lm.compute_dtype)
    with staged_directory(out_dir, force=force, purpose="quantizing") as staged:
        pipe.causal_lm.save_to_preset(str(staged))
        config = quantized_config(staged)
        if config is not None:
            (staged / "config.json").write_text(json.dumps(_with_compute_dtype(config, dtype), indent=4))
    return pathlib.Path(out_dir)


def save_quantized(model: str, out_dir, mode: str, *, dtype: str | None = None, backend: str | None = None,
                   offline: bool | None = None, force: bool = False, progress=None) -> pathlib.Path:
    """Loads ``model``, quantizes it to ``mode`` and saves it as a Keras preset in ``out_dir``.

    The preset loads like any other (``kga.load(out_dir)``, ``-m OUT_DIR``),
    already quantized: the one-minute quantizing step is paid once, here.

    Args:
        model: any model :func:`keras_gemma_app.load` takes.
        out_dir: the directory to create.
        mode: "int8" or "int4".
        dtype: compute dtype stored with the preset (default: the model's).
        backend: backend used to quantize (the preset runs on every backend).
        offline: never use the network.
        force: replace ``out_dir`` if it exists.
        progress: as for :func:`keras_gemma_app.load` (GGUF import on first use).

    Returns:
        ``out_dir`` as a path.

    Raises:
        SettingsError: an unknown mode.
        QuantizationError: the model is already quantized to another mode.
        InvalidModelError: ``out_dir`` exists and ``force`` is false.

    Example:
        >>> import keras_gemma_app as kga
        >>> kga.save_quantized("gemma3_270m_pypi", "gemma3_270m_int4", "int4")
        >>> kga.load("gemma3_270m_int4").generate("The capital of France is")
    """
    from keras_gemma_app.atomic_dir import check_new_dir
    from keras_gemma_app.loading import load

    check_quantize(mode)
    check_new_dir(pathlib.Path(out_dir), force)
    pipe = load(model, dtype=dtype, backend=backend, offline=offline, progress=progress, quantize=mode)
    assert quantization_of(pipe.causal_lm) == mode
    return save_quantized_pipeline(pipe, out_dir, force=force)
