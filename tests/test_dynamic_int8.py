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
    # The activations are rounded to 8 bits (7 without VNNI): close to the exact product, not equal to it.
    error = float((out - exact).norm() / exact.norm())
    assert 0 < error < 0.03, error


def test_vnni_is_read_from_the_cpu_flags():
    assert dynamic_int8.has_vnni("processor : 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert dynamic_int8.has_vnni("flags : fpu avx2 avx_vnni\nflags : fpu avx2 avx_vnni\n")
    assert not dynamic_int8.has_vnni("flags : fpu sse avx2 avx512f\nbugs : avx512_vnni_bug\n")
    assert not dynamic_int8.has_vnni("")


@pytest.mark.skipif(dynamic_int8.reduce_range(), reason="this CPU quantizes activations to 7 bits (no VNNI)")
def test_8bit_activations_do_not_saturate():
    # Every activation at the top of its 8-bit range times weights of 127: pairs of products add up
    # to 64,770, past 16 bits; a saturating sum would lose half of it.
    weight = torch.full((4, 256), 127, dtype=torch.int8)
    scale = torch.full((4,), 0.01)
    x = torch.full((1, 256), 3.0)
    out = dynamic_int8.DynamicInt8Linear(weight, scale)(x)
    exact = x @ (weight.to(torch.float32) * scale[:, None]).T
    assert torch.allclose(out, exact, rtol=1e-3), (out, exact)
    # Half-range steps would show: 8-bit activations read a ramp back closer than 7-bit ones.
    ramp = torch.linspace(0.0, 1.0, 256)[None]
    identity = dynamic_int8.DynamicInt8Linear(torch.eye(256, dtype=torch.int8) * 127, torch.full((256,), 1 / 127))
    step = float((identity(ramp) - ramp).abs().max())
    assert step < 1 / 255 * 0.51 + 1e-6, step


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
    # One range for both rows at once (the engine's own) leaves the small row a step or two of the large one's.
    shared = linear._engine(rows)
    assert float((shared[0] - exact[0]).norm() / exact[0].norm()) > 0.3


def _keras_like_table(rows: int, columns: int, seed: int, column_size=None):
    """An int8 table read back as values / row_scale (Keras's int8 embedding)."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(rows, columns, generator=generator) * (1 if column_size is None else column_size)
    row_scale = 127 / table.abs().amax(dim=1)
    return torch.round(table * row_scale[:, None]).to(torch.int8), row_scale


def test_balancing_the_channels_keeps_the_small_ones():
    from keras_gemma_app import channel_balance

    # Input channels whose sizes span three orders of magnitude (as Gemma's final norm makes them),
    # each channel's weights the inverse size: every channel counts in the logits.
    generator = torch.Generator().manual_seed(6)
    gain = torch.exp(torch.linspace(-3.5, 3.5, 128))[torch.randperm(128, generator=generator)]
    inputs = torch.randn(40, 128, generator=generator) * gain
    values, row_scale = _keras_like_table(2000, 128, 5, column_size=1 / gain)
    table = values.to(torch.float32) / row_scale[:, None]
    balance = channel_balance.channel_scale(channel_balance.column_peaks(values, row_scale), inputs[:20])
    balanced = dynamic_int8.BalancedInt8Head(values, row_scale, balance)
    plain = dynamic_int8.DynamicInt8Linear(values, 1 / row_scale.to(torch.float64))
    test = inputs[20:]  # not the calibration rows
    exact = test @ table.T
    balanced_error = float((balanced(test) - exact).norm() / exact.norm())
    plain_error = float((plain(test) - exact).norm() / exact.norm())
    assert balanced_error < plain_error / 3, (balanced_error, plain_error)


def test_balanced_head_built_in_parts_is_the_whole_table_requantized(monkeypatch):
    values, row_scale = _keras_like_table(1000, 64, 7)
    balance = torch.rand(64, generator=torch.Generator().manual_seed(8)) + 0.5
    monkeypatch.setattr(dynamic_int8, "_ROWS_PER_PART", 96)
    monkeypatch.setattr(dynamic_int8, "_ROWS_PER_CHUNK", 40)
    head = dynamic_int8.BalancedInt8Head(values, row_scale, balance)
    assert len(head.parts) == 11
    q, step = dynamic_int8.int8_rows(values.to(torch.float32) * balance / row_scale[:, None])
    whole = dynamic_int8.DynamicInt8Linear(q.to(torch.int8), step.to(torch.float64))
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(9))
    assert torch.equal(head(x), whole(x / balance))


def test_balanced_linear_keeps_small_input_channels():
    from keras_gemma_app import channel_balance

    # Inputs whose channels span three orders of magnitude, weights the inverse: all channels count.
    generator = torch.Generator().manual_seed(10)
    size = torch.exp(torch.linspace(-3.5, 3.5, 96))[torch.randperm(96, generator=generator)]
    weight, scale = _int8(64, 96, 11)
    weight = torch.round(weight.to(torch.float32) / size.sqrt() / 4).clamp(-127, 127).to(torch.int8)
    samples = torch.randn(32, 96, generator=generator) * size
    recorder = channel_balance.InputPeaks(lambda x: x.sum(-1))
    recorder(samples[:16])
    recorder(samples[16:])
    assert torch.equal(recorder.peaks, samples.abs().amax(dim=0))
    x = torch.randn(4, 96, generator=generator) * size
    exact = x @ (weight.to(torch.float32) * scale[:, None]).T
    balanced = dynamic_int8.BalancedInt8Linear(weight, scale, recorder.peaks)
    plain = dynamic_int8.DynamicInt8Linear(weight, scale)
    balanced_error = float((balanced(x) - exact).norm() / exact.norm())
    plain_error = float((plain(x) - exact).norm() / exact.norm())
    assert balanced(x).shape == (4, 64) and balanced_error < 0.02
    assert balanced_error < plain_error / 2, (balanced_error, plain_error)


def test_refuses_a_weight_that_is_not_int8():
    with pytest.raises(ValueError, match="Expected a 2-D int8 weight, received"):
        dynamic_int8.DynamicInt8Linear(torch.randn(4, 8), torch.ones(4))


LOGITS = r"""
import json, sys
import torch
import keras_gemma_app as kga
kga.use_backend("torch")
from keras_gemma_app import torch_packed
from keras_gemma_app.decoding import _model_adapter
adapter = _model_adapter(kga.load(sys.argv[1], quantize="int8").causal_lm)
hidden = torch.randn(3, 1, adapter.hidden_dim, generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    logits = adapter.logits(hidden)
    embedding = adapter.embedding
    table = embedding._embeddings.value.to(torch.float32) / embedding.embeddings_scale.value.to(torch.float32)[:, None]
    exact = hidden[:, 0] @ table.T
    layer = adapter.layers[0]
    x = torch.randn(2, layer.hidden_dim, generator=torch.Generator().manual_seed(1))
    block = adapter.causal_lm.backbone.transformer_layers[0]
    kernels = [torch_packed.dense_kernel(dense) for dense in (block.gating_ffw, block.gating_ffw_2)]
    gates_exact = x @ torch.cat(kernels, dim=1)
    gates = layer.gates_2d(x)
print(json.dumps({"dynamic": type(adapter.lm_head).__name__ == "BalancedInt8Head",
                  "error": float((logits[:, 0] - exact).norm() / exact.norm()),
                  "gates": [type(layer.gates_2d).__name__ for layer in adapter.layers],
                  "gates_error": float((gates - gates_exact).norm() / gates_exact.norm())}))
"""


@pytest.mark.parametrize("compile_flag", [None, "1"])
def test_int8_lm_head_quantizes_its_input_compiled_or_not(tiny_preset, compile_flag):
    from conftest import run_python

    done = run_python(LOGITS, str(tiny_preset), env={"KERAS_GEMMA_TORCH_COMPILE": compile_flag})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The engine's head, on the table balanced against the model's own hidden states, with or without
    # torch.compile (compiled code calls the engine through a custom op).
    assert result["dynamic"]
    # Keras's int8 table, read on 8-bit activations: about 2-3 significant digits.
    assert result["error"] < 0.03, result
    # The gate products likewise (balanced against the calibration text's inputs), the other
    # products on the weight-only kernel.
    assert result["gates"] and result["gates"] == ["BalancedInt8Linear"] * len(result["gates"]), result
    assert result["gates_error"] < 0.03, result


@pytest.mark.parametrize("rows", [1, 3])
def test_compiled_code_calls_the_engine_through_its_custom_op(rows, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    generator = torch.Generator().manual_seed(0)
    weight = torch.randint(-127, 128, (48, 64), dtype=torch.int8, generator=generator)
    product = dynamic_int8.DynamicInt8Linear(weight, torch.rand(48, generator=generator) / 100)
    x = torch.randn(rows, 64, generator=generator)
    compiled = torch.compile(lambda x: product(torch.relu(x)) + 1, fullgraph=True)
    with torch.inference_mode():
        # The engine's own values: the custom op runs the eager product on what the graph hands it.
        assert torch.equal(compiled(x), product(torch.relu(x)) + 1)


FIRST_IN_THREADS = r"""
import threading
import torch
from keras_gemma_app import dynamic_int8
errors, products = [], []
barrier = threading.Barrier(4)

def build(seed):
    try:
        barrier.wait()
        weight = torch.randint(-127, 128, (16, 32), dtype=torch.int8, generator=torch.Generator().manual_seed(seed))
        products.append(dynamic_int8.DynamicInt8Linear(weight, torch.ones(16) / 100))
    except BaseException as error:
        errors.append(repr(error))

threads = [threading.Thread(target=build, args=(seed,)) for seed in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(errors, len(products))
"""


def test_the_first_products_may_be_built_in_threads_at_once():
    from conftest import run_python

    # A table's parts are packed side by side; the engine's custom op is registered once among them.
    done = run_python(FIRST_IN_THREADS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[] 4"
