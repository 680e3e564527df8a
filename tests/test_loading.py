import pytest

import keras_gemma_app as kga


def test_load_local_preset_with_dtype(tiny_preset, backend):
    pipe = kga.load(str(tiny_preset), dtype="bfloat16", sampler=kga.TopK(k=2, seed=0))
    assert pipe.backend == backend
    assert pipe.causal_lm.dtype_policy.compute_dtype == "bfloat16"
    assert pipe.sampler == kga.TopK(k=2, seed=0)
    assert pipe.generate("hello", max_new_tokens=3)


def test_model_comes_from_environment(tiny_preset, monkeypatch):
    monkeypatch.setenv("KERAS_GEMMA_MODEL", str(tiny_preset))
    assert kga.load().model == str(tiny_preset)


@pytest.mark.parametrize(
    "model, kwargs, error, message",
    [
        ("gemma3_instrct_1b", {}, kga.ModelNotFoundError, "Did you mean gemma3_instruct_1b"),
        ("bert_base_en", {}, kga.ModelNotFoundError, "not a Gemma model"),
        ("kaggle://keras/gemma3", {}, kga.InvalidModelError, "Malformed Kaggle handle"),
        ("./no/such/dir", {}, kga.ModelNotFoundError, "No such model directory"),
        ("gemma3_instruct_1b", {"dtype": "float8"}, kga.SettingsError, "Unknown dtype 'float8': expected one of float32, bfloat16, float16"),
        ("gemma3_instruct_1b", {"backend": "theano"}, kga.BackendError, "Unknown backend 'theano'"),
    ],
)
def test_bad_load_inputs(model, kwargs, error, message):
    with pytest.raises(error, match=message):
        kga.load(model, **kwargs)
