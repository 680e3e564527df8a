"""int8 / int4 through Keras's quantize(): names, modes, loading, and errors."""

import pytest

import keras_gemma_app as kga
from keras_gemma_app.errors import QuantizationError, SettingsError
from keras_gemma_app.quantization import (
    INT4_BLOCK_SIZE, INT4_EIGHT_BIT_BLOCKS, check_quantize, quantization_of, quantize)


def test_check_quantize_names_the_modes():
    assert check_quantize(None) is None
    assert check_quantize("int4") == "int4"
    with pytest.raises(SettingsError, match="Unknown quantization 'int3': expected one of int8, int4"):
        check_quantize("int3")


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_load_quantizes_and_generates(tiny_preset, mode):
    pipe = kga.load(str(tiny_preset), quantize=mode)
    assert pipe.quantization == mode
    kernels = [layer for layer in pipe.causal_lm.backbone._flatten_layers() if layer.quantization_mode]
    assert kernels, "no layer was quantized"
    if mode == "int4":
        # A 2-block model keeps only its embedding table at int8 (the level's mix: see below).
        modes = {layer.name: layer.quantization_mode for layer in kernels}
        assert modes.pop("token_embedding") == "int8" and set(modes.values()) == {"int4"}
        assert all(layer._int4_block_size == INT4_BLOCK_SIZE for layer in kernels if layer.name != "token_embedding")
    completion = pipe.completions("hello", max_new_tokens=4)[0]
    assert len(completion.token_ids) == 4


def test_float_model_reports_no_quantization(tiny_pipe):
    assert tiny_pipe.quantization is None
    assert quantization_of(tiny_pipe.causal_lm) is None


def test_same_mode_again_is_a_no_op_and_another_mode_is_refused(tiny_preset):
    pipe = kga.load(str(tiny_preset), quantize="int8")
    quantize(pipe.causal_lm, "int8")
    assert pipe.quantization == "int8"
    with pytest.raises(QuantizationError, match="already quantized to int8"):
        quantize(pipe.causal_lm, "int4")


def test_load_refuses_an_unknown_mode_before_loading(tiny_preset):
    with pytest.raises(SettingsError, match="expected one of int8, int4"):
        kga.load(str(tiny_preset), quantize="fp4")


@pytest.mark.parametrize("blocks", [8, 16])
def test_int4_keeps_the_embedding_and_first_blocks_at_int8(blocks):
    from tiny_gemma import build_tiny_causal_lm

    causal_lm = build_tiny_causal_lm(num_layers=blocks)
    kept = min(INT4_EIGHT_BIT_BLOCKS, blocks // 4)  # at most a quarter of the blocks
    quantize(causal_lm, "int4")
    backbone = causal_lm.backbone
    assert quantization_of(causal_lm) == "int4"
    assert backbone.token_embedding.quantization_mode == "int8"

    def modes(block):
        return {layer.quantization_mode for layer in block._flatten_layers(include_self=False)} - {None}

    assert [modes(block) for block in backbone.transformer_layers] == [{"int8"}] * kept + [{"int4"}] * (blocks - kept)
    quantize(causal_lm, "int4")  # already at the level: left as it is
    with pytest.raises(QuantizationError, match="already quantized to int4"):
        quantize(causal_lm, "int8")
