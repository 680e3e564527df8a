"""Kaggle downloads through the real kagglehub, against a local stand-in for Kaggle's API.

The stand-in serves the tiny Gemma preset as the Kaggle model version behind
the catalogue name ``gemma3_instruct_270m``, so a pulled model can be loaded.
"""

import socket

import pytest

import keras_gemma_app as kga
from conftest import KAGGLE_USER
from kaggle_server import NO_CONSENT, NOT_FOUND, OK, PARTIAL, UNAUTHORIZED, KaggleModelServer
from keras_gemma_app.cache_inventory import cached_models
from keras_gemma_app.catalogue import get
from keras_gemma_app.errors import KaggleAccessError, ModelNotFoundError, OfflineError
from keras_gemma_app.kaggle_download import pull, remove

NAME = "gemma3_instruct_270m"
HANDLE = get(NAME).kaggle_handle  # kaggle://keras/gemma3/keras/gemma3_instruct_270m/4


@pytest.fixture
def server(kaggle_env, tiny_preset_files):
    with KaggleModelServer({HANDLE.removeprefix("kaggle://"): tiny_preset_files}, credentials=KAGGLE_USER) as running:
        yield running


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_pull_downloads_every_file_into_the_kagglehub_cache(server, kaggle_env, tiny_preset_files):
    pulled = pull(NAME)
    assert pulled.downloaded
    assert pulled.path == kaggle_env / "models/keras/gemma3/keras/gemma3_instruct_270m/4"
    assert _files(pulled.path) == tiny_preset_files
    assert set(server.downloaded_paths()) == set(tiny_preset_files)


def test_a_cached_model_is_not_downloaded_again(server):
    pull(NAME)
    server.clear_requests()
    again = pull(NAME)
    assert not again.downloaded and server.requests == []


def test_a_pulled_model_loads_offline_and_generates(server, tiny_preset):
    pull(NAME)
    server.clear_requests()
    pipe = kga.load(NAME, offline=True)
    assert pipe.generate("The capital of France is", max_new_tokens=4, raw=True)
    assert server.requests == []


def test_no_credentials(server, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    with pytest.raises(KaggleAccessError, match="No Kaggle credentials .* KAGGLE_USERNAME and KAGGLE_KEY"):
        pull(NAME)
    assert server.requests == []


def test_credentials_from_kaggle_json(server, monkeypatch, tmp_path, tiny_preset_files):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    config = tmp_path / "kaggle-config"
    config.mkdir(exist_ok=True)
    (config / "kaggle.json").write_text('{"username": "%s", "key": "%s"}' % KAGGLE_USER)
    assert _files(pull(NAME).path) == tiny_preset_files


def test_wrong_credentials(server, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "wrong")
    with pytest.raises(KaggleAccessError, match=r"Kaggle refused the credentials \(HTTP 401\)"):
        pull(NAME)


def test_licence_not_accepted(server):
    server.scenario = NO_CONSENT
    with pytest.raises(KaggleAccessError) as caught:
        pull(NAME)
    assert str(caught.value) == (
        f"Kaggle says you have not accepted the licence for {HANDLE} (HTTP 403): sign in to Kaggle with the "
        "account of your API token, accept the Gemma licence on https://www.kaggle.com/models/keras/gemma3, "
        "then run the command again.")


def test_unknown_to_kaggle(server):
    server.scenario = NOT_FOUND
    with pytest.raises(ModelNotFoundError, match=r"Kaggle has no model .* \(HTTP 404\)"):
        pull(NAME)


def test_unauthorized_everywhere(server):
    server.scenario = UNAUTHORIZED
    with pytest.raises(KaggleAccessError, match="HTTP 401"):
        pull(NAME)


def test_kaggle_not_answering(kaggle_env):
    # The API address is right but nothing listens there.
    with pytest.raises(OfflineError, match="Could not reach Kaggle while downloading gemma3_instruct_270m"):
        pull(NAME)


def test_no_network_fails_fast_with_the_real_endpoint(kaggle_env, monkeypatch):
    monkeypatch.delenv("KAGGLE_API_ENVIRONMENT")

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(OfflineError, match="Cannot reach api.kaggle.com to download gemma3_instruct_270m"):
        pull(NAME)


def test_a_cut_off_download_is_reported_and_pull_force_recovers(server, tiny_preset_files, monkeypatch):
    server.scenario = PARTIAL
    with pytest.raises(OfflineError, match=f"cut off .* Run `keras-gemma pull {NAME} --force`"):
        pull(NAME)
    [partial] = [item for item in cached_models() if item.source == "kaggle"]
    assert partial.name == NAME and not partial.complete
    with pytest.raises(OfflineError, match="not available offline: the cached copy .* is incomplete"):
        kga.load(NAME, offline=True)
    monkeypatch.delenv("KERAS_GEMMA_OFFLINE")  # load(offline=True) keeps the process offline
    server.scenario = OK
    recovered = pull(NAME, force=True)
    assert recovered.downloaded and _files(recovered.path) == tiny_preset_files
    assert [item.complete for item in cached_models() if item.source == "kaggle"] == [True]


def test_offline_mode_never_downloads(server, monkeypatch):
    monkeypatch.setenv("KERAS_GEMMA_OFFLINE", "1")
    with pytest.raises(OfflineError, match="needs the network, and offline mode is on"):
        pull(NAME)
    assert server.requests == []


def test_remove(server):
    path = pull(NAME).path
    assert path in remove(NAME)
    assert not path.exists()
    assert [item for item in cached_models() if item.source == "kaggle"] == []
    with pytest.raises(ModelNotFoundError, match="is not in the Kaggle cache"):
        remove(NAME)


@pytest.mark.parametrize("model, message", [
    ("gemma3_270m_pypi", "does not come from Kaggle"),
    ("gemma3_instrct_1b", "Did you mean gemma3_instruct_1b"),
    ("kaggle://keras/gemma3", "Malformed Kaggle handle"),
])
def test_not_a_kaggle_preset(kaggle_env, model, message):
    with pytest.raises(ModelNotFoundError, match=message):
        pull(model)
