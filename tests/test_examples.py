"""Every script in examples/ runs as a user runs it, against the real Gemma 3 270M preset.

The model comes from KERAS_GEMMA_MODEL, as the scripts document; each output
is checked against the same request made here through the Python API.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from conftest import ROOT, _environment

EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, env: dict | None = None, timeout: int = 600) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, cwd=ROOT,
        env=_environment({"TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}), timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_example_has_a_test():
    tested = {"quickstart.py", "switch_backend.py", "chat.py", "compare_backends.py", "import_gguf.py", "code_fim.py"}
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


@pytest.mark.slow
def test_quickstart_generates_then_swaps_the_sampler(real_preset, real_pipe):
    prompt = "The three primary colours are"
    out = run_example("quickstart.py", env={"KERAS_GEMMA_MODEL": str(real_preset), "KERAS_BACKEND": "jax"})
    lines = out.splitlines()
    assert lines[0].startswith("Pipeline(") and "backend='jax'" in lines[0]
    assert lines[1] == "preprocessor: Gemma3CausalLMPreprocessor · model: Gemma3CausalLM"
    greedy = real_pipe.generate(prompt, max_new_tokens=24)
    assert f"[Greedy()] {prompt}{greedy}" in out
    sampled = out.split("[TopP(", 1)[1]
    assert sampled.split("] ", 1)[1].startswith(prompt)
    assert f"{prompt}{greedy}" not in sampled  # another sampler, another continuation


@pytest.mark.slow
def test_switch_backend_runs_the_named_backend(real_preset, real_pipe):
    out = run_example("switch_backend.py", "torch", str(real_preset))
    assert "keras backend: torch" in out
    prompt = "The capital of France is"
    assert f"{prompt}{real_pipe.generate(prompt, max_new_tokens=16)}\n" in out
    assert "16 tokens in " in out


def test_switch_backend_refuses_an_unknown_backend():
    done = subprocess.run([sys.executable, str(EXAMPLES / "switch_backend.py"), "mxnet"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "invalid choice: 'mxnet'" in done.stderr


@pytest.mark.slow
def test_chat_keeps_two_turns_with_the_system_instruction(real_preset, tmp_path):
    saved = tmp_path / "talk.json"
    out = run_example("chat.py", str(real_preset), "--max-new-tokens", "12", "--save", str(saved))
    assert out.count("user: ") == 2 and out.count("model: ") == 2
    assert "5 messages in the history" in out
    messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "model", "user", "model"]
    assert messages[0]["content"].startswith("You are a concise astronomy tutor")
    for reply in (m["content"] for m in messages if m["role"] == "model"):
        assert f"model: {reply}" in out  # what streamed is what the history keeps


@pytest.mark.slow
def test_compare_backends_shows_each_backend_side_by_side(real_preset, tmp_path):
    report_path = tmp_path / "report.json"
    out = run_example("compare_backends.py", str(real_preset), "--backends", "jax,torch", "--new-tokens", "8",
                      "--runs", "1", "--json", str(report_path))
    report = json.loads(report_path.read_text())
    assert [r["backend"] for r in report["results"]] == ["jax", "torch"]
    for result in report["results"]:
        assert result["decode_tok_s"] > 0 and result["text"]
        assert result["backend"] in out and f"{result['text'][:40]!r}"[:-1] in out
    assert "the same text on every backend" in out
    fastest = max(report["results"], key=lambda r: r["decode_tok_s"])
    assert f"fastest decode: {fastest['backend']}" in out


@pytest.mark.slow
def test_import_gguf_converts_then_generates(real_gguf, real_pipe, tmp_path):
    out_dir = tmp_path / "gemma3-keras"
    out = run_example("import_gguf.py", "--out", str(out_dir), env={"KERAS_GEMMA_MODEL": str(real_gguf)})
    assert f"preset: {out_dir}" in out
    assert {"config.json", "model.weights.h5", "tokenizer.json"} <= {p.name for p in out_dir.iterdir()}
    prompt = "The capital of France is"
    # The bundled preset is this very file converted the same way: the same greedy text.
    assert f"{prompt}{real_pipe.generate(prompt, max_new_tokens=16)}\n" in out


@pytest.mark.slow
def test_code_fim_sends_a_fill_in_the_middle_prompt(real_preset, real_pipe):
    import keras_gemma_app as kga

    sys.path.insert(0, str(EXAMPLES))
    try:
        import code_fim
    finally:
        sys.path.remove(str(EXAMPLES))
    out = run_example("code_fim.py", str(real_preset), "--max-new-tokens", "12")
    prompt = kga.fim_prompt(code_fim.PREFIX, code_fim.SUFFIX)
    assert prompt.startswith("<|fim_prefix|>") and f"--- prompt sent to the model ---\n{prompt}\n" in out
    stops = [t for t in map(real_pipe.token_id, code_fim.STOP_PIECES) if t is not None]
    middle = real_pipe.generate(prompt, raw=True, max_new_tokens=12, stop_token_ids=stops)
    assert out.endswith(f"--- filled in ---\n{code_fim.PREFIX}{middle}{code_fim.SUFFIX}\n")


@pytest.mark.parametrize("name, args", [("quickstart.py", ()), ("chat.py", ()), ("code_fim.py", ()),
                                        ("switch_backend.py", ("torch",))])
def test_a_missing_model_is_one_line_not_a_traceback(name, args, tmp_path):
    missing = tmp_path / "no-such-preset"
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args, str(missing)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"Error: No such model directory: '{missing}'."
    assert "Traceback" not in done.stderr
