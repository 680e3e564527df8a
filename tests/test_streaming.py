"""Pipeline.stream and stop strings, on the tiny model in-process."""

import time

import pytest

import keras_gemma_app as kga


def test_pieces_concatenate_to_generate(tiny_pipe):
    pieces = list(tiny_pipe.stream("hello", max_new_tokens=10))
    assert "".join(p.text for p in pieces) == tiny_pipe.generate("hello", max_new_tokens=10)
    assert [p.index for p in pieces] == list(range(len(pieces)))
    assert 1 <= len(pieces) <= 10


def test_pieces_arrive_as_tokens_are_made(tiny_pipe):
    list(tiny_pipe.stream("hello", max_new_tokens=4))  # compile first
    stream = tiny_pipe.stream("hello", max_new_tokens=12)
    first = next(stream)
    arrived = time.perf_counter()
    rest = list(stream)
    assert rest, "more pieces follow the first"
    assert first.elapsed < rest[-1].elapsed
    assert time.perf_counter() >= arrived


def test_stop_string_across_tokens(tiny_pipe):
    full = tiny_pipe.generate("The capital of France", max_new_tokens=12)
    stop = full[3:7]
    assert len(stop) == 4
    stopped = tiny_pipe.generate("The capital of France", max_new_tokens=12, stop=[stop])
    assert stopped == full[: full.index(stop)]
    streamed = "".join(p.text for p in tiny_pipe.stream("The capital of France", max_new_tokens=12, stop=stop))
    assert streamed == stopped
    result = tiny_pipe.completions("The capital of France", max_new_tokens=12, stop=[stop])[0]
    assert result.finish_reason == "stop"


def test_max_new_tokens_is_respected(tiny_pipe):
    pieces = list(tiny_pipe.stream("hello", max_new_tokens=3))
    assert len(pieces) <= 3


def test_beam_search_streams_its_whole_result_at_once(tiny_pipe):
    sampler = kga.Beam(num_beams=2)
    pieces = list(tiny_pipe.stream("hello", max_new_tokens=5, sampler=sampler))
    assert "".join(p.text for p in pieces) == tiny_pipe.generate("hello", max_new_tokens=5, sampler=sampler)


def test_system_and_raw_use_the_template(tiny_preset):
    pipe = kga.load(str(tiny_preset), template="gemma3")
    assert pipe.format_prompt("Hi", system="Be brief.") == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    assert pipe.format_prompt("Hi", raw=True) == "Hi"
    templated = pipe.completions("Hi", max_new_tokens=2)[0]
    raw = pipe.completions("Hi", max_new_tokens=2, raw=True)[0]
    assert templated.prompt_tokens > raw.prompt_tokens


@pytest.mark.parametrize("bad", [[""], [3]])
def test_bad_stop_strings(tiny_pipe, bad):
    with pytest.raises(kga.SettingsError, match="Stop strings must be non-empty text"):
        tiny_pipe.generate("hi", stop=bad)
