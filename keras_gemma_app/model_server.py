"""A resident model: one loaded pipeline answering generate requests over local HTTP.

Starting a model costs seconds every time (importing Keras, loading weights, the
first compile). A server pays that once; a later ``keras-gemma generate`` (or
:func:`keras_gemma_app.connect`) that finds it starts generating at once, the
way Ollama keeps a model loaded between commands.

The protocol is small JSON over HTTP on a local address:

- ``GET /api/show`` → what is loaded (see :func:`describe`).
- ``POST /api/count`` with ``{"text": ...}`` → ``{"tokens": n}`` (as the model tokenizes it).
- ``POST /api/generate`` with ``{"prompts": [...], "stream": bool, "sampler":
  {"name": ..., <settings>}, "options": {"max_new_tokens", "stop_token_ids",
  "stop", "system", "raw"}}`` → ``{"completions": [...]}``, or with ``stream``
  one JSON object per line, one per piece, then ``{"done": true}``.
- A request the pipeline refuses gets status 400 and ``{"error": message,
  "type": error class}``.

Requests are answered one at a time (one model, one batch at a time).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
from http import server as http_server

from keras_gemma_app import __version__
from keras_gemma_app.errors import KerasGemmaError, SettingsError
from keras_gemma_app.samplers import SAMPLERS

ADDRESS_ENV = "KERAS_GEMMA_HOST"
DEFAULT_ADDRESS = "127.0.0.1:8431"
_OPTIONS = ("max_new_tokens", "stop_token_ids", "stop", "system", "raw")


def parse_address(text: str | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (default: $KERAS_GEMMA_HOST, else 127.0.0.1:8431) as (host, port).

    Raises:
        SettingsError: not HOST:PORT with a port from 0 (any free one) to 65535.
    """
    text = (text or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS).strip()
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise SettingsError(f"Expected a server address HOST:PORT (e.g. {DEFAULT_ADDRESS}), received {text!r}.")
    return host.strip("[]"), int(port)


def check_free(address: str | None = None) -> None:
    """Raises :class:`SettingsError` now if ``address`` cannot be listened on (before a slow load)."""
    host, port = parse_address(address)
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise _unavailable(host, port, error) from None


def _unavailable(host: str, port: int, error: OSError) -> SettingsError:
    reason = os.strerror(error.errno) if error.errno else str(error)
    return SettingsError(
        f"Cannot serve on {host}:{port} ({reason}): expected a free address; "
        f"choose another with --address or ${ADDRESS_ENV}.")


def describe(pipe, source: str) -> dict:
    """What a server holds, as ``GET /api/show`` reports it.

    ``source`` identifies the model whatever way it was named (a resolved
    path for a directory or GGUF file, else the preset name or handle).
    """
    from keras_gemma_app.chat import turn_format

    return {
        "model": pipe.model,
        "source": source,
        "backend": pipe.backend,
        "dtype": pipe.causal_lm.dtype_policy.compute_dtype,
        "quantize": pipe.quantization,
        "template": pipe.template,
        "chat_template": pipe.template if pipe.template != "raw" else turn_format(pipe.causal_lm),
        "context_length": pipe.context_length,
        "pid": os.getpid(),
        "version": __version__,
    }


def sampler_from_request(settings: dict):
    """A :class:`~keras_gemma_app.samplers.Sampler` from ``{"name": ..., <fields>}``."""
    if not isinstance(settings, dict):
        raise SettingsError(f"Expected sampler settings as {{\"name\": ..., ...}}, received {settings!r:.80}.")
    settings = dict(settings)
    name = settings.pop("name", "greedy")
    cls = SAMPLERS.get(name)
    if cls is None:
        raise SettingsError(f"Unknown sampler {name!r}: expected one of {', '.join(SAMPLERS)}.")
    accepted = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - accepted)
    if unknown:
        raise SettingsError(
            f"The {name} sampler takes {', '.join(sorted(accepted)) or 'no settings'}; received {', '.join(unknown)}.")
    return cls(**settings)


def _options(payload: dict) -> dict:
    options = dict(payload.get("options") or {})
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise SettingsError(f"Expected generation options among {', '.join(_OPTIONS)}; received {', '.join(unknown)}.")
    if payload.get("sampler") is not None:  # else the pipeline's own
        options["sampler"] = sampler_from_request(payload["sampler"])
    return options


def _error(error: BaseException) -> dict:
    kind = type(error).__name__ if isinstance(error, KerasGemmaError) else "ServerError"
    message = str(error) if isinstance(error, KerasGemmaError) else f"The model server failed: {error!r}."
    return {"error": message, "type": kind}


class ModelServer:
    """Serves one loaded :class:`~keras_gemma_app.pipeline.Pipeline` on a local address.

    Args:
        pipe: the loaded pipeline.
        source: the model's identity for clients (see :func:`describe`).
        address: ``HOST:PORT``; default $KERAS_GEMMA_HOST, else 127.0.0.1:8431.
            Port 0 picks a free port (read it back from :attr:`address`).
        keep_alive: seconds without a request after which :meth:`serve`
            returns; None serves until :meth:`close`.
        on_request: called after each generate request with ``{"prompts",
            "tokens", "seconds", "stream", "error"}`` (``error``: the message
            of a refused or failed request, else None); the CLI prints it.

    Raises:
        SettingsError: a malformed address, or one that cannot be bound (in use).
    """

    def __init__(self, pipe, *, source: str, address: str | None = None, keep_alive: float | None = None,
                 on_request=None):
        host, port = parse_address(address)
        self.pipe = pipe
        self.info = describe(pipe, source)
        self.keep_alive = keep_alive
        self.on_request = on_request
        self._lock = threading.Lock()
        self._busy = 0
        self._last_request = time.monotonic()
        try:
            self._http = http_server.ThreadingHTTPServer((host, port), _handler(self))
        except OSError as error:
            raise _unavailable(host, port, error) from None
        self._http.daemon_threads = True

    @property
    def address(self) -> str:
        host, port = self._http.server_address[:2]
        return f"{host}:{port}"

    def serve(self) -> None:
        """Answers requests until :meth:`close`, or until idle for ``keep_alive`` seconds."""
        if self.keep_alive is not None:
            threading.Thread(target=self._watch_idle, daemon=True).start()
        try:
            self._http.serve_forever(poll_interval=0.2)
        finally:
            self._http.server_close()

    def close(self) -> None:
        """Stops :meth:`serve` (from another thread)."""
        self._http.shutdown()

    def _watch_idle(self) -> None:
        while True:
            time.sleep(min(0.5, self.keep_alive or 0.5))
            if self._busy == 0 and time.monotonic() - self._last_request >= self.keep_alive:
                self._http.shutdown()
                return

    def _begin(self) -> None:
        self._busy += 1
        self._last_request = time.monotonic()

    def _end(self) -> None:
        self._busy -= 1
        self._last_request = time.monotonic()

    def generate(self, payload: dict):
        """Answers one generate request: a dict, or for ``stream`` an iterator of dicts.

        Raises:
            KerasGemmaError: a request the pipeline refuses (checked before anything is sent).
        """
        if not isinstance(payload, dict):
            raise SettingsError(f"Expected a JSON object, received {type(payload).__name__}.")
        prompts = payload.get("prompts")
        options = _options(payload)
        if payload.get("stream"):
            if not isinstance(prompts, list) or len(prompts) != 1:
                raise SettingsError("Expected one prompt to stream, received "
                                    f"{len(prompts) if isinstance(prompts, list) else type(prompts).__name__}.")
            return self._stream(prompts[0], options)
        results = self.pipe.completions(prompts, **options)
        return {"completions": [dataclasses.asdict(result) for result in results]}

    def _stream(self, prompt: str, options: dict):
        pieces = self.pipe.stream(prompt, **options)
        first = next(pieces, None)  # settings are checked here, before the reply starts

        def lines():
            try:
                if first is not None:
                    yield dataclasses.asdict(first)
                for piece in pieces:
                    yield dataclasses.asdict(piece)
                yield {"done": True}
            finally:
                pieces.close()

        return lines()


def _handler(owner: ModelServer):
    class Handler(http_server.BaseHTTPRequestHandler):
        server_version = f"keras-gemma/{__version__}"

        def log_message(self, format, *args):  # the library never prints
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/api/show":
                self._send(200, owner.info)
            else:
                self._send(404, {"error": f"No such endpoint: {self.path}; expected /api/show or /api/generate.",
                                 "type": "SettingsError"})

        def do_POST(self):
            if self.path not in ("/api/generate", "/api/count"):
                self._send(404, {"error": f"No such endpoint: {self.path}; expected /api/generate or /api/count.",
                                 "type": "SettingsError"})
                return
            try:
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
            except ValueError as error:
                self._send(400, {"error": f"Expected a JSON request body: {error}.", "type": "SettingsError"})
                return
            with owner._lock:
                owner._begin()
                try:
                    (self._count if self.path == "/api/count" else self._answer)(payload)
                finally:
                    owner._end()

        def _count(self, payload) -> None:
            text = payload.get("text") if isinstance(payload, dict) else None
            if not isinstance(text, str):
                self._send(400, {"error": f"Expected {{\"text\": string}}, received {payload!r:.80}.",
                                 "type": "SettingsError"})
                return
            self._send(200, {"tokens": owner.pipe.count_tokens(text)})

        def _answer(self, payload) -> None:
            start = time.perf_counter()
            prompts = payload.get("prompts") if isinstance(payload, dict) else None
            record = {"prompts": len(prompts) if isinstance(prompts, list) else 0, "tokens": 0,
                      "stream": bool(isinstance(payload, dict) and payload.get("stream")), "error": None}
            try:
                self._reply(payload, record)
            finally:
                if owner.on_request is not None:
                    owner.on_request({**record, "seconds": time.perf_counter() - start})

        def _reply(self, payload, record: dict) -> None:
            try:
                reply = owner.generate(payload)
            except Exception as error:  # a bug must not take the resident model down either
                details = _error(error)
                record["error"] = details["error"]
                self._send(400 if isinstance(error, KerasGemmaError) else 500, details)
                return
            if isinstance(reply, dict):
                record["tokens"] = sum(len(item["token_ids"]) for item in reply["completions"])
                self._send(200, reply)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            try:
                for line in reply:
                    self.wfile.write(json.dumps(line).encode() + b"\n")
                    self.wfile.flush()
                    record["tokens"] = line.get("index", record["tokens"] - 1) + 1
            except (BrokenPipeError, ConnectionResetError):
                record["error"] = "the client closed the stream"  # Ctrl-C: the generation stops, the model stays
            except Exception as error:
                details = _error(error)
                record["error"] = details["error"]
                self.wfile.write(json.dumps(details).encode() + b"\n")
            finally:
                reply.close()

    return Handler
