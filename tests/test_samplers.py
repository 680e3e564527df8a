import dataclasses

import pytest

import keras_gemma_app as kga
from keras_gemma_app.samplers import sampler_from_options


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: kga.TopK(k=0), "top-k `k` must be an integer >= 1, but is 0"),
        (lambda: kga.TopK(k=2.5), "but is 2.5"),
        (lambda: kga.TopP(p=0), r"top-p `p` must be in the interval \(0, 1\], but is 0"),
        (lambda: kga.TopP(p=1.01), "but is 1.01"),
        (lambda: kga.TopP(p=0.5, k=0), "top-k `k` must be"),
        (lambda: kga.Random(temperature=-0.1), "temperature must be a number >= 0"),
        (lambda: kga.TopK(temperature=-1), "temperature must be"),
        (lambda: kga.Random(seed=-3), "seed must be an integer >= 0"),
        (lambda: kga.Beam(num_beams=0), "num_beams must be an integer >= 1"),
        (lambda: kga.Contrastive(alpha=1.5), r"alpha must be in the interval \[0, 1\]"),
        (lambda: kga.Contrastive(k=0), "top-k `k`"),
    ],
)
def test_out_of_range_settings_are_rejected(make, message):
    with pytest.raises(kga.SettingsError, match=message):
        make()


def test_settings_are_frozen_and_keyword_only():
    sampler = kga.TopP(p=0.9, temperature=0.7, seed=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sampler.p = 0.5
    with pytest.raises(TypeError):
        kga.TopK(3)
    assert sampler == kga.TopP(p=0.9, temperature=0.7, seed=1)
    assert sampler.describe() == "top_p(p=0.9, temperature=0.7, seed=1)"


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, kga.Greedy()),
        ({"top_p": 0.8}, kga.TopP(p=0.8)),
        ({"top_p": 0.8, "top_k": 4}, kga.TopP(p=0.8, k=4)),
        ({"top_k": 7, "seed": 3}, kga.TopK(k=7, seed=3)),
        ({"temperature": 0.5}, kga.Random(temperature=0.5)),
        ({"temperature": 0}, kga.Greedy()),
        ({"name": "beam", "num_beams": 3}, kga.Beam(num_beams=3)),
        ({"name": "contrastive", "top_k": 4, "alpha": 0.3}, kga.Contrastive(k=4, alpha=0.3)),
        ({"name": "random", "seed": 9}, kga.Random(seed=9)),
    ],
)
def test_flags_build_the_same_objects_as_the_api(options, expected):
    name = options.pop("name", None)
    assert sampler_from_options(name, **options) == expected


def test_an_option_the_sampler_does_not_take_is_an_error():
    with pytest.raises(kga.SettingsError, match="--top-p does not apply to the greedy sampler"):
        sampler_from_options("greedy", top_p=0.5)
    with pytest.raises(kga.SettingsError, match="--seed does not apply to the beam sampler"):
        sampler_from_options("beam", seed=1)
    with pytest.raises(kga.SettingsError, match="Unknown sampler 'nucleus'"):
        sampler_from_options("nucleus")


def test_build_returns_keras_hub_samplers():
    import keras_hub

    assert isinstance(kga.Greedy().build(), keras_hub.samplers.GreedySampler)
    top_k = kga.TopK(k=3, temperature=0.5, seed=1).build()
    assert isinstance(top_k, keras_hub.samplers.TopKSampler)
    assert (top_k.k, top_k.temperature, top_k.seed) == (3, 0.5, 1)
    top_p = kga.TopP(p=0.8, k=10).build()
    assert isinstance(top_p, keras_hub.samplers.TopPSampler) and (top_p.p, top_p.k) == (0.8, 10)
    assert isinstance(kga.Random(temperature=2.0).build(), keras_hub.samplers.RandomSampler)
    assert isinstance(kga.Beam(num_beams=2).build(), keras_hub.samplers.BeamSampler)
    assert isinstance(kga.Contrastive(k=2, alpha=0.1).build(), keras_hub.samplers.ContrastiveSampler)
    # Temperature 0 means greedy for every random sampler.
    assert isinstance(kga.TopP(p=0.5, temperature=0).build(), keras_hub.samplers.GreedySampler)
