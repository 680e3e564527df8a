"""Quantization levels: int8 and int4 weights, through Keras's own ``quantize()``.

``CausalLM.quantize()`` fails on Gemma (the tokenizer is not built), so the
backbone is quantized: every ``EinsumDense`` kernel and the tied embedding.

- ``int8``: Keras's int8, one scale per output channel; Keras also quantizes
  the activations of each product to int8 on the fly.
- ``int4``: Keras's int4 with groups of :data:`INT4_BLOCK_SIZE` inputs, a
  scale and a zero point per group (weights only), each group's scale and
  zero point chosen by error search (:mod:`keras_gemma_app.int4_grid`).

On the torch backend the app runs quantized Gemma 3 through torch's packed
int4/int8 CPU kernels (weights only, bfloat16 products; see
:mod:`keras_gemma_app.torch_packed`); on JAX and TensorFlow Keras's own
quantized layers run. A quantized model saved with :func:`save_quantized`
is a Keras-native preset that loads directly, with no quantizing at start.
"""

from __future__ import annotations

import contextlib
import gc
import warnings

from keras_gemma_app.errors import QuantizationError, SettingsError

QUANTIZE_MODES = ("int8", "int4")
# int4 group size along the inputs. Checked on Gemma 3 270M (perplexity of the shipped text,
# see the README): 32 keeps perplexity closer to float32 than 128, for 0.06 more bytes a weight.
INT4_BLOCK_SIZE = 32


def check_quantize(mode: str | None) -> str | None:
    """Validates a quantization mode name; None keeps the weights as they are."""
    if mode is not None and mode not in QUANTIZE_MODES:
        raise SettingsError(f"Unknown quantization {mode!r}: expected one of {', '.join(QUANTIZE_MODES)}.")
    return mode


def quantization_mode(layer) -> str | None:
    """"int8", "int4" or None (float) for one Keras layer."""
    mode = getattr(layer, "quantization_mode", None)
    return mode if mode in QUANTIZE_MODES else None


def unpack_int4(packed, columns: int):
    """Keras's int4 packing undone by Keras (two signed nibbles per byte along the last axis), as int8."""
    from keras.quantizers import unpack_int4 as keras_unpack_int4

    return keras_unpack_int4(packed, columns, axis=-1, dtype="int8")


def quantization_of(causal_lm) -> str | None:
    """The mode the model's weights are quantized to ("int8", "int4"), or None for float weights."""
    modes = {getattr(layer, "quantization_mode", None)
             for layer in causal_lm.backbone._flatten_layers(include_self=False)}
    modes.discard(None)
    if not modes:
        return None
    return sorted(modes)[0] if len(modes) == 1 else "mixed"


def quantize(causal_lm, mode: str) -> None:
    """Quantizes ``causal_lm``'s weights to ``mode`` in place (Keras ``backbone.quantize``).

    A model already at ``mode`` is left as it is.

    Raises:
        SettingsError: an unknown mode.
        QuantizationError: the weights are already quantized to another mode,
            or the model has no layer Keras can quantize.
    """
    check_quantize(mode)
    current = quantization_of(causal_lm)
    if current == mode:
        return
    if current is not None:
        raise QuantizationError(
            f"Expected float weights to quantize to {mode}, received a model already quantized to {current}; "
            f"load it without --quantize, or quantize the original float model."
        )
    config = None
    grids = contextlib.nullcontext()
    if mode == "int4":
        from keras.quantizers import Int4QuantizationConfig

        from keras_gemma_app.int4_grid import searched

        config = Int4QuantizationConfig(block_size=INT4_BLOCK_SIZE)
        grids = searched()
    # Keras runs a full garbage collection as each layer drops its float kernel: with TensorFlow
    # and KerasHub loaded that is ~0.23 s a layer (30 of 36 s for Gemma 3 270M). Objects alive
    # now are moved out of the collector's sight meanwhile, so each collection sees only new garbage.
    gc.freeze()
    try:
        with warnings.catch_warnings(), grids:
            # Keras warns once for every layer with nothing to quantize (norms, dropout, inputs).
            warnings.filterwarnings("ignore", message=r"Layer .* does not have a `quantize` method")
            causal_lm.backbone.quantize(mode, config=config)
    except (NotImplementedError, ValueError) as error:
        raise QuantizationError(
            f"Keras cannot quantize {type(causal_lm).__name__} to {mode}: {str(error).splitlines()[0]}"
        ) from None
    finally:
        gc.unfreeze()
        gc.collect()  # once, for the float kernels left in reference cycles
