"""Starting `keras-gemma serve` in the background (what `generate --keep-alive` does)."""

import time

import pytest

import keras_gemma_app as kga
from keras_gemma_app.server_launch import log_path, start_server
from conftest import free_address


def test_a_started_server_answers_then_stops_when_idle(tiny_preset, tiny_pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_GEMMA_CACHE", str(tmp_path))
    address = free_address()
    server = start_server(str(tiny_preset), keep_alive="2s", address=address)
    assert server.address == address and server.info["source"] == str(tiny_preset.resolve())
    assert server.generate("hello", max_new_tokens=4) == tiny_pipe.generate("hello", max_new_tokens=4)
    deadline = time.monotonic() + 60
    while "Server stopped." not in log_path(address).read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "Server stopped." in log_path(address).read_text()
    assert kga.connect(address, timeout=1) is None
    assert log_path(address).parent == tmp_path / "servers"


def test_a_server_that_cannot_start_raises_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv("KERAS_GEMMA_CACHE", str(tmp_path / "app"))
    with pytest.raises(kga.ServerError, match=r"^The server could not start: 'gemma3_instruct_1b' is not available "
                                              r"offline: .* Run once without --offline"):
        start_server("gemma3_instruct_1b", keep_alive="5s", address=free_address(), offline=True)
