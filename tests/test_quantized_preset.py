"""Quantized presets: saved once, reloaded quantized, in the dtype they were made in, with the same tokens."""

import pytest

import keras_gemma_app as kga
from keras_gemma_app.quantized_preset import save_quantized, save_quantized_pipeline


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_real_preset_reloads_with_the_tokens_it_gave_before_saving(real_quantized, mode):
    preset, tokens = real_quantized[mode]
    pipe = kga.load(str(preset))
    assert pipe.quantization == mode
    assert str(pipe.causal_lm.compute_dtype) == "bfloat16"
    assert pipe.completions("The capital of France is", max_new_tokens=16)[0].token_ids == tokens


def test_a_quantized_preset_runs_in_another_dtype(tiny_preset, tmp_path):
    out = save_quantized(str(tiny_preset), tmp_path / "tiny_int8", "int8")
    assert str(kga.load(str(out)).causal_lm.compute_dtype) == "float32"
    pipe = kga.load(str(out), dtype="bfloat16")
    assert pipe.quantization == "int8" and str(pipe.causal_lm.compute_dtype) == "bfloat16"
    assert len(pipe.completions("hello", max_new_tokens=3)[0].token_ids) == 3


def test_saving_keeps_the_compute_dtype(tiny_preset, tmp_path):
    pipe = kga.load(str(tiny_preset), dtype="bfloat16", quantize="int4")
    before = pipe.completions("hello", max_new_tokens=6)[0].token_ids
    reloaded = kga.load(str(save_quantized_pipeline(pipe, tmp_path / "tiny_int4")))
    assert str(reloaded.causal_lm.compute_dtype) == "bfloat16"
    assert reloaded.completions("hello", max_new_tokens=6)[0].token_ids == before
