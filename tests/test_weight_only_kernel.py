"""The weight-only int4 and int8 product kernels for CPUs with AVX-512 (built once with the C compiler)."""

import json
import sys

import pytest
import torch

from conftest import run_python
from keras_gemma_app import weight_only_kernel, torch_packed

needs_kernel = pytest.mark.skipif(not weight_only_kernel.available(), reason="the weight-only kernels do not run on this machine")


def test_cpu_support_is_read_from_the_cpu_flags():
    assert weight_only_kernel.cpu_supports("processor : 0\nflags\t\t: fpu avx2 avx512f avx512bw\n")
    assert not weight_only_kernel.cpu_supports("flags : fpu avx2 fma\n")
    assert not weight_only_kernel.cpu_supports("")


def _int4(out_features, in_features, group, seed):
    """Random codes (out, in) in 0..15 and (groups, out, 2) scales and zeros (bfloat16 values), and
    the float64 matrix they stand for."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (out_features, in_features), dtype=torch.int32, generator=generator)
    groups = in_features // group
    scale_zero = torch.stack([torch.rand(groups, out_features, generator=generator) / 50 + 1e-3,
                              torch.randn(groups, out_features, generator=generator) / 20], dim=-1)
    scale_zero = scale_zero.to(torch.bfloat16).to(torch.float32)
    index = torch.arange(in_features) // group
    matrix = ((codes.to(torch.float64) - 8) * scale_zero[index, :, 0].T.double() + scale_zero[index, :, 1].T.double())
    return codes, scale_zero, matrix


@needs_kernel
@pytest.mark.parametrize("shape", [(4096, 640, 32), (1000, 640, 128), (48, 24, 8)], ids=str)
@pytest.mark.parametrize("rows", [1, 3, 4, 9])
def test_products_are_the_4bit_matrix_in_float32(shape, rows):
    out_features, in_features, group = shape
    codes, scale_zero, matrix = _int4(out_features, in_features, group, seed=out_features + rows)
    x = torch.randn(rows, in_features, generator=torch.Generator().manual_seed(rows))
    got = weight_only_kernel.BlockedInt4([(codes, scale_zero)], group)(x)
    assert got.shape == (rows, out_features) and got.dtype == torch.float32
    exact = x.double() @ matrix.T
    # float32 throughout: ~1e-7 of the largest value (torch's bfloat16 kernel: ~3e-3).
    assert float((got - exact).abs().max() / exact.abs().max()) < 2e-6


@needs_kernel
def test_parts_of_rows_give_the_product_of_the_whole():
    codes, scale_zero, _ = _int4(100, 64, 32, seed=1)
    x = torch.randn(2, 64)
    whole = weight_only_kernel.BlockedInt4([(codes, scale_zero)], 32)(x)
    parts = weight_only_kernel.BlockedInt4([(codes[:32], scale_zero[:, :32]), (codes[32:], scale_zero[:, 32:])], 32)(x)
    assert torch.equal(whole, parts)
    with pytest.raises(ValueError, match="multiple of 16 rows"):
        weight_only_kernel.BlockedInt4([(codes[:30], scale_zero[:, :30]), (codes[30:], scale_zero[:, 30:])], 32)
    with pytest.raises(ValueError, match="multiple of 4 inputs"):
        weight_only_kernel.BlockedInt4([(codes, scale_zero)], 6)


@needs_kernel
@pytest.mark.parametrize("shape", [(1536, 640), (1000, 2048), (20, 7)], ids=str)
@pytest.mark.parametrize("rows", [1, 3, 6])
def test_int8_products_are_the_8bit_matrix_in_float32(shape, rows):
    out_features, in_features = shape
    generator = torch.Generator().manual_seed(out_features + rows)
    weight = torch.randint(-127, 128, shape, dtype=torch.int8, generator=generator)
    scale = torch.rand(out_features, generator=generator) / 100 + 1e-4
    x = torch.randn(rows, in_features, generator=generator)
    blocked = weight_only_kernel.BlockedInt8(weight, scale)
    got = blocked(x)
    assert got.shape == (rows, out_features) and got.dtype == torch.float32
    exact = x.double() @ (weight.double() * scale.double()[:, None]).T
    assert float((got - exact).abs().max() / exact.abs().max()) < 2e-6
    # The weights and scales read back as given (the int8 gates are re-packed from them).
    back_weight, back_scale = blocked.rows()
    assert torch.equal(back_weight, weight) and torch.equal(back_scale, scale)


@needs_kernel
def test_packed_int8_linear_runs_on_the_kernel():
    matrix = torch.randn(256, 96)
    packed = torch_packed.PackedLinear.from_matrix(matrix, "int8", None)
    assert packed._blocked is not None
    x = torch.randn(2, 256)
    weight, scale = packed.int8_rows()
    assert weight.shape == (96, 256) and weight.dtype == torch.int8
    exact = x.double() @ (weight.double() * scale.double()[:, None]).T
    assert float((packed(x) - exact).abs().max() / exact.abs().max()) < 2e-6


@needs_kernel
def test_packed_int4_linear_runs_on_the_kernel_and_keeps_the_activation_dtype():
    matrix = torch.randn(640, 1536)
    packed = torch_packed.PackedLinear.from_matrix(matrix, "int4", 32)
    assert packed._blocked is not None
    x = torch.randn(1, 1, 640)
    out = packed(x)
    assert out.shape == (1, 1, 1536) and out.dtype == torch.float32
    assert packed(x.to(torch.bfloat16)).dtype == torch.bfloat16
    # 4-bit weights: close to the float product, not equal to it.
    error = float((out - x @ matrix).abs().mean() / (x @ matrix).abs().mean())
    assert 0.005 < error < 0.2


@needs_kernel
@pytest.mark.parametrize("mode", ["int4", "int8"])
def test_compiled_code_calls_the_kernel_with_the_same_values(mode):
    packed = torch_packed.PackedLinear.from_matrix(torch.randn(256, 96), mode, 32)
    compiled = torch.compile(lambda x: torch.relu(packed(x)) * 2, fullgraph=True)
    for rows in (1, 3):
        x = torch.randn(rows, 256)
        assert torch.equal(compiled(x), torch.relu(packed(x)) * 2)


BUILD_AND_USE = r"""
import json
import torch
from keras_gemma_app import weight_only_kernel, torch_packed
matrix = torch.linspace(-1, 1, 64 * 48).reshape(64, 48)
packed = torch_packed.PackedLinear.from_matrix(matrix, "int4", 32)
out = packed(torch.linspace(-1, 1, 64)[None])
packed8 = torch_packed.PackedLinear.from_matrix(matrix, "int8", None)
out8 = packed8(torch.linspace(-1, 1, 64)[None])
print(json.dumps({"available": weight_only_kernel.available(), "kernel": packed._blocked is not None,
                  "kernel8": packed8._blocked is not None, "out": out.reshape(-1).tolist(),
                  "out8": out8.reshape(-1).tolist()}))
"""


def _build_and_use(tmp_path, **env):
    done = run_python(BUILD_AND_USE, env={"KERAS_GEMMA_CACHE": str(tmp_path / "cache"), **env})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.strip() == "", done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_kernel
def test_built_once_into_the_cache_then_reused(tmp_path):
    first = _build_and_use(tmp_path)
    assert first["available"] and first["kernel"] and first["kernel8"]
    built = list((tmp_path / "cache" / "kernels").glob("weight_only_kernel-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    again = _build_and_use(tmp_path)
    assert again["out"] == first["out"] and again["out8"] == first["out8"]
    assert built[0].stat().st_mtime_ns == stamp


@pytest.mark.parametrize("env", [{"KERAS_GEMMA_WEIGHT_ONLY_KERNEL": "0"}, {"CC": "no-such-compiler", "PATH": "/nonexistent"}],
                         ids=["turned-off", "no-compiler"])
def test_without_the_kernels_torchs_run(tmp_path, env):
    # Python itself is found by its full path; the empty PATH only hides the compiler.
    result = _build_and_use(tmp_path, **env)
    assert not result["available"] and not result["kernel"] and not result["kernel8"]
    assert not (tmp_path / "cache" / "kernels").exists()
    assert len(result["out"]) == 48 and any(result["out"]) and len(result["out8"]) == 48


@needs_kernel
def test_compiled_runs_keep_torchs_kernels(tmp_path):
    # Under KERAS_GEMMA_TORCH_COMPILE=1 compiled code calls torch's kernel directly; the app's would
    # need a custom op, slower to reach than it saves.
    result = _build_and_use(tmp_path, KERAS_GEMMA_TORCH_COMPILE="1")
    assert result["available"] and not result["kernel"] and not result["kernel8"]
    assert len(result["out"]) == 48 and any(result["out"])


@needs_kernel
@pytest.mark.slow
def test_real_int4_model_with_and_without_the_kernels(real_quantized):
    preset, _ = real_quantized["int4"]
    # One process after the other: this runs late in the suite, when the test process itself is large.
    runs = [run_python(NEXT_TOKEN_WITH_FLAG, str(preset), flag) for flag in ("1", "0")]
    for done in runs:
        assert done.returncode == 0, done.stderr[-3000:]
    with_kernel, without = (json.loads(done.stdout.strip().splitlines()[-1]) for done in runs)
    # Every int4 and int8 weight-only product of the blocks runs on the kernels in one process, none in
    # the other.
    assert with_kernel["kernel"] and all(with_kernel["kernel"]) and not any(without["kernel"])
    assert len(with_kernel["kernel"]) == len(without["kernel"])
    # float32 against bfloat16 activations: the same most likely next token, and log-probabilities a
    # little apart for the likeliest tokens of both.
    assert with_kernel["top"][0] == without["top"][0]
    ours, theirs = (dict(zip(run["top"], run["log_probs"])) for run in (with_kernel, without))
    shared = [token for token in ours if token in theirs][:5]
    assert len(shared) >= 5
    gap = max(abs(ours[token] - theirs[token]) for token in shared)
    assert 0 < gap < 0.1


NEXT_TOKEN_WITH_FLAG = r"""
import json, os, sys
os.environ["KERAS_GEMMA_WEIGHT_ONLY_KERNEL"] = sys.argv[2]
import keras_gemma_app as kga
kga.use_backend("torch")
import torch
from keras_gemma_app import torch_packed
from keras_gemma_app.decoding import _model_adapter
pipe = kga.load(sys.argv[1])
model = _model_adapter(pipe.causal_lm)
products = [p for layer in model.layers for p in (layer.qkv_2d, layer.output_2d, layer.gates_2d, layer.linear_2d)
            if isinstance(p, torch_packed.PackedLinear)]
ids = torch.tensor([[2, 818, 5279, 529, 7001, 563]])
with torch.inference_mode():
    hidden, _ = model.forward(ids, model.empty_cache(1, 8), 0)
    log_probs = torch.log_softmax(model.logits(hidden[:, -1]).to(torch.float32), dim=-1)[0]
top = torch.topk(log_probs, 20)
print(json.dumps({"kernel": [p._blocked is not None for p in products], "top": top.indices.tolist(),
                  "log_probs": top.values.tolist()}))
"""
