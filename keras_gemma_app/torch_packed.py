"""Weight-only int4 and int8 projections through torch's packed CPU kernels.

Keras stores a quantized ``EinsumDense`` kernel flattened to 2-D by a plain
reshape (``[reduced dims, other dims]``), which for a multi-head query kernel
``(heads, in, head_dim)`` does not group along the input features; and Keras
computes the product by dequantizing the whole kernel first. Torch has CPU
kernels that read packed 4- and 8-bit weights directly:
``aten._weight_int4pack_mm_for_cpu`` (groups along the input features, a scale
and a zero per group and output) and ``aten._weight_int8pack_mm`` (a scale per
output). This module takes the values a Keras quantized layer stands for — its
own dequantization, exactly — and re-packs them for those kernels, grouped
along the real input features.

For int4 layers whose Keras groups already run along the input features (the
feed-forward and output kernels, single-head keys and values, the tied
embedding) Keras's 4-bit values, scales and zero points carry over as they are
(:func:`int4_parts`), so nothing is lost; the multi-head query kernel is
re-grouped and quantized again by :mod:`keras_gemma_app.int4_grid`'s search, a
second rounding. int8 layers are re-packed from their dequantized values (one
scale per output, as Keras's). (An int8 LM head runs another way where it can:
:mod:`keras_gemma_app.dynamic_int8`.)
"""

from __future__ import annotations

from keras_gemma_app import weight_only_kernel
from keras_gemma_app.quantization import quantization_mode

# Rows re-packed at a time: bounds the float32 scratch for the 262k-row embedding.
_CHUNK_ROWS = 16384
# Group sizes the int4 kernel takes.
INT4_GROUPS = (32, 64, 128, 256)


_OPS = {}


def packed_ops():
    """The two kernels as custom ops, registered once torch is loaded.

    torch.compile's own lowering of ``_weight_int4pack_mm_for_cpu`` may hand the
    kernel a strided activation, which it refuses ("expect A to be contiguous");
    behind a custom op the kernel runs as written, with a contiguous input.
    """
    if _OPS:
        return _OPS
    import torch

    # Explicit schemas: this module's annotations are strings (``from __future__ import annotations``).
    @torch.library.custom_op("keras_gemma_app::int4pack_mm", mutates_args=(),
                             schema="(Tensor x, Tensor weight, int group, Tensor scale_zero) -> Tensor")
    def int4pack_mm(x, weight, group, scale_zero):
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x.contiguous(), weight, group, scale_zero)

    @int4pack_mm.register_fake
    def _(x, weight, group, scale_zero):
        return x.new_empty((x.shape[0], weight.shape[0]))

    @torch.library.custom_op("keras_gemma_app::int8pack_mm", mutates_args=(),
                             schema="(Tensor x, Tensor weight, Tensor scale) -> Tensor")
    def int8pack_mm(x, weight, scale):
        return torch.ops.aten._weight_int8pack_mm(x.contiguous(), weight, scale)

    @int8pack_mm.register_fake
    def _(x, weight, scale):
        return x.new_empty((x.shape[0], weight.shape[0]))

    _OPS.update(int4=int4pack_mm, int8=int8pack_mm)
    return _OPS




def int4_block_size(layer) -> int | None:
    """The sub-channel group size of an int4 layer (None: one scale per output)."""
    block = getattr(layer, "_int4_block_size", None)
    return None if block in (None, -1) else int(block)


def dense_kernel(layer):
    """An ``EinsumDense`` kernel as float32, in its original shape: Keras's own dequantization."""
    import torch

    mode = quantization_mode(layer)
    if mode is None:
        return layer.kernel.value.to(torch.float32)
    if mode == "int8":
        # Keras's int8 call divides by the scale laid out against the kernel's axes.
        scale = layer._adjust_scale_for_dequant(layer.kernel_scale.value)
        return layer._kernel.value.to(torch.float32) / scale.to(torch.float32)
    scale = layer.kernel_scale.value.to(torch.float32)
    columns = layer._int4_unpacked_column_size
    values = unpack_int4_rows(layer._kernel.value, columns).to(torch.float32)
    if int4_block_size(layer) is None:
        flat = values / scale
    else:
        groups = layer.g_idx.value.to(torch.int64)
        zero = layer.kernel_zero.value.to(torch.float32)
        flat = (values - zero[groups]) * scale[groups]
    return flat.reshape(tuple(layer.original_kernel_shape))


def embedding_rows(layer, ids, dtype):
    """Rows ``ids`` of a (possibly quantized) Keras embedding, dequantized as Keras does, in ``dtype``."""
    import torch

    mode = quantization_mode(layer)
    if mode is None:
        return layer.embeddings.value[ids].to(dtype)
    scale = layer.embeddings_scale.value[ids].to(torch.float32)
    if mode == "int8":
        rows = layer._embeddings.value[ids].to(torch.float32) / scale[..., None]
        return rows.to(dtype)
    columns = layer.output_dim
    values = unpack_int4_rows(layer._embeddings.value[ids], columns).to(torch.float32)
    block = int4_block_size(layer)
    if block is None:
        rows = values / scale[..., None]
    else:
        groups = layer.g_idx.value.to(torch.int64)
        zero = layer.embeddings_zero.value[ids].to(torch.float32)
        rows = (values - zero[..., groups]) * scale[..., groups]
    return rows.to(dtype)


def unpack_int4_rows(packed, columns: int):
    """Keras's int4 packing along the last axis undone in torch (what Keras's ``unpack_int4`` gives,
    int8 in [-8, 7]), in a few torch calls instead of Keras ops (an int4 embedding row 0.18 -> 0.06 ms).

    Keras keeps the element at an even position in a byte's low nibble, the next one in its high
    nibble, both signed.
    """
    import torch

    low = torch.bitwise_right_shift(torch.bitwise_left_shift(packed, 4), 4)
    high = torch.bitwise_right_shift(packed, 4)
    return torch.stack([low, high], dim=-1).reshape(*packed.shape[:-1], -1)[..., :columns]


def _embedding_chunk(layer, start: int, stop: int):
    import torch

    return embedding_rows(layer, torch.arange(start, stop), torch.float32)


def _torch_scale_zero(scale, zero):
    """Keras's ``(v - z) * s`` as the int4 kernel's ``(q - 8) * scale + zero`` with ``q = v + 8``:
    (groups, out, 2) float32 from scale and zero laid out (groups, out)."""
    import torch

    scale = scale.to(torch.float32)
    return torch.stack([scale, -zero.to(torch.float32) * scale], dim=-1)


def int4_parts(dense, matrix):
    """4-bit codes (out, in) int32 in 0..15 and (groups, out, 2) scale/zero for an int4 ``EinsumDense``.

    ``matrix`` is the layer's dequantized (in, out) matrix as the caller multiplies it. When it is
    Keras's own flat view of the kernel (its groups then run along the matrix's inputs) Keras's
    values, scales and zero points carry over exactly; otherwise (the multi-head query kernel) the
    matrix is quantized again, grouped along its inputs, by :mod:`keras_gemma_app.int4_grid`'s search.
    """
    import numpy as np
    import torch

    group = int4_block_size(dense)
    columns = dense._int4_unpacked_column_size
    values = unpack_int4_rows(dense._kernel.value, columns).to(torch.float32)
    if group is not None and group in INT4_GROUPS and matrix.shape == values.shape:
        groups = dense.g_idx.value.to(torch.int64)
        scale = dense.kernel_scale.value.to(torch.float32)
        zero = dense.kernel_zero.value.to(torch.float32)
        if torch.equal(matrix.to(torch.float32), (values - zero[groups]) * scale[groups]):
            return (values + 8).to(torch.int32).transpose(0, 1).contiguous(), _torch_scale_zero(scale, zero)
    from keras_gemma_app.int4_grid import quantize_grouped

    group = group if group in INT4_GROUPS else _fallback_group(matrix.shape[0])
    values, scale, zero = (torch.as_tensor(np.asarray(part)) for part in
                           quantize_grouped(matrix.to(torch.float32).numpy(), group, to_numpy=True))
    return (values.to(torch.int32) + 8).transpose(0, 1).contiguous(), _torch_scale_zero(scale, zero)


def _embedding_int4_chunks(layer, group: int):
    """(codes (rows, dim), scale/zero (groups, rows, 2)) blocks of a Keras int4 embedding, exactly."""
    import torch

    for start in range(0, layer.input_dim, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, layer.input_dim)
        values = unpack_int4_rows(layer._embeddings.value[start:stop], layer.output_dim)
        scale = layer.embeddings_scale.value[start:stop].transpose(0, 1)
        zero = layer.embeddings_zero.value[start:stop].transpose(0, 1)
        yield (values.to(torch.int32) + 8), _torch_scale_zero(scale, zero)


class PackedLinear:
    """``x @ W`` with ``W`` (in, out) held as packed int4 or int8 for torch's CPU kernels, or for the
    app's kernels (:mod:`keras_gemma_app.weight_only_kernel`) where they run.

    Built from float32 row blocks of ``W.T`` (out, in), so that a 262k-row
    matrix never sits in float32 whole.
    """

    def __init__(self, mode: str, group: int | None, out_features: int, in_features: int, row_blocks,
                 int4_blocks=None):
        import torch

        # The kernels are fast with bfloat16 activations only (float32: 30x slower for int4 here).
        dtype = torch.bfloat16
        if mode not in ("int8", "int4"):
            raise ValueError(f"Expected int8 or int4, received {mode!r}.")
        self.mode = mode
        self.dtype = dtype
        self.out_features = out_features
        self.in_features = in_features
        packed, params = [], []
        self._blocked = None
        if mode == "int4":
            self.group = group if group in INT4_GROUPS and in_features % group == 0 else _fallback_group(in_features)
            if int4_blocks is None:
                int4_blocks = (_int4_rows(rows, self.group) for rows in row_blocks)
            if _app_kernels() and weight_only_kernel.takes_group(self.group, in_features):
                # The app's kernel: float32 throughout, and faster than torch's at every row count.
                self._blocked = weight_only_kernel.BlockedInt4(int4_blocks, self.group)
                self.weight, self.scale_zero = self._blocked.weight, self._blocked.scale_zero
                return
            for q, scale_zero in int4_blocks:
                packed.append(torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 2))
                params.append(scale_zero)
            self.weight = torch.cat(packed, dim=0)
            # (groups, out, 2): scale and zero per group and output.
            self.scale_zero = torch.cat(params, dim=1).to(dtype).contiguous()
        else:
            self.group = None
            for rows in row_blocks:
                scale = rows.abs().amax(dim=1).clamp(min=1e-12) / 127
                packed.append(torch.clamp(torch.round(rows / scale[:, None]), -127, 127).to(torch.int8))
                params.append(scale)
            weight, scale = torch.cat(packed, dim=0).contiguous(), torch.cat(params)
            if _app_kernels():
                self._blocked = weight_only_kernel.BlockedInt8(weight, scale)
                self.weight, self.scale = self._blocked.weight, self._blocked.scale
                return
            self.weight = weight
            self.scale = scale.to(dtype)

    def __call__(self, x):
        """x: (..., in) -> (..., out), in x's dtype; the product runs in bfloat16 (torch's kernels) or
        float32 (the app's).

        Eager torch calls the kernels themselves (a custom op's dispatch costs ~15 us a call), and so
        does compiled code for one row (a row is contiguous whatever its strides); compiled code for
        several rows calls them as the custom ops of :func:`packed_ops`.
        """
        import torch

        shape = x.shape
        if self._blocked is not None:
            out = self._blocked(x.reshape(-1, shape[-1]).to(torch.float32))
            return out.reshape(*shape[:-1], self.out_features).to(x.dtype)
        flat = x.reshape(-1, shape[-1]).to(self.dtype)
        if torch.compiler.is_compiling() and not (isinstance(flat.shape[0], int) and flat.shape[0] == 1):
            ops = packed_ops()
            int4, int8 = ops["int4"], ops["int8"]
        else:
            flat = flat.contiguous()
            int4, int8 = torch.ops.aten._weight_int4pack_mm_for_cpu, torch.ops.aten._weight_int8pack_mm
        if self.mode == "int4":
            out = int4(flat, self.weight, self.group, self.scale_zero)
        else:
            out = int8(flat, self.weight, self.scale)
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)

    @classmethod
    def from_matrix(cls, matrix, mode: str, group: int | None):
        """From a float (in, out) matrix."""
        transposed = matrix.transpose(0, 1).contiguous()
        out_features, in_features = transposed.shape
        blocks = (transposed[i:i + _CHUNK_ROWS] for i in range(0, out_features, _CHUNK_ROWS))
        return cls(mode, group, out_features, in_features, blocks)

    @classmethod
    def from_int4_parts(cls, parts):
        """From :func:`int4_parts` of several layers side by side (outputs concatenated)."""
        import torch

        codes = torch.cat([q for q, _ in parts], dim=0)
        scale_zero = torch.cat([sz for _, sz in parts], dim=1)
        out_features, in_features = codes.shape
        group = in_features // scale_zero.shape[0]
        return cls("int4", group, out_features, in_features, None, int4_blocks=[(codes, scale_zero)])

    @classmethod
    def from_embedding(cls, layer, mode: str, group: int | None):
        """The reverse projection of a Keras embedding: hidden (…, dim) -> logits (…, vocabulary)."""
        vocabulary, dim = layer.input_dim, layer.output_dim
        if mode == "int4" and group in INT4_GROUPS and dim % group == 0:
            # Keras's groups run along the embedding's features: its values carry over exactly.
            return cls(mode, group, vocabulary, dim, None, int4_blocks=_embedding_int4_chunks(layer, group))
        blocks = (_embedding_chunk(layer, i, min(i + _CHUNK_ROWS, vocabulary))
                  for i in range(0, vocabulary, _CHUNK_ROWS))
        return cls(mode, group, vocabulary, dim, blocks)

    def int8_rows(self):
        """An int8 product's weights (out, in) int8 and scales (out,), whichever kernel holds them."""
        if self._blocked is not None:
            return self._blocked.rows()
        return self.weight, self.scale

    @property
    def nbytes(self) -> int:
        params = self.scale_zero if self.mode == "int4" else self.scale
        return self.weight.numel() * self.weight.element_size() + params.numel() * params.element_size()


def _app_kernels() -> bool:
    """Whether products go to :mod:`keras_gemma_app.weight_only_kernel`: where it runs, and not under
    ``KERAS_GEMMA_TORCH_COMPILE=1``. Compiled code would call it through a custom op, whose dispatch
    cost more than the kernel saves (int4 preset, compiled, 67.7 and 62.0 tokens/s with the int4
    kernel, 83.9 without); it calls torch's kernels directly."""
    from keras_gemma_app.torch_gemma3 import compile_requested

    return weight_only_kernel.available() and not compile_requested()


def _fallback_group(in_features: int) -> int:
    for group in (32, 64, 128, 256):
        if in_features % group == 0:
            return group
    raise ValueError(f"Expected input features divisible by 32 for int4, received {in_features}.")


def _int4_rows(rows, group: int):
    """Asymmetric 4-bit codes (0..15) and (groups, rows, 2) scale/zero for ``(q - 8) * scale + zero``."""
    import torch

    n, k = rows.shape
    grouped = rows.reshape(n, k // group, group)
    low = grouped.amin(dim=-1)
    high = grouped.amax(dim=-1)
    scale = torch.clamp(high - low, min=1e-12) / 15
    q = torch.clamp(torch.round((grouped - low[..., None]) / scale[..., None]), 0, 15)
    zero = low + 8 * scale
    scale_zero = torch.stack([scale, zero], dim=-1).transpose(0, 1)
    return q.reshape(n, k).to(torch.int32), scale_zero
