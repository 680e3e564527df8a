"""``keras-gemma bench`` on the tiny model: the report's shape, the table, JSON and plot, and bad input."""

import json

import pytest
from click.testing import CliRunner

from keras_gemma_app.bench import BenchSettings, _agreement, speedups
from keras_gemma_app.cli import main

FIELDS = {"engine", "backend", "dtype", "quantize", "batch", "prompt_tokens", "new_tokens", "import_s", "load_s",
          "first_call_s", "ttft_ms", "decode_tok_s", "decode_tok_s_min", "decode_tok_s_max", "prefill_tok_s",
          "peak_rss_mb", "text", "token_ids"}


@pytest.fixture(scope="module")
def bench_run(tiny_preset, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = CliRunner().invoke(main, [
        "bench", "-m", str(tiny_preset), "--backends", "jax,torch", "--runs", "2", "--new-tokens", "5",
        "--prompt-tokens", "8,20", "--baseline", "keras-hub", "--json", str(out / "report.json"),
        "--plot", str(out / "report.png"),
    ])
    return result, out


def test_bench_reports_every_figure_for_each_backend_and_engine(bench_run):
    result, out = bench_run
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["errors"] == []
    assert {(r["engine"], r["backend"], r["prompt_tokens"]) for r in report["results"]} == {
        (engine, backend, length) for engine in ("keras-gemma-app", "keras-hub")
        for backend in ("jax", "torch") for length in (8, 20)}
    for r in report["results"]:
        assert set(r) == FIELDS
        assert r["dtype"] == "float32" and r["batch"] == 1 and r["new_tokens"] == 5
        assert len(r["token_ids"]) == 5 and r["text"]
        assert r["import_s"] > 0 and r["load_s"] > 0 and r["first_call_s"] > 0 and r["ttft_ms"] > 0
        assert r["peak_rss_mb"] > 100 and r["prefill_tok_s"] > 0
        if r["decode_tok_s"] is not None:
            assert r["decode_tok_s_min"] <= r["decode_tok_s"] <= r["decode_tok_s_max"]
    # Greedy decoding: the app gives KerasHub's tokens, and every backend the same ones.
    by_key = {(r["engine"], r["backend"], r["prompt_tokens"]): r["token_ids"] for r in report["results"]}
    for backend in ("jax", "torch"):
        for length in (8, 20):
            assert by_key[("keras-gemma-app", backend, length)] == by_key[("keras-hub", backend, length)]
    assert [(a["prompt_tokens"], a["agree"]) for a in report["agreement"]] == [(8, True), (20, True)]
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_table_and_texts_on_stdout(bench_run):
    result, out = bench_run
    assert "decode tok/s" in result.stdout and "× keras-hub" in result.stdout
    assert "keras-gemma-app" in result.stdout and "keras-hub" in result.stdout
    assert "prompt 8 tokens: the same text on every backend" in result.stdout
    assert "Benchmarking keras-gemma-app on torch" in result.stderr
    assert f"Wrote {out / 'report.json'}" in result.stderr


def test_speedups_pair_each_app_result_with_keras_hub():
    row = dict(backend="jax", dtype="float32", batch=1, prompt_tokens=16)
    report = {"results": [
        {**row, "engine": "keras-gemma-app", "decode_tok_s": 30.0},
        {**row, "engine": "keras-hub", "decode_tok_s": 20.0},
        {**row, "backend": "torch", "engine": "keras-gemma-app", "decode_tok_s": 9.0},
    ]}
    assert speedups(report) == {("jax", "float32", 1, 16, None): 1.5}


def test_agreement_notices_a_backend_that_differs():
    row = dict(engine="keras-gemma-app", batch=1, prompt_tokens=16)
    results = [{**row, "backend": "jax", "token_ids": [1, 2], "text": "a b"},
               {**row, "backend": "torch", "token_ids": [1, 3], "text": "a c"}]
    assert _agreement(results) == [{"batch": 1, "prompt_tokens": 16, "agree": False,
                                    "texts": {"jax": "a b", "torch": "a c"}}]


@pytest.mark.parametrize("args, message", [
    (["--backends", "jax,mlx"], "Expected backends among jax, tensorflow, torch, received jax, mlx."),
    (["--prompt-tokens", "16,many"], "Expected --prompt-tokens as comma-separated whole numbers"),
    (["--prompt-tokens", "1"], "Expected prompts of at least 2 tokens"),
    (["--new-tokens", "1"], "Expected at least 2 new tokens"),
    (["--batch", "0"], "Expected batch sizes >= 1, received 0."),
    (["--runs", "0"], "Expected at least 1 run, received 0."),
    (["-m", "gemma3_instruct_1b", "--baseline", "llama.cpp"], "The llama.cpp baseline"),
])
def test_bad_settings_fail_before_anything_runs(args, message):
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Benchmarking" not in result.stderr


def test_settings_check_accepts_the_defaults():
    assert BenchSettings(model="gemma3_270m_pypi").check().backends == ("jax", "tensorflow", "torch")
