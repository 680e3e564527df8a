"""Starting ``keras-gemma serve`` in the background, for ``generate --keep-alive``.

The server runs as its own process, detached from the terminal that started
it, and stops by itself after its keep-alive time without a request. What it
writes goes to a log file in the app cache; if it fails to start, its error
line is raised here.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

from keras_gemma_app.cache_dir import app_cache_dir
from keras_gemma_app.errors import ServerError
from keras_gemma_app.model_server import parse_address
from keras_gemma_app.server_client import ServerClient, connect

KEEP_ALIVE_ENV = "KERAS_GEMMA_KEEP_ALIVE"


def log_path(address: str | None = None) -> pathlib.Path:
    """Where a background server for ``address`` writes its status and errors."""
    host, port = parse_address(address)
    return app_cache_dir() / "servers" / f"serve-{host}-{port}.log"


def _last_error(log: pathlib.Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    if errors:
        return errors[-1].removeprefix("Error:").strip()
    return (lines[-1] if lines else "it exited without a message") + f" (log: {log})"


def start_server(model: str, *, keep_alive: str, address: str | None = None, backend: str | None = None,
                 dtype: str | None = None, quantize: str | None = None, template: str | None = None,
                 offline: bool = False, force: bool = False, timeout: float = 1800.0) -> ServerClient:
    """Starts a background ``keras-gemma serve`` for ``model`` and waits until it answers.

    Args:
        model: the model, as ``keras-gemma serve -m`` takes it.
        keep_alive: how long it stays without a request (``90``, ``30s``, ``5m``, ``1h``).
        address: ``HOST:PORT``; default $KERAS_GEMMA_HOST, else 127.0.0.1:8431.
        timeout: seconds to wait for it (loading a large model the first time).

    Raises:
        ServerError: the server exited before answering (its error message),
            or did not answer within ``timeout``.
    """
    host, port = parse_address(address)
    address = f"{host}:{port}"
    argv = [sys.executable, "-m", "keras_gemma_app", "serve", "-m", model, "--address", address,
            "--keep-alive", keep_alive]
    for flag, value in (("--backend", backend), ("--dtype", dtype), ("--quantize", quantize),
                        ("--template", template)):
        if value is not None:
            argv += [flag, value]
    argv += ["--offline"] * bool(offline) + ["--force"] * bool(force)
    log = log_path(address)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as sink:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                                   start_new_session=True, env={**os.environ, "TERM": "dumb"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"The server could not start: {_last_error(log)}")
        server = connect(address, timeout=1.0)
        if server is not None and server.info.get("pid") == process.pid:
            return server
        time.sleep(0.25)
    process.terminate()
    raise ServerError(f"The server did not answer within {timeout:.0f} s; expected it sooner (log: {log}).")
