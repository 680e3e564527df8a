"""bfloat16 products on weights packed once for oneDNN, torch's CPU matmul library.

For a bfloat16 matrix product on the CPU, torch hands the weight to oneDNN,
which first re-lays it out for the processor's bfloat16 dot-product
instructions, on every call. At batch 1 that re-layout costs as much as the
product: Gemma 3's 262k-row tied LM head takes ~19 ms per token through
``torch.matmul`` and ~12 ms packed once (``mkldnn._reorder_linear_weight``,
then ``mkldnn._linear_pointwise``, the path ``torch.compile``'s weight freezing
uses). Up to :data:`EXACT_ROWS` rows it is the same kernel on the same values,
so the results are the same bit for bit; the tests hold the decoder to
KerasHub's tokens with it. For more rows oneDNN may choose another kernel than
``torch.matmul`` does (on CPUs with AMX, from 17-33 rows depending on the
shape), so callers that need torch's values run those through the unpacked
weights. The price is a second copy of the weights in memory.
"""

from __future__ import annotations

import functools

_OPS = {}
# The most rows for which the packed product is torch.matmul's, bit for bit, on every CPU tried.
EXACT_ROWS = 16


def _product(x, weight):
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


def _linear_op():
    """The packed product as a custom op: ``torch.compile`` cannot lower the mkldnn op itself."""
    if _OPS:
        return _OPS["linear"]
    import torch

    # An explicit schema: this module's annotations are strings (``from __future__ import annotations``).
    @torch.library.custom_op("keras_gemma_app::onednn_bf16_linear", mutates_args=(),
                             schema="(Tensor x, Tensor weight, int out_features) -> Tensor")
    def linear(x, weight, out_features):
        return _product(x.contiguous(), weight)

    @linear.register_fake
    def _(x, weight, out_features):
        return x.new_empty((x.shape[0], out_features))

    _OPS["linear"] = linear
    return linear


@functools.cache
def available() -> bool:
    """Whether this torch build and CPU run oneDNN's packed bfloat16 products."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class PackedBfloat16Linear:
    """``x @ matrix`` for a bfloat16 ``(in, out)`` matrix, with the matrix packed for oneDNN."""

    def __init__(self, matrix):
        import torch

        if matrix.dtype != torch.bfloat16 or matrix.ndim != 2:
            raise ValueError(f"Expected a 2-D bfloat16 matrix, received {tuple(matrix.shape)} {matrix.dtype}.")
        self.in_features, self.out_features = matrix.shape
        # oneDNN takes the weight as (out, in); the hint is the expected number of rows.
        self._weight = torch.ops.mkldnn._reorder_linear_weight(matrix.t().contiguous(), 1)

    @classmethod
    def from_rows(cls, rows):
        """The product with ``rows.T``: an ``(out, in)`` weight, such as a tied embedding table."""
        return cls(rows.t())

    def __call__(self, x):
        import torch

        flat = x.reshape(-1, self.in_features)
        if torch.compiler.is_compiling():
            out = _linear_op()(flat, self._weight, self.out_features)
        else:  # the custom op's dispatch costs ~20 µs a call in eager mode
            out = _product(flat, self._weight)
        return out.reshape(*x.shape[:-1], self.out_features)

    @property
    def nbytes(self) -> int:
        return 2 * self.in_features * self.out_features
