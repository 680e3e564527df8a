import pytest

import keras_gemma_app as kga

PROMPTS = ["The capital of France", "hello"]

ALL_SAMPLERS = [
    kga.Greedy(),
    kga.TopK(k=3, seed=1),
    kga.TopP(p=0.9, seed=1),
    kga.Random(temperature=2.0, seed=1),
    kga.Beam(num_beams=2),
    kga.Contrastive(k=3, alpha=0.5),
]


def test_parts_are_exposed(tiny_pipe):
    import keras_hub

    assert isinstance(tiny_pipe.causal_lm, keras_hub.models.Gemma3CausalLM)
    assert isinstance(tiny_pipe.preprocessor, keras_hub.models.Gemma3CausalLMPreprocessor)
    assert tiny_pipe.preprocessor is tiny_pipe.causal_lm.preprocessor
    assert tiny_pipe.sampler == kga.Greedy()
    assert tiny_pipe.stop_token_ids == (1, tiny_pipe.token_id("<end_of_turn>"))


@pytest.mark.parametrize("sampler", ALL_SAMPLERS, ids=lambda s: s.name)
def test_every_sampler_generates_a_batch(tiny_pipe, sampler):
    results = tiny_pipe.completions(PROMPTS, sampler=sampler, max_new_tokens=6)
    assert [r.prompt for r in results] == PROMPTS
    for result in results:
        assert 1 <= len(result.token_ids) <= 6
        assert result.text == tiny_pipe.tokenizer.detokenize([list(result.token_ids)])[0]


def test_generate_returns_str_for_str_and_list_for_list(tiny_pipe):
    single = tiny_pipe.generate("hello", max_new_tokens=5)
    batch = tiny_pipe.generate(PROMPTS, max_new_tokens=5)
    assert isinstance(single, str) and isinstance(batch, list)
    assert batch[1] == single  # batching does not change greedy output


def test_max_new_tokens_caps_every_row(tiny_pipe):
    # The short prompt has room for more tokens in the padded batch; it must stop at 4.
    results = tiny_pipe.completions(["The capital of France is a city", "hi"], max_new_tokens=4)
    assert [len(r.token_ids) for r in results] == [4, 4]
    assert {r.finish_reason for r in results} == {"length"}


def test_stop_token_ends_generation(tiny_pipe):
    full = tiny_pipe.completions("hello", max_new_tokens=8)[0]
    stop = full.token_ids[3]
    first = full.token_ids.index(stop)
    stopped = tiny_pipe.completions("hello", max_new_tokens=8, stop_token_ids=[stop])[0]
    assert stopped.token_ids == full.token_ids[:first]
    assert stopped.finish_reason == "stop"


def test_swapping_the_sampler_keeps_the_model(tiny_pipe):
    model = tiny_pipe.causal_lm
    greedy = tiny_pipe.generate("hello", max_new_tokens=6)
    tiny_pipe.sampler = kga.Random(temperature=3.0, seed=5)
    try:
        sampled = tiny_pipe.generate("hello", max_new_tokens=6)
        assert tiny_pipe.causal_lm is model
        assert tiny_pipe.generate("hello", max_new_tokens=6) == sampled  # fixed seed: same text
        assert sampled != greedy
        # A per-call sampler overrides the default for that call only.
        assert tiny_pipe.generate("hello", max_new_tokens=6, sampler=kga.Greedy()) == greedy
        assert tiny_pipe.sampler == kga.Random(temperature=3.0, seed=5)
    finally:
        tiny_pipe.sampler = kga.Greedy()


def test_different_seeds_differ(tiny_pipe):
    texts = {tiny_pipe.generate("hello", max_new_tokens=8, sampler=kga.Random(temperature=3.0, seed=s)) for s in range(3)}
    assert len(texts) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompts": ""}, "Expected a non-empty prompt"),
        ({"prompts": ["ok", "   "]}, "Expected a non-empty prompt"),
        ({"prompts": []}, "Expected at least one prompt"),
        ({"prompts": "hi", "max_new_tokens": 0}, "max_new_tokens must be an integer >= 1, but is 0"),
        ({"prompts": "hi", "sampler": "greedy"}, "Expected sampler settings"),
    ],
)
def test_bad_generation_inputs(tiny_pipe, kwargs, message):
    with pytest.raises(kga.SettingsError, match=message):
        tiny_pipe.generate(**kwargs)


def test_the_model_pass_is_built_once_not_per_call(tiny_preset, monkeypatch):
    # Building it packs the weights on torch (seconds for an int4 model): a check per call cost that.
    from keras_gemma_app import decoding

    built = []
    build = decoding._model_adapter
    monkeypatch.setattr(decoding, "_model_adapter", lambda causal_lm: built.append(1) or build(causal_lm))
    pipe = kga.load(str(tiny_preset))
    for _ in range(3):
        pipe.generate("hello", max_new_tokens=2)
        list(pipe.stream("hello", max_new_tokens=2, sampler=kga.TopK(k=3, seed=1)))
        pipe.chat().send("hi", max_new_tokens=2)
    assert len(built) == 1
