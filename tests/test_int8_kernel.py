"""The int8 product kernel for CPUs with 512-bit VNNI (built once with the C compiler)."""

import json

import pytest
import torch

from keras_gemma_app import dynamic_int8, int8_kernel

needs_kernel = pytest.mark.skipif(not int8_kernel.available(), reason="the int8 kernel does not run on this machine")


def test_cpu_support_is_read_from_the_cpu_flags():
    assert int8_kernel.cpu_supports("processor : 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni amx_int8\n")
    # VNNI on 256-bit registers only, or 512-bit registers without VNNI: not enough.
    assert not int8_kernel.cpu_supports("flags : fpu avx2 avx_vnni\n")
    assert not int8_kernel.cpu_supports("flags : fpu avx512f avx512bw\n")
    assert not int8_kernel.cpu_supports("")


def _engine(weight, scale, x):
    """torch's x86 engine on the same weight: the values the kernel must give."""
    quantized = torch._make_per_channel_quantized_tensor(
        weight, scale.to(torch.float64), torch.zeros(weight.shape[0], dtype=torch.int64), 0)
    packed = torch.ops.quantized.linear_prepack(quantized, None)
    return torch.ops.quantized.linear_dynamic(x, packed, dynamic_int8.reduce_range())


@needs_kernel
@pytest.mark.skipif(not dynamic_int8.available(), reason="torch's x86 quantized engine is not available")
@pytest.mark.parametrize("shape", [(4096, 640), (1000, 642), (7, 3)])
def test_kernel_gives_the_engines_values_bit_for_bit(shape):
    out_features, in_features = shape
    generator = torch.Generator().manual_seed(out_features)
    weight = torch.randint(-127, 128, shape, dtype=torch.int8, generator=generator)
    scale = torch.rand(out_features, generator=generator) / 100 + 1e-4
    x = torch.randn(1, in_features, generator=generator) * torch.rand(1, in_features, generator=generator) * 4
    product = dynamic_int8.DynamicInt8Linear(weight, scale)
    assert product._blocked is not None
    got = product(x)
    assert got.shape == (1, out_features)
    assert torch.equal(got, _engine(weight, scale, x))


@needs_kernel
def test_several_rows_share_one_read_of_the_weights():
    generator = torch.Generator().manual_seed(5)
    weight = torch.randint(-127, 128, (40, 24), dtype=torch.int8, generator=generator)
    blocked = int8_kernel.BlockedInt8(weight, torch.ones(40))
    quantized = torch.randint(0, 256, (3, 24), dtype=torch.uint8, generator=generator)
    out = blocked(quantized, 128, 0.5)
    exact = (quantized.to(torch.int64) - 128) @ weight.to(torch.int64).T
    assert torch.equal(out, exact.to(torch.float32) * 0.5)


BUILD_AND_USE = r"""
import json, sys
import torch
from keras_gemma_app import dynamic_int8, int8_kernel
weight = torch.randint(-127, 128, (32, 16), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
product = dynamic_int8.DynamicInt8Linear(weight, torch.ones(32) / 100)
out = product(torch.linspace(-1, 1, 16)[None])
print(json.dumps({"available": int8_kernel.available(), "kernel": product._blocked is not None,
                  "out": out.reshape(-1).tolist()}))
"""


def _build_and_use(tmp_path, **env):
    from conftest import run_python

    done = run_python(BUILD_AND_USE, env={"KERAS_GEMMA_CACHE": str(tmp_path / "cache"), **env})
    assert done.returncode == 0, done.stderr[-3000:]
    # Nothing on stderr: not torch's warning about quantized tensor types either.
    assert "Warning" not in done.stderr, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_kernel
def test_built_once_into_the_cache_then_reused(tmp_path):
    first = _build_and_use(tmp_path)
    assert first["available"] and first["kernel"]
    built = list((tmp_path / "cache" / "kernels").glob("int8_kernel-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    again = _build_and_use(tmp_path)
    assert again["out"] == first["out"]
    assert built[0].stat().st_mtime_ns == stamp


@pytest.mark.skipif(not dynamic_int8.available(), reason="torch's x86 quantized engine is not available")
@pytest.mark.parametrize("env", [{"KERAS_GEMMA_INT8_KERNEL": "0"}, {"CC": "no-such-compiler", "PATH": "/nonexistent"}],
                         ids=["turned-off", "no-compiler"])
def test_without_the_kernel_the_engine_runs(tmp_path, env):
    # Python itself is found by its full path; the empty PATH only hides the compiler.
    result = _build_and_use(tmp_path, **env)
    assert not result["available"] and not result["kernel"]
    assert not (tmp_path / "cache" / "kernels").exists()
    assert len(result["out"]) == 32 and any(result["out"])


@needs_kernel
@pytest.mark.slow
def test_real_int4_model_greedy_tokens_same_with_and_without_the_kernel(real_quantized):
    import sys

    from conftest import run_concurrently

    preset, _ = real_quantized["int4"]
    runs = run_concurrently([[sys.executable, "-c", GREEDY_WITH_FLAG, str(preset), flag] for flag in ("1", "0")])
    for done in runs:
        assert done.returncode == 0, done.stderr[-3000:]
    with_kernel, without = (json.loads(done.stdout.strip().splitlines()[-1]) for done in runs)
    # The int8 LM head's parts run on the kernel in one process and on the engine in the other.
    assert with_kernel["kernel"] == [True] * 4 and without["kernel"] == [False] * 4
    assert len(with_kernel["tokens"]) == 24
    assert with_kernel["tokens"] == without["tokens"]


GREEDY_WITH_FLAG = r"""
import json, os, sys
os.environ["KERAS_GEMMA_INT8_KERNEL"] = sys.argv[2]
import keras_gemma_app as kga
kga.use_backend("torch")
from keras_gemma_app.decoding import _model_adapter
pipe = kga.load(sys.argv[1])
tokens = pipe.completions("The capital of France is", max_new_tokens=24)[0].token_ids
head = _model_adapter(pipe.causal_lm).lm_head
print(json.dumps({"tokens": [int(t) for t in tokens], "kernel": [p._blocked is not None for p in head.parts]}))
"""
