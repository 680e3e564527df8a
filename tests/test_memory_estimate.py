"""Memory estimates, checked against the resident memory of the real model after loading."""

import json
import sys

import pytest

from keras_gemma_app.catalogue import get
from keras_gemma_app.errors import SettingsError
from keras_gemma_app.hardware import GIB, ram
from keras_gemma_app.memory_estimate import estimate_memory, weights_bytes

MEASURE = """
import json, sys
import keras_gemma_app as kga
kga.use_backend(sys.argv[1])
pipe = kga.load(sys.argv[2], dtype=None if sys.argv[3] == "-" else sys.argv[3])
pipe.generate("The capital of France is", max_new_tokens=4)
rss = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmRSS"))
print(json.dumps({"rss": rss}))
"""


BACKENDS = ("jax", "tensorflow", "torch")


def _measure(cases) -> dict:
    """{(backend, preset, dtype): resident bytes}, one fresh process per case, two at a time."""
    from conftest import run_concurrently

    runs = run_concurrently([[sys.executable, "-c", MEASURE, *case] for case in cases], timeout=600)
    results = {}
    for case, done in zip(cases, runs):
        assert done.returncode == 0, done.stderr[-2000:]
        results[case] = json.loads(done.stdout.strip().splitlines()[-1])["rss"]
    return results


@pytest.fixture(scope="module")
def float_rss(real_preset) -> dict:
    return _measure([(backend, str(real_preset), dtype) for backend in BACKENDS for dtype in ("float32", "bfloat16")])


@pytest.fixture(scope="module")
def int4_rss(real_quantized) -> dict:
    return _measure([(backend, str(real_quantized["int4"][0]), "-") for backend in BACKENDS])


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_estimate_is_within_ten_percent_of_the_real_model_resident_memory(float_rss, real_preset, backend_name, dtype):
    measured = float_rss[(backend_name, str(real_preset), dtype)]
    # The RAM this machine has available, as the measured processes had it.
    available = ram()[1] or ram()[0]
    estimated = estimate_memory(get("gemma3_270m_pypi").params, dtype, backend_name, available_bytes=available).total_bytes
    assert abs(estimated - measured) / measured < 0.10, (
        f"{backend_name} {dtype}: estimated {estimated / GIB:.2f} GiB, measured {measured / GIB:.2f} GiB")


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", BACKENDS)
def test_quantized_estimate_is_within_ten_percent(int4_rss, real_quantized, backend_name):
    measured = int4_rss[(backend_name, str(real_quantized["int4"][0]), "-")]
    entry = get("gemma3_270m_pypi")
    estimated = estimate_memory(entry.params, "int4", backend_name,
                                eight_bit_params=entry.int4_eight_bit_params).total_bytes
    assert abs(estimated - measured) / measured < 0.10, (
        f"{backend_name} int4: estimated {estimated / GIB:.2f} GiB, measured {measured / GIB:.2f} GiB")


def test_weights_scale_with_precision():
    params = 1_000_000_000
    assert [weights_bytes(params, p) for p in ("float32", "bfloat16", "float16", "int8", "int4")] == [
        4e9, 2e9, 2e9, 1e9, 6e8]


def test_int4_counts_the_weights_it_keeps_at_int8():
    params, eight_bit = 1_000_000_000, 200_000_000
    assert weights_bytes(params, "int4", eight_bit) == 800e6 * 0.6 + 200e6
    assert weights_bytes(params, "int8", eight_bit) == weights_bytes(params, "int8")
    assert estimate_memory(params, "int4", "torch", eight_bit_params=eight_bit).total_bytes > estimate_memory(
        params, "int4", "torch").total_bytes


def test_on_an_accelerator_the_weights_dominate():
    on_gpu = estimate_memory(27_000_000_000, "bfloat16", "jax", "gpu")
    assert on_gpu.weights_bytes == 54e9
    assert 54e9 < on_gpu.total_bytes < 1.3 * 54e9
    assert on_gpu.device == "gpu"


def test_estimates_grow_with_the_model_and_shrink_with_precision():
    small = estimate_memory(1_000_000_000, "bfloat16", "torch")
    big = estimate_memory(4_000_000_000, "bfloat16", "torch")
    assert big.total_bytes > small.total_bytes > estimate_memory(1_000_000_000, "int4", "torch").total_bytes


def test_unknown_precision_or_backend():
    with pytest.raises(SettingsError, match="Unknown precision 'fp8'"):
        estimate_memory(10, "fp8")
    with pytest.raises(SettingsError, match="Unknown backend 'mlx'"):
        estimate_memory(10, "float32", "mlx")


def test_jax_bfloat16_counts_the_float32_kernel_copies_only_where_they_would_be_made():
    params = 4_000_000_000
    weights = weights_bytes(params, "bfloat16")
    roomy = estimate_memory(params, "bfloat16", "jax", available_bytes=200 * GIB).total_bytes
    # 16 GiB available: the copies (~6 GB for 4B) would take more than a quarter, so none are made.
    tight = estimate_memory(params, "bfloat16", "jax", available_bytes=16 * GIB).total_bytes
    unknown = estimate_memory(params, "bfloat16", "jax").total_bytes
    assert roomy - tight == pytest.approx(0.76 * weights, rel=1e-6)
    assert unknown == tight
    # float32 weights and other backends have no copies: the RAM does not change their estimate.
    for precision, backend in (("float32", "jax"), ("bfloat16", "tensorflow"), ("bfloat16", "torch")):
        assert (estimate_memory(params, precision, backend, available_bytes=200 * GIB).total_bytes
                == estimate_memory(params, precision, backend, available_bytes=16 * GIB).total_bytes)
