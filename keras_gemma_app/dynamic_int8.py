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
uses it for the LM head and, balanced, for the int8 blocks' gate products
(:mod:`keras_gemma_app.torch_gemma3`).

The engine quantizes a whole input with one range; rows are scaled to the same
largest magnitude first (and the outputs back), so a row of small values is not
quantized on the range of a row of large ones. Within a row, a few large
channels still take the range from the rest: :class:`BalancedInt8Head` evens
the channels out against the weights' first (:mod:`keras_gemma_app.channel_balance`),
which brings the LM head back to float32's perplexity (29.11 -> 28.89), and on a CPU with VNNI
the activations keep 8 bits instead of the engine's safe 7 (:func:`reduce_range`): 28.74.

Where :mod:`keras_gemma_app.int8_kernel` runs (x86 with 512-bit VNNI and a C compiler), the products
go through it instead of the engine's own matrix product: the same quantized input, the same values
bit for bit, and the head's weights read front to back (~5.9 instead of ~6.7 ms a token).
"""

from __future__ import annotations

import functools
import itertools
import threading
import warnings
import weakref

from keras_gemma_app import cpu_flags, int8_kernel

# CPU flags of the dot-product instructions that sum 8-bit products straight into 32 bits (VNNI).
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# Rows of the balanced head packed at a time: bounds the build's scratch (float32 rows, int8 copies).
_ROWS_PER_PART = 65536
_ROWS_PER_CHUNK = 4096

# Products by key, for the custom op that stands for them in compiled code (see _engine_op).
_PRODUCTS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_KEYS = itertools.count()
_ENGINE_OP = []
# Parts of a table are packed in threads side by side: the first products may be built at once.
_ENGINE_OP_LOCK = threading.Lock()


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


def has_vnni(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo``'s text lists a VNNI dot-product instruction set."""
    return _vnni_in(cpu_flags.parse(cpuinfo))


def _vnni_in(flags: set[str]) -> bool:
    return any(flag in flags for flag in _VNNI_FLAGS)


@functools.cache
def reduce_range() -> bool:
    """Whether activations are quantized to 7 bits instead of 8.

    Without VNNI the engine adds pairs of 8-bit products in 16 bits, which 8-bit activations can
    saturate: the engine's 7-bit setting then keeps it exact. With VNNI (read from ``/proc/cpuinfo``;
    7 bits where it cannot be read) products go straight into 32 bits and 8 bits are safe: Gemma 3
    270M's int8 LM head, perplexity 28.89 -> 28.74 (float32 28.88), at the same speed.
    """
    flags = cpu_flags.read()
    return flags is None or not _vnni_in(flags)


class DynamicInt8Linear:
    """``x @ W.T`` for int8 ``W`` (out, in) with one scale per output, activations quantized per call."""

    def __init__(self, weight, scale):
        import torch

        if weight.dtype != torch.int8 or weight.ndim != 2:
            raise ValueError(f"Expected a 2-D int8 weight, received {tuple(weight.shape)} {weight.dtype}.")
        self.out_features, self.in_features = weight.shape
        self._blocked = None
        if int8_kernel.available():
            _quantize_quietly()
            self._blocked = int8_kernel.BlockedInt8(weight, scale)
        else:
            self._packed = self._prepack(weight, scale)
        # torch.compile cannot trace the engine's packed weights: compiled code calls this product
        # through a custom op that finds it by key (registered here, before any tracing).
        _engine_op()
        key = next(_KEYS)
        _PRODUCTS[key] = self
        # A tensor, not an int: compiled code would specialize on an int, one graph per product.
        self._key = torch.tensor(key)

    def _prepack(self, weight, scale):
        import torch

        with warnings.catch_warnings():
            # torch warns that its quantized tensor types are to be removed in a later release; this
            # one has them (where it does not, available() is False and the weight-only kernel runs).
            warnings.simplefilter("ignore", UserWarning)
            quantized = torch._make_per_channel_quantized_tensor(
                weight.contiguous(), scale.to(torch.float64), torch.zeros(self.out_features, dtype=torch.int64), 0)
            return torch.ops.quantized.linear_prepack(quantized, None)

    @classmethod
    def from_embedding(cls, layer):
        """The reverse projection of a Keras int8 embedding (hidden -> logits), on its own int8 table:
        Keras reads a row back as ``values / embeddings_scale``."""
        import torch

        return cls(layer._embeddings.value, 1 / layer.embeddings_scale.value.to(torch.float64))

    def __call__(self, x):
        """x: (..., in) -> (..., out), in x's dtype."""
        import torch

        shape = x.shape
        flat = x.reshape(-1, shape[-1]).to(torch.float32)
        if torch.compiler.is_compiling():
            out = _engine_op()(flat, self._key, self.out_features)
        else:
            out = self._product(flat.contiguous())
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def _product(self, flat):
        """(rows, in) float32, contiguous -> (rows, out) float32."""
        import torch

        if flat.shape[0] == 1:
            return self._engine(flat)
        # One quantization range per row: each row scaled to a largest magnitude of 1, then back.
        peak = torch.amax(torch.abs(flat), dim=1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny)
        return self._engine(flat / peak) * peak

    def _engine(self, flat):
        """The engine's product: ``flat`` quantized with one range, times the int8 weight."""
        import torch

        if self._blocked is None:
            return torch.ops.quantized.linear_dynamic(flat, self._packed, reduce_range())
        scale, zero_point = torch._choose_qparams_per_tensor(flat, reduce_range())
        quantized = torch.quantize_per_tensor(flat, scale, zero_point, torch.quint8).int_repr()
        return self._blocked(quantized, zero_point, scale)


def _quantize_quietly():
    """Quantizes a tensor with torch's warning hidden: the first quantized tensor a process makes
    warns that their types are to be removed in a later release (once a process; this one has them)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.quantize_per_tensor(torch.zeros(1), 1.0, 0, torch.quint8)


def _engine_op():
    """``keras_gemma_app::dynamic_int8_mm(x, key, out_features)``: the :class:`DynamicInt8Linear`
    registered under ``key`` (a 0-d tensor) applied to ``x`` (rows, in), as one opaque call in code
    torch.compile traces."""
    if _ENGINE_OP:
        return _ENGINE_OP[0]
    with _ENGINE_OP_LOCK:
        if not _ENGINE_OP:
            _ENGINE_OP.append(_register_engine_op())
    return _ENGINE_OP[0]


def _register_engine_op():
    import torch

    @torch.library.custom_op("keras_gemma_app::dynamic_int8_mm", mutates_args=(),
                             schema="(Tensor x, Tensor key, int out_features) -> Tensor")
    def dynamic_int8_mm(x, key, out_features):
        return _PRODUCTS[int(key)]._product(x.contiguous())

    @dynamic_int8_mm.register_fake
    def _(x, key, out_features):
        return x.new_empty((x.shape[0], out_features))

    return dynamic_int8_mm


def int8_rows(rows):
    """float32 ``rows`` -> their values rounded to int8 (as float32, in [-127, 127]) and one step a row."""
    import torch

    step = rows.abs().amax(dim=1).clamp_(min=1e-30) / 127
    return torch.round(rows / step[:, None]).clamp_(-127, 127), step


class BalancedInt8Linear:
    """``x @ W.T`` for an int8 weight ``(out, in)`` read back as ``weight * scale`` (one scale per output),
    its input channels balanced first (:mod:`keras_gemma_app.channel_balance`, from ``input_peaks``, the
    largest ``|x_i|`` seen on sample inputs): the rescaled rows are rounded to int8 again and an input is
    divided by the balance before the engine quantizes it."""

    def __init__(self, weight, scale, input_peaks):
        import torch

        from keras_gemma_app.channel_balance import channel_scale, column_peaks

        rows = weight.to(torch.float32) * scale.to(torch.float32)[:, None]
        self.balance = channel_scale(column_peaks(rows), input_peaks[None])
        self.out_features, self.in_features = weight.shape
        values, step = int8_rows(rows.mul_(self.balance))
        self.linear = DynamicInt8Linear(values.to(torch.int8), step.to(torch.float64))

    def __call__(self, x):
        """x: (..., in) -> (..., out), in x's dtype."""
        import torch

        return self.linear(x.to(torch.float32) / self.balance).to(x.dtype)


class BalancedInt8Head:
    """The LM head of a Keras int8 embedding (hidden -> logits), its input channels balanced.

    The table's rows (``values / row_scale``, as Keras reads them) times ``balance`` (one factor per
    channel, :func:`keras_gemma_app.channel_balance.channel_scale`) are rounded to int8 again, one
    scale per row, and an input is divided by ``balance`` before the engine quantizes it. Packed in
    parts of :data:`_ROWS_PER_PART` rows, as many at a time as torch has threads, in threads that end
    (:mod:`keras_gemma_app.short_threads`; the engine packs on one core): Gemma 3 270M ~2 s on 2 cores.
    """

    def __init__(self, values, row_scale, balance):
        import torch

        from keras_gemma_app.short_threads import side_by_side

        self.balance = balance.to(torch.float32)
        rows = values.shape[0]
        starts = list(range(0, rows, _ROWS_PER_PART))
        threads = max(1, min(torch.get_num_threads(), len(starts)))

        def build(mine):
            return [self._part(values, row_scale, start, min(start + _ROWS_PER_PART, rows)) for start in mine]

        built = side_by_side([lambda mine=starts[i::threads]: build(mine) for i in range(threads)])
        # Back in row order: thread i built parts i, i + threads, ...
        self.parts = [None] * len(starts)
        for i, parts in enumerate(built):
            self.parts[i::threads] = parts

    def _part(self, values, row_scale, start: int, stop: int):
        import torch

        with torch.inference_mode():
            weight = torch.empty((stop - start, values.shape[1]), dtype=torch.int8)
            scale = torch.empty(stop - start, dtype=torch.float64)
            for first in range(start, stop, _ROWS_PER_CHUNK):
                last = min(first + _ROWS_PER_CHUNK, stop)
                rows = values[first:last].to(torch.float32) * self.balance
                q, step = int8_rows(rows.div_(row_scale[first:last, None].to(torch.float32)))
                weight[first - start:last - start] = q
                scale[first - start:last - start] = step
            return DynamicInt8Linear(weight, scale)

    @classmethod
    def from_embedding(cls, layer, balance):
        """The head of a Keras int8 ``Embedding`` (rows read back as ``values / embeddings_scale``)."""
        return cls(layer._embeddings.value, layer.embeddings_scale.value, balance)

    def __call__(self, x):
        """x: (..., in) -> (..., out), in x's dtype."""
        import torch

        scaled = x.to(torch.float32) / self.balance
        return torch.cat([part(scaled) for part in self.parts], dim=-1).to(x.dtype)
