"""``keras-gemma import gguf`` as a user runs it."""

import pytest
from click.testing import CliRunner

from keras_gemma_app.cli import main
from conftest import run_cli


@pytest.mark.slow
def test_import_gguf_then_generate(real_gguf, tmp_path, real_pipe):
    out = tmp_path / "gemma3_270m"
    done = run_cli("import", "gguf", str(real_gguf), str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(out)
    assert "dequantizing" in done.stderr and "Wrote a bfloat16 KerasHub preset" in done.stderr
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.weights.h5", "tokenizer.json", "preprocessor.json", "task.json",
            "metadata.json", "assets"} <= files
    assert (out / "assets" / "tokenizer" / "vocabulary.spm").is_file()
    generated = CliRunner().invoke(main, ["generate", "-q", "-m", str(out), "--dtype", "float32",
                                          "--max-new-tokens", "8", "The capital of France is"])
    assert generated.stdout == real_pipe.generate("The capital of France is", max_new_tokens=8) + "\n"


def test_existing_output_is_refused_then_forced(real_gguf, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused = CliRunner().invoke(main, ["import", "gguf", str(real_gguf), str(out), "-q"])
    assert refused.exit_code == 2
    assert "Expected a new output directory, received one that exists" in refused.stderr
    assert (out / "keep.txt").read_text() == "mine"
    forced = CliRunner().invoke(main, ["import", "gguf", str(real_gguf), str(out), "--force", "-q", "--dtype", "float32"])
    assert forced.exit_code == 0, forced.output
    assert not (out / "keep.txt").exists() and (out / "model.weights.h5").is_file()


@pytest.mark.parametrize("content", [b"", b"hello, not a model", b"GGUF\x03\x00\x00\x00"])
def test_not_a_gguf_file(tmp_path, content):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    result = CliRunner().invoke(main, ["import", "gguf", str(bad), str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("Error:") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.gguf"]
