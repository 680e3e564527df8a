import shutil

import h5py
import numpy as np
import pytest

import keras_gemma_app as kga
from keras_gemma_app import random_init


def _dense_kernel():
    import keras

    layer = keras.layers.Dense(8, kernel_initializer="glorot_uniform")
    layer.build((None, 16))
    return keras.ops.convert_to_numpy(layer.kernel.value)


def test_random_initializers_give_zeros_inside_the_block_only(backend):
    with random_init.skipped():
        assert not np.any(_dense_kernel())
    assert np.any(_dense_kernel())
    with pytest.raises(RuntimeError), random_init.skipped():
        raise RuntimeError("failed while building")
    assert np.any(_dense_kernel())


def test_loaded_weights_are_the_preset_s(tiny_preset, backend):
    import keras
    import keras_hub

    pipe = kga.load(str(tiny_preset))
    plain = keras_hub.models.CausalLM.from_preset(str(tiny_preset))
    ours = {v.path: keras.ops.convert_to_numpy(v.value) for v in pipe.causal_lm.weights}
    theirs = {v.path: keras.ops.convert_to_numpy(v.value) for v in plain.weights}
    assert ours.keys() == theirs.keys()
    for path, value in theirs.items():
        np.testing.assert_array_equal(ours[path], value, err_msg=path)
    query = pipe.causal_lm.backbone.transformer_layers[0].attention.query_dense.kernel
    assert np.any(ours[query.path])  # the preset's random values, not the skipped zeros


def test_a_preset_missing_a_weight_is_refused_not_zero_filled(tiny_preset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_preset, broken)
    with h5py.File(broken / "model.weights.h5", "a") as weights:
        del weights["layers/gemma3_decoder_block/attention/query_dense/vars/0"]
    with pytest.raises(kga.InvalidModelError, match="could not be loaded"):
        kga.load(str(broken))
