"""Float32 kernel copies for the JAX prefill: the same values, taken from the copies."""

import contextlib
import threading
import weakref

import numpy as np
import pytest

import keras_gemma_app as kga
from keras_gemma_app import float32_kernels
from keras_gemma_app.decoding import Decoder

from test_decoding import keras_hub_greedy


@pytest.fixture(scope="module")
def tiny_bfloat16(tiny_preset, backend):
    if backend != "jax":
        pytest.skip("float32 kernel copies are for JAX")
    return kga.load(str(tiny_preset), dtype="bfloat16").causal_lm


def _forward(causal_lm, kernels):
    """A jitted forward pass to logits at every position; with ``kernels``, through the copies."""
    import jax
    from keras import ops

    backbone = causal_lm.backbone

    def run(copies, token_ids, padding_mask):
        with kernels.computing(copies) if kernels is not None else contextlib.nullcontext():
            hidden = backbone({"token_ids": token_ids, "padding_mask": padding_mask})
            return ops.cast(backbone.token_embedding(hidden, reverse=True), "float32")

    return jax.jit(run)


def _inputs():
    token_ids = np.array([[2, 17, 33, 95, 140, 7, 61, 88, 250, 12, 5, 301, 44, 9, 120, 66]], "int32")
    return token_ids, np.ones_like(token_ids, dtype=bool)


def test_products_through_the_copies_equal_the_bfloat16_ones_bit_for_bit(tiny_bfloat16):
    kernels = float32_kernels.Float32Kernels(tiny_bfloat16.backbone)
    # Every projection: query, key, value, output and the three feed-forward kernels, per layer.
    assert len(kernels.layers) == 7 * tiny_bfloat16.backbone.num_layers
    assert all(value.dtype == "float32" for value in kernels.values)
    token_ids, mask = _inputs()
    plain = np.asarray(_forward(tiny_bfloat16, None)([], token_ids, mask))
    copied = np.asarray(_forward(tiny_bfloat16, kernels)(kernels.values, token_ids, mask))
    assert np.array_equal(plain, copied)
    # The products do read the copies: scaled copies move the logits.
    scaled = [value * 1.5 for value in kernels.values]
    moved = np.asarray(_forward(tiny_bfloat16, kernels)(scaled, token_ids, mask))
    assert not np.array_equal(plain, moved)


def test_float16_products_through_the_copies_equal_too(tiny_preset, backend):
    if backend != "jax":
        pytest.skip("float32 kernel copies are for JAX")
    causal_lm = kga.load(str(tiny_preset), dtype="float16").causal_lm
    kernels = float32_kernels.Float32Kernels(causal_lm.backbone)
    assert len(kernels.layers) == 7 * causal_lm.backbone.num_layers
    token_ids, mask = _inputs()
    plain = np.asarray(_forward(causal_lm, None)([], token_ids, mask))
    assert np.array_equal(plain, np.asarray(_forward(causal_lm, kernels)(kernels.values, token_ids, mask)))


def test_decoder_prefills_through_the_copies_with_keras_hub_tokens(tiny_bfloat16):
    rows = [[2, 5, 9, 14, 20, 31, 44], [2, 7, 11]]
    length = len(rows[0]) + 10
    token_ids = np.zeros((2, length), "int32")
    for i, row in enumerate(rows):
        token_ids[i, : len(row)] = row
    reference = keras_hub_greedy(tiny_bfloat16, {"token_ids": token_ids, "padding_mask": token_ids != 0}, rows, 10)
    decoder = Decoder(tiny_bfloat16)
    decoded = decoder.generate(rows, max_new_tokens=10, sampler=kga.Greedy())
    assert [list(d.token_ids) for d in decoded] == reference
    assert [program._kernels is not None for program in decoder._programs.values()] == [True]


def test_copies_are_kept_in_the_order_the_product_reads_them(tiny_bfloat16):
    kernels = float32_kernels.Float32Kernels(tiny_bfloat16.backbone)
    by_equation = {layer.equation: (layer, value) for layer, value in zip(kernels.layers, kernels.values)}
    # The query kernel (heads, hidden, head_dim) is kept hidden-major; the others as they are.
    assert float32_kernels._product_order("btd,ndh->btnh") == (1, 0, 2)
    assert float32_kernels._product_order("btnh,nhd->btd") == (0, 1, 2)
    assert float32_kernels._product_order("btf,fd->btd") == (0, 1)
    layer, value = by_equation["btd,ndh->btnh"]
    heads, hidden, head_dim = layer.kernel.shape
    assert tuple(value.shape) == (hidden, heads, head_dim)


def test_programs_and_decoders_of_one_model_share_one_set_of_copies(tiny_bfloat16):
    first, second = Decoder(tiny_bfloat16), Decoder(tiny_bfloat16)
    first.generate([[2, 5, 9]], max_new_tokens=2, sampler=kga.Greedy())
    first.generate([[2, 5, 9]], max_new_tokens=2, sampler=kga.TopK(k=5, seed=1))
    second.generate([[2, 5, 9]], max_new_tokens=2, sampler=kga.Greedy())
    programs = [*first._programs.values(), *second._programs.values()]
    assert len(programs) == 3
    assert all(program._kernels is programs[0]._kernels is not None for program in programs)


def test_other_threads_keep_the_layers_own_products(tiny_bfloat16):
    kernels = float32_kernels.Float32Kernels(tiny_bfloat16.backbone)
    layer = kernels.layers[0]
    x = np.linspace(-1, 1, 2 * layer.kernel.shape[0] * 3).reshape(2, 3, -1)[..., : layer.kernel.shape[0]]
    x = x.astype("float32")
    before = np.asarray(layer(x)).astype("float32")
    wrong = [value * 0 for value in kernels.values]
    seen = {}
    with kernels.computing(wrong):
        assert not np.asarray(layer(x)).astype("float32").any()  # this thread: the (zero) copies
        thread = threading.Thread(target=lambda: seen.update(out=np.asarray(layer(x)).astype("float32")))
        thread.start()
        thread.join()
    assert np.array_equal(seen["out"], before)
    assert np.array_equal(np.asarray(layer(x)).astype("float32"), before)  # and after the block


def test_copies_follow_a_kernel_assigned_later(tiny_bfloat16):
    kernels = float32_kernels.Float32Kernels(tiny_bfloat16.backbone)
    first = kernels.values
    assert kernels.values is first  # made once
    layer = kernels.layers[0]
    original = np.asarray(layer.kernel.value)
    try:
        layer.kernel.assign(original * 2)
        order = float32_kernels._product_order(layer.equation)
        expected = np.transpose(np.asarray(layer.kernel.value).astype("float32"), order)
        assert np.array_equal(np.asarray(kernels.values[0]), expected)
    finally:
        layer.kernel.assign(original)


def test_float32_weights_copy_only_the_kernels_xla_would_transpose(tiny_pipe, backend):
    if backend != "jax":
        pytest.skip("float32 kernel copies are for JAX")
    causal_lm = tiny_pipe.causal_lm
    kernels = float32_kernels.for_prefill(causal_lm)
    # The query kernels (heads, hidden, head_dim); key/value kernels of one head move nothing.
    assert [layer.name for layer in kernels.layers] == ["query"] * causal_lm.backbone.num_layers
    assert causal_lm.backbone.num_query_heads > 1
    token_ids, mask = _inputs()
    plain = np.asarray(_forward(causal_lm, None)([], token_ids, mask))
    assert np.array_equal(plain, np.asarray(_forward(causal_lm, kernels)(kernels.values, token_ids, mask)))
    moved = np.asarray(_forward(causal_lm, kernels)([v * 1.5 for v in kernels.values], token_ids, mask))
    assert not np.array_equal(plain, moved)


def test_no_copies_for_short_ram(tiny_bfloat16, monkeypatch):
    from keras_gemma_app import memory_guard
    from keras_gemma_app.decoding import _model_adapter

    model = _model_adapter(tiny_bfloat16)
    monkeypatch.setattr(float32_kernels, "_shared", weakref.WeakKeyDictionary())  # none made yet
    kernels = float32_kernels.for_prefill(model)
    assert kernels is not None and kernels.nbytes == 4 * sum(int(np.prod(l.kernel.shape)) for l in kernels.layers)
    assert float32_kernels.for_prefill(model) is kernels  # made once per model
    monkeypatch.setattr(float32_kernels, "_shared", weakref.WeakKeyDictionary())
    monkeypatch.setattr(memory_guard, "ram", lambda: (8 << 30, int(kernels.nbytes / float32_kernels.RAM_SHARE) - 1))
    assert float32_kernels.for_prefill(model) is None
