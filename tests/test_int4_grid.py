"""int4 group grids by error search: Keras's format and contract, never worse than Keras's choice."""

import keras
import numpy as np
import pytest
from keras.src import quantizers

import keras_gemma_app as kga
from keras_gemma_app import int4_grid


def _read_back(values, scale, zero, block):
    values, scale, zero = (np.asarray(keras.ops.convert_to_numpy(part), dtype=np.float32)
                           for part in (values, scale, zero))
    groups = np.arange(values.shape[0]) // block
    return (values - zero[groups]) * scale[groups]


def _group_errors(matrix, read_back, block):
    rows, columns = matrix.shape
    return np.square(read_back - matrix).reshape(rows // block, block, columns).sum(axis=1)


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    matrix = rng.normal(scale=0.02, size=(256, 96)).astype(np.float32)
    matrix[:32, :8] += 0.5    # groups all of one sign, far from zero
    matrix[32:64, 8:16] = rng.standard_t(2, size=(32, 8)) * 0.02   # heavy-tailed groups
    return matrix


def test_same_format_as_keras():
    matrix = _weights()
    values, scale, zero = int4_grid.quantize_grouped(matrix, 32, to_numpy=True)
    keras_values, keras_scale, keras_zero = keras.quantizers.abs_max_quantize_grouped_with_zero_point(
        matrix, block_size=32, to_numpy=True)
    for ours, theirs in ((values, keras_values), (scale, keras_scale), (zero, keras_zero)):
        assert tuple(ours.shape) == tuple(theirs.shape)
        assert keras.backend.standardize_dtype(ours.dtype) == keras.backend.standardize_dtype(theirs.dtype)
    values = keras.ops.convert_to_numpy(values)
    assert values.min() >= -8 and values.max() <= 7


def test_no_group_reads_back_worse_than_keras_and_most_read_back_better():
    matrix = _weights()
    ours = _group_errors(matrix, _read_back(*int4_grid.quantize_grouped(matrix, 32, to_numpy=True), 32), 32)
    theirs = _group_errors(matrix, _read_back(*keras.quantizers.abs_max_quantize_grouped_with_zero_point(
        matrix, block_size=32, to_numpy=True), 32), 32)
    assert np.all(ours <= theirs * (1 + 1e-5))
    assert np.mean(ours < theirs) > 0.5
    # The offset groups: Keras clips its zero point to [-8, 7] and loses them; the search keeps them.
    assert ours[0, :8].max() < 0.01 * theirs[0, :8].min()
    assert ours.sum() < 0.5 * theirs.sum()


def test_rows_not_a_multiple_of_the_block_are_padded_like_keras():
    matrix = _weights()[:80]
    values, scale, zero = int4_grid.quantize_grouped(matrix, 32, to_numpy=True)
    assert tuple(values.shape) == (80, 96) and tuple(scale.shape) == (3, 96)
    error = np.abs(_read_back(values, scale, zero, 32) - matrix).max()
    assert error < 0.05 * np.abs(matrix).max()


def test_other_ranges_go_to_keras():
    matrix = _weights()
    ours = int4_grid.quantize_grouped(matrix, 32, value_range=(-128, 127), to_numpy=True)
    theirs = keras.quantizers.abs_max_quantize_grouped_with_zero_point(
        matrix, block_size=32, value_range=(-128, 127), to_numpy=True)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_searched_swaps_keras_function_and_restores_it_on_error():
    original = quantizers.abs_max_quantize_grouped_with_zero_point
    with pytest.raises(RuntimeError):
        with int4_grid.searched():
            assert quantizers.abs_max_quantize_grouped_with_zero_point is int4_grid.quantize_grouped
            raise RuntimeError("boom")
    assert quantizers.abs_max_quantize_grouped_with_zero_point is original


def test_quantizing_a_model_to_int4_uses_the_search(tiny_preset):
    """The app's int4 reads each projection back closer to its float weights than Keras's own choice."""
    floats = kga.load(str(tiny_preset))
    gate = floats.causal_lm.backbone.transformer_layers[0].gating_ffw
    float_kernel = keras.ops.convert_to_numpy(gate.kernel).copy()
    ours = kga.load(str(tiny_preset), quantize="int4").causal_lm.backbone.transformer_layers[0].gating_ffw
    gate.quantize("int4", config=keras.quantizers.Int4QuantizationConfig(block_size=32))   # Keras's own choice
    eye = np.eye(float_kernel.shape[0], dtype="float32")[None]
    ours_error = np.square(keras.ops.convert_to_numpy(ours(eye))[0] - float_kernel).mean()
    keras_error = np.square(keras.ops.convert_to_numpy(gate(eye))[0] - float_kernel).mean()
    assert ours.quantization_mode == "int4" and gate.quantization_mode == "int4"
    # Gaussian random weights (the tiny model's) gain least: about 0.88 of Keras's error here.
    assert ours_error < 0.95 * keras_error
