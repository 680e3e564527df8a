"""keras-gemma quantize: a quantized preset that loads directly and gives the same tokens."""

import pytest
from click.testing import CliRunner

import keras_gemma_app as kga
from keras_gemma_app.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("mode", ["int4"])
def test_saved_preset_reloads_quantized_with_the_same_tokens(tiny_preset, tmp_path, mode):
    out = tmp_path / f"tiny_{mode}"
    result = invoke("quantize", str(tiny_preset), str(out), "--mode", mode)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert f"at {mode} to {out}" in result.stderr
    assert (out / "config.json").is_file() and (out / "model.weights.h5").is_file()

    before = kga.load(str(tiny_preset), quantize=mode).completions("hello there", max_new_tokens=8)[0]
    reloaded = kga.load(str(out))
    assert reloaded.quantization == mode
    after = reloaded.completions("hello there", max_new_tokens=8)[0]
    assert after.token_ids == before.token_ids

    # Loading it with --quantize of its own mode is accepted; the CLI runs it as it is.
    again = invoke("generate", "-q", "-m", str(out), "--quantize", mode, "--max-new-tokens", "8", "hello there")
    assert again.exit_code == 0, again.output
    assert again.stdout == after.text + "\n"
    loud = invoke("generate", "-m", str(out), "--max-new-tokens", "2", "hello")
    assert f" · {mode} · loaded in" in loud.stderr


def test_existing_output_and_mode_mismatch_are_one_line_errors(tiny_preset, tmp_path):
    out = tmp_path / "tiny_int8"
    assert invoke("quantize", "-q", str(tiny_preset), str(out), "--mode", "int8").exit_code == 0
    exists = invoke("quantize", "-q", str(tiny_preset), str(out), "--mode", "int8")
    assert exists.exit_code == 2
    assert "Error: Expected a new output directory" in exists.stderr and "--force" in exists.stderr
    other = invoke("quantize", "-q", str(out), str(tmp_path / "twice"), "--mode", "int4")
    assert other.exit_code == 2
    assert "already quantized to int8" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    bad = invoke("quantize", str(tiny_preset), str(tmp_path / "x"), "--mode", "int3")
    assert bad.exit_code == 2 and "'int3' is not one of 'int8', 'int4'" in bad.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "twice").exists()
