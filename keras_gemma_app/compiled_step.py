"""The one-token decoder step of a quantized Gemma 3 on torch, as one ``torch.compile`` graph.

Eager, a quantized token's 18 decoder blocks (Gemma 3 270M) are ~1,000 small
torch calls around 72 products; each costs a few microseconds of Python and
dispatch, about a fifth of the token. Compiled as one graph — every block of
the step, not one block at a time — the small calls fuse into a few loops and
the products are called from the generated code: torch's packed kernels
directly (one row needs no custom op), the dynamic int8 engine through its
custom op (:mod:`keras_gemma_app.dynamic_int8`). Shapes are static, so
attention reads the whole cache, with the entries a position must not see
(later ones, and those outside a sliding window) masked out by ``-inf``: their
scores are exactly 0 after the softmax, as in the eager step that reads only
the visible ones. The position is a tensor, so one graph serves every position
of a cache length; each new cache length compiles once (~15 s on 2 cores,
~5 s from torch's compile cache on disk).

Gemma 3 270M int4, 2-core CPU with AMX, a token's forward pass (without the LM head) in 63-token
greedy loops, eager and compiled runs alternating: 11.5-12.0 ms eager, 10.2-10.5 ms compiled. With
batched matmuls for attention instead of the fused sums it was ~1 ms slower than that.

It runs when ``KERAS_GEMMA_TORCH_COMPILE=1``, for one row with quantized
weights (:class:`keras_gemma_app.torch_gemma3.TorchGemma3`). Fused loops round
float32 sums in another order than eager torch: the values agree to float32
precision, not bit for bit, and greedy text may part from eager's at a near tie.
"""

from __future__ import annotations


def applies(layers) -> bool:
    """Whether every block takes the quantized (float32 activations) one-token path."""
    return bool(layers) and all(layer.packed and not layer.exact_step for layer in layers)


class CompiledStep:
    """``TorchGemma3._step_layers`` for one row, compiled (see the module's docstring)."""

    def __init__(self, layers):
        import torch

        self.layers = list(layers)
        self._windows = {layer.sliding_window for layer in self.layers}  # None: global attention
        self._positions: dict[int, object] = {}
        self._run = torch.compile(self._blocks, dynamic=False, fullgraph=True)

    def __call__(self, x, cache, index: int, rope_rows):
        """x: (1, 1, hidden) at position ``index``; writes each layer's key and value there."""
        import torch

        length = cache[0][0].shape[1]
        if length not in self._positions:
            self._positions[length] = torch.arange(length)
        positions = self._positions[length]
        seen = positions <= index
        masks = {window: torch.where(seen if window is None else seen & (positions > index - window), 0.0, float("-inf"))
                 for window in self._windows}
        return self._run(x, list(cache), torch.tensor([index]), masks, tuple(rope_rows))

    def _blocks(self, x, cache, position, masks, rope_rows):
        from keras_gemma_app.torch_gemma3 import TorchGemma3

        for layer, (key_cache, value_cache), (cos, sin) in zip(self.layers, cache, rope_rows):
            mask = masks[layer.sliding_window]

            def attend(layer, query, key, value, key_cache, value_cache, mask=mask):
                return _attend_all(layer, query, key, value, key_cache, value_cache, position, mask)

            x = TorchGemma3._step_block(layer, x, key_cache, value_cache, 0, 0, None, cos, sin, attend=attend)
        return x


def _attend_all(layer, query, key, value, key_cache, value_cache, position, mask):
    """Writes one key and value at ``position`` (a 1-element tensor) and attends from ``query``
    (1, q_heads, h) to the whole cache, ``mask`` (cache length,) added to the scores."""
    import torch

    _, q_heads, h = query.shape
    kv_heads = layer.num_key_value_heads
    key_cache.index_copy_(1, position, key.reshape(1, 1, kv_heads, h))
    value_cache.index_copy_(1, position, value.reshape(1, 1, kv_heads, h))
    # Products and sums the compiler fuses into its own loops (a batched matmul per layer is an
    # external call: ~16 us each for a 128-entry cache, 36 a token).
    keys = key_cache.permute(0, 2, 1, 3)[:, :, None]  # (1, kv_heads, 1, entries, h)
    values = value_cache.permute(0, 2, 1, 3)[:, :, None]
    grouped = query.reshape(1, kv_heads, q_heads // kv_heads, 1, h)
    logits = torch.sum(grouped * keys, dim=-1)  # (1, kv_heads, groups, entries)
    if layer.logit_soft_cap is not None:
        logits = torch.tanh(logits / layer.logit_soft_cap) * layer.logit_soft_cap
    scores = torch.softmax(logits.to(torch.float32) + mask, dim=-1).to(logits.dtype)
    return torch.sum(scores[..., None] * values, dim=-2)  # (1, kv_heads, groups, h)
