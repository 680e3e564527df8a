"""Decoder: token streaming with compiled steps (keras_gemma_app.decoding)."""

import json
import pathlib
import sys
import time

import numpy as np
import pytest

import keras_gemma_app as kga
from keras_gemma_app.decoding import Decoder, Step, bucket, supports_sampler

from conftest import run_python

PROMPTS = ["The capital of France is Paris", "hello"]
WORKER = pathlib.Path(__file__).with_name("decoding_worker.py")


@pytest.fixture(scope="module")
def tiny(tiny_preset):
    """The tiny preset loaded for this module only (its causal LM gets recompiled here)."""
    return kga.load(str(tiny_preset))


@pytest.fixture(scope="module")
def decoder(tiny):
    return Decoder(tiny.causal_lm)


@pytest.fixture(scope="module")
def rows(tiny):
    return [[tiny.tokenizer.start_token_id, *np.asarray(tiny.tokenizer(p)).tolist()] for p in PROMPTS]


def keras_hub_greedy(causal_lm, inputs, rows, new_tokens):
    """KerasHub's own compiled greedy generate, no stop tokens: ``new_tokens`` per row."""
    from keras import ops

    causal_lm.compile(sampler="greedy")
    outputs = causal_lm.make_generate_function()(inputs, stop_token_ids=None)
    token_ids = ops.convert_to_numpy(outputs["token_ids"])
    return [token_ids[i, len(row): len(row) + new_tokens].tolist() for i, row in enumerate(rows)]


def collect(steps):
    """Per-row emitted tokens (stop tokens included), finish reasons, and the steps."""
    steps = list(steps)
    tokens = [[] for _ in steps[0].token_ids]
    reasons = [None] * len(tokens)
    for step in steps:
        for row in np.flatnonzero(step.emitted):
            tokens[row].append(int(step.token_ids[row]))
        for row, reason in enumerate(step.finish_reasons):
            reasons[row] = reason or reasons[row]
    return tokens, reasons, steps


def test_rows_differ_in_length(rows):
    assert len(rows[0]) > len(rows[1]) + 2


def test_greedy_stream_equals_keras_hub_generate(tiny, decoder, rows):
    inputs = tiny.preprocessor.generate_preprocess(PROMPTS, sequence_length=len(rows[0]) + 8)
    reference = keras_hub_greedy(tiny.causal_lm, inputs, rows, 8)
    tokens, reasons, _ = collect(decoder.stream(rows, max_new_tokens=8, sampler=kga.Greedy()))
    assert tokens == reference
    assert reasons == ["length", "length"]


def test_generate_matches_stream(decoder, rows):
    tokens, _, _ = collect(decoder.stream(rows, max_new_tokens=6, sampler=kga.Greedy()))
    decoded = decoder.generate(rows, max_new_tokens=6, sampler=kga.Greedy())
    assert [list(d.token_ids) for d in decoded] == tokens
    assert [d.finish_reason for d in decoded] == ["length", "length"]


def test_steps_describe_the_lockstep_batch(decoder, rows):
    tokens, _, steps = collect(decoder.stream(rows, max_new_tokens=4, sampler=kga.Greedy()))
    lag = len(rows[0]) - len(rows[1])
    # The short row starts at once; the long one after its remaining prompt tokens.
    assert len(steps) == 4 + lag
    assert [s.index for s in steps] == list(range(len(steps)))
    assert all(isinstance(s, Step) for s in steps)
    assert [bool(s.emitted[0]) for s in steps] == [False] * lag + [True] * 4
    assert [bool(s.emitted[1]) for s in steps] == [True] * 4 + [False] * lag
    assert [bool(s.finished[1]) for s in steps] == [False] * 4 + [True] * lag
    assert steps[3].finish_reasons[1] == "length"
    for step in steps:
        assert step.token_ids.shape == (2,)
        assert np.all(step.token_ids[~step.emitted] == 0)
    assert [len(t) for t in tokens] == [4, 4]


def test_max_new_tokens_caps_every_row(decoder, rows):
    for limit in (1, 3):
        decoded = decoder.generate(rows, max_new_tokens=limit, sampler=kga.Greedy())
        assert [len(d.token_ids) for d in decoded] == [limit, limit]


def test_stop_token_ends_its_row(decoder, rows):
    full, _, _ = collect(decoder.stream(rows[1:], max_new_tokens=8, sampler=kga.Greedy()))
    full = full[0]
    stop = next((t for t in full if t != full[0]), full[0])
    cut = full.index(stop)
    tokens, reasons, steps = collect(
        decoder.stream(rows[1:], max_new_tokens=8, sampler=kga.Greedy(), stop_token_ids=(stop,))
    )
    assert tokens == [full[: cut + 1]]  # the stop token is emitted, then the row ends
    assert reasons == ["stop"]
    assert steps[-1].finish_reasons == ("stop",)
    assert len(steps) == cut + 1
    decoded = decoder.generate(rows[1:], max_new_tokens=8, sampler=kga.Greedy(), stop_token_ids=(stop,))
    assert decoded[0].token_ids == tuple(full[:cut]) and decoded[0].finish_reason == "stop"


def test_a_stopped_row_waits_for_the_others(decoder, rows):
    alone, _, _ = collect(decoder.stream(rows[1:], max_new_tokens=6, sampler=kga.Greedy()))
    stop = alone[0][0]
    tokens, reasons, steps = collect(
        decoder.stream(rows, max_new_tokens=6, sampler=kga.Greedy(), stop_token_ids=(stop,))
    )
    assert tokens[1] == [stop] and reasons[1] == "stop"
    assert all(s.finished[1] for s in steps[1:])
    assert reasons[0] in ("stop", "length")


@pytest.mark.parametrize(
    "sampler",
    [kga.TopK(k=5, temperature=2.0, seed=3), kga.TopP(p=0.95, temperature=2.0, seed=3), kga.Random(temperature=2.0, seed=3)],
    ids=lambda s: s.name,
)
def test_a_seed_gives_the_same_tokens_every_call(decoder, rows, sampler):
    first = decoder.generate(rows, max_new_tokens=10, sampler=sampler)
    second = decoder.generate(rows, max_new_tokens=10, sampler=sampler)
    assert first == second


def test_different_seeds_differ(decoder, rows):
    one = decoder.generate(rows, max_new_tokens=10, sampler=kga.Random(temperature=3.0, seed=1))
    two = decoder.generate(rows, max_new_tokens=10, sampler=kga.Random(temperature=3.0, seed=2))
    assert one != two


def test_no_seed_differs_between_calls(decoder, rows):
    sampler = kga.Random(temperature=3.0)
    assert decoder.generate(rows, max_new_tokens=10, sampler=sampler) != decoder.generate(
        rows, max_new_tokens=10, sampler=sampler
    )


def test_interleaved_seeded_streams_stay_reproducible(decoder, rows):
    sampler = kga.TopK(k=5, temperature=2.0, seed=7)
    alone = [list(d.token_ids) for d in decoder.generate(rows, max_new_tokens=8, sampler=sampler)]
    first = decoder.stream(rows, max_new_tokens=8, sampler=sampler)
    second = decoder.stream(rows, max_new_tokens=8, sampler=sampler)
    pairs = list(zip(first, second))
    assert collect(p[0] for p in pairs)[0] == alone
    assert collect(p[1] for p in pairs)[0] == alone


def test_zero_temperature_is_greedy(decoder, rows):
    greedy = decoder.generate(rows, max_new_tokens=5, sampler=kga.Greedy())
    assert decoder.generate(rows, max_new_tokens=5, sampler=kga.TopK(k=3, temperature=0)) == greedy


def test_steps_arrive_before_the_last_token_exists(decoder, rows):
    decoder.generate(rows[1:], max_new_tokens=24, sampler=kga.Greedy())  # compile first
    start = time.perf_counter()
    steps = decoder.stream(rows[1:], max_new_tokens=24, sampler=kga.Greedy())
    first = next(steps)
    received = time.perf_counter() - start
    rest = list(steps)
    assert first.index == 0 and len(rest) == 23
    elapsed = [first.elapsed] + [s.elapsed for s in rest]
    assert elapsed == sorted(elapsed)
    assert rest[-1].elapsed > received  # the first step was in hand before the last token was made


def test_abandoning_a_stream_leaves_the_decoder_usable(decoder, rows):
    steps = decoder.stream(rows, max_new_tokens=20, sampler=kga.Greedy())
    next(steps)
    steps.close()
    assert len(decoder.generate(rows, max_new_tokens=3, sampler=kga.Greedy())[0].token_ids) == 3


def test_bad_arguments_raise_clear_errors(decoder, rows):
    with pytest.raises(kga.SettingsError, match="max_new_tokens"):
        decoder.stream(rows, max_new_tokens=0, sampler=kga.Greedy())
    with pytest.raises(kga.SettingsError, match="at least one token"):
        decoder.stream([[]], max_new_tokens=2, sampler=kga.Greedy())
    with pytest.raises(kga.SettingsError, match="prompt tokens to be token ids"):
        decoder.stream([[2, -1]], max_new_tokens=2, sampler=kga.Greedy())
    with pytest.raises(kga.SettingsError, match="stop_token_ids to be token ids"):
        decoder.stream(rows, max_new_tokens=2, sampler=kga.Greedy(), stop_token_ids=["1"])
    with pytest.raises(kga.SettingsError, match="sampler settings"):
        decoder.stream(rows, max_new_tokens=2, sampler="greedy")
    with pytest.raises(NotImplementedError, match="beam"):
        decoder.stream(rows, max_new_tokens=2, sampler=kga.Beam(num_beams=2))
    assert not supports_sampler(kga.Contrastive()) and supports_sampler(kga.TopP())


def test_bucket_rounds_lengths_up():
    assert [bucket(n) for n in (1, 48, 49, 64, 65, 70, 1024, 1025, 3000)] == [48, 48, 64, 64, 128, 128, 1024, 2048, 3072]


def test_import_does_not_import_keras():
    done = run_python("import sys, keras_gemma_app.decoding; print('keras' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("generation", [1, 2])
def test_gemma_1_and_2_models_stream_like_generate(generation):
    import keras
    import keras_hub

    keras.utils.set_random_seed(3)
    extra = {}
    if generation == 2:
        extra = dict(
            query_head_dim_normalize=False, use_post_ffw_norm=True, use_post_attention_norm=True,
            final_logit_soft_cap=30.0, attention_logit_soft_cap=50.0,
            use_sliding_window_attention=True, sliding_window_size=8,
        )
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=97, num_layers=2, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32, head_dim=8, dtype="float32", **extra,
    )
    embeddings = backbone.token_embedding.embeddings
    embeddings.assign(keras.ops.convert_to_numpy(embeddings) * 3.0)
    causal_lm = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    rows = [[2, 5, 9, 14, 20, 31, 44], [2, 7, 11]]
    length = len(rows[0]) + 12
    token_ids = np.zeros((2, length), "int32")
    for i, row in enumerate(rows):
        token_ids[i, : len(row)] = row
    inputs = {"token_ids": token_ids, "padding_mask": token_ids != 0}
    reference = keras_hub_greedy(causal_lm, inputs, rows, 12)
    decoded = Decoder(causal_lm).generate(rows, max_new_tokens=12, sampler=kga.Greedy())
    assert [list(d.token_ids) for d in decoded] == reference


@pytest.mark.slow
def test_real_model_greedy_stream_equals_generate_on_every_backend(real_preset, tmp_path):
    from conftest import run_concurrently

    # (backend, dtype, adapter); torch bfloat16 is held to KerasHub in test_torch_gemma3.
    cases = [("jax", "float32", "_Gemma3Text"), ("tensorflow", "float32", "XlaGemma3"),
             ("torch", "float32", "TorchGemma3"), ("tensorflow", "bfloat16", "XlaGemma3"),
             ("jax", "bfloat16", "_Gemma3Text")]
    runs = run_concurrently([[sys.executable, str(WORKER), backend, str(real_preset),
                              str(tmp_path / f"{backend}-{dtype}.json"), dtype]
                             for backend, dtype, _ in cases])
    for (backend, dtype, adapter), done in zip(cases, runs):
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads((tmp_path / f"{backend}-{dtype}.json").read_text())
        assert result["backend"] == backend
        # Each backend's fastest path: XLA-friendly keras ops on TensorFlow (compiled with XLA in
        # float32, a graph in bfloat16), plain torch on torch.
        assert result["adapter"] == adapter, backend
        if backend == "tensorflow":
            assert result["xla"] == (dtype == "float32"), dtype
        # JAX: the prefill multiplies through float32 kernel copies (in float32, of the query kernels).
        assert result["float32_kernels"] == (backend == "jax"), (backend, dtype)
        assert result["streamed"] == result["reference"], (backend, dtype)
        assert [len(tokens) for tokens in result["streamed"]] == [24, 24]


def test_torch_first_largest_is_argmax_ties_included():
    import torch

    from keras_gemma_app.decoding import _ARGMAX_BLOCK, torch_first_largest

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 64 * _ARGMAX_BLOCK, generator=generator)
    # Row 1: its largest value twice, in two blocks; row 2: twice in one block; row 3: at the very end.
    logits[1, 5 * _ARGMAX_BLOCK + 7] = logits[1, 40 * _ARGMAX_BLOCK + 1] = 100.0
    logits[2, 9 * _ARGMAX_BLOCK + 300] = logits[2, 9 * _ARGMAX_BLOCK + 30] = 50.0
    logits[3, -1] = 80.0
    found = torch_first_largest(logits)
    assert found.tolist() == torch.argmax(logits, dim=-1).tolist()
    assert found[1:].tolist() == [5 * _ARGMAX_BLOCK + 7, 9 * _ARGMAX_BLOCK + 30, 64 * _ARGMAX_BLOCK - 1]
