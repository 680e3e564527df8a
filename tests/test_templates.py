"""Golden tests of every prompt format, against the official Gemma formats."""

import pytest

import keras_gemma_app as kga
from keras_gemma_app.templates import fim_prompt, render, render_prompt

CONVERSATION = [
    {"role": "system", "content": "Only reply like a pirate."},
    {"role": "user", "content": "What is the answer to life?"},
    {"role": "model", "content": "Arrr, 'tis 42."},
    {"role": "user", "content": "Why?"},
]


def test_gemma3_multi_turn_with_system_folded_into_first_user_turn():
    assert render(CONVERSATION, "gemma3") == (
        "<start_of_turn>user\nOnly reply like a pirate.\n\nWhat is the answer to life?<end_of_turn>\n"
        "<start_of_turn>model\nArrr, 'tis 42.<end_of_turn>\n"
        "<start_of_turn>user\nWhy?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma_1_and_2_use_the_same_turns():
    assert render(CONVERSATION[1:2], "gemma") == (
        "<start_of_turn>user\nWhat is the answer to life?<end_of_turn>\n<start_of_turn>model\n"
    )
    assert render(CONVERSATION, "gemma") == render(CONVERSATION, "gemma3")


def test_gemma4_has_a_real_system_turn():
    assert render(CONVERSATION, "gemma4") == (
        "<|turn>system\nOnly reply like a pirate.<turn|>\n"
        "<|turn>user\nWhat is the answer to life?<turn|>\n"
        "<|turn>model\nArrr, 'tis 42.<turn|>\n"
        "<|turn>user\nWhy?<turn|>\n"
        "<|turn>model\n"
    )


def test_no_bos_is_added():
    for template in ("gemma", "gemma3", "gemma4", "raw"):
        assert "<bos>" not in render(CONVERSATION, template)


def test_raw_and_single_prompt():
    assert render_prompt("The capital of France is", "raw") == "The capital of France is"
    assert render_prompt("Hi", "gemma3", system="Be brief.") == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    assert render([{"role": "user", "content": "Hi"}], "gemma3", add_generation_prompt=False) == (
        "<start_of_turn>user\nHi<end_of_turn>\n"
    )


def test_assistant_is_an_alias_for_model():
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert "<start_of_turn>model\nb<end_of_turn>" in render(messages, "gemma3")


def test_fill_in_the_middle():
    assert fim_prompt("def add(a, b):\n    ", "\n\nprint(add(1, 2))") == (
        "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n\nprint(add(1, 2))<|fim_middle|>"
    )


@pytest.mark.parametrize(
    "messages, message",
    [
        ([{"role": "bot", "content": "x"}], "Unknown role 'bot' in message 0"),
        ([{"role": "model", "content": "x"}], "turn 1 is 'model', expected 'user'"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "turn 2 is 'user', expected 'model'"),
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "turn 2 is 'system'"),
        ([{"content": "a"}], "must be a mapping with 'role' and 'content'"),
    ],
)
def test_bad_conversations(messages, message):
    with pytest.raises(kga.SettingsError, match=message):
        render(messages, "gemma3")


def test_unknown_template():
    with pytest.raises(kga.SettingsError, match="Unknown template 'chatml'"):
        render_prompt("hi", "chatml")
