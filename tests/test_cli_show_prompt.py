import pytest
from click.testing import CliRunner

from keras_gemma_app.cli import main


def show(*args):
    return CliRunner().invoke(main, ["show-prompt", *args])


def test_instruction_tuned_model_gets_its_turn_format():
    result = show("-m", "gemma3_instruct_1b", "--system", "Be brief.", "Hi")
    assert result.exit_code == 0
    assert result.stdout == "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_pretrained_model_gets_raw_text(monkeypatch):
    monkeypatch.delenv("KERAS_GEMMA_MODEL", raising=False)
    assert show("The capital of France is").stdout == "The capital of France is"


def test_overrides():
    assert show("-m", "gemma3_instruct_1b", "--raw", "Hi").stdout == "Hi"
    assert show("-m", "gemma2_2b_en", "--template", "gemma", "Hi").stdout == (
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    assert show("-m", "gemma4_instruct_2b", "Hi").stdout == "<|turn>user\nHi<turn|>\n<|turn>model\n"


def test_fill_in_the_middle():
    result = show("-m", "code_gemma_2b_en", "--fim-prefix", "def f(x):\n    ", "--fim-suffix", "\n")
    assert result.stdout == "<|fim_prefix|>def f(x):\n    <|fim_suffix|>\n<|fim_middle|>"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--template", "chatml", "Hi"], "Invalid value for '--template'"),
        (["--fim-prefix", "a", "Hi"], "Expected either a prompt or --fim-prefix/--fim-suffix"),
        ([], "Expected a non-empty prompt"),
    ],
)
def test_bad_input(args, message):
    result = show(*args)
    assert result.exit_code == 2 and message in result.stderr
