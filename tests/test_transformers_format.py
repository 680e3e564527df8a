"""Keras native ↔ Hugging Face safetensors, round trip on the real Gemma 3 270M."""

import numpy as np
import pytest
from click.testing import CliRunner

import keras_gemma_app as kga
from keras_gemma_app.cli import main

pytestmark = pytest.mark.slow
PROMPT = "The capital of France is"


def logits_of(pipe):
    import keras

    inputs = pipe.preprocessor.generate_preprocess([PROMPT], sequence_length=8)
    return keras.ops.convert_to_numpy(pipe.causal_lm(inputs))


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory, real_preset):
    out = tmp_path_factory.mktemp("round_trip")
    exported = CliRunner().invoke(main, ["export", str(real_preset), "--to", "transformers", str(out / "hf"), "-q"])
    assert exported.exit_code == 0, exported.output
    imported = CliRunner().invoke(main, ["import", "hf", str(out / "hf"), str(out / "keras"), "-q"])
    assert imported.exit_code == 0, imported.output
    return out


def test_export_writes_a_transformers_checkpoint(round_trip):
    names = {p.name for p in (round_trip / "hf").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.model"} <= names
    assert not [p for p in round_trip.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_round_trip_keeps_the_model(round_trip, real_pipe):
    expected = logits_of(real_pipe)
    for directory in ("hf", "keras"):  # the safetensors folder loads directly too
        pipe = kga.load(str(round_trip / directory), dtype="float32")
        assert np.abs(logits_of(pipe) - expected).max() <= 1e-4
        assert pipe.generate(PROMPT, max_new_tokens=12) == real_pipe.generate(PROMPT, max_new_tokens=12)


def test_existing_output_needs_force(round_trip, real_preset):
    result = CliRunner().invoke(main, ["export", str(real_preset), "--to", "transformers", str(round_trip / "hf")])
    assert result.exit_code == 2 and "pass --force to replace it" in result.stderr
    result = CliRunner().invoke(main, ["import", "hf", str(round_trip / "hf"), str(round_trip / "keras")])
    assert result.exit_code == 2 and "pass --force to replace it" in result.stderr


def test_import_hf_refuses_a_keras_preset(real_preset, tmp_path):
    result = CliRunner().invoke(main, ["import", "hf", str(real_preset), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "is not a Hugging Face checkpoint" in result.stderr
