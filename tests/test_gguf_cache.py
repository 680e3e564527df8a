"""A .gguf path as MODEL: imported once into the app cache, keyed by the file's hash."""

import shutil

import pytest
from click.testing import CliRunner

from keras_gemma_app.cli import main
from keras_gemma_app.gguf_cache import file_sha256, gguf_preset_dir


def test_preset_dir_is_keyed_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_GEMMA_CACHE", str(tmp_path / "cache"))
    one, two = tmp_path / "a.gguf", tmp_path / "b.gguf"
    one.write_bytes(b"GGUF one")
    two.write_bytes(b"GGUF two")
    assert gguf_preset_dir(one) != gguf_preset_dir(two)
    assert gguf_preset_dir(one).name == f"a-{file_sha256(one)[:16]}"
    assert gguf_preset_dir(one).parent == tmp_path / "cache" / "gguf"


@pytest.mark.slow
def test_gguf_model_is_imported_once(tmp_path, monkeypatch, real_gguf, real_pipe):
    monkeypatch.setenv("KERAS_GEMMA_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "my-gemma.gguf"
    shutil.copy(real_gguf, model)
    args = ["generate", "-m", str(model), "--dtype", "float32", "--max-new-tokens", "6", "The capital of France is"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert f"Importing the GGUF file {model}" in first.stderr
    assert first.stdout == real_pipe.generate("The capital of France is", max_new_tokens=6) + "\n"
    second = CliRunner().invoke(main, args)
    assert "Importing" not in second.stderr and second.stdout == first.stdout
    assert [p.name for p in (tmp_path / "cache" / "gguf").iterdir()] == [gguf_preset_dir(model).name]


def test_missing_gguf_file():
    result = CliRunner().invoke(main, ["generate", "-m", "nowhere/model.gguf", "hi"])
    assert result.exit_code == 2 and "No such GGUF file: 'nowhere/model.gguf'" in result.stderr


def test_a_broken_gguf_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_GEMMA_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "broken.gguf"
    model.write_text("not a gguf file")
    result = CliRunner().invoke(main, ["generate", "-m", str(model), "hi"])
    assert result.exit_code == 2, result.output
    assert "Error:" in result.stderr and "GGUF" in result.stderr and "Traceback" not in result.output
    assert not any((tmp_path / "cache" / "gguf").glob("broken-*"))
