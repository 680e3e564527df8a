"""Saving a quantized model as a Keras-native preset that loads with no quantizing at start."""

from __future__ import annotations

import pathlib

from keras_gemma_app.atomic_dir import staged_directory
from keras_gemma_app.quantization import check_quantize, quantization_of


def save_quantized_pipeline(pipe, out_dir, *, force: bool = False) -> pathlib.Path:
    """Writes a loaded, quantized pipeline's model to ``out_dir`` (config, weights, tokenizer)."""
    with staged_directory(out_dir, force=force, purpose="quantizing") as staged:
        pipe.causal_lm.save_to_preset(str(staged))
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
