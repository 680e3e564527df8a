"""How much memory a Gemma model takes once loaded, per backend and precision.

On a CPU the whole process counts: the backend, keras and keras_hub after
import, plus the weights, plus a fixed part (tokenizer, compiled functions).
The figures are resident memory measured after loading Gemma 3 270M from
a local preset with this app and generating a few tokens (Keras 3.15,
KerasHub 0.32, 2-core Linux; mean of two runs):

=========== ======== ============== ======== =====================
backend     import   weights factor fixed    measured (f32 / bf16)
=========== ======== ============== ======== =====================
jax         0.80 GiB 1.02 ×         0.58 GiB 2.40 / 2.27 GiB
tensorflow  0.79 GiB 2.02 ×         0.44 GiB 3.24 / 2.23 GiB
torch       1.03 GiB 1.05 ×         0.30 GiB 2.33 / 2.30 GiB
=========== ======== ============== ======== =====================

TensorFlow holds about twice the weights' size once loaded (measured, not explained).
In bfloat16 the app's torch decoder keeps a second copy of the weights, packed
for oneDNN (a faster product, see :mod:`onednn_linear`): 2.05 × (two runs, 2.38
and 2.39 GiB for 270M). On JAX in bfloat16 the prefill multiplies through float32
copies of the projection kernels (:mod:`float32_kernels`; not of the tied
embedding): +0.76 × the weights (2.26 and 2.28 GiB for 270M; more for models
whose projections are a larger share of the weights), counted only where the
app would make them (at most a quarter of the RAM available).

Quantized weights (presets saved by ``keras-gemma quantize``; int4 in groups
of 32 with a bfloat16 scale and an int8 zero per group, 0.6 bytes a weight),
measured the same way:

=========== ============ ============
backend     int8         int4
=========== ============ ============
jax         1.63 GiB     1.75 GiB
tensorflow  2.31 GiB     2.52 GiB
torch       1.82 GiB     1.76 GiB
=========== ============ ============

The int4 level keeps the embedding table and the first four blocks at int8
(:mod:`keras_gemma_app.quantization`): its weights count 0.6 bytes each and
those kept at int8 1 byte, where the embedding's size is known
(``eight_bit_params``; the catalogue knows it for Gemma 1 to 3, each block an
equal share of the rest). The factors above were fitted with the embedding
alone at 1 byte (the four blocks add 9 MB of weights for 270M).

The weights count once on JAX, about twice on torch (the app keeps a packed
copy for torch's int kernels) and, on TensorFlow, once plus a dequantized
bfloat16 copy in the compiled step; what the measurement holds beyond that is
taken as a fixed extra (transient load buffers the allocator keeps). For a
model as small as 270M the runtime dominates, and int8/int4 save little
resident memory on a CPU (0.2 GiB against bfloat16 on JAX). One model size
cannot separate the fixed from the proportional part: for other sizes these
are estimates.
Loading itself peaks higher for a moment (up to about twice the weights on
jax); the figures here are what the model needs to stay loaded and generate.
On a GPU or TPU the weights live in device memory: the estimate there is the
weights plus 20% for activations, the cache of keys and values, and the
framework's workspace — a rule of thumb, not a measurement.
"""

from __future__ import annotations

import dataclasses

from keras_gemma_app.errors import SettingsError
from keras_gemma_app.hardware import GIB

# Bytes per parameter of the weights at each precision.
BYTES_PER_PRECISION = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "int8": 1.0, "int4": 0.6}
# The precisions `show` reports (float16 takes as much room as bfloat16).
PRECISIONS = ("float32", "bfloat16", "int8", "int4")

# Resident memory after `import keras_hub` on each backend.
RUNTIME_BYTES = {"jax": 0.80 * GIB, "tensorflow": 0.79 * GIB, "torch": 1.03 * GIB}
# Resident bytes per byte of weights, and the part that does not grow with them.
WEIGHTS_FACTOR = {"jax": 1.02, "tensorflow": 2.02, "torch": 1.05}
FIXED_BYTES = {"jax": 0.58 * GIB, "tensorflow": 0.44 * GIB, "torch": 0.30 * GIB}
# Where a precision differs from the backend's rule: (resident bytes per byte of weights,
# fixed extra bytes), per backend and precision.
PER_PRECISION = {
    ("torch", "bfloat16"): (2.05, 0.0),
    ("jax", "int8"): (1.0, 0.0), ("jax", "int4"): (1.0, 0.16 * GIB),
    ("tensorflow", "int8"): (3.0, 0.33 * GIB), ("tensorflow", "int4"): (2.40, 0.78 * GIB),
    ("torch", "int8"): (2.05, 0.0), ("torch", "int4"): (2.05, 0.0),
}
DEVICE_FACTOR = 1.2
# JAX on a CPU with 16-bit weights: the prefill's float32 copies of the projection kernels, per byte
# of weights (Gemma 3 270M: 2.26-2.28 GiB resident with them, 1.89 without). They are made only
# while they take at most float32_kernels.RAM_SHARE of the RAM available, so they count only then.
JAX_COPIES_FACTOR = 0.76


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Memory to load and run a model.

    Attributes:
        weights_bytes: the weights alone at this precision.
        total_bytes: what the model needs on ``device`` (whole process on a CPU).
        device: "cpu", "gpu" or "tpu".
        precision: float32, bfloat16, float16, int8 or int4.
        backend: jax, tensorflow or torch.
    """

    weights_bytes: int
    total_bytes: int
    device: str
    precision: str
    backend: str


def weights_bytes(params: int, precision: str, eight_bit_params: int | None = None) -> int:
    """Bytes ``params`` weights take at ``precision`` (int4: the ``eight_bit_params`` of them at int8)."""
    if precision not in BYTES_PER_PRECISION:
        raise SettingsError(f"Unknown precision {precision!r}: expected one of {', '.join(BYTES_PER_PRECISION)}.")
    if precision == "int4" and eight_bit_params:
        eight_bit = min(eight_bit_params, params)
        return int((params - eight_bit) * BYTES_PER_PRECISION["int4"] + eight_bit * BYTES_PER_PRECISION["int8"])
    return int(params * BYTES_PER_PRECISION[precision])


def _jax_copies_bytes(weights: float, available_bytes: int | None) -> float:
    """Bytes of the float32 kernel copies JAX's 16-bit prefill makes with ``available_bytes`` of RAM
    available (:func:`float32_kernels.fits`), else 0."""
    from keras_gemma_app.float32_kernels import fits

    copies = JAX_COPIES_FACTOR * weights
    return copies if fits(copies, available_bytes) else 0.0


def estimate_memory(params: int, precision: str, backend: str = "jax", device: str = "cpu",
                    available_bytes: int | None = None, eight_bit_params: int | None = None) -> MemoryEstimate:
    """Memory a model of ``params`` parameters needs at ``precision`` on ``backend``.

    ``available_bytes``: the RAM available to the model, when known; on JAX at 16 bits it decides
    whether the prefill's float32 kernel copies (:mod:`float32_kernels`) are counted.
    ``eight_bit_params``: the weights the int4 level keeps at int8, when known
    (:attr:`catalogue.Entry.int4_eight_bit_params`).
    """
    if backend not in RUNTIME_BYTES:
        raise SettingsError(f"Unknown backend {backend!r}: expected one of {', '.join(RUNTIME_BYTES)}.")
    weights = weights_bytes(params, precision, eight_bit_params)
    if device == "cpu":
        factor, extra = PER_PRECISION.get((backend, precision), (WEIGHTS_FACTOR[backend], 0.0))
        total = RUNTIME_BYTES[backend] + FIXED_BYTES[backend] + extra + factor * weights
        if backend == "jax" and precision in ("bfloat16", "float16"):
            total += _jax_copies_bytes(weights, available_bytes)
    else:
        total = DEVICE_FACTOR * weights
    return MemoryEstimate(weights, int(total), device, precision, backend)
