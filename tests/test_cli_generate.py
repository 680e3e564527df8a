import json

import pytest
from click.testing import CliRunner

from keras_gemma_app.cli import main
from conftest import run_cli, run_python


@pytest.fixture
def invoke():
    def call(*args, input=None):
        return CliRunner().invoke(main, list(args), input=input)

    return call


def test_prints_only_the_completion(invoke, tiny_preset, tiny_pipe):
    result = invoke("generate", "-m", str(tiny_preset), "--max-new-tokens", "5", "hello")
    assert result.exit_code == 0, result.output
    assert result.stdout == tiny_pipe.generate("hello", max_new_tokens=5) + "\n"
    assert "Loading" in result.stderr and "tok/s" in result.stderr


def test_quiet_has_no_status(invoke, tiny_preset):
    result = invoke("generate", "-q", "-m", str(tiny_preset), "--max-new-tokens", "3", "hello")
    assert result.exit_code == 0 and result.stderr == ""


def test_prompts_from_arguments_file_and_stdin_are_one_batch(invoke, tiny_preset, tiny_pipe, tmp_path):
    expected = tiny_pipe.generate(["The capital of France", "hello"], max_new_tokens=4)
    args = ("generate", "-q", "-m", str(tiny_preset), "--max-new-tokens", "4")
    from_args = invoke(*args, "The capital of France", "hello")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The capital of France\n\nhello\n")
    from_file = invoke(*args, "--prompts-file", str(prompts))
    from_stdin = invoke(*args, input="The capital of France\nhello\n")
    for result in (from_args, from_file, from_stdin):
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == expected


def test_json_output_and_sampler_flags(invoke, tiny_preset, tiny_pipe):
    import keras_gemma_app as kga

    result = invoke("generate", "-q", "-m", str(tiny_preset), "--json", "--max-new-tokens", "4",
                    "--sampler", "top_p", "--top-p", "0.9", "--temperature", "2", "--seed", "3", "hello")
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    expected = tiny_pipe.generate("hello", max_new_tokens=4, sampler=kga.TopP(p=0.9, temperature=2.0, seed=3))
    assert line["completion"] == expected
    assert line["new_tokens"] == 4 and line["finish_reason"] == "length" and line["prompt"] == "hello"


def test_stop_token_id_flag(invoke, tiny_preset, tiny_pipe):
    full = tiny_pipe.completions("hello", max_new_tokens=6)[0]
    stop = full.token_ids[2]
    result = invoke("generate", "-q", "-m", str(tiny_preset), "--json", "--max-new-tokens", "6",
                    "--stop-token-id", str(stop), "hello")
    line = json.loads(result.stdout)
    assert line["finish_reason"] == "stop"
    assert line["new_tokens"] == full.token_ids.index(stop)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "gemma3_instrct_1b", "hi"], "Unknown Gemma preset 'gemma3_instrct_1b'. Did you mean gemma3_instruct_1b"),
        (["-m", "kaggle://keras/gemma", "hi"], "Malformed Kaggle handle"),
        (["-m", "hf://google", "hi"], "Malformed Hugging Face handle"),
        (["-m", "./missing/dir", "hi"], "No such model directory: './missing/dir'"),
        (["-m", "tests", "hi"], "'tests' is not a model preset: expected a directory with config.json"),
        (["--backend", "mxnet", "hi"], "Invalid value for '--backend': 'mxnet' is not one of"),
        (["--top-k", "0", "hi"], "top-k `k` must be an integer >= 1, but is 0"),
        (["--top-p", "0", "hi"], r"top-p `p` must be in the interval (0, 1], but is 0.0"),
        (["--top-p", "1.5", "hi"], "but is 1.5"),
        (["--temperature", "-1", "hi"], "temperature must be a number >= 0"),
        (["--max-new-tokens", "0", "hi"], "--max-new-tokens must be >= 1, but is 0"),
        ([""], "Expected a non-empty prompt"),
        ([], "Expected a prompt: give it as an argument"),
        (["--dtype", "float8", "hi"], "Invalid value for '--dtype': 'float8' is not one of"),
        (["--sampler", "greedy", "--top-p", "0.5", "hi"], "--top-p does not apply to the greedy sampler"),
        (["--num-beams", "0", "--sampler", "beam", "hi"], "num_beams must be an integer >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(invoke, args, message):
    result = invoke("generate", *args, input="")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1


def test_a_backend_that_is_not_installed(tiny_preset):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from keras_gemma_app.cli import main\n"
        f"main(['generate', '--backend', 'torch', '-m', {str(tiny_preset)!r}, 'hi'])\n"
    )
    done = run_python(code)
    assert done.returncode == 2
    assert "Error: Backend 'torch' is not installed: pip install torch" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_console_script_in_a_real_process(tiny_preset, tiny_pipe, backend):
    done = run_cli("generate", "-m", str(tiny_preset), "--max-new-tokens", "5", "hello",
                   env={"KERAS_BACKEND": None, "KERAS_GEMMA_MODEL": None})
    assert done.returncode == 0, done.stderr[-2000:]
    if backend == "jax":
        assert done.stdout == tiny_pipe.generate("hello", max_new_tokens=5) + "\n"
    assert "· jax ·" in done.stderr  # the documented default backend


def test_model_from_environment_variable(invoke, tiny_preset, monkeypatch):
    monkeypatch.setenv("KERAS_GEMMA_MODEL", str(tiny_preset))
    result = invoke("generate", "--max-new-tokens", "2", "hello")
    assert result.exit_code == 0, result.output
    assert str(tiny_preset) in result.stderr


def test_stream_prints_the_same_text(invoke, tiny_preset, tiny_pipe):
    result = invoke("generate", "-q", "-m", str(tiny_preset), "--stream", "--max-new-tokens", "6", "hello")
    assert result.exit_code == 0, result.output
    assert result.stdout == tiny_pipe.generate("hello", max_new_tokens=6) + "\n"


def test_stop_string_flag(invoke, tiny_preset, tiny_pipe):
    full = tiny_pipe.generate("The capital of France", max_new_tokens=12)
    stop = full[3:6]
    for mode in ("--stream", "--no-stream"):
        result = invoke("generate", "-q", "-m", str(tiny_preset), mode, "--max-new-tokens", "12",
                        "--stop", stop, "The capital of France")
        assert result.stdout == full[: full.index(stop)] + "\n"


def test_system_template_and_fim_flags(invoke, tiny_preset, tiny_pipe):
    import keras_gemma_app as kga

    templated = kga.load(str(tiny_preset), template="gemma3")
    result = invoke("generate", "-q", "-m", str(tiny_preset), "--template", "gemma3", "--system", "Be brief.",
                    "--max-new-tokens", "4", "--json", "Hi")
    line = json.loads(result.stdout)
    assert line["completion"] == templated.generate("Hi", system="Be brief.", max_new_tokens=4)
    assert line["prompt_tokens"] == templated.count_tokens(templated.format_prompt("Hi", system="Be brief."))
    fim = invoke("generate", "-q", "-m", str(tiny_preset), "--fim-prefix", "def add(a, b):", "--fim-suffix", "\n",
                 "--max-new-tokens", "3", "--json")
    line = json.loads(fim.stdout)
    assert line["prompt"] == "<|fim_prefix|>def add(a, b):<|fim_suffix|>\n<|fim_middle|>"
    both = invoke("generate", "-m", str(tiny_preset), "--fim-prefix", "x", "hello")
    assert both.exit_code == 2 and "either prompts or --fim-prefix" in both.stderr


def test_a_running_server_holding_the_model_is_used(invoke, tiny_server, tiny_preset, tiny_pipe, monkeypatch):
    monkeypatch.setenv("KERAS_GEMMA_HOST", tiny_server.address)
    served = invoke("generate", "-m", str(tiny_preset), "--max-new-tokens", "5", "--json", "--seed", "4",
                    "--top-k", "3", "hello", "world")
    assert served.exit_code == 0, served.output
    assert f"Using the model served at {tiny_server.address}" in served.stderr and "Loading" not in served.stderr
    import keras_gemma_app as kga

    expected = tiny_pipe.generate(["hello", "world"], max_new_tokens=5, sampler=kga.TopK(k=3, seed=4))
    assert [json.loads(line)["completion"] for line in served.stdout.splitlines()] == expected
    streamed = invoke("generate", "-m", str(tiny_preset), "--max-new-tokens", "5", "--stream", "hello")
    assert streamed.stdout == tiny_pipe.generate("hello", max_new_tokens=5) + "\n"
    assert f"served at {tiny_server.address}" in streamed.stderr


@pytest.mark.parametrize("flags", [("--dtype", "bfloat16"), ("--no-server",), ("--template", "gemma3")])
def test_a_server_holding_it_otherwise_is_not_used(invoke, tiny_server, tiny_preset, monkeypatch, flags):
    monkeypatch.setenv("KERAS_GEMMA_HOST", tiny_server.address)
    result = invoke("generate", "-m", str(tiny_preset), "--max-new-tokens", "2", *flags, "hello")
    assert result.exit_code == 0, result.output
    assert "Loading" in result.stderr and "Using the model served" not in result.stderr


def test_keep_alive_starts_a_server_that_the_next_generate_uses(invoke, tiny_preset, tiny_pipe, tmp_path,
                                                                monkeypatch):
    import os
    import signal

    import keras_gemma_app as kga
    from conftest import free_address

    address = free_address()
    monkeypatch.setenv("KERAS_GEMMA_HOST", address)
    monkeypatch.setenv("KERAS_GEMMA_CACHE", str(tmp_path))
    args = ("generate", "-m", str(tiny_preset), "--max-new-tokens", "5", "--keep-alive", "5m", "hello")
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "Starting a server that keeps" in first.stderr
    server = kga.connect(address)
    assert server is not None
    try:
        monkeypatch.setenv("KERAS_GEMMA_KEEP_ALIVE", "5m")  # the variable does what the flag does
        second = invoke(*args[:-3], "hello")
        assert second.exit_code == 0, second.output
        assert "Starting" not in second.stderr and f"Using the model served at {address}" in second.stderr
        assert first.stdout == second.stdout == tiny_pipe.generate("hello", max_new_tokens=5) + "\n"
    finally:
        os.kill(server.info["pid"], signal.SIGINT)


def test_keep_alive_refuses_an_address_held_by_another_model(invoke, tiny_server, real_preset, monkeypatch):
    monkeypatch.setenv("KERAS_GEMMA_HOST", tiny_server.address)
    result = invoke("generate", "-m", str(real_preset), "--keep-alive", "5m", "hello")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: The server at {tiny_server.address} holds ")
    assert "expected it free to keep" in result.stderr and len(result.stderr.strip().splitlines()) == 1
