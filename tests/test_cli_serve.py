"""`keras-gemma serve` in its own process, and `keras-gemma generate` processes that find it."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

import keras_gemma_app as kga
from conftest import ROOT, free_address, run_cli, run_concurrently

SCRIPT = str(pathlib.Path(sys.executable).with_name("keras-gemma"))


# Ctrl-C reaches a server in a terminal's foreground; a test runner started in the background
# (`cmd &`) passes SIGINT on as ignored, and Python then installs no KeyboardInterrupt for it.
# The server starts as from a terminal: SIGINT at its default, then exec.
_FOREGROUND = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "os.execv(sys.argv[1], sys.argv[1:])")


def _start(*args, address):
    env = {**os.environ, "KERAS_GEMMA_HOST": address}
    return subprocess.Popen([sys.executable, "-c", _FOREGROUND, SCRIPT, "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _wait_ready(process, address, seconds=300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        client = kga.connect(address, timeout=1)
        if client is not None:
            return client
        time.sleep(0.5)
    process.kill()
    raise AssertionError(f"the server did not come up: {process.communicate()[1][-2000:]}")


@pytest.fixture(scope="module")
def served(real_preset):
    """The real model served on torch by `keras-gemma serve` at a free address."""
    address = free_address()
    process = _start("-m", str(real_preset), "--backend", "torch", "--keep-alive", "15m", address=address)
    _wait_ready(process, address)
    yield address, process
    if process.poll() is None:
        process.kill()
        process.communicate()


def test_generate_processes_use_the_server_and_print_what_loading_prints(served, real_preset):
    address, _ = served
    generate = [SCRIPT, "generate", "-m", str(real_preset), "--backend", "torch"]
    greedy = ["--max-new-tokens", "12", "The capital of France is"]
    sampled = ["--json", "--max-new-tokens", "8", "--top-k", "20", "--seed", "5", "Name a river.", "Hello"]
    env = f"KERAS_GEMMA_HOST={address}"
    via, local, via_sampled, local_sampled, other_dtype = run_concurrently([
        ["env", env, *generate, *greedy],
        ["env", env, *generate, "--no-server", *greedy],
        ["env", env, *generate, *sampled],
        ["env", env, *generate, "--no-server", *sampled],
        ["env", env, *generate, "--dtype", "bfloat16", "--max-new-tokens", "1", "Hi"],
    ])
    for result in (via, local, via_sampled, local_sampled, other_dtype):
        assert result.returncode == 0, result.stderr[-2000:]
    assert via.stdout == local.stdout and via.stdout.strip()
    assert via_sampled.stdout == local_sampled.stdout and len(via_sampled.stdout.splitlines()) == 2
    for result in (via, via_sampled):
        assert f"Using the model served at {address} (torch · " in result.stderr and "Loading" not in result.stderr
    for result in (local, local_sampled, other_dtype):
        assert "Loading" in result.stderr and "Using the model served" not in result.stderr


def test_a_second_server_on_the_same_address_is_refused_at_once(served, real_preset):
    address, _ = served
    result = run_cli("serve", "-m", str(real_preset), "--address", address)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: Cannot serve on {address} (Address already in use): expected a free address; "
        "choose another with --address or $KERAS_GEMMA_HOST."]


def test_ctrl_c_stops_the_server(served):
    address, process = served
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]
    assert f"Serving " in stderr and f"at http://{address}" in stderr and stderr.rstrip().endswith("Server stopped.")
    requests = [line for line in stderr.splitlines() if " generate · " in line]
    assert len(requests) == 2  # the two `generate` processes that used it
    assert " generate · 1 prompt · 12 tokens · " in requests[0] and " generate · 2 prompts · 16 tokens · " in requests[1]
    assert kga.connect(address) is None


def test_keep_alive_ends_an_idle_server(tiny_preset):
    address = free_address()
    process = _start("-m", str(tiny_preset), "--keep-alive", "1s", address=address)
    _wait_ready(process, address, seconds=120)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and "stops after 1s without a request" in stderr
    assert stderr.rstrip().endswith("Server stopped.")


@pytest.mark.parametrize("args, message", [
    (("--keep-alive", "soon"),
     "Error: Expected a duration such as 90, 30s, 5m or 1h for --keep-alive, received 'soon'."),
    (("--address", "localhost"),
     "Error: Expected a server address HOST:PORT (e.g. 127.0.0.1:8431), received 'localhost'."),
])
def test_bad_options_are_one_line_and_exit_2(tiny_preset, args, message):
    from click.testing import CliRunner

    from keras_gemma_app.cli import main

    result = CliRunner().invoke(main, ["serve", "-m", str(tiny_preset), *args])
    assert result.exit_code == 2 and result.stderr.strip() == message
