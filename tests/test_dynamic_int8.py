"""int8 products with activations quantized per call (torch's x86 quantized engine)."""

import json

import pytest
import torch

from keras_gemma_app import dynamic_int8

pytestmark = pytest.mark.skipif(not dynamic_int8.available(), reason="torch's x86 quantized engine is not available")


def _int8(rows: int, columns: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randint(-127, 128, (rows, columns), dtype=torch.int8, generator=generator)
    scale = torch.rand(rows, generator=generator) * 0.01 + 1e-3
    return weight, scale


def test_product_is_the_int8_matrix_on_8bit_activations():
    weight, scale = _int8(300, 128, 0)
    x = torch.randn(1, 128, generator=torch.Generator().manual_seed(1))
    exact = x @ (weight.to(torch.float32) * scale[:, None]).T
    out = dynamic_int8.DynamicInt8Linear(weight, scale)(x)
    assert out.shape == (1, 300) and out.dtype == torch.float32
    # The activations are rounded to 7 bits: close to the exact product, not equal to it.
    error = float((out - exact).norm() / exact.norm())
    assert 0 < error < 0.03, error


def test_each_row_is_quantized_on_a_range_of_its_own():
    weight, scale = _int8(200, 64, 2)
    linear = dynamic_int8.DynamicInt8Linear(weight, scale)
    small = torch.randn(1, 64, generator=torch.Generator().manual_seed(3))
    large = 1000 * torch.randn(1, 64, generator=torch.Generator().manual_seed(4))
    rows = torch.cat([small, large])
    exact = rows @ (weight.to(torch.float32) * scale[:, None]).T
    together = linear(rows)
    for row in range(2):
        assert float((together[row] - exact[row]).norm() / exact[row].norm()) < 0.03
    # The engine's own range for both rows at once leaves the small row a step or two of the large one's.
    shared = torch.ops.quantized.linear_dynamic(rows, linear._packed, True)
    assert float((shared[0] - exact[0]).norm() / exact[0].norm()) > 0.3


def test_refuses_a_weight_that_is_not_int8():
    with pytest.raises(ValueError, match="Expected a 2-D int8 weight, received"):
        dynamic_int8.DynamicInt8Linear(torch.randn(4, 8), torch.ones(4))


LOGITS = r"""
import json, sys
import torch
import keras_gemma_app as kga
kga.use_backend("torch")
from keras_gemma_app.decoding import _model_adapter
adapter = _model_adapter(kga.load(sys.argv[1], quantize="int8").causal_lm)
hidden = torch.randn(3, 1, adapter.hidden_dim, generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    logits = adapter.logits(hidden)
    embedding = adapter.embedding
    table = embedding._embeddings.value.to(torch.float32) / embedding.embeddings_scale.value.to(torch.float32)[:, None]
    exact = hidden[:, 0] @ table.T
print(json.dumps({"dynamic": type(adapter.lm_head).__name__ == "DynamicInt8Linear",
                  "error": float((logits[:, 0] - exact).norm() / exact.norm())}))
"""


@pytest.mark.parametrize("compile_flag", [None, "1"])
def test_int8_lm_head_quantizes_its_input_unless_compiling(tiny_preset, compile_flag):
    from conftest import run_python

    done = run_python(LOGITS, str(tiny_preset), env={"KERAS_GEMMA_TORCH_COMPILE": compile_flag})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # torch.compile cannot trace the engine's packed weights: the weight-only kernel there.
    assert result["dynamic"] is (compile_flag is None)
    # Keras's int8 table, read on 8-bit activations (or bfloat16 ones): about 2-3 significant digits.
    assert result["error"] < 0.03, result
