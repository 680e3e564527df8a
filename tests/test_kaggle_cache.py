"""Kaggle handles and preset names served from a pre-filled kagglehub cache, with sockets blocked."""

import os
import pathlib
import socket

import pytest
from click.testing import CliRunner

import keras_gemma_app as kga
from keras_gemma_app.cli import main
from keras_gemma_app.kaggle_cache import KaggleHandle, cached_preset

HANDLE = "kaggle://keras/gemma3/keras/gemma3_270m/3"


def _loopback(host) -> bool:
    return isinstance(host, str) and host in ("127.0.0.1", "localhost", "::1")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the network fails the test (and is recorded). This machine's own
    addresses stay open: `generate` looks for a local `keras-gemma serve` there."""
    attempts = []

    def refusing(real, host_of):
        def refuse(*args, **kwargs):
            if _loopback(host_of(args)):
                return real(*args, **kwargs)
            attempts.append(args[1:] if args else kwargs)
            raise OSError("network access blocked by the test")

        return refuse

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refusing(getattr(socket.socket, name), lambda a: a[1][0]))
    monkeypatch.setattr(socket, "create_connection", refusing(socket.create_connection, lambda a: a[0][0]))
    monkeypatch.setattr(socket, "getaddrinfo", refusing(socket.getaddrinfo, lambda a: a[0]))
    yield attempts
    assert attempts == [], f"network was attempted: {attempts}"


def fill_kaggle_cache(root: pathlib.Path, preset: pathlib.Path, handle: str = HANDLE, markers: bool = True) -> pathlib.Path:
    """Lays ``preset`` out the way kagglehub caches a downloaded model version."""
    parsed = KaggleHandle.parse(handle)
    variation = root / "models" / parsed.owner / parsed.model / parsed.framework / parsed.variation
    target = variation / str(parsed.version)
    for source in preset.rglob("*"):
        if source.is_file():
            relative = source.relative_to(preset)
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(source, target / relative)
            if markers:
                marker = variation / ".complete" / str(parsed.version) / f"{relative}.complete"
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
    return target


@pytest.fixture
def kaggle_cache(tmp_path, monkeypatch, real_preset):
    root = tmp_path / "kagglehub"
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(root))
    fill_kaggle_cache(root, real_preset)
    return root


def test_cached_preset_lookup(kaggle_cache):
    directory = cached_preset(KaggleHandle.parse(HANDLE))
    assert directory == kaggle_cache / "models/keras/gemma3/keras/gemma3_270m/3"
    # Unversioned handles take the newest complete cached version.
    assert cached_preset(KaggleHandle.parse("kaggle://keras/gemma3/keras/gemma3_270m")) == directory
    assert cached_preset(KaggleHandle.parse("kaggle://keras/gemma3/keras/gemma3_270m/2")) is None


def test_incomplete_download_is_not_used(tmp_path, monkeypatch, real_preset):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    fill_kaggle_cache(tmp_path, real_preset, markers=False)
    assert cached_preset(KaggleHandle.parse(HANDLE)) is None


@pytest.mark.slow
@pytest.mark.parametrize("model", [HANDLE, "gemma3_270m"])
def test_generate_from_the_kaggle_cache_with_no_network(kaggle_cache, no_network, model, real_pipe):
    result = CliRunner().invoke(main, ["generate", "-m", model, "--dtype", "float32", "--max-new-tokens", "8",
                                       "The capital of France is"])
    assert result.exit_code == 0, result.output
    assert result.stdout == real_pipe.generate("The capital of France is", max_new_tokens=8) + "\n"


def test_offline_with_an_empty_cache_says_what_is_missing(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    result = CliRunner().invoke(main, ["generate", "--offline", "-m", HANDLE, "hi"])
    assert result.exit_code == 2
    assert "'kaggle://keras/gemma3/keras/gemma3_270m/3' is not available offline: version 3 is not in the Kaggle cache at" in result.stderr
    assert "Traceback" not in result.output


def test_offline_from_the_environment(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    monkeypatch.setenv("KERAS_GEMMA_OFFLINE", "1")
    with pytest.raises(kga.OfflineError, match="version 3 is not in the Kaggle cache|nothing is cached"):
        kga.load("gemma3_270m")


@pytest.mark.parametrize(
    "model, host",
    [("gemma3_270m", "api.kaggle.com"), (HANDLE, "api.kaggle.com"), ("hf://google/gemma-3-270m", "huggingface.co")],
)
def test_no_network_fails_fast_with_a_clear_message(tmp_path, monkeypatch, model, host):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    attempts = []
    real = socket.create_connection

    def refuse(address, *args, **kwargs):
        if _loopback(address[0]):  # the lookup for a local `keras-gemma serve`
            return real(address, *args, **kwargs)
        attempts.append(address)
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    result = CliRunner().invoke(main, ["generate", "-m", model, "hi"])
    assert result.exit_code == 2, result.output
    assert f"Cannot reach {host} to download {model!r}" in result.stderr
    assert attempts == [(host, 443)]  # one quick probe, no retries
