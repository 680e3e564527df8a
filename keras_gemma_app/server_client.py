"""Talking to a running ``keras-gemma serve``: find it, check what it holds, generate through it.

Imports no Keras: a client starts in well under a second. Looking for a server
is one connection attempt to a local address, so with none running the answer
comes at once.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
from collections.abc import Iterator, Sequence

from keras_gemma_app import errors
from keras_gemma_app.errors import KerasGemmaError, ServerError
from keras_gemma_app.model_server import parse_address
from keras_gemma_app.pipeline import Completion, StreamPiece
from keras_gemma_app.samplers import Sampler


def _raise(reply: dict) -> None:
    kind = getattr(errors, str(reply.get("type")), None)
    if not (isinstance(kind, type) and issubclass(kind, KerasGemmaError)):
        kind = ServerError
    raise kind(reply.get("error") or "The model server answered with an error.")


class ServerClient:
    """A model held by a running server; generates like a :class:`~keras_gemma_app.pipeline.Pipeline`.

    Build one with :func:`connect`. ``info`` is the server's description
    (model, source, backend, dtype, quantize, template, pid, version).
    """

    def __init__(self, host: str, port: int, info: dict):
        self.host, self.port, self.info = host, port, info

    def __repr__(self) -> str:
        return (f"ServerClient(address={self.address!r}, model={self.model!r}, backend={self.backend!r}, "
                f"dtype={self.info.get('dtype')!r})")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def model(self) -> str:
        return self.info["model"]

    @property
    def backend(self) -> str:
        return self.info["backend"]

    @property
    def quantization(self) -> str | None:
        return self.info.get("quantize")

    @property
    def template(self) -> str:
        return self.info["template"]

    @property
    def context_length(self) -> int:
        return self.info["context_length"]

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the served model tokenizes it (``<bos>`` included)."""
        return self._post_json({"text": text}, "/api/count")["tokens"]

    def chat(self, *, system: str | None = None, **options):
        """A multi-turn :class:`~keras_gemma_app.chat.Chat` with the served model (history kept here)."""
        from keras_gemma_app.chat import Chat

        options["template"] = options.get("template") or self.info["chat_template"]
        return Chat(self, system=system, **options)

    def serves(self, source: str, *, backend: str | None = None, dtype: str | None = None,
               quantize: str | None = None, template: str | None = None) -> bool:
        """Whether this server holds model ``source`` with the settings given (None: any)."""
        wanted = {"source": source, "backend": backend, "dtype": dtype, "quantize": quantize, "template": template}
        return all(value is None or self.info.get(key) == value for key, value in wanted.items())

    def _post(self, payload: dict, path: str = "/api/generate") -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.connect()
            connection.sock.settimeout(None)  # a long batch is not a hang: the server is local
            connection.request("POST", path, body=json.dumps(payload),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
        except OSError as error:
            connection.close()
            raise ServerError(
                f"Lost the model server at {self.address} ({error}); expected it to be running.") from None
        if response.status != 200:
            try:
                _raise(json.loads(response.read() or b"{}"))
            finally:
                connection.close()
        return response

    def _post_json(self, payload: dict, path: str = "/api/generate") -> dict:
        response = self._post(payload, path)
        try:
            return json.loads(response.read())
        finally:
            response.close()

    @staticmethod
    def _payload(prompts: list, stream: bool, sampler: Sampler | None, options: dict) -> dict:
        request = {"prompts": prompts, "stream": stream, "options": options}
        if sampler is not None:
            request["sampler"] = {"name": sampler.name, **dataclasses.asdict(sampler)}
        return request

    def completions(self, prompts: str | Sequence[str], *, sampler: Sampler | None = None,
                    **options) -> list[Completion]:
        """:meth:`Pipeline.completions <keras_gemma_app.pipeline.Pipeline.completions>`, on the server."""
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        reply = self._post_json(self._payload(batch, False, sampler, options))
        return [Completion(**{**item, "token_ids": tuple(item["token_ids"])}) for item in reply["completions"]]

    def generate(self, prompts: str | Sequence[str], **options) -> str | list[str]:
        """:meth:`Pipeline.generate <keras_gemma_app.pipeline.Pipeline.generate>`, on the server."""
        texts = [result.text for result in self.completions(prompts, **options)]
        return texts[0] if isinstance(prompts, str) else texts

    def stream(self, prompt: str, *, sampler: Sampler | None = None, **options) -> Iterator[StreamPiece]:
        """:meth:`Pipeline.stream <keras_gemma_app.pipeline.Pipeline.stream>`, on the server."""
        response = self._post(self._payload([prompt], True, sampler, options))
        try:
            for line in response:
                item = json.loads(line)
                if "error" in item:
                    _raise(item)
                if item.get("done"):
                    return
                yield StreamPiece(**item)
            raise ServerError(f"The model server at {self.address} stopped in the middle of a reply.")
        finally:
            response.close()


def connect(address: str | None = None, timeout: float = 2.0) -> ServerClient | None:
    """The server at ``address`` (default: $KERAS_GEMMA_HOST, else 127.0.0.1:8431), or None.

    None when nothing answers there within ``timeout`` seconds, or when what
    answers is not a keras-gemma server.

    Example:
        >>> import keras_gemma_app as kga
        >>> server = kga.connect()          # after `keras-gemma serve` in another terminal
        >>> server.generate("Why is the sky blue?", max_new_tokens=32)
    """
    host, port = parse_address(address)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/api/show")
        response = connection.getresponse()
        info = json.loads(response.read()) if response.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    if not isinstance(info, dict) or not {"model", "source", "backend"} <= set(info):
        return None
    return ServerClient(host, port, info)
