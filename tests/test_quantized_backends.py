"""The real model at int8 and int4 on tensorflow and torch (jax: in-process tests): coherent text, the app's fast paths,
and what each level costs in perplexity."""

import json
import pathlib
import sys

import pytest

# JAX runs the quantized presets in-process (the session fixture and test_quantized_preset, through
# the same XlaGemma3 as TensorFlow); these two get a process each.
BACKENDS = ("tensorflow", "torch")
WORKER = pathlib.Path(__file__).with_name("quantized_worker.py")
# Which forward pass each backend runs quantized weights through.
ADAPTERS = {"jax": "XlaGemma3", "tensorflow": "XlaGemma3", "torch": "TorchGemma3"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def per_backend(real_preset, real_quantized, tmp_path_factory):
    from conftest import run_concurrently

    out = tmp_path_factory.mktemp("quantized_runs")
    commands = [[sys.executable, str(WORKER), backend, str(out / f"{backend}.json"), str(real_preset),
                 str(real_quantized["int8"][0]), str(real_quantized["int4"][0]),
                 *(["perplexity"] if backend == "torch" else [])] for backend in BACKENDS]
    results = {}
    for backend, done in zip(BACKENDS, run_concurrently(commands, timeout=1200)):
        assert done.returncode == 0, done.stderr[-3000:]
        results[backend] = json.loads((out / f"{backend}.json").read_text())
    return results


@pytest.fixture(scope="module")
def float32_tokens(real_pipe):
    return list(real_pipe.completions("The capital of France is", max_new_tokens=16)[0].token_ids)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_level_generates_coherent_text(per_backend, float32_tokens, backend):
    levels = per_backend[backend]
    for level in ("int8", "int4"):
        entry = levels[level]
        assert entry["quantization"] == level and entry["adapter"] == ADAPTERS[backend]
        words = entry["text"].split()
        assert len(words) >= 8 and all(word.isascii() for word in words), entry["text"]
        # The first greedy token is float32's.
        assert entry["tokens"][0] == float32_tokens[0]


def test_perplexity_cost_of_each_level(per_backend):
    levels = per_backend["torch"]
    base = levels["float32"]["perplexity"]
    # int8 (one scale per output; on torch the LM head quantizes its channel-balanced input at each
    # call) is within 2% of float32.
    assert abs(levels["int8"]["perplexity"] / base - 1) < 0.02
    # int4 (groups of 32 with searched grids; the embedding table and the first two blocks at int8)
    # within 10%. This model's float weights are themselves llama.cpp's Q4_K_M file dequantized, so
    # a second rounding costs more than it would on a 16-bit original (all-int4: +18-20% here).
    assert base < levels["int4"]["perplexity"] < 1.10 * base
