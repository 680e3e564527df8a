"""``keras-gemma recommend`` as a user runs it."""

import json

from click.testing import CliRunner

from keras_gemma_app.cli import main


def test_recommend_for_given_memory():
    result = CliRunner().invoke(main, ["recommend", "--memory", "8GB", "--device", "gpu", "--backend", "jax"])
    assert result.exit_code == 0, result.output
    assert "Recommended: gemma3_instruct_1b" in result.stdout
    assert "gemma4_instruct_2b needs about 11.4 GiB" in result.stdout
    assert "Also fits" in result.stdout and "gemma2_instruct_2b_en" in result.stdout
    assert "keras-gemma chat -m gemma3_instruct_1b --backend jax --dtype bfloat16" in result.stdout


def test_recommend_json_for_scripts():
    result = CliRunner().invoke(main, ["recommend", "--task", "safety", "--memory", "80GB", "--device", "gpu", "--json"])
    advice = json.loads(result.stdout)
    assert advice["pick"]["name"] == "shieldgemma_2b_en"
    assert [item["name"] for item in advice["alternatives"]] == ["shieldgemma_9b_en", "shieldgemma_27b_en"]
    assert advice["usable_bytes"] < advice["memory_bytes"] == 80 * 2**30


def test_recommend_detects_this_machine():
    result = CliRunner().invoke(main, ["recommend"])
    assert result.exit_code == 0, result.output
    assert "Detecting memory and accelerators" in result.stderr
    assert "RAM, no GPU or TPU" in result.stdout and "Recommended: " in result.stdout
    quiet = CliRunner().invoke(main, ["recommend", "-q"])
    assert quiet.stderr == ""


def test_nothing_fits_is_said_plainly():
    result = CliRunner().invoke(main, ["recommend", "--task", "vision", "--memory", "4GB"])
    assert result.exit_code == 0
    assert "No recommendation. Nothing for questions about images fits in 3.0 GiB" in result.stdout


def test_bad_memory_is_a_one_line_error():
    result = CliRunner().invoke(main, ["recommend", "--memory", "8XB"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: Expected an amount of memory such as 8GB, 16GB or 512MB, received '8XB'."


def test_a_quantized_pick_says_how_to_run_it():
    result = CliRunner().invoke(main, ["recommend", "--task", "vision", "--memory", "8GB", "--device", "gpu"])
    assert result.exit_code == 0, result.output
    assert "quantized to int8" in result.stdout
    assert "--dtype bfloat16 --quantize int8" in result.stdout
