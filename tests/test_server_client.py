"""kga.connect(): finding a server and generating through it, against the tiny model served in this process."""

import json
import threading
from http import server as http_server

import pytest

import keras_gemma_app as kga
from conftest import free_address, run_python


def test_no_server_means_none():
    assert kga.connect(free_address()) is None


def test_something_else_listening_is_not_a_server():
    other = http_server.ThreadingHTTPServer(("127.0.0.1", 0), http_server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        assert kga.connect(f"127.0.0.1:{other.server_address[1]}") is None
    finally:
        other.shutdown()
        other.server_close()


def test_generate_stream_and_completions_match_the_pipeline(tiny_server, tiny_pipe):
    client = kga.connect(tiny_server.address)
    assert client.model == tiny_pipe.model and client.backend == tiny_pipe.backend
    sampler = kga.TopP(p=0.9, temperature=2.0, seed=3)
    assert client.generate("hello", max_new_tokens=5, sampler=sampler) == tiny_pipe.generate(
        "hello", max_new_tokens=5, sampler=sampler)
    assert client.generate(["hello", "world"], max_new_tokens=4) == tiny_pipe.generate(["hello", "world"],
                                                                                       max_new_tokens=4)
    pieces = list(client.stream("hello", max_new_tokens=6, stop_token_ids=(), system=None))
    assert [piece.index for piece in pieces] == list(range(len(pieces)))
    assert "".join(piece.text for piece in pieces) == tiny_pipe.generate("hello", max_new_tokens=6)
    remote = client.completions("hello", max_new_tokens=3)[0]
    local = tiny_pipe.completions("hello", max_new_tokens=3)[0]
    assert (remote.token_ids, remote.prompt_tokens, remote.finish_reason) == (
        local.token_ids, local.prompt_tokens, local.finish_reason)


def test_the_server_refusal_is_raised_as_its_type(tiny_server):
    client = kga.connect(tiny_server.address)
    with pytest.raises(kga.SettingsError, match="max_new_tokens must be an integer >= 1, but is 0"):
        client.generate("hello", max_new_tokens=0)
    with pytest.raises(kga.SettingsError, match="non-empty prompt"):
        list(client.stream("  ", max_new_tokens=2))


def test_serves_compares_the_model_and_the_settings_given(tiny_server, tiny_preset):
    client = kga.connect(tiny_server.address)
    source = str(tiny_preset.resolve())
    assert client.serves(source)
    assert client.serves(source, backend=client.backend, dtype="float32", quantize=None)
    assert not client.serves(source, dtype="bfloat16")
    assert not client.serves(source, quantize="int4")
    assert not client.serves(source, backend="tensorflow" if client.backend != "tensorflow" else "torch")
    assert not client.serves("gemma3_instruct_1b")


def test_a_client_process_imports_no_keras(tiny_server):
    code = ("import json, sys, keras_gemma_app as kga\n"
            "text = kga.connect(sys.argv[1]).generate('hello', max_new_tokens=3)\n"
            "loaded = [m for m in ('keras', 'keras_hub', 'tensorflow', 'torch', 'jax') if m in sys.modules]\n"
            "print(json.dumps([text, loaded]))")
    result = run_python(code, tiny_server.address)
    assert result.returncode == 0, result.stderr
    text, loaded = json.loads(result.stdout)
    assert loaded == []
    assert text == kga.connect(tiny_server.address).generate("hello", max_new_tokens=3)


def test_chat_and_count_tokens_match_the_pipeline(tiny_server, tiny_pipe):
    client = kga.connect(tiny_server.address)
    assert client.count_tokens("The capital of France") == tiny_pipe.count_tokens("The capital of France")
    assert client.context_length == tiny_pipe.context_length
    remote = client.chat(system="Be brief.", max_new_tokens=5)
    local = tiny_pipe.chat(system="Be brief.", max_new_tokens=5)
    assert remote.template == local.template
    for text in ("Hello", "And then?"):
        assert remote.send(text) == local.send(text)
    assert remote.messages == local.messages and remote.stats.prompt_tokens == local.stats.prompt_tokens


def test_closing_a_stream_early_leaves_the_server_ready(tiny_server, tiny_pipe):
    client = kga.connect(tiny_server.address)
    pieces = client.stream("hello", max_new_tokens=40)
    next(pieces)
    pieces.close()  # what Ctrl-C in `keras-gemma chat` does
    assert client.generate("hello", max_new_tokens=3) == tiny_pipe.generate("hello", max_new_tokens=3)
