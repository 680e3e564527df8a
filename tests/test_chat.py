"""Chat: history, system instruction, transcripts, context trimming (tiny model, in-process)."""

import json

import pytest

import keras_gemma_app as kga


@pytest.fixture
def chat(tiny_preset):
    pipe = kga.load(str(tiny_preset))
    return pipe.chat(system="Be brief.", max_new_tokens=5)


def test_two_turns_keep_history(chat):
    first = chat.send("Hello")
    second = chat.send("And then?")
    assert [m["role"] for m in chat.messages] == ["system", "user", "model", "user", "model"]
    assert chat.messages[2]["content"] == first and chat.messages[4]["content"] == second
    # The second prompt carries the whole conversation in the model's turn format.
    assert chat.stats.prompt_tokens > chat.pipe.count_tokens("And then?")


def test_stream_matches_send_and_keeps_partial_replies(chat, tiny_preset):
    pieces = chat.stream("Hello")
    first = next(pieces)
    pieces.close()  # stopped early, as Ctrl-C does
    assert chat.messages[-1] == {"role": "model", "content": first.text}
    assert chat.messages[-2] == {"role": "user", "content": "Hello"}
    chat.send("Next")  # the conversation goes on
    assert len(chat.messages) == 5


def test_save_and_load(chat, tmp_path):
    chat.send("Hello")
    path = tmp_path / "talk.json"
    chat.save(path)
    assert json.loads(path.read_text())["messages"] == chat.messages
    other = chat.pipe.chat()
    other.load(path)
    assert other.messages == chat.messages and other.system == "Be brief."


def test_system_and_clear(chat):
    chat.send("Hello")
    chat.system = "Be long."
    assert chat.messages[0] == {"role": "system", "content": "Be long."} and len(chat.messages) == 3
    chat.clear()
    assert chat.messages == [{"role": "system", "content": "Be long."}]
    chat.system = None
    assert chat.messages == []


def test_oldest_turns_are_dropped_when_the_context_is_full(tiny_preset):
    pipe = kga.load(str(tiny_preset))
    chat = pipe.chat(max_new_tokens=4, context_length=60)
    for text in ("one two three four five", "six seven eight nine ten", "eleven twelve thirteen"):
        chat.send(text)
    assert chat.stats.dropped_turns >= 1
    assert chat.messages[0] == {"role": "user", "content": chat.messages[0]["content"]}
    assert chat.messages[-2]["content"] == "eleven twelve thirteen"
    assert chat.stats.prompt_tokens + 4 <= 60


def test_a_message_longer_than_the_context(tiny_preset):
    chat = kga.load(str(tiny_preset)).chat(max_new_tokens=4, context_length=20)
    with pytest.raises(kga.SettingsError, match="does not fit the context of 20 tokens"):
        chat.send("word " * 40)
    assert chat.messages == []


@pytest.mark.parametrize(
    "messages, message",
    [
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "must alternate"),
        ([{"role": "robot", "content": "a"}], "Unknown role 'robot'"),
        ({"messages": "nope"}, "must hold a list of messages"),
    ],
)
def test_bad_transcripts(chat, tmp_path, messages, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(messages if isinstance(messages, dict) else {"messages": messages}))
    with pytest.raises(kga.SettingsError, match=message):
        chat.load(path)
