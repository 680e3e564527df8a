"""Results that render as tables in a notebook cell (HTML) and with rich."""

import io

from rich.console import Console

import keras_gemma_app as kga
from keras_gemma_app.display import BenchReport

ROW = dict(backend="jax", dtype="float32", quantize=None, batch=1, prompt_tokens=16, new_tokens=8, import_s=1.0,
           load_s=2.0, first_call_s=3.0, ttft_ms=120.0, decode_tok_s_min=20.0, decode_tok_s_max=22.0,
           prefill_tok_s=300.0, peak_rss_mb=2000.0, text=" Paris", token_ids=[1])


def _report(**changes):
    results = [{**ROW, "engine": "keras-gemma-app", "decode_tok_s": 21.0},
               {**ROW, "engine": "keras-hub", "decode_tok_s": 14.0}]
    report = {"model": "m", "settings": {"new_tokens": 8, "runs": 2}, "results": results,
              "agreement": [{"batch": 1, "prompt_tokens": 16, "agree": True, "texts": {"jax": " Paris"}}],
              "errors": []}
    return BenchReport({**report, **changes})


def _rich_text(value) -> str:
    console = Console(file=io.StringIO(), width=200)
    console.print(value)
    return console.file.getvalue()


def test_a_bench_report_is_its_data_and_a_table():
    report = _report()
    assert report["results"][0]["decode_tok_s"] == 21.0  # still the plain dict
    html = report._repr_html_()
    assert html.startswith("<pre") and "decode tok/s" in html and "1.50×" in html
    text = _rich_text(report)
    assert "keras-gemma-app" in text and "1.50×" in text
    assert "prompt 16 tokens: the same text on every backend" in text and "jax: ' Paris'" in text


def test_a_failed_backend_is_shown():
    report = _report(errors=[{"engine": "keras-gemma-app", "backend": "torch", "error": "MemoryError"}])
    assert "keras-gemma-app on torch failed: MemoryError" in report.texts()
    assert "failed: MemoryError" in report._repr_html_()


def test_the_model_list_renders_in_a_notebook():
    listing = kga.list_models(family="gemma3", tuning="it")
    assert listing and all(row["family"] == "gemma3" and row["tuning"] == "it" for row in listing)
    html = listing._repr_html_()
    assert "Gemma models" in html and listing[0]["name"] in html
    assert listing[0]["name"] in _rich_text(listing)


def test_the_model_list_filters_by_size_as_text_or_number():
    small = kga.list_models(max_params="1b")
    assert small == kga.list_models(max_params=1_000_000_000)
    assert all(row["params"] <= 1_000_000_000 for row in small)
    assert {"name", "family", "params", "kaggle_handle", "cached"} <= set(small[0])


def test_errors_show_as_one_line_in_ipython():
    error = kga.SettingsError("Expected p in (0, 1], received 2.")
    assert error._render_traceback_() == ["SettingsError: Expected p in (0, 1], received 2."]
