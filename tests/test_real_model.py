"""The real Gemma 3 270M (imported from the bundled GGUF) on jax, tensorflow and torch."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

BACKENDS = ("jax", "tensorflow", "torch")
WORKER = pathlib.Path(__file__).with_name("real_model_worker.py")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def per_backend(real_preset, tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    results = {}
    for backend in BACKENDS:
        path = out / f"{backend}.npz"
        done = subprocess.run([sys.executable, str(WORKER), backend, str(real_preset), str(path)],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        results[backend] = dict(np.load(path))
    return results


def test_greedy_continuation_is_coherent_english(per_backend):
    text = str(per_backend["jax"]["text"])
    words = text.split()
    assert len(words) >= 8
    assert "France" in text
    assert all(word.isascii() for word in words)


def test_same_tokens_on_every_backend(per_backend):
    for backend in BACKENDS:
        assert str(per_backend[backend]["backend"]) == backend
    jax_tokens = per_backend["jax"]["tokens"].tolist()
    assert per_backend["tensorflow"]["tokens"].tolist() == jax_tokens
    assert per_backend["torch"]["tokens"].tolist() == jax_tokens


def test_logits_agree_across_backends(per_backend):
    reference = per_backend["jax"]["logits"]
    assert reference.shape == (1, 8, 262144)
    for backend in ("tensorflow", "torch"):
        difference = np.abs(per_backend[backend]["logits"] - reference).max()
        assert difference <= 1e-3, (backend, difference)


@pytest.mark.parametrize("backend", BACKENDS)
def test_streaming_gives_generate_text(per_backend, backend):
    result = per_backend[backend]
    assert str(result["streamed"]) == str(result["text"])
    assert len(result["tokens"]) <= 16


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_string_spanning_tokens(per_backend, backend):
    result = per_backend[backend]
    text, stop = str(result["text"]), str(result["stop"])
    assert stop in text
    assert str(result["stopped"]) == text[: text.index(stop)]
