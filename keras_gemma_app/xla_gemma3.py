"""Gemma 3 text decoding in keras ops, shaped so that XLA compiles one decode step for every position.

KerasHub's Gemma 3 attention cuts its sliding-window mask out of a square
matrix with ``slice`` at the cache position; XLA fixes that position into the
program, so TensorFlow with XLA compiled every step again. Here the masks
are comparisons of position ranges and the cache is written through a
one-position mask, so the step compiles once and runs as one XLA program:
float32 steps on TensorFlow about 25% faster than KerasHub's own.

Otherwise it is KerasHub's ``Gemma3Backbone`` computation (text, with a
key/value cache), op for op, on the Keras variables themselves. A test holds it
to KerasHub's greedy tokens on the real model.

Weights quantized by Keras (int8, int4) are dequantized inside the compiled
step, weights only: Keras's own int8 layers also round every activation to
8 bits and multiply int8 by int8, which XLA runs at under 1 GB/s on a CPU.

bfloat16 weights (float, not quantized) run as a TensorFlow graph, not XLA:
XLA:CPU converts every bfloat16 weight to float32 at every call of a step,
while the graph hands them to oneDNN as they are. Gemma 3 270M on 2 cores:
16–18 tokens/s against 13.5–14 for KerasHub's own layers in the same kind of
graph, with KerasHub's tokens.
"""

from __future__ import annotations

import numpy as np

from keras_gemma_app.quantization import quantization_mode, quantization_of, unpack_int4


def _rms_norm(x, scale, epsilon: float, dtype):
    from keras import ops

    x = ops.cast(x, "float32")
    scale = ops.cast(scale, "float32")
    var = ops.mean(ops.square(x), axis=-1, keepdims=True)
    normed = x * ops.reciprocal(ops.sqrt(var + epsilon))
    normed = normed * (1 + scale)
    return ops.cast(normed, dtype)


def _rope(x, positions, wavelength: float, scaling: float, dtype):
    """KerasHub's RotaryEmbedding (linear scaling) at ``positions`` (float32, shape (t,)); x: (b, t, heads, h)."""
    from keras import ops

    head_dim = x.shape[-1]
    idx = ops.arange(0, head_dim, 2, dtype="float32")
    freq_range = idx / ops.cast(head_dim, "float32")
    inverse = ops.power(ops.cast(wavelength, "float32"), -freq_range)
    inverse = inverse / ops.cast(scaling, "float32")
    freq = ops.einsum("bi,j->bij", positions[None, :], inverse)
    embedding = ops.concatenate([freq, freq], axis=-1)[:, :, None, :]
    cos = ops.cast(ops.cos(embedding), dtype)
    sin = ops.cast(ops.sin(embedding), dtype)
    x1, x2 = ops.split(x, 2, axis=-1)
    half = ops.concatenate([-x2, x1], axis=-1)
    return (x * cos) + (half * sin)


def _dense_kernel(dense, dtype):
    """A dense layer's kernel in ``dtype``: Keras's dequantization for int8/int4 layers."""
    from keras import ops

    mode = quantization_mode(dense)
    if mode is None:
        return dense.kernel
    if mode == "int8":
        scale = dense._adjust_scale_for_dequant(dense.kernel_scale)
        return ops.cast(ops.divide(ops.cast(dense._kernel, "float32"), ops.cast(scale, "float32")), dtype)
    values = ops.cast(unpack_int4(dense._kernel, dense._int4_unpacked_column_size), "float32")
    scale = ops.cast(dense.kernel_scale, "float32")
    if getattr(dense, "_int4_block_size", None) in (None, -1):
        flat = values / scale
    else:
        groups = ops.cast(dense.g_idx, "int32")
        zero = ops.cast(ops.take(dense.kernel_zero, groups, axis=0), "float32")
        flat = (values - zero) * ops.take(scale, groups, axis=0)
    return ops.reshape(ops.cast(flat, dtype), tuple(dense.original_kernel_shape))


def _embedding_rows(embedding, token_ids, dtype):
    from keras import ops

    mode = quantization_mode(embedding)
    if mode is None:
        return ops.cast(ops.take(embedding.embeddings, token_ids, axis=0), dtype)
    scale = ops.cast(ops.take(embedding.embeddings_scale, token_ids, axis=0), "float32")
    rows = ops.take(embedding._embeddings, token_ids, axis=0)
    if mode == "int8":
        return ops.cast(ops.cast(rows, "float32") / scale[..., None], dtype)
    values = ops.cast(unpack_int4(rows, embedding.output_dim), "float32")
    if getattr(embedding, "_int4_block_size", None) in (None, -1):
        return ops.cast(values / scale[..., None], dtype)
    groups = ops.cast(embedding.g_idx, "int32")
    zero = ops.cast(ops.take(ops.take(embedding.embeddings_zero, token_ids, axis=0), groups, axis=-1), "float32")
    return ops.cast((values - zero) * ops.take(scale, groups, axis=-1), dtype)


def _embedding_logits(embedding, hidden, dtype):
    """``hidden @ embeddings.T`` with a quantized embedding table, then the soft cap."""
    from keras import ops

    mode = quantization_mode(embedding)
    if mode == "int8":
        # One scale per vocabulary row: divide after the product.
        logits = ops.matmul(hidden, ops.transpose(ops.cast(embedding._embeddings, dtype)))
        logits = ops.cast(logits, "float32") / ops.cast(embedding.embeddings_scale, "float32")
    else:
        table = _embedding_rows(embedding, ops.arange(embedding.input_dim), dtype)
        logits = ops.cast(ops.matmul(hidden, ops.transpose(table)), "float32")
    cap = embedding.logit_soft_cap
    if cap is not None:
        logits = ops.tanh(logits / cap) * cap
    return ops.cast(logits, dtype)


class XlaGemma3:
    """A cached forward pass of a KerasHub ``Gemma3CausalLM`` (text) in keras ops, XLA-friendly.

    The interface of the decoder's model adapters: :meth:`empty_cache`,
    :meth:`forward` and :meth:`logits`.
    """

    uses_update_mask = True

    def __init__(self, causal_lm):
        backbone = causal_lm.backbone
        self.causal_lm = causal_lm
        self.backbone = backbone
        self.dtype = str(causal_lm.compute_dtype)
        # Whether to compile the steps with XLA (see the module's note on bfloat16).
        self.xla_friendly = quantization_of(causal_lm) is not None or self.dtype == "float32"

    def empty_cache(self, batch: int, length: int):
        from keras import ops

        backbone = self.backbone
        shape = (batch, length, backbone.num_key_value_heads, backbone.head_dim)
        return tuple((ops.zeros(shape, dtype=self.dtype), ops.zeros(shape, dtype=self.dtype))
                     for _ in range(backbone.num_layers))

    def forward(self, token_ids, cache, index, padding_mask=None, update_mask=None):
        from keras import ops

        backbone = self.backbone
        batch, length = ops.shape(token_ids)[0], token_ids.shape[1]
        cache_length = cache[0][0].shape[1]
        x = _embedding_rows(backbone.token_embedding, ops.cast(token_ids, "int32"), self.dtype)
        x = x * ops.cast(ops.sqrt(backbone.hidden_dim), x.dtype)
        positions = ops.arange(length, dtype="float32") + ops.cast(index, "float32")
        keys = ops.arange(cache_length, dtype="float32")
        causal = ops.expand_dims(positions[:, None] >= keys[None, :], 0)
        mask = ops.cast(ops.broadcast_to(causal, (batch, length, cache_length)), "int32")
        if padding_mask is not None:
            mask = ops.minimum(ops.cast(ops.expand_dims(padding_mask, 1), "int32"), mask)
        no_attended = ops.all(ops.equal(mask, 0), axis=-1, keepdims=True)[..., None]
        caches = []
        for block, (key_cache, value_cache) in zip(backbone.transformer_layers, cache):
            attention = block.attention
            layer_mask = mask > 0
            if attention.use_sliding_window_attention:
                # KerasHub: triu(ones, 1 - W) * tril(ones, W - 1), rows from the cache position.
                offset = keys[None, :] - positions[:, None]
                window = attention.sliding_window_size - 1
                band = ops.logical_and(offset >= -window, offset <= window)
                layer_mask = ops.logical_and(layer_mask, band[None])
            x, layer_cache = self._block(block, x, key_cache, value_cache, index, positions, layer_mask,
                                         no_attended, update_mask)
            caches.append(layer_cache)
        return _rms_norm(x, backbone.layer_norm.scale, backbone.layer_norm.epsilon, self.dtype), tuple(caches)

    def _write(self, cache, update, index, update_mask):
        """``cache`` with ``update`` written at ``index`` (where ``update_mask`` allows)."""
        from keras import ops

        length = update.shape[1]
        if update_mask is None:
            return ops.slice_update(cache, [0, index, 0, 0], update)
        # One new position per row, written through a mask over the cache positions.
        if length != 1:
            raise ValueError("An update mask comes with one new position per row.")
        here = ops.equal(ops.arange(cache.shape[1]), index)[None, :]
        write = ops.logical_and(here, ops.cast(update_mask, "bool"))[:, :, None, None]
        return ops.where(write, update, cache)

    def _block(self, block, x, key_cache, value_cache, index, positions, mask, no_attended, update_mask):
        from keras import ops

        attention = block.attention
        epsilon = block.layer_norm_epsilon
        dtype = self.dtype
        wavelength = float(attention.rope_layer.max_wavelength)
        scaling = float(attention.rope_layer.scaling_factor)
        normalized = _rms_norm(x, block.pre_attention_norm.scale, epsilon, dtype)
        query = ops.einsum("btd,ndh->btnh", normalized, _dense_kernel(attention.query_dense, dtype))
        if attention.use_query_key_norm:
            query = _rms_norm(query, attention.query_norm.scale, epsilon, dtype)
        query = _rope(query, positions, wavelength, scaling, dtype)
        key_update = ops.einsum("bsd,kdh->bskh", normalized, _dense_kernel(attention.key_dense, dtype))
        if attention.use_query_key_norm:
            key_update = _rms_norm(key_update, attention.key_norm.scale, epsilon, dtype)
        key_update = _rope(key_update, positions, wavelength, scaling, dtype)
        value_update = ops.einsum("bsd,kdh->bskh", normalized, _dense_kernel(attention.value_dense, dtype))
        key = self._write(key_cache, key_update, index, update_mask)
        value = self._write(value_cache, value_update, index, update_mask)

        if attention.query_head_dim_normalize:
            scale = 1 / np.sqrt(attention.head_dim)
        else:
            scale = 1 / np.sqrt(attention.hidden_dim // attention.num_query_heads)
        query = query * ops.cast(scale, dtype=query.dtype)
        b, t, h = ops.shape(query)[0], query.shape[1], attention.head_dim
        groups = attention.num_query_heads // attention.num_key_value_heads
        query = ops.reshape(query, (b, t, attention.num_key_value_heads, groups, h))
        logits = ops.einsum("btkgh,bskh->bkgts", query, key)
        if attention.logit_soft_cap is not None:
            logits = ops.multiply(ops.tanh(ops.divide(logits, attention.logit_soft_cap)), attention.logit_soft_cap)
        softmax_mask = mask[:, None, None, :, :]
        scores = ops.where(softmax_mask, ops.cast(logits, "float32"), -1e9)
        scores = ops.softmax(scores, axis=-1)
        scores = ops.cast(ops.where(softmax_mask, scores, 0.0), logits.dtype)
        attended = ops.reshape(ops.einsum("bkgts,bskh->btkgh", scores, value), (b, t, attention.num_query_heads, h))
        attended = ops.where(no_attended, ops.zeros_like(attended), attended)
        out = ops.einsum("btnh,nhd->btd", attended, _dense_kernel(attention.output_dense, dtype))
        if block.use_post_attention_norm:
            out = _rms_norm(out, block.post_attention_norm.scale, epsilon, dtype)
        attention_x = x + out
        normalized = _rms_norm(attention_x, block.pre_ffw_norm.scale, epsilon, dtype)
        x1 = ops.einsum("btd,df->btf", normalized, _dense_kernel(block.gating_ffw, dtype))
        x2 = ops.einsum("btd,df->btf", normalized, _dense_kernel(block.gating_ffw_2, dtype))
        hidden = ops.gelu(x1, approximate=True) * x2
        out = ops.einsum("btf,fd->btd", hidden, _dense_kernel(block.ffw_linear, dtype))
        if block.use_post_ffw_norm:
            out = _rms_norm(out, block.post_ffw_norm.scale, epsilon, dtype)
        return out + attention_x, (key, value)

    def logits(self, hidden):
        embedding = self.backbone.token_embedding
        if quantization_mode(embedding) is None:
            return embedding(hidden, reverse=True)
        return _embedding_logits(embedding, hidden, self.dtype)


def supports(causal_lm, quantized: bool = False) -> bool:
    """Whether :class:`XlaGemma3` mirrors ``causal_lm``: text Gemma 3, linear RoPE, float weights in
    float32 or bfloat16 (or, with ``quantized``, int8/int4 weights in float32 or bfloat16)."""
    import keras_hub

    if type(causal_lm) is not keras_hub.models.Gemma3CausalLM:
        return False
    backbone = causal_lm.backbone
    if getattr(backbone, "vision_encoder", None) is not None:
        return False
    modes = {getattr(layer, "quantization_mode", None) for layer in backbone._flatten_layers(include_self=False)}
    if quantized:
        if not modes - {None} or not modes <= {None, "int8", "int4"}:
            return False
        if str(causal_lm.compute_dtype) not in ("float32", "bfloat16"):
            return False
    elif modes != {None} or str(causal_lm.compute_dtype) not in ("float32", "bfloat16"):
        return False
    return all(block.attention.rope_layer.rope_type == "linear" and not block.use_bidirectional_attention
               for block in backbone.transformer_layers)
