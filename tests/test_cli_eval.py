"""keras-gemma eval: memory, perplexity and agreement figures, on the tiny model."""

import json
import math

from click.testing import CliRunner

from keras_gemma_app.cli import main
from keras_gemma_app.quality_eval import PROMPTS


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_float32_reports_memory_and_perplexity_without_a_reference(tiny_preset):
    result = invoke("eval", "-q", "-m", str(tiny_preset), "--new-tokens", "4", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dtype"] == "float32" and data["quantize"] is None and data["agreement"] is None
    assert data["disk_mb"] > 0 and data["weights_mb"] > 0 and data["peak_rss_mb"] > data["weights_mb"]
    assert data["tokens"] > 2000 and math.isfinite(data["perplexity"]) and data["perplexity"] > 1
    assert len(data["token_ids"]) == len(PROMPTS) and all(len(ids) == 4 for ids in data["token_ids"])


def test_quantized_is_compared_with_float32(tiny_preset):
    result = invoke("eval", "-m", str(tiny_preset), "--quantize", "int8", "--new-tokens", "4")
    assert result.exit_code == 0, result.output
    assert "quantizing it to int8" in result.stderr and "at float32" in result.stderr
    for row in ("weights in memory", "preset on disk", "peak RSS after load", "perplexity",
                "greedy agreement with float32", f"/{len(PROMPTS)} prompts identical"):
        assert row in result.stdout


def test_bad_settings_are_refused_before_loading(tiny_preset):
    result = invoke("eval", "-m", str(tiny_preset), "--new-tokens", "0")
    assert result.exit_code == 2 and "--new-tokens must be >= 1" in result.stderr
    result = invoke("eval", "-m", str(tiny_preset), "--quantize", "int2")
    assert result.exit_code == 2
