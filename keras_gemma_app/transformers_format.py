"""Hugging Face safetensors checkpoints ↔ Keras-native presets, through KerasHub's own converters."""

from __future__ import annotations

import pathlib

from keras_gemma_app import backend as backend_lib
from keras_gemma_app.atomic_dir import check_new_dir, staged_directory
from keras_gemma_app.errors import ConversionError, InvalidModelError
from keras_gemma_app.loading import check_dtype
from keras_gemma_app.model_ref import parse_model


def import_transformers(hf_dir, out_dir, *, dtype: str | None = None, force: bool = False,
                        backend: str | None = None) -> pathlib.Path:
    """Converts a local Hugging Face Gemma checkpoint into a Keras-native KerasHub preset.

    Args:
        hf_dir: a directory with a transformers ``config.json``, ``*.safetensors``
            weights and the tokenizer (``tokenizer.model``).
        out_dir: the preset directory to create.
        dtype: weight dtype of the preset; None keeps the checkpoint's.
        force: replace ``out_dir`` if it exists.
        backend: Keras backend used for the conversion.

    Returns:
        ``out_dir`` as a path.
    """
    ref = parse_model(str(hf_dir))
    if ref.format != "transformers":
        raise InvalidModelError(
            f"{str(hf_dir)!r} is not a Hugging Face checkpoint: expected config.json with a "
            f"'model_type' and *.safetensors weights, received a {ref.format or ref.kind} model."
        )
    check_dtype(dtype)
    out_dir = pathlib.Path(out_dir)
    check_new_dir(out_dir, force)
    backend_lib.activate(backend)
    import keras_hub

    kwargs = {"dtype": dtype} if dtype else {}
    from keras_gemma_app import random_init

    try:
        # The checkpoint's tensors overwrite every initial value: skip drawing random ones.
        with random_init.skipped():
            causal_lm = keras_hub.models.CausalLM.from_preset(ref.source, **kwargs)
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise ConversionError(
            f"KerasHub cannot convert {str(hf_dir)!r}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from None
    with staged_directory(out_dir, force=force, purpose="importing") as staged:
        causal_lm.save_to_preset(str(staged))
    return out_dir


def export_transformers(pipe, out_dir, *, force: bool = False) -> pathlib.Path:
    """Writes a loaded pipeline's model as a Hugging Face transformers checkpoint.

    Args:
        pipe: a :class:`~keras_gemma_app.pipeline.Pipeline`.
        out_dir: the directory to create (config.json, model.safetensors, tokenizer).
        force: replace ``out_dir`` if it exists.
    """
    out_dir = pathlib.Path(out_dir)
    check_new_dir(out_dir, force)
    with staged_directory(out_dir, force=force, purpose="exporting") as staged:
        try:
            pipe.causal_lm.export_to_transformers(str(staged))
        except (ValueError, NotImplementedError) as error:
            raise ConversionError(
                f"KerasHub cannot export {pipe.model!r} to transformers: {str(error).splitlines()[0]}"
            ) from None
    return out_dir
