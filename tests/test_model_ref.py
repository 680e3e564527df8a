import json

import pytest

import keras_gemma_app as kga
from keras_gemma_app.model_ref import DEFAULT_MODEL, check_preset_name, model_or_default, parse_model


def test_preset_name_and_handles():
    assert parse_model("gemma3_instruct_1b").kind == "preset"
    kaggle = parse_model("kaggle://keras/gemma3/keras/gemma3_instruct_1b/3")
    assert (kaggle.kind, kaggle.source) == ("kaggle", "kaggle://keras/gemma3/keras/gemma3_instruct_1b/3")
    assert parse_model("kaggle://keras/gemma3/keras/gemma3_instruct_1b").kind == "kaggle"
    assert parse_model("hf://google/gemma-3-1b-it").kind == "hf"


@pytest.mark.parametrize(
    "text, message",
    [
        ("kaggle://keras/gemma3", "Malformed Kaggle handle: expected kaggle://OWNER/MODEL/FRAMEWORK/VARIATION"),
        ("kaggle://keras/gemma3/keras/gemma3_1b/latest", "Malformed Kaggle handle"),
        ("hf://google", r"Malformed Hugging Face handle: expected hf://ORG/NAME"),
        ("hf://google/gemma/extra", "Malformed Hugging Face handle"),
        ("s3://bucket/model", "Unsupported model scheme 's3://'"),
        ("gemma 3", "is not a valid preset name"),
        ("", "Expected a model"),
    ],
)
def test_malformed_references(text, message):
    with pytest.raises(kga.InvalidModelError, match=message):
        parse_model(text)


def test_missing_directory(tmp_path):
    with pytest.raises(kga.ModelNotFoundError, match="No such model directory"):
        parse_model(str(tmp_path / "nowhere"))


def test_directory_that_is_not_a_preset(tmp_path):
    with pytest.raises(kga.InvalidModelError, match="expected a directory with config.json"):
        parse_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(kga.InvalidModelError, match="not valid JSON"):
        parse_model(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(kga.InvalidModelError, match="neither a KerasHub preset"):
        parse_model(str(tmp_path))


def test_a_file_is_not_a_preset(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x")
    with pytest.raises(kga.InvalidModelError, match="is a file"):
        parse_model(str(path))


def test_local_formats(tiny_preset, tmp_path):
    ref = parse_model(str(tiny_preset))
    assert (ref.kind, ref.format) == ("local", "keras")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    with pytest.raises(kga.InvalidModelError, match="no \\*.safetensors"):
        parse_model(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert parse_model(str(tmp_path)).format == "transformers"


def test_default_model(monkeypatch):
    monkeypatch.delenv("KERAS_GEMMA_MODEL", raising=False)
    assert model_or_default(None) == DEFAULT_MODEL
    monkeypatch.setenv("KERAS_GEMMA_MODEL", "gemma3_1b")
    assert model_or_default(None) == "gemma3_1b"
    assert model_or_default("gemma2_2b_en") == "gemma2_2b_en"


def test_preset_names_are_checked_against_keras_hub():
    from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

    check_preset_name("gemma3_instruct_1b", BUILTIN_PRESETS)
    with pytest.raises(kga.ModelNotFoundError, match="Did you mean gemma3_instruct_1b"):
        check_preset_name("gemma3_instrct_1b", BUILTIN_PRESETS)
    with pytest.raises(kga.ModelNotFoundError, match="not a Gemma model"):
        check_preset_name("bert_base_en", BUILTIN_PRESETS)
