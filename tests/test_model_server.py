"""The model server's HTTP protocol, spoken raw, against the tiny model served in this process."""

import http.client
import json
import socket
import threading

import pytest

from keras_gemma_app.errors import SettingsError
from keras_gemma_app.model_server import ModelServer, check_free, parse_address
from conftest import free_address


def _request(server, method, path, body=None):
    host, port = parse_address(server.address)
    connection = http.client.HTTPConnection(host, port, timeout=60)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    connection.request(method, path, body=data)
    response = connection.getresponse()
    status, raw = response.status, response.read()
    connection.close()
    return status, raw


def test_show_describes_what_is_loaded(tiny_server, tiny_pipe, tiny_preset):
    status, raw = _request(tiny_server, "GET", "/api/show")
    info = json.loads(raw)
    assert status == 200
    assert info["model"] == str(tiny_preset) and info["source"] == str(tiny_preset.resolve())
    assert info["backend"] == tiny_pipe.backend and info["dtype"] == "float32"
    assert info["quantize"] is None and info["template"] == tiny_pipe.template
    assert info["chat_template"] == tiny_pipe.chat().template and info["context_length"] == tiny_pipe.context_length


def test_count_answers_the_tokenizer(tiny_server, tiny_pipe):
    status, raw = _request(tiny_server, "POST", "/api/count", {"text": "hello there"})
    assert status == 200 and json.loads(raw) == {"tokens": tiny_pipe.count_tokens("hello there")}
    status, raw = _request(tiny_server, "POST", "/api/count", {"words": "hello"})
    assert status == 400 and 'Expected {"text": string}' in json.loads(raw)["error"]


def test_generate_answers_what_the_pipeline_computes(tiny_server, tiny_pipe):
    request = {"prompts": ["hello", "The capital of France"], "options": {"max_new_tokens": 5},
               "sampler": {"name": "top_k", "k": 5, "temperature": 1.5, "seed": 7}}
    status, raw = _request(tiny_server, "POST", "/api/generate", request)
    assert status == 200
    import keras_gemma_app as kga

    expected = tiny_pipe.completions(["hello", "The capital of France"], max_new_tokens=5,
                                     sampler=kga.TopK(k=5, temperature=1.5, seed=7))
    answered = json.loads(raw)["completions"]
    assert [item["text"] for item in answered] == [result.text for result in expected]
    assert [tuple(item["token_ids"]) for item in answered] == [result.token_ids for result in expected]
    assert [item["finish_reason"] for item in answered] == ["length", "length"]


def test_stream_sends_a_line_a_piece_then_done(tiny_server, tiny_pipe):
    status, raw = _request(tiny_server, "POST", "/api/generate",
                           {"prompts": ["hello"], "stream": True, "options": {"max_new_tokens": 6}})
    lines = [json.loads(line) for line in raw.decode().splitlines()]
    assert status == 200 and lines[-1] == {"done": True}
    pieces = lines[:-1]
    assert [piece["index"] for piece in pieces] == list(range(len(pieces)))
    assert "".join(piece["text"] for piece in pieces) == tiny_pipe.generate("hello", max_new_tokens=6)


@pytest.mark.parametrize("body, message", [
    ({"prompts": ["hi"], "sampler": {"name": "nucleus"}}, "Unknown sampler 'nucleus'"),
    ({"prompts": ["hi"], "sampler": {"name": "greedy", "p": 0.5}}, "received p"),
    ({"prompts": ["hi"], "options": {"max_new_tokens": 0}}, "max_new_tokens must be an integer >= 1"),
    ({"prompts": ["hi"], "options": {"beams": 2}}, "received beams"),
    ({"prompts": [""]}, "non-empty prompt"),
    ({"prompts": ["a", "b"], "stream": True}, "one prompt to stream"),
    (b"{not json", "Expected a JSON request body"),
])
def test_a_refused_request_gets_400_and_the_typed_error(tiny_server, body, message):
    status, raw = _request(tiny_server, "POST", "/api/generate", body)
    reply = json.loads(raw)
    assert status == 400 and reply["type"] == "SettingsError" and message in reply["error"]


def test_an_unknown_endpoint_is_404(tiny_server):
    status, raw = _request(tiny_server, "GET", "/api/tags")
    assert status == 404 and "/api/show" in json.loads(raw)["error"]


def test_keep_alive_stops_an_idle_server(tiny_pipe):
    server = ModelServer(tiny_pipe, source="tiny", address="127.0.0.1:0", keep_alive=0.3)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    with pytest.raises(OSError):  # nothing listens there any more
        socket.create_connection(tuple(parse_address(server.address)), timeout=2).close()


def test_a_busy_address_is_refused_before_loading(tiny_server):
    with pytest.raises(SettingsError, match=f"Cannot serve on {tiny_server.address}.*expected a free address"):
        check_free(tiny_server.address)
    check_free(free_address())  # a free one passes


@pytest.mark.parametrize("text", ["localhost", "localhost:http", ":8431", "host:70000", "host:-1"])
def test_a_malformed_address_is_refused(text):
    with pytest.raises(SettingsError, match="Expected a server address HOST:PORT"):
        parse_address(text)


def test_the_address_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("KERAS_GEMMA_HOST", "0.0.0.0:9000")
    assert parse_address() == ("0.0.0.0", 9000)
    monkeypatch.delenv("KERAS_GEMMA_HOST")
    assert parse_address() == ("127.0.0.1", 8431)


def test_a_request_without_a_sampler_gets_the_pipelines_own(tiny_preset):
    import keras_gemma_app as kga

    pipe = kga.load(str(tiny_preset), sampler=kga.TopK(k=5, temperature=2.0, seed=5))
    server = ModelServer(pipe, source="tiny", address="127.0.0.1:0")
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        status, raw = _request(server, "POST", "/api/generate", {"prompts": ["hello"], "options": {"max_new_tokens": 6}})
        (answer,) = json.loads(raw)["completions"]
        assert status == 200 and answer["text"] == pipe.generate("hello", max_new_tokens=6)
        assert answer["text"] != pipe.generate("hello", max_new_tokens=6, sampler=kga.Greedy())
    finally:
        server.close()
        thread.join(timeout=10)


def test_each_request_is_reported(tiny_pipe):
    import keras_gemma_app as kga

    records = []
    server = ModelServer(tiny_pipe, source="tiny", address="127.0.0.1:0", on_request=records.append)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        client = kga.connect(server.address)
        client.generate(["hello", "world"], max_new_tokens=3)
        streamed = list(client.stream("hello", max_new_tokens=4))
        with pytest.raises(kga.SettingsError):
            client.generate("hello", max_new_tokens=0)
    finally:
        server.close()
        thread.join(timeout=10)
    assert [(r["prompts"], r["stream"], r["tokens"]) for r in records] == [
        (2, False, 6), (1, True, max(p.index for p in streamed) + 1), (1, False, 0)]
    assert records[2]["error"].startswith("max_new_tokens must be an integer >= 1")
    assert all(r["seconds"] >= 0 for r in records) and records[0]["error"] is None
