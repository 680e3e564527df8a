"""int8 products with the activations quantized at each call, through torch's x86 quantized engine.

torch's weight-only int8 kernel (``aten._weight_int8pack_mm``) multiplies
bfloat16 activations by int8 weights at ~12 GB/s on a 2-core x86 CPU, bound by
its arithmetic, not by memory: Gemma 3's 262k-row tied LM head takes ~13.6 ms a
token. The x86 engine's dynamic quantized linear (``quantized.linear_dynamic``,
fbgemm) quantizes the activations to 8-bit integers at each call and multiplies
int8 by int8 with the CPU's integer dot-product instructions: ~6 ms for the
head. The weights are the int8 values and scales they are given, exactly; the
activations lose precision. On Gemma 3 270M (perplexity of the shipped text,
float32 28.88, int8 weight-only 28.72) the LM head this way gives 29.11, every
int8 product this way 30.14 (the layers' inputs have large outliers): the app
uses it for the LM head only (:mod:`keras_gemma_app.torch_gemma3`).

The engine quantizes a whole input with one range; rows are scaled to the same
largest magnitude first (and the outputs back), so a row of small values is not
quantized on the range of a row of large ones.
"""

from __future__ import annotations

import functools
import warnings

# 7-bit activations: the engine's setting that cannot saturate its 16-bit intermediate sums on
# processors without the VNNI dot-product instructions.
_REDUCE_RANGE = True
_ROWS_PER_CHUNK = 16384


@functools.cache
def available() -> bool:
    """Whether this torch build runs dynamic int8 products on the x86 quantized engine (fbgemm)."""
    import torch

    try:
        engines = torch.backends.quantized.supported_engines
        return (torch.backends.quantized.engine in ("x86", "fbgemm") and "fbgemm" in engines
                and hasattr(torch, "_make_per_channel_quantized_tensor")
                and hasattr(torch.ops.quantized, "linear_dynamic"))
    except (AttributeError, RuntimeError):
        return False


class DynamicInt8Linear:
    """``x @ W.T`` for int8 ``W`` (out, in) with one scale per output, activations quantized per call."""

    def __init__(self, weight, scale, balance=None):
        import torch

        if weight.dtype != torch.int8 or weight.ndim != 2:
            raise ValueError(f"Expected a 2-D int8 weight, received {tuple(weight.shape)} {weight.dtype}.")
        self.out_features, self.in_features = weight.shape
        with warnings.catch_warnings():
            # torch warns that its quantized tensor types are to be removed in a later release; this
            # one has them (where it does not, available() is False and the weight-only kernel runs).
            warnings.simplefilter("ignore", UserWarning)
            quantized = torch._make_per_channel_quantized_tensor(
                weight.contiguous(), scale.to(torch.float64), torch.zeros(self.out_features, dtype=torch.int64), 0)
            self._packed = torch.ops.quantized.linear_prepack(quantized, None)
        # Inputs are divided by it (channel_balance): the weight holds W * balance.
        self.balance = None if balance is None else balance.to(torch.float32)

    @classmethod
    def from_embedding(cls, layer, balance=None):
        """The reverse projection of a Keras int8 embedding (hidden -> logits).

        Without ``balance``, on the embedding's own int8 table (Keras reads a row back as
        ``values / embeddings_scale``). With it (one factor per channel,
        :func:`keras_gemma_app.channel_balance.channel_scale`), on the rows ``W * balance``
        quantized again to int8, one scale per row; inputs are divided by ``balance`` at each call.
        """
        import torch

        values, keras_scale = layer._embeddings.value, layer.embeddings_scale.value
        if balance is None:
            return cls(values, 1 / keras_scale.to(torch.float64))
        balance = balance.to(torch.float32)
        weight = torch.empty_like(values)
        scale = torch.empty(values.shape[0], dtype=torch.float32)
        for start in range(0, values.shape[0], _ROWS_PER_CHUNK):
            stop = start + _ROWS_PER_CHUNK
            rows = values[start:stop].to(torch.float32) * (balance / keras_scale[start:stop, None].to(torch.float32))
            peak = rows.abs().amax(dim=1).clamp_(min=torch.finfo(torch.float32).tiny)
            scale[start:stop] = peak / 127
            weight[start:stop] = torch.round(rows * (127 / peak[:, None])).clamp_(-127, 127).to(torch.int8)
        return cls(weight, scale.to(torch.float64), balance)

    def __call__(self, x):
        """x: (..., in) -> (..., out), in x's dtype."""
        import torch

        shape = x.shape
        flat = x.reshape(-1, shape[-1]).to(torch.float32)
        flat = (flat / self.balance if self.balance is not None else flat).contiguous()
        if flat.shape[0] == 1:
            out = torch.ops.quantized.linear_dynamic(flat, self._packed, _REDUCE_RANGE)
        else:
            # One quantization range per row: each row scaled to a largest magnitude of 1, then back.
            peak = torch.amax(torch.abs(flat), dim=1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny)
            out = torch.ops.quantized.linear_dynamic(flat / peak, self._packed, _REDUCE_RANGE) * peak
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)
