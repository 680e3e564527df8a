import json

import pytest

from keras_gemma_app.model_ref import parse_model
from keras_gemma_app.template_choice import choose_template


@pytest.mark.parametrize(
    "model, expected",
    [
        ("gemma3_270m_pypi", "raw"),
        ("gemma3_instruct_1b", "gemma3"),
        ("gemma2_instruct_2b_en", "gemma"),
        ("gemma_1.1_instruct_2b_en", "gemma"),
        ("gemma4_instruct_2b", "gemma4"),
        ("gemma2_2b_en", "raw"),
        ("code_gemma_2b_en", "raw"),
        ("kaggle://keras/gemma3/keras/gemma3_instruct_4b_text/3", "gemma3"),
        ("hf://google/gemma-3-1b-it", "gemma3"),
        ("hf://google/gemma-2-2b-it", "gemma"),
        ("hf://google/gemma-3-1b-pt", "raw"),
    ],
)
def test_automatic_choice(model, expected):
    assert choose_template(parse_model(model)) == expected


def test_local_directory_uses_its_architecture_and_name(tmp_path):
    preset = tmp_path / "my-gemma3-it"
    preset.mkdir()
    (preset / "config.json").write_text(json.dumps({"registered_name": "x", "class_name": "Gemma3Backbone"}))
    (preset / "model.weights.h5").write_bytes(b"")
    assert choose_template(parse_model(str(preset))) == "gemma3"
    plain = tmp_path / "my-gemma3"
    preset.rename(plain)
    assert choose_template(parse_model(str(plain))) == "raw"
