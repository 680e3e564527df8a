"""Quantization levels: int8 and int4 weights, through Keras's own ``quantize()``.

``CausalLM.quantize()`` fails on Gemma (the tokenizer is not built), so the
backbone is quantized: every ``EinsumDense`` kernel and the tied embedding.

- ``int8``: Keras's int8, one scale per output channel; Keras also quantizes
  the activations of each product to int8 on the fly.
- ``int4``: Keras's int4 with groups of :data:`INT4_BLOCK_SIZE` inputs, a
  scale and a zero point per group (weights only), each group's scale and
  zero point chosen by error search (:mod:`keras_gemma_app.int4_grid`), for
  the decoder blocks; the embedding table (the input lookup and the tied LM
  head) and the first :data:`INT4_EIGHT_BIT_BLOCKS` blocks (at most a quarter of them) at int8, as
  llama.cpp's Q4_K_M keeps its embedding and its most sensitive tensors at
  more bits. On Gemma 3 270M all-int4 cost +19.8% perplexity over float32;
  this mix +4.6% on torch (see the README).

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
# Decoder blocks kept at int8 at the int4 level, from the first (at most a quarter of them): on Gemma 3
# 270M (perplexity of the shipped text, int4 layers with float32 embedding) all int4 32.2, blocks 0-1
# kept 30.9; the first blocks cost the most. With the int8 embedding, through the app's torch pass:
# two blocks 31.05, four 30.21 (float32 28.88), at the same speed since the int8 blocks' gate products
# run through torch's dynamic int8 engine (see the README).
INT4_EIGHT_BIT_BLOCKS = 4


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
    """The level the model's weights are quantized to ("int8", "int4"), or None for float weights.

    A model with int4 layers is at the int4 level, whatever else it holds (the level keeps some
    layers at int8); "mixed" for any other mixture of modes.
    """
    modes = {getattr(layer, "quantization_mode", None)
             for layer in causal_lm.backbone._flatten_layers(include_self=False)}
    modes.discard(None)
    if not modes:
        return None
    if len(modes) == 1:
        return next(iter(modes))
    return "int4" if modes == {"int8", "int4"} else "mixed"


def int4_eight_bit_blocks(layers: int) -> int:
    """How many of a model's ``layers`` decoder blocks, from the first, the int4 level keeps at int8."""
    return min(INT4_EIGHT_BIT_BLOCKS, layers // 4)


def _int4_eight_bit_layers(backbone) -> set[int]:
    """ids of the layers the int4 level keeps at int8: the token embedding and the first blocks."""
    # A model of few blocks (a test model) keeps none: most of it would stay at int8. A backbone
    # without these attributes keeps nothing at int8.
    layers = list(getattr(backbone, "transformer_layers", None) or [])
    embedding = getattr(backbone, "token_embedding", None)
    kept = ([embedding] if embedding is not None else []) + layers[:int4_eight_bit_blocks(len(layers))]
    return {id(layer) for part in kept for layer in (part, *part._flatten_layers(include_self=False))}


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
    backbone = causal_lm.backbone
    steps = [(mode, None, None)]
    if mode == "int4":
        from keras.quantizers import Int4QuantizationConfig

        eight_bit = _int4_eight_bit_layers(backbone)
        steps = [("int8", None, lambda layer: id(layer) in eight_bit)] if eight_bit else []
        steps.append(("int4", Int4QuantizationConfig(block_size=INT4_BLOCK_SIZE),
                      lambda layer: id(layer) not in eight_bit))
    # Keras runs a full garbage collection as each layer drops its float kernel: with TensorFlow
    # and KerasHub loaded that is ~0.23 s a layer (30 of 36 s for Gemma 3 270M). Objects alive
    # now are moved out of the collector's sight meanwhile, so each collection sees only new garbage.
    gc.freeze()
    try:
        with warnings.catch_warnings():
            # Keras warns once for every layer with nothing to quantize (norms, dropout, inputs).
            warnings.filterwarnings("ignore", message=r"Layer .* does not have a `quantize` method")
            for step_mode, config, filters in steps:
                with _grids(step_mode):
                    backbone.quantize(step_mode, config=config, filters=filters)
    except (NotImplementedError, ValueError) as error:
        raise QuantizationError(
            f"Keras cannot quantize {type(causal_lm).__name__} to {mode}: {str(error).splitlines()[0]}"
        ) from None
    finally:
        gc.unfreeze()
        gc.collect()  # once, for the float kernels left in reference cycles


def _grids(mode: str):
    """The context Keras quantizes ``mode`` in: int4 with the searched grids."""
    if mode != "int4":
        return contextlib.nullcontext()
    from keras_gemma_app.int4_grid import searched

    return searched()
