"""``keras-gemma pull``, ``cache`` and ``rm`` as a user runs them, against a local stand-in for Kaggle."""

import json

import pytest
from click.testing import CliRunner

from conftest import KAGGLE_USER
from kaggle_server import NO_CONSENT, OK, PARTIAL, KaggleModelServer
from keras_gemma_app.catalogue import get
from keras_gemma_app.cli import main

NAME = "gemma3_instruct_270m"
HANDLE = get(NAME).kaggle_handle


@pytest.fixture
def server(kaggle_env, tiny_preset_files):
    with KaggleModelServer({HANDLE.removeprefix("kaggle://"): tiny_preset_files}, credentials=KAGGLE_USER) as running:
        yield running


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_pull_then_cache_then_generate_offline_then_rm(server, kaggle_env):
    pulled = _invoke("pull", NAME)
    assert pulled.exit_code == 0, pulled.output
    folder = kaggle_env / "models/keras/gemma3/keras/gemma3_instruct_270m/4"
    assert pulled.stdout.strip() == str(folder)
    assert f"Pulling {NAME} ({HANDLE})" in pulled.stderr and f"Downloaded {NAME}" in pulled.stderr
    assert "Downloading 7 files" in pulled.stderr  # kagglehub's progress bar

    again = _invoke("pull", NAME)
    assert again.stdout.strip() == str(folder) and "already cached" in again.stderr

    listing = json.loads(_invoke("cache", "--json").stdout)
    [entry] = [item for item in listing if item["source"] == "kaggle"]
    assert entry["name"] == NAME and entry["handle"] == HANDLE and entry["complete"]
    assert entry["size_bytes"] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    table = _invoke("cache").stdout
    assert NAME in table and "ready" in table

    server.clear_requests()
    generated = _invoke("generate", "-m", NAME, "--offline", "--raw", "--max-new-tokens", "3", "-q", "Hello")
    assert generated.exit_code == 0, generated.output
    assert server.requests == []

    removed = _invoke("rm", NAME)
    assert removed.exit_code == 0 and f"Removed {folder}" in removed.stderr
    assert not folder.exists()
    missing = _invoke("rm", NAME)
    assert missing.exit_code == 2 and "is not in the Kaggle cache" in missing.stderr


def test_a_cut_off_pull_is_shown_and_pull_force_recovers(server):
    server.scenario = PARTIAL
    cut = _invoke("pull", NAME, "-q")
    assert cut.exit_code == 2
    assert cut.stderr.strip() == (f"Error: The download of {NAME} was cut off before it finished; the cache holds a "
                                  f"partial copy. Run `keras-gemma pull {NAME} --force` to download it afresh.")
    assert "partial: pull --force" in _invoke("cache").stdout
    server.scenario = OK
    fixed = _invoke("pull", NAME, "--force", "-q")
    assert fixed.exit_code == 0 and fixed.stderr == ""
    assert "partial" not in _invoke("cache").stdout


@pytest.mark.parametrize("setup, message", [
    ("no_consent", "Error: Kaggle says you have not accepted the licence"),
    ("no_credentials", "Error: No Kaggle credentials to download gemma3_instruct_270m: expected ~/.kaggle/kaggle.json"),
])
def test_pull_errors_are_one_line(server, monkeypatch, setup, message):
    if setup == "no_consent":
        server.scenario = NO_CONSENT
    else:
        monkeypatch.delenv("KAGGLE_USERNAME")
        monkeypatch.delenv("KAGGLE_KEY")
    result = _invoke("pull", NAME)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(message)
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_rm_removes_an_imported_gguf(tmp_path, monkeypatch, real_gguf):
    from keras_gemma_app.gguf_cache import gguf_preset_dir, import_into_cache

    monkeypatch.setenv("KERAS_GEMMA_CACHE", str(tmp_path / "app-cache"))
    directory = import_into_cache(real_gguf, gguf_preset_dir(real_gguf))
    listing = json.loads(_invoke("cache", "--json").stdout)
    assert [(item["name"], item["source"]) for item in listing if item["source"] == "gguf"] == [
        ("gemma3_270m_pypi", "gguf")]
    result = _invoke("rm", "gemma3_270m_pypi")
    assert result.exit_code == 0, result.output
    assert not directory.exists()
