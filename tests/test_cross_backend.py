"""The same saved tiny preset on jax, tensorflow and torch, each in its own process."""

import json
import pathlib
import subprocess
import sys

import pytest

from conftest import run_cli

BACKENDS = ("jax", "tensorflow", "torch")
WORKER = pathlib.Path(__file__).with_name("backend_worker.py")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker_results(tiny_preset):
    results = {}
    for backend in BACKENDS:
        done = subprocess.run(
            [sys.executable, str(WORKER), backend, str(tiny_preset)],
            capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_sampler_runs_on_every_backend(worker_results, backend):
    result = worker_results[backend]
    assert result["backend"] == result["keras_backend"] == backend
    for name in ("greedy", "top_k", "top_p", "random", "beam", "contrastive"):
        tokens = result[name]["tokens"]
        assert len(tokens) == 2 and all(1 <= len(row) <= 6 for row in tokens), name
        # Deterministic samplers, and seeded random ones, repeat themselves.
        assert result[name]["again"] == result[name]["texts"], name


@pytest.mark.parametrize("name", ["greedy", "beam", "contrastive"])
def test_deterministic_output_is_identical_across_backends(worker_results, name):
    tokens = {backend: worker_results[backend][name]["tokens"] for backend in BACKENDS}
    assert tokens["jax"] == tokens["tensorflow"] == tokens["torch"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_generate_on_each_backend_matches_the_api(worker_results, tiny_preset, backend):
    done = run_cli(
        "generate", "-m", str(tiny_preset), "--backend", backend, "--max-new-tokens", "6",
        "The capital of France", "hello",
        env={"KERAS_BACKEND": "jax" if backend != "jax" else "torch"},  # the flag wins
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "".join(text + "\n" for text in worker_results[backend]["greedy"]["texts"])
    assert f"· {backend} ·" in done.stderr
