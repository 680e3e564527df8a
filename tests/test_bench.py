"""``kga.benchmark`` from Python: the same report as the CLI, as data that renders as a table."""

import pytest

import keras_gemma_app as kga


@pytest.mark.slow
def test_bench_from_python_on_one_backend(tiny_preset):
    started = []
    report = kga.benchmark(str(tiny_preset), backends="torch", new_tokens=4, runs=1,
                       on_start=lambda engine, backend: started.append((engine, backend)))
    assert started == [("keras-gemma-app", "torch")]
    assert report["errors"] == []
    [result] = report["results"]
    assert result["backend"] == "torch" and len(result["token_ids"]) == 4 and result["decode_tok_s"] > 0
    assert report["settings"]["prompt_tokens"] == (16,) and report["settings"]["batch"] == (1,)
    assert "torch" in report._repr_html_()


def test_bench_checks_its_settings_before_running():
    with pytest.raises(kga.SettingsError, match="Expected backends among"):
        kga.benchmark("gemma3_270m_pypi", backends=["jax", "mlx"])


def test_a_worker_killed_by_a_signal_is_reported_as_a_crash(tmp_path, monkeypatch):
    from keras_gemma_app import bench

    # A baseline whose native library crashes: its stderr ends on a log line, which alone says nothing.
    (tmp_path / "crashing_worker.py").write_text(
        "import os, signal, sys\nprint('loading the model', file=sys.stderr, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    result = bench._worker("crashing_worker", {})
    assert result == {"error": "its process crashed (SIGSEGV) after: loading the model"}
