"""Gemma 3 text decoding in plain torch, on the weights of a loaded KerasHub model.

On the torch backend Keras runs layers eagerly, and each layer call costs
Python bookkeeping (dtype policies, autocasting, masks): for Gemma 3 270M about
110 ms of a 140 ms decode step goes there, not to arithmetic. This module runs
the same computation as KerasHub's ``Gemma3Backbone`` (text only, with a key/value
cache) as direct torch calls, in the same order, so it gives KerasHub's numbers
bit for bit, faster. float32 runs on the Keras variables themselves; bfloat16
runs its products on copies packed once for oneDNN (:mod:`onednn_linear`, the
same values: Gemma 3 270M decodes ~1.5× faster, for a second copy of the
weights in memory), rebuilt when the Keras weights are assigned. Quantized
(int8/int4) weights run through torch's packed kernels
(:mod:`torch_packed`), with float32 activations whatever the compute dtype. Both
decode one token at a time through a shorter path than the prompt's
(:meth:`TorchGemma3._step_block`: no masks, fewer torch calls); bfloat16 keeps
KerasHub's roundings there, bit for bit.

It mirrors ``keras_hub.src.models.gemma3`` (KerasHub 0.32): ``RMSNormalization``,
``CachedGemma3Attention`` (query/key norm, RoPE, sliding window, grouped
queries, float32 softmax), ``Gemma3DecoderBlock`` (gated GELU feed-forward,
pre- and post-norms) and the tied embedding. A test holds it to KerasHub's
greedy tokens on the real model in float32 and bfloat16.
"""

from __future__ import annotations

import os

import numpy as np

from keras_gemma_app import (channel_balance, compiled_step, dynamic_int8, freed_memory, onednn_linear, screened_head,
                             threaded_rows, torch_packed)
from keras_gemma_app.quantization import QUANTIZE_MODES, quantization_of


# New tokens a first greedy call must ask for to build the screened LM head (Gemma 3 270M: ~2.5 s
# to build, ~7 ms saved a token); any later call builds it. A one-off short reply does not pay.
SCREEN_AFTER_TOKENS = 512
# Tokens of the shipped text whose hidden states set the screen's channel balance.
_SCREEN_SAMPLE_TOKENS = 256
# Positions of channel_balance.calibration_text() whose hidden states balance the int8 LM head.
_BALANCE_SAMPLE_TOKENS = 128

# Set to 1 to run the general decoder block through torch.compile (the prompt's pass, and float32
# steps), and one row's one-token steps on quantized weights as one compiled graph (compiled_step);
# bfloat16 steps stay on the eager exact path.
COMPILE_ENV = "KERAS_GEMMA_TORCH_COMPILE"
# Graphs torch.compile may keep per compiled function here (torch's default is 8).
_RECOMPILE_LIMIT = 32


def compile_requested() -> bool:
    return os.environ.get(COMPILE_ENV) == "1"


def _gain(scale):
    """KerasHub's RMS norm multiplier ``1 + scale``, in float32, computed once."""
    import torch

    return None if scale is None else 1 + scale.to(torch.float32)


def _rms_norm(x, gain, epsilon: float, dtype):
    import torch

    x = x.to(torch.float32)
    var = torch.mean(torch.square(x), dim=-1, keepdim=True)
    normed = x * torch.reciprocal(torch.sqrt(var + epsilon))
    normed = normed * gain
    return normed.to(dtype)


def _lean_norm(x, gain, epsilon, residual=None):
    """``residual + rms_norm(x) * gain`` (float32) in five torch calls: the norm of each row once,
    ``rsqrt(norm² / size + epsilon)`` from it. A gain of None leaves ``x`` as it is."""
    import torch

    if gain is None:
        return x if residual is None else x + residual
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    normed = x * torch.rsqrt(torch.addcmul(epsilon, norm, norm, value=1 / x.shape[-1]))
    return normed * gain if residual is None else torch.addcmul(residual, normed, gain)


class _Layer:
    """One decoder block's weights and settings, read from the Keras layer."""

    def __init__(self, block, dtype):
        import torch

        attention = block.attention
        self.dtype = dtype
        self.epsilon = block.layer_norm_epsilon
        self.epsilon_tensor = torch.tensor(self.epsilon, dtype=torch.float32)
        self.pre_attention_norm = _gain(block.pre_attention_norm.scale.value)
        self.post_attention_norm = _gain(block.post_attention_norm.scale.value
                                         if block.use_post_attention_norm else None)
        self.pre_ffw_norm = _gain(block.pre_ffw_norm.scale.value)
        self.post_ffw_norm = _gain(block.post_ffw_norm.scale.value if block.use_post_ffw_norm else None)
        self.query = _float_kernel(attention.query_dense)
        self.key = _float_kernel(attention.key_dense)
        self.value = _float_kernel(attention.value_dense)
        self.output = _float_kernel(attention.output_dense)
        self.query_norm = _gain(attention.query_norm.scale.value if attention.use_query_key_norm else None)
        self.key_norm = _gain(attention.key_norm.scale.value if attention.use_query_key_norm else None)
        self.gating = _float_kernel(block.gating_ffw)
        self.gating_2 = _float_kernel(block.gating_ffw_2)
        self.linear = _float_kernel(block.ffw_linear)
        self.num_query_heads = attention.num_query_heads
        self.num_key_value_heads = attention.num_key_value_heads
        self.head_dim = attention.head_dim
        self.hidden_dim = attention.hidden_dim
        self.logit_soft_cap = attention.logit_soft_cap
        self.sliding_window = attention.sliding_window_size if attention.use_sliding_window_attention else None
        if attention.query_head_dim_normalize:
            query_scale = float(1 / np.sqrt(attention.head_dim))
        else:
            query_scale = float(1 / np.sqrt(attention.hidden_dim // attention.num_query_heads))
        self.query_scale = torch.tensor(query_scale).to(dtype)
        # Quantized weights: projections through torch's packed int4/int8 kernels. bfloat16
        # weights: through oneDNN on weights packed once (KerasHub's values, faster).
        # Either way the query, key and value kernels run as one product, both gates as another.
        self.packed = any(torch_packed.quantization_mode(dense) for dense in
                          (attention.query_dense, attention.key_dense, attention.value_dense,
                           attention.output_dense, block.gating_ffw, block.gating_ffw_2, block.ffw_linear))
        self.fused = self.packed or (dtype == torch.bfloat16 and onednn_linear.available())
        if self.fused:
            kernel = torch_packed.dense_kernel if self.packed else (lambda dense: dense.kernel.value)
            q, k, v = (kernel(attention.query_dense), kernel(attention.key_dense), kernel(attention.value_dense))
            self.qkv_split = (q.shape[0] * q.shape[2], k.shape[0] * k.shape[2], v.shape[0] * v.shape[2])
            self.qkv_2d = _projection([self._as_matrix(q), self._as_matrix(k), self._as_matrix(v)],
                                      [attention.query_dense, attention.key_dense, attention.value_dense], dtype)
            self.gates_2d = _projection([kernel(block.gating_ffw), kernel(block.gating_ffw_2)],
                                        [block.gating_ffw, block.gating_ffw_2], dtype)
            self.linear_2d = _projection([kernel(block.ffw_linear)], [block.ffw_linear], dtype)
        if self.packed:
            o = torch_packed.dense_kernel(attention.output_dense)
            self.output_2d = _projection([o.reshape(-1, o.shape[-1])], [attention.output_dense], dtype)
        elif self.fused:
            # torch's einsum sums over head_dim-major (h, n) pairs: the same order keeps its values.
            o = attention.output_dense.kernel.value
            self.output_2d = _projection([o.permute(1, 0, 2).reshape(-1, o.shape[-1])], [attention.output_dense],
                                         dtype)
        # In float32 the projections run as (in, out) matrix products, about 7% faster than the
        # batched einsums, with the einsums' exact values (the tests hold this to KerasHub's
        # tokens).
        self.matrices = dtype == torch.float32 and not self.packed
        if self.matrices:
            self.query_2d = self._as_matrix(self.query)
            self.key_2d = self._as_matrix(self.key)
            self.value_2d = self._as_matrix(self.value)
        rope = attention.rope_layer
        if rope.rope_type != "linear":
            raise NotImplementedError(f"RoPE type {rope.rope_type!r} is not supported here.")
        self.rope = (float(rope.max_wavelength), float(rope.scaling_factor))
        # The one-token step's query and key norms as one norm over both: its gains side by side,
        # the query scale folded into the query's (a scalar commutes with RoPE).
        ones = torch.ones(self.head_dim, dtype=torch.float32)
        query_gain = (self.query_norm if self.query_norm is not None else ones) * query_scale
        key_gain = self.key_norm if self.key_norm is not None else ones
        self.query_key_gain = torch.cat([query_gain.expand(self.num_query_heads, -1),
                                         key_gain.expand(self.num_key_value_heads, -1)]).contiguous()
        # The exact step (bfloat16 weights) keeps KerasHub's roundings: its gains without the scale.
        self.exact_step = self.fused and not self.packed
        self.query_key_norm = None
        if self.query_norm is not None:
            self.query_key_norm = torch.cat([self.query_norm.expand(self.num_query_heads, -1),
                                             key_gain.expand(self.num_key_value_heads, -1)]).contiguous()

    @staticmethod
    def _as_matrix(kernel):
        """(heads, in, head_dim) -> (in, heads * head_dim), contiguous."""
        heads, size, head_dim = kernel.shape
        return kernel.permute(1, 0, 2).reshape(size, heads * head_dim).contiguous()

    def rope_tables(self, length: int):
        """cos and sin for positions 0..length-1, as KerasHub's RotaryEmbedding computes them."""
        import torch

        wavelength, scaling = self.rope
        idx = torch.arange(0, self.head_dim, 2, dtype=torch.float32)
        freq_range = idx / torch.tensor(float(self.head_dim), dtype=torch.float32)
        inverse = torch.pow(torch.tensor(wavelength, dtype=torch.float32), -freq_range)
        inverse = inverse / torch.tensor(scaling, dtype=torch.float32)
        positions = torch.arange(length, dtype=torch.float32)
        freq = torch.einsum("i,j->ij", positions, inverse)
        embedding = torch.cat((freq, freq), dim=-1)
        return torch.cos(embedding).to(self.dtype), torch.sin(embedding).to(self.dtype)


def _int8_packed(product) -> bool:
    return isinstance(product, torch_packed.PackedLinear) and product.mode == "int8"


def _float_kernel(dense):
    """The Keras variable of a float kernel; None for a quantized one (read by :mod:`torch_packed`)."""
    return None if torch_packed.quantization_mode(dense) else dense.kernel.value


def _projection(matrices, denses, dtype):
    """``x @ [m1 m2 …]`` (outputs side by side) for the fused path: torch's int kernels when the
    layers are quantized (int4: Keras's own values, see :func:`torch_packed.int4_parts`), else oneDNN's."""
    import torch

    modes = {torch_packed.quantization_mode(dense) for dense in denses}
    if modes == {"int4"}:
        return torch_packed.PackedLinear.from_int4_parts(
            [torch_packed.int4_parts(dense, matrix) for dense, matrix in zip(denses, matrices)])
    matrix = matrices[0] if len(matrices) == 1 else torch.cat(matrices, dim=1)
    mode = torch_packed.quantization_mode(denses[0])
    if mode is None:
        matrix = matrix.to(dtype)
        if dtype == torch.bfloat16 and onednn_linear.available():
            return onednn_linear.PackedBfloat16Linear(matrix)
        matrix = matrix.contiguous()
        return lambda x: (x.reshape(-1, x.shape[-1]) @ matrix).reshape(*x.shape[:-1], matrix.shape[1])
    return torch_packed.PackedLinear.from_matrix(matrix, mode, torch_packed.int4_block_size(denses[0]))


def _rope(x, cos, sin):
    """x: (b, t, heads, h); cos/sin: (1, t, 1, h)."""
    import torch

    x1, x2 = torch.chunk(x, 2, dim=-1)
    half = torch.cat((-x2, x1), dim=-1)
    return x * cos + half * sin


class TorchGemma3:
    """A cached forward pass of a KerasHub ``Gemma3CausalLM`` (text), in plain torch.

    The interface of the decoder's model adapters: :meth:`empty_cache`,
    :meth:`forward` (hidden states before the logits, and the new cache) and
    :meth:`logits`; for greedy decoding of one row on bfloat16 weights also
    :meth:`prepare_greedy` and :meth:`greedy_tokens` (the screened LM head).
    Use under ``torch.inference_mode()``.
    """

    uses_update_mask = True

    def __init__(self, causal_lm):
        import torch

        backbone = causal_lm.backbone
        self.causal_lm = causal_lm
        self.dtype = getattr(torch, str(causal_lm.compute_dtype))
        if quantization_of(causal_lm) in QUANTIZE_MODES:
            # Every product then runs in torch's packed kernels on bfloat16 inputs, whatever the
            # activations' dtype; the rest of the step (norms, RoPE, attention, the cache) is faster
            # in float32 on a CPU. Gemma 3 270M int4: forward and logits 19.7-20.4 -> 17.3-18.1 ms.
            self.dtype = torch.float32
        self.embedding = backbone.token_embedding
        balanced_head = False  # the int8 LM head, balanced once the layers can run (below)
        # torch's dynamic int8 engine (LM head, gate products); compiled code calls it through a custom op.
        dynamic = dynamic_int8.available()
        embedding_mode = torch_packed.quantization_mode(self.embedding)
        if embedding_mode is None:
            self.embeddings = self.embedding.embeddings.value
            self.lm_head = None
            if self.dtype == torch.bfloat16 and onednn_linear.available():
                self.lm_head = onednn_linear.PackedBfloat16Linear.from_rows(self.embeddings)
            elif self.embeddings.dtype == torch.float32:
                # The float32 product with the transposed table runs on one core: split its rows.
                self.lm_head = threaded_rows.ThreadedRows(self.embeddings)
        else:
            self.embeddings = None
            if embedding_mode == "int8" and dynamic:
                # An int8 LM head quantizes its input at each call (about twice as fast), its channels
                # balanced against the table's first: built below, once the layers can run. The layers
                # keep the weight-only kernel (their inputs quantized cost more: Gemma 3 270M int8
                # perplexity 30.14, float32 28.88).
                self.lm_head = None
                balanced_head = True
            else:
                self.lm_head = torch_packed.PackedLinear.from_embedding(
                    self.embedding, embedding_mode, torch_packed.int4_block_size(self.embedding))
        self.logit_soft_cap = backbone.token_embedding.logit_soft_cap
        # Greedy decoding on the bfloat16 head can skip most of it (screened_head), built on demand.
        self.screen = None
        self._greedy_calls = 0
        self._compiled_step = None  # one row's quantized steps as one graph, built last (below)
        self._can_screen = (isinstance(self.lm_head, onednn_linear.PackedBfloat16Linear)
                            and self.logit_soft_cap is None and dynamic_int8.available()
                            and getattr(causal_lm, "preprocessor", None) is not None)
        self.final_norm = _gain(backbone.layer_norm.scale.value)
        self.final_epsilon = backbone.layer_norm.epsilon
        self.hidden_dim = backbone.hidden_dim
        self._embedding_scale = torch.sqrt(torch.tensor(self.hidden_dim)).to(torch.float32).to(self.dtype)
        self.layers = [_Layer(block, self.dtype) for block in backbone.transformer_layers]
        # One token per row runs :meth:`_step_block`: quantized weights through its short float32
        # path, bfloat16 weights through its exact one (KerasHub's values bit for bit).
        self.lean_step = all(layer.fused for layer in self.layers)
        # Packed copies do not follow later changes to the Keras weights: remember what they were made from.
        self._sources = [(v, v.value, v.value._version) for v in backbone.weights]
        self._tables: dict[tuple, tuple] = {}
        # int8 gate products (both gates in one, the largest product of a block) through the balanced
        # dynamic int8 path too (see _calibrate); balance and head measured in one pass of the text.
        int8_gates = [layer for layer in self.layers if dynamic and _int8_packed(getattr(layer, "gates_2d", None))]
        if balanced_head or int8_gates:
            samples = self._calibrate(int8_gates)
            if balanced_head:
                self.lm_head = self._balanced_int8_head(samples)
        # The packing scratch back to the system (Gemma 3 270M int4: 2.0 -> 1.6 GiB resident).
        freed_memory.give_back()
        if compile_requested():
            # One compiled decoder block for every length (about 10 s per new shape class on 2
            # cores): worth it for long generations, not for one short reply. Its fused bfloat16
            # arithmetic rounds differently from eager torch: close to KerasHub's values, not equal
            # to them. Its variants (int4/int8 blocks, sliding or global attention, prompts kept in
            # the cache or not) outnumber torch's default of 8 graphs a function; the packed kernels'
            # custom ops are registered before tracing (registering inside it breaks the graph).
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, _RECOMPILE_LIMIT)
            torch_packed.packed_ops()
            self._block = torch.compile(self._block, dynamic=True)
            if compiled_step.applies(self.layers):
                self._compiled_step = compiled_step.CompiledStep(self.layers)

    def is_current(self) -> bool:
        """Whether the Keras weights are the ones this pass was built from (not assigned since)."""
        return all(v.value is value and value._version == version for v, value, version in self._sources)

    def empty_cache(self, batch: int, length: int):
        import torch

        first = self.layers[0]
        shape = (batch, length, first.num_key_value_heads, first.head_dim)
        return tuple((torch.zeros(shape, dtype=self.dtype), torch.zeros(shape, dtype=self.dtype))
                     for _ in self.layers)

    def _rope_tables(self, layer: _Layer, length: int):
        key = (layer.rope, length)
        if key not in self._tables:
            self._tables[key] = layer.rope_tables(length)
        return self._tables[key]

    def forward(self, token_ids, cache, index, padding_mask=None, update_mask=None):
        import torch

        token_ids = torch.as_tensor(token_ids)
        index = int(index)
        batch, length = token_ids.shape
        cache_length = cache[0][0].shape[1]
        x = torch_packed.embedding_rows(self.embedding, token_ids.long(), self.dtype)
        x = x * self._embedding_scale
        # The exact (bfloat16) step's packed products hold KerasHub's values up to EXACT_ROWS rows.
        if length == 1 and padding_mask is None and self.lean_step and (batch <= onednn_linear.EXACT_ROWS
                                                                         or not self.layers[0].exact_step):
            return self._step(x, cache, index, update_mask)
        # The causal mask, merged with the padding mask (as merge_padding_and_attention_mask does).
        i = torch.arange(length, dtype=torch.float32)[:, None] + float(index)
        j = torch.arange(cache_length, dtype=torch.float32)[None, :]
        mask = (i >= j)[None].expand(batch, length, cache_length).to(torch.int32)
        if padding_mask is not None:
            mask = torch.minimum(torch.as_tensor(padding_mask).to(torch.int32)[:, None, :], mask)
        no_attended = torch.all(mask == 0, dim=-1, keepdim=True)[..., None]
        if not bool(no_attended.any()):
            # Every position attends somewhere (always so one token past the prompt): the masked
            # scores are exactly 0 after the softmax and nothing needs zeroing.
            no_attended = None
        # Rows whose cache entry at ``index`` takes the new key and value.
        keep = None if update_mask is None else torch.as_tensor(update_mask)[:, :, None, None]
        # Per forward, not per layer: masks per sliding window, RoPE rows per RoPE setting.
        sliding, rope = {}, {}
        caches = []
        for layer, (key_cache, value_cache) in zip(self.layers, cache):
            if layer.sliding_window is not None and layer.sliding_window not in sliding:
                sliding[layer.sliding_window] = self._sliding(mask, layer.sliding_window, index, length, cache_length)
            layer_mask = sliding[layer.sliding_window] if layer.sliding_window is not None else mask > 0
            if layer.rope not in rope:
                cos, sin = self._rope_tables(layer, cache_length)
                rope[layer.rope] = (cos[None, index:index + length, None, :], sin[None, index:index + length, None, :])
            x, layer_cache = self._block(layer, x, key_cache, value_cache, index, layer_mask, no_attended,
                                         keep, *rope[layer.rope])
            caches.append(layer_cache)
        return _rms_norm(x, self.final_norm, self.final_epsilon, self.dtype), tuple(caches)

    def _step(self, x, cache, index: int, update_mask):
        """One token per row at position ``index``, all layers: :meth:`_step_block` on each."""
        import torch

        # Rows whose cache entry at ``index`` takes the new key and value (all of them, mostly).
        keep = None
        if update_mask is not None:
            update_mask = torch.as_tensor(update_mask)
            if not bool(update_mask.all()):
                keep = update_mask[:, :, None, None]
        rope = {}
        for layer in self.layers:
            if layer.rope not in rope:
                cos, signed_sin = self._step_rope_tables(layer, cache[0][0].shape[1])
                rope[layer.rope] = (cos[index], signed_sin[index])
        rows = tuple(rope[layer.rope] for layer in self.layers)
        if self._compiled_step is not None and keep is None and x.shape[0] == 1:
            x = self._compiled_step(x, cache, index, rows)
        else:
            x = self._step_layers(x, cache, index, keep, rows)
        return _rms_norm(x, self.final_norm, self.final_epsilon, self.dtype), cache

    def _step_layers(self, x, cache, index: int, keep, rope_rows):
        """The decoder blocks for one token, each attending from its window's first entry."""
        for layer, (key_cache, value_cache), (cos, sin) in zip(self.layers, cache, rope_rows):
            start = 0 if layer.sliding_window is None else max(0, index - layer.sliding_window + 1)
            x = self._step_block(layer, x, key_cache, value_cache, index, start, keep, cos, sin)
        return x

    def _step_rope_tables(self, layer: _Layer, length: int):
        """cos and ``(-sin, sin)`` halves for positions 0..length-1: rotate_half(x) * sin is
        roll(x, half) * (-sin, sin)."""
        import torch

        key = ("step", layer.rope, length)
        if key not in self._tables:
            cos, sin = self._rope_tables(layer, length)
            half = layer.head_dim // 2
            self._tables[key] = (cos, torch.cat([-sin[:, :half], sin[:, half:]], dim=-1))
        return self._tables[key]

    @staticmethod
    def _step_block(layer: _Layer, x, key_cache, value_cache, index: int, start: int, keep, cos, sin,
                    attend=None):
        """:meth:`_block` for one token per row, in fewer torch calls: attention over the cache's
        entries ``start..index`` only (what the causal and sliding-window masks leave, so no masks),
        one norm over the query and key heads together, RoPE as a roll.

        Quantized weights (float32 activations) take the short arithmetic: the query scale in the
        query's norm gain, norms as :func:`_lean_norm` with each residual added in, fused products.
        bfloat16 weights take KerasHub's arithmetic, rounding where it rounds
        (:meth:`_exact_step_block`): the same values bit for bit (Gemma 3 270M: forward and logits
        33 -> 28.5 ms a token).

        ``attend``: another attention for the quantized path, called as ``attend(layer, query, key,
        value, key_cache, value_cache)`` (:mod:`keras_gemma_app.compiled_step`'s, over the whole cache).
        """
        import torch

        if layer.exact_step:
            return TorchGemma3._exact_step_block(layer, x, key_cache, value_cache, index, start, keep, cos, sin)
        b, _, d = x.shape
        q_heads, kv_heads, h = layer.num_query_heads, layer.num_key_value_heads, layer.head_dim
        epsilon = layer.epsilon_tensor
        qkv = layer.qkv_2d(_lean_norm(x, layer.pre_attention_norm, epsilon).reshape(b, d))
        query_key = qkv[:, :(q_heads + kv_heads) * h].reshape(b, q_heads + kv_heads, h)
        if layer.query_norm is not None:
            query_key = _lean_norm(query_key, layer.query_key_gain, epsilon)
        else:
            query_key = query_key * layer.query_key_gain
        query_key = torch.addcmul(query_key * cos, torch.roll(query_key, h // 2, dims=-1), sin)
        query = query_key[:, :q_heads]
        value_update = qkv[:, (q_heads + kv_heads) * h:]
        if attend is None:
            attended = TorchGemma3._step_attention(layer, query, query_key[:, q_heads:], value_update,
                                                   key_cache, value_cache, index, start, keep)
        else:
            attended = attend(layer, query, query_key[:, q_heads:], value_update, key_cache, value_cache)
        attention = layer.output_2d(attended.reshape(b, 1, q_heads * h))
        attention_x = _lean_norm(attention, layer.post_attention_norm, epsilon, residual=x)
        gates = layer.gates_2d(_lean_norm(attention_x, layer.pre_ffw_norm, epsilon))
        x1, x2 = torch.chunk(gates, 2, dim=-1)
        out = layer.linear_2d(torch.nn.functional.gelu(x1, approximate="tanh") * x2)
        return _lean_norm(out, layer.post_ffw_norm, epsilon, residual=attention_x)

    @staticmethod
    def _exact_step_block(layer: _Layer, x, key_cache, value_cache, index: int, start: int, keep, cos, sin):
        """The one-token block on bfloat16 weights with :meth:`_block`'s values: each norm is
        :func:`_rms_norm` (row by row, so the query and key heads can share one call), RoPE rounds
        each product as ``x * cos + rotate_half(x) * sin`` does, the query scale comes after RoPE,
        and attention over the unmasked entries sums the same terms (masked scores are exactly 0)."""
        import torch

        b, _, d = x.shape
        q_heads, kv_heads, h = layer.num_query_heads, layer.num_key_value_heads, layer.head_dim
        epsilon, dtype = layer.epsilon, layer.dtype
        qkv = layer.qkv_2d(_rms_norm(x, layer.pre_attention_norm, epsilon, dtype).reshape(b, d))
        query_key = qkv[:, :(q_heads + kv_heads) * h].reshape(b, q_heads + kv_heads, h)
        if layer.query_key_norm is not None:
            query_key = _rms_norm(query_key, layer.query_key_norm, epsilon, dtype)
        query_key = query_key * cos + torch.roll(query_key, h // 2, dims=-1) * sin
        query = query_key[:, :q_heads] * layer.query_scale
        value_update = qkv[:, (q_heads + kv_heads) * h:]
        attended = TorchGemma3._step_attention(layer, query, query_key[:, q_heads:], value_update,
                                               key_cache, value_cache, index, start, keep)
        # The output kernel was packed head_dim-major (see _Layer): the same order here.
        attention = layer.output_2d(attended.reshape(b, q_heads, h).transpose(1, 2).reshape(b, 1, q_heads * h))
        if layer.post_attention_norm is not None:
            attention = _rms_norm(attention, layer.post_attention_norm, epsilon, dtype)
        attention_x = x + attention
        x1, x2 = torch.chunk(layer.gates_2d(_rms_norm(attention_x, layer.pre_ffw_norm, epsilon, dtype)), 2, dim=-1)
        out = layer.linear_2d(torch.nn.functional.gelu(x1, approximate="tanh") * x2)
        if layer.post_ffw_norm is not None:
            out = _rms_norm(out, layer.post_ffw_norm, epsilon, dtype)
        return out + attention_x

    @staticmethod
    def _step_attention(layer: _Layer, query, key_update, value_update, key_cache, value_cache,
                        index: int, start: int, keep):
        """Writes one key and value per row at ``index`` (where ``keep`` allows) and attends from
        ``query`` (b, q_heads, h) to the entries ``start..index``: (b, kv_heads, groups, h)."""
        import torch

        b, q_heads, h = query.shape
        kv_heads = layer.num_key_value_heads
        key_update = key_update.reshape(b, 1, kv_heads, h)
        value_update = value_update.reshape(b, 1, kv_heads, h)
        if keep is not None:
            key_update = torch.where(keep, key_update, key_cache[:, index:index + 1])
            value_update = torch.where(keep, value_update, value_cache[:, index:index + 1])
        key_cache[:, index:index + 1] = key_update
        value_cache[:, index:index + 1] = value_update
        # (b, kv_heads, entries, h) views of the cache; queries grouped by the key/value head they share.
        key = key_cache[:, start:index + 1].permute(0, 2, 1, 3)
        value = value_cache[:, start:index + 1].permute(0, 2, 1, 3)
        logits = torch.matmul(query.reshape(b, kv_heads, q_heads // kv_heads, h), key.transpose(-1, -2))
        if layer.logit_soft_cap is not None:
            logits = torch.tanh(logits / layer.logit_soft_cap) * layer.logit_soft_cap
        scores = torch.softmax(logits.to(torch.float32), dim=-1).to(logits.dtype)
        return torch.matmul(scores, value)

    @staticmethod
    def _sliding(mask, window: int, index: int, length: int, cache_length: int):
        """KerasHub's band triu(ones, 1 - W) * tril(ones, W - 1) at rows index.., as comparisons."""
        import torch

        offset = torch.arange(cache_length)[None, :] - torch.arange(index, index + length)[:, None]
        band = (offset >= 1 - window) & (offset <= window - 1)
        return torch.logical_and(mask > 0, band[None])

    def _block(self, layer: _Layer, x, key_cache, value_cache, index, mask, no_attended, keep, cos, sin):
        import torch

        dtype = self.dtype
        normalized = _rms_norm(x, layer.pre_attention_norm, layer.epsilon, dtype)
        b, t, d = normalized.shape
        flat = normalized.reshape(b * t, d)
        kv_shape = (b, t, layer.num_key_value_heads, layer.head_dim)
        # bfloat16 weights packed for oneDNN give torch's own values up to EXACT_ROWS rows; past
        # that, oneDNN may pick another kernel (CPUs with AMX) and the Keras kernels' einsums run.
        fused = layer.fused and (layer.packed or b * t <= onednn_linear.EXACT_ROWS)
        if fused:
            query, key_update, value_update = torch.split(layer.qkv_2d(flat), layer.qkv_split, dim=-1)
            query = query.reshape(b, t, layer.num_query_heads, layer.head_dim)
            key_update = key_update.reshape(kv_shape)
            value_update = value_update.reshape(kv_shape)
        elif layer.matrices:
            query = torch.matmul(flat, layer.query_2d).reshape(b, t, layer.num_query_heads, layer.head_dim)
            key_update = torch.matmul(flat, layer.key_2d).reshape(kv_shape)
            value_update = torch.matmul(flat, layer.value_2d).reshape(kv_shape)
        else:
            query = torch.einsum("btd,ndh->btnh", normalized, layer.query)
            key_update = torch.einsum("bsd,kdh->bskh", normalized, layer.key)
            value_update = torch.einsum("bsd,kdh->bskh", normalized, layer.value)
        if layer.query_norm is not None:
            query = _rms_norm(query, layer.query_norm, layer.epsilon, dtype)
        query = _rope(query, cos, sin)
        if layer.key_norm is not None:
            key_update = _rms_norm(key_update, layer.key_norm, layer.epsilon, dtype)
        key_update = _rope(key_update, cos, sin)
        length = x.shape[1]
        if keep is not None:
            key_update = torch.where(keep, key_update, key_cache[:, index:index + length])
            value_update = torch.where(keep, value_update, value_cache[:, index:index + length])
        # Written in place: the decoder hands each cache to one step only, and a copy per
        # step would cost the whole cache's bytes per layer and token.
        key, value = key_cache, value_cache
        key[:, index:index + length] = key_update
        value[:, index:index + length] = value_update

        query = query * layer.query_scale
        b, t, _, h = query.shape
        groups = layer.num_query_heads // layer.num_key_value_heads
        query = query.reshape(b, t, layer.num_key_value_heads, groups, h)
        logits = torch.einsum("btkgh,bskh->bkgts", query, key)
        if layer.logit_soft_cap is not None:
            logits = torch.tanh(logits / layer.logit_soft_cap) * layer.logit_soft_cap
        logits_dtype = logits.dtype
        softmax_mask = mask[:, None, None, :, :]
        scores = torch.where(softmax_mask, logits.to(torch.float32), -1e9)
        scores = torch.softmax(scores, dim=-1)
        if no_attended is not None:
            scores = torch.where(softmax_mask, scores, 0.0)
        scores = scores.to(logits_dtype)
        attended = torch.einsum("bkgts,bskh->btkgh", scores, value).reshape(b, t, layer.num_query_heads, h)
        if no_attended is not None:
            attended = attended.masked_fill(no_attended, 0)
        if layer.packed:
            attention = layer.output_2d(attended.reshape(b, t, layer.num_query_heads * h))
        elif fused:
            attention = layer.output_2d(attended.transpose(2, 3).reshape(b, t, layer.num_query_heads * h))
        else:
            attention = torch.einsum("btnh,nhd->btd", attended, layer.output)
        if layer.post_attention_norm is not None:
            attention = _rms_norm(attention, layer.post_attention_norm, layer.epsilon, dtype)
        attention_x = x + attention
        normalized = _rms_norm(attention_x, layer.pre_ffw_norm, layer.epsilon, dtype)
        if fused:
            x1, x2 = torch.chunk(layer.gates_2d(normalized), 2, dim=-1)
        elif layer.matrices:
            flat = normalized.reshape(b * t, d)
            x1 = torch.matmul(flat, layer.gating)
            x2 = torch.matmul(flat, layer.gating_2)
        else:
            x1 = torch.einsum("btd,df->btf", normalized, layer.gating)
            x2 = torch.einsum("btd,df->btf", normalized, layer.gating_2)
        hidden = torch.nn.functional.gelu(x1, approximate="tanh") * x2
        if fused:
            out = layer.linear_2d(hidden)
        elif layer.matrices:
            out = torch.matmul(hidden.reshape(b * t, -1), layer.linear).reshape(b, t, d)
        else:
            out = torch.einsum("btf,fd->btd", hidden, layer.linear)
        if layer.post_ffw_norm is not None:
            out = _rms_norm(out, layer.post_ffw_norm, layer.epsilon, dtype)
        return out + attention_x, (key, value)

    def prepare_greedy(self, rows: int, new_tokens: int) -> None:
        """Called before each greedy call (``rows`` prompts, up to ``new_tokens`` each): builds the
        screened head (see :mod:`screened_head`) once it pays — for one row, from the second call on
        or for a long first one."""
        self._greedy_calls += 1
        if (self.screen is None and self._can_screen and rows == 1
                and (self._greedy_calls > 1 or new_tokens >= SCREEN_AFTER_TOKENS)):
            import torch

            from keras_gemma_app import float32_kernels
            from keras_gemma_app.memory_guard import available_ram

            # Like the float32 kernel copies: only while it takes a small share of the RAM available.
            extra = screened_head.ScreenedArgmax.extra_bytes(*self.embeddings.shape, torch.get_num_threads())
            self._can_screen = float32_kernels.fits(extra, available_ram())
            if self._can_screen:
                self.screen = self._build_screen()
                freed_memory.give_back()

    def _sample_hidden(self, text: str, tokens: int):
        """The LM head's inputs at the first ``tokens`` positions of ``text`` (after BOS), one per row."""
        import torch

        tokenizer = self.causal_lm.preprocessor.tokenizer
        ids = np.asarray(tokenizer(text[:tokens * 16])).reshape(-1)[:tokens - 1]
        ids = torch.as_tensor(np.concatenate([[tokenizer.start_token_id], ids]).astype("int64"))[None]
        with torch.inference_mode():
            hidden, _ = self.forward(ids, self.empty_cache(1, ids.shape[1]), 0)
        return hidden.reshape(-1, self.hidden_dim)

    def _calibrate(self, int8_gates):
        """The LM head's inputs on :func:`channel_balance.calibration_text` (None without a tokenizer),
        and meanwhile the inputs of ``int8_gates``' gate products, which then run through
        :class:`dynamic_int8.BalancedInt8Linear` balanced against them: their inputs come out of an RMS
        norm, in a steady range (the other products' inputs cost more quantized: Gemma 3 270M int8,
        every product this way 29.45, the gates only 28.73, float32 28.88; 64 tokens 1.29 -> 1.2 s)."""
        if getattr(self.causal_lm, "preprocessor", None) is None:
            return None
        for layer in int8_gates:
            layer.gates_2d = channel_balance.InputPeaks(layer.gates_2d)
        try:
            samples = self._sample_hidden(channel_balance.calibration_text(), _BALANCE_SAMPLE_TOKENS)
        finally:
            recorders = [layer.gates_2d for layer in int8_gates]
            for layer, recorder in zip(int8_gates, recorders):
                layer.gates_2d = recorder.product
        for layer, recorder in zip(int8_gates, recorders):
            packed = recorder.product
            layer.gates_2d = dynamic_int8.BalancedInt8Linear(*packed.int8_rows(), recorder.peaks)
        return samples

    def _balanced_int8_head(self, samples):
        """The int8 LM head on the table rescaled by :mod:`channel_balance` against ``samples`` of its
        input (Gemma 3 270M int8 perplexity 29.11 -> 28.89 against 28.88 for float32); unbalanced
        without them."""
        if samples is None:
            return dynamic_int8.DynamicInt8Linear.from_embedding(self.embedding)
        peaks = channel_balance.column_peaks(self.embedding._embeddings.value, self.embedding.embeddings_scale.value)
        balance = channel_balance.channel_scale(peaks, samples)
        return dynamic_int8.BalancedInt8Head.from_embedding(self.embedding, balance)

    def _build_screen(self):
        from keras_gemma_app import quality_eval

        samples = self._sample_hidden(quality_eval.default_text(), _SCREEN_SAMPLE_TOKENS)
        scale = channel_balance.channel_scale(channel_balance.column_peaks(self.embeddings), samples)
        return screened_head.ScreenedArgmax(self.embeddings, scale)

    def greedy_tokens(self, hidden):
        """The index of each row's largest logit, as ``argmax(logits(hidden))`` gives it, through the
        screened head; None where it does not apply (not built, or several rows: the full product
        then costs about what one row's does)."""
        if self.screen is None or hidden.shape[0] != 1:
            return None
        return self.screen(hidden, self._exact_logits)

    def _exact_logits(self, hidden, rows):
        """Logits of ``rows`` of the table, each with the value the full product gives it."""
        import torch

        return torch.matmul(hidden, torch.transpose(self.embeddings[rows], 0, 1))

    def logits(self, hidden):
        import torch

        rows = hidden.numel() // hidden.shape[-1]
        exact = not isinstance(self.lm_head, onednn_linear.PackedBfloat16Linear) or rows <= onednn_linear.EXACT_ROWS
        if self.lm_head is not None and exact:
            logits = self.lm_head(hidden)
        else:
            logits = torch.matmul(hidden, torch.transpose(self.embeddings, 0, 1))
        if self.logit_soft_cap is not None:
            logits = torch.tanh(logits / self.logit_soft_cap) * self.logit_soft_cap
        return logits


def supports(causal_lm) -> bool:
    """Whether :class:`TorchGemma3` can run ``causal_lm``: text Gemma 3, linear RoPE, float32 or bfloat16,
    weights float or quantized to int8/int4 by Keras.

    (float16 is left to KerasHub, which clips activations in that dtype.)
    """
    import keras_hub

    if type(causal_lm) is not keras_hub.models.Gemma3CausalLM:
        return False
    backbone = causal_lm.backbone
    if getattr(backbone, "vision_encoder", None) is not None:
        return False
    if str(causal_lm.compute_dtype) not in ("float32", "bfloat16"):
        return False
    for layer in backbone._flatten_layers(include_self=False):
        mode = getattr(layer, "quantization_mode", None)
        if mode not in (None, "int8", "int4"):
            return False
        own = layer._trainable_variables + layer._non_trainable_variables
        if mode is None and any(str(v.dtype) not in ("float32", "bfloat16") for v in own):
            return False
    return all(block.attention.rope_layer.rope_type == "linear" for block in backbone.transformer_layers)

