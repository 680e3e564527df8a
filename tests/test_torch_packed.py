"""Packed int4/int8 projections: the values Keras quantized, through torch's CPU kernels."""

import json

import numpy as np
import pytest
import torch

from conftest import run_python
from keras_gemma_app import torch_packed


def _reference_int4(matrix: np.ndarray, group: int) -> np.ndarray:
    """Asymmetric min/max 4-bit rounding per group of inputs, written out in numpy."""
    rows, cols = matrix.shape
    out = np.empty_like(matrix)
    for start in range(0, rows, group):
        block = matrix[start:start + group]
        low, high = block.min(axis=0), block.max(axis=0)
        step = np.maximum(high - low, 1e-12) / 15
        out[start:start + group] = np.clip(np.round((block - low) / step), 0, 15) * step + low
    return out


def _bf16(array) -> np.ndarray:
    return torch.as_tensor(array).to(torch.bfloat16).to(torch.float32).numpy()


@pytest.mark.parametrize("group", [32, 128])
def test_int4_product_is_the_grouped_4bit_matrix(group):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(640, 384)).astype(np.float32)
    x = _bf16(rng.normal(size=(3, 640)).astype(np.float32))
    packed = torch_packed.PackedLinear.from_matrix(torch.as_tensor(matrix), "int4", group)
    out = packed(torch.as_tensor(x)).numpy()
    expected = x @ _reference_int4(matrix, group)
    # bfloat16 products and scales: about 3 significant digits.
    assert np.max(np.abs(out - expected)) < 0.02 * np.max(np.abs(expected))
    # And 4-bit rounding is visible against the float matrix, but small.
    error = np.abs(out - x @ matrix).mean() / np.abs(x @ matrix).mean()
    assert 0.005 < error < 0.2


def test_int8_product_is_the_per_output_8bit_matrix():
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(256, 96)).astype(np.float32)
    x = _bf16(rng.normal(size=(2, 256)).astype(np.float32))
    packed = torch_packed.PackedLinear.from_matrix(torch.as_tensor(matrix), "int8", None)
    scale = np.abs(matrix).max(axis=0) / 127
    expected = x @ (np.round(matrix / scale) * scale)
    out = packed(torch.as_tensor(x)).numpy()
    assert np.max(np.abs(out - expected)) < 0.02 * np.max(np.abs(expected))
    assert packed.weight.dtype == torch.int8 and packed.nbytes < matrix.nbytes / 3


def test_packing_in_row_blocks_equals_packing_at_once(monkeypatch):
    matrix = torch.randn(256, 640 * 2)
    x = torch.randn(2, 256)
    whole = torch_packed.PackedLinear.from_matrix(matrix, "int4", 32)(x)
    monkeypatch.setattr(torch_packed, "_CHUNK_ROWS", 64)
    blocks = torch_packed.PackedLinear.from_matrix(matrix, "int4", 32)(x)
    assert torch.equal(whole, blocks)


def test_output_keeps_the_activation_dtype():
    packed = torch_packed.PackedLinear.from_matrix(torch.randn(64, 32), "int4", 32)
    assert packed(torch.randn(1, 64)).dtype == torch.float32
    assert packed(torch.randn(1, 64).to(torch.bfloat16)).dtype == torch.bfloat16


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="int8 or int4"):
        torch_packed.PackedLinear.from_matrix(torch.randn(64, 32), "int2", None)


KERAS_LAYERS = r"""
import json, keras, numpy as np, torch
from keras.quantizers import Int4QuantizationConfig
from keras_gemma_app import torch_packed
rng = np.random.default_rng(0)
report = {}
for mode in ("int4", "int8"):
    config = Int4QuantizationConfig(block_size=32) if mode == "int4" else None
    dense = keras.layers.EinsumDense("btd,ndh->btnh", output_shape=(None, 4, 16))
    dense.build((1, 1, 64))
    float_kernel = keras.ops.convert_to_numpy(dense.kernel).copy()
    dense.quantize(mode, config=config)
    x = rng.normal(size=(1, 3, 64)).astype("float32")
    kernel = torch_packed.dense_kernel(dense).numpy()
    ours = np.einsum("btd,ndh->btnh", x, kernel)
    keras_out = keras.ops.convert_to_numpy(dense(x))
    embedding = keras.layers.Embedding(100, 64)
    embedding.build((1, 1))
    embedding.quantize(mode, config=config)
    ids = torch.tensor([[3, 99, 0]])
    rows = torch_packed.embedding_rows(embedding, ids, torch.float32).numpy()
    report[mode] = {
        "kernel_vs_float": float(np.abs(kernel - float_kernel).max() / np.abs(float_kernel).max()),
        "product_vs_keras": float(np.abs(ours - keras_out).max() / np.abs(keras_out).max()),
        "rows_vs_keras": float(np.abs(rows - keras.ops.convert_to_numpy(embedding(ids.numpy()))).max()),
        "mode": torch_packed.quantization_mode(dense),
    }
print(json.dumps(report))
"""


def test_reads_back_what_keras_quantized():
    done = run_python(KERAS_LAYERS, env={"KERAS_BACKEND": "torch"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # int4 is weight-only in Keras: its product is ours to float32 rounding.
    assert report["int4"]["product_vs_keras"] < 1e-5
    # int8 Keras also rounds the activations to 8 bits: close, not equal.
    assert report["int8"]["product_vs_keras"] < 0.05
    for mode in ("int4", "int8"):
        assert report[mode]["mode"] == mode
        assert report[mode]["rows_vs_keras"] < 1e-6
        assert 0 < report[mode]["kernel_vs_float"] < (0.15 if mode == "int4" else 0.01)


KERAS_INT4 = r"""
import json, keras, numpy as np, torch
from keras.quantizers import Int4QuantizationConfig
from keras_gemma_app import torch_packed
from keras_gemma_app.quantization import unpack_int4
keras.utils.set_random_seed(0)  # the layers' initial weights: the same matrices every run
rng = np.random.default_rng(0)
config = Int4QuantizationConfig(block_size=32)
report = {}
for name, equation, shape in (("gate", "btd,df->btf", (None, 96)), ("query", "btd,ndh->btnh", (None, 4, 32))):
    dense = keras.layers.EinsumDense(equation, output_shape=shape)
    dense.build((1, 1, 64))
    dense.quantize("int4", config=config)
    kernel = torch_packed.dense_kernel(dense)
    matrix = kernel if kernel.ndim == 2 else kernel.permute(1, 0, 2).reshape(kernel.shape[1], -1)
    codes, scale_zero = torch_packed.int4_parts(dense, matrix)
    values = unpack_int4(dense._kernel.value, dense._int4_unpacked_column_size).to(torch.int32)
    groups = torch.arange(matrix.shape[0]) // 32
    read = ((codes.transpose(0, 1) - 8) * scale_zero[groups, :, 0] + scale_zero[groups, :, 1])
    x = torch.as_tensor(rng.normal(size=(3, 64)).astype("float32")).to(torch.bfloat16).to(torch.float32)
    packed = torch_packed.PackedLinear.from_int4_parts([(codes, scale_zero)])
    report[name] = {
        "codes_are_keras": bool(codes.shape == values.T.shape and torch.equal(codes, values.T + 8)),
        "read_vs_matrix": float((read - matrix).abs().max() / matrix.abs().max()),
        "product_vs_matrix": float((packed(x) - x @ matrix).abs().max() / (x @ matrix).abs().max()),
    }
embedding = keras.layers.ReversibleEmbedding(128, 64)
embedding.build((1, 1))
embedding.quantize("int4", config=config)
table = torch_packed.embedding_rows(embedding, torch.arange(128), torch.float32)
head = torch_packed.PackedLinear.from_embedding(embedding, "int4", 32)
x = torch.as_tensor(rng.normal(size=(2, 64)).astype("float32")).to(torch.bfloat16).to(torch.float32)
report["head_vs_table"] = float((head(x) - x @ table.T).abs().max() / (x @ table.T).abs().max())
print(json.dumps(report))
"""


def test_int4_parts_carry_keras_values_over_exactly_where_groups_align():
    done = run_python(KERAS_INT4, env={"KERAS_BACKEND": "torch"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # A 2-D kernel: Keras's groups run along its inputs, so its codes and grid carry over.
    assert report["gate"]["codes_are_keras"]
    assert report["gate"]["read_vs_matrix"] < 1e-6
    # The multi-head query kernel: Keras grouped a reshaped view, so it is quantized again along
    # its inputs (a second rounding, visible but small).
    assert not report["query"]["codes_are_keras"]
    # (Largest element error against the largest weight: 0.14 for these seeded matrices; 0.15 was
    # exceeded by some unseeded ones, where the search trades the extremes for the bulk.)
    assert 1e-4 < report["query"]["read_vs_matrix"] < 0.2
    # Through torch's kernel: bfloat16 products and scales, about 3 significant digits.
    assert report["gate"]["product_vs_matrix"] < 0.02
    assert report["head_vs_table"] < 0.02


@pytest.mark.parametrize("columns", [7, 8])
def test_int4_rows_unpack_as_keras_unpacks_them(columns):
    from keras.quantizers import pack_int4, unpack_int4

    rng = np.random.default_rng(0)
    values = rng.integers(-8, 8, size=(300, columns)).astype(np.int8)
    packed, _, _ = pack_int4(values, axis=-1)
    packed = np.asarray(packed)
    # Every byte a packed row can hold, and rows Keras packed.
    every_byte = np.arange(-128, 128, dtype=np.int8).reshape(64, 4)
    for rows, width in ((packed, columns), (every_byte, 8)):
        keras_values = np.asarray(unpack_int4(rows, width, axis=-1, dtype="int8"))
        ours = torch_packed.unpack_int4_rows(torch.as_tensor(rows), width).numpy()
        assert ours.dtype == np.int8
        np.testing.assert_array_equal(ours, keras_values)
    np.testing.assert_array_equal(torch_packed.unpack_int4_rows(torch.as_tensor(packed), columns).numpy(), values)
