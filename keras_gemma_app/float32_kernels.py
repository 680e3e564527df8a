"""16-bit products on JAX from float32 copies of the kernels, with the same values.

XLA:CPU has no bfloat16 (or float16) matrix product: for ``einsum(x, kernel)``
on 16-bit operands it converts both to float32, multiplies in float32 and rounds
the result. The kernels' conversion runs at every call of a compiled function
(inside the decode loop it is hoisted: once per call), and it dominated the
prompt's pass: Gemma 3 270M prefilled a 16-token prompt (48 rows, see
``decoding.bucket``) in ~185 ms in bfloat16, against 91 ms with float32 weights.

:class:`Float32Kernels` keeps a float32 copy of each ``EinsumDense`` kernel and,
while :meth:`Float32Kernels.computing` is active during tracing, makes those
layers compute ``cast(einsum(cast(x, float32), kernel32), bfloat16)`` — the
operations XLA runs for the 16-bit product, minus the kernel's conversion. The
input passes an ``optimization_barrier`` first: without it XLA fused the
input's producer (``gelu(a) * b`` before the feed-forward output) differently
and its values moved; with it the logits equal KerasHub's bit for bit (the
tests compare them, and the real model's tokens). Each copy is kept in the
axis order the product reads (:func:`_product_order`), or XLA transposed the
query kernels at every call. Prefill with the copies: ~120 ms. For float32
weights only the kernels XLA would transpose are copied (Gemma 3's query
kernels: 47 MB for 270M; its float32 prefill 131–149 → 118–131 ms).

The copies cost four bytes per kernel weight beside the two of bfloat16 (~400 MB
for Gemma 3 270M, whose tied embedding is not copied). Only the prefill uses
them: the decode loop, handed them, ran ~6% slower a token than with its own
hoisted conversion.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref

_HALF = ("bfloat16", "float16")
# The copies are made only while they take at most this share of the RAM available.
RAM_SHARE = 0.25
_active = threading.local()
_shared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _eligible(layer) -> bool:
    """An ``EinsumDense`` that computes exactly ``einsum(equation, x, kernel)`` with its kernel in its
    compute dtype, and whose copy saves work: any 16-bit kernel, a float32 one XLA would transpose."""
    from keras import activations
    from keras.layers import EinsumDense

    if not (type(layer) is EinsumDense and layer.quantization_mode is None and layer.bias is None
            and layer.activation is activations.linear and not layer.lora_enabled
            and layer.compute_dtype == layer.kernel.dtype):
        return False
    order = _product_order(layer.equation)
    if sorted(order) != list(range(len(layer.kernel.shape))):
        return False
    moved = [axis for axis in order if layer.kernel.shape[axis] != 1]  # axes of one element move nothing
    return layer.kernel.dtype in _HALF or (layer.kernel.dtype == "float32" and moved != sorted(moved))


class Float32Kernels:
    """Float32 copies of a backbone's 16-bit ``EinsumDense`` kernels, for JAX programs.

    Pass :attr:`values` into the compiled function as an argument and trace
    its body inside ``computing(values)``.
    """

    def __init__(self, backbone):
        self.layers = [layer for layer in backbone._flatten_layers(include_self=False) if _eligible(layer)]
        self._sources = []
        self._values = []

    @property
    def values(self) -> list:
        """The float32 copies, made again if a kernel was assigned since they were made; none once a
        layer no longer qualifies (quantized since, say)."""
        import jax.numpy as jnp

        if not all(_eligible(layer) for layer in self.layers):
            self._sources, self._values = [], []
            return []
        sources = [layer.kernel.value for layer in self.layers]
        if len(sources) != len(self._sources) or any(a is not b for a, b in zip(sources, self._sources)):
            self._values = []  # the old copies go before the new ones are made
            self._values = [jnp.transpose(jnp.asarray(source, dtype=jnp.float32), _product_order(layer.equation))
                            for layer, source in zip(self.layers, sources)]
            self._sources = sources
        return self._values

    @property
    def nbytes(self) -> int:
        """Bytes the float32 copies take."""
        return sum(4 * int(math.prod(layer.kernel.shape)) for layer in self.layers)

    @contextlib.contextmanager
    def computing(self, values):
        """While active in this thread, the layers multiply by ``values`` (the traced copies)."""
        for layer in self.layers:
            if "call" not in vars(layer):
                layer.call = _dispatching_call(layer)
        previous = getattr(_active, "kernels", None)
        _active.kernels = {id(layer): value for layer, value in zip(self.layers, values)}
        try:
            yield
        finally:
            _active.kernels = previous


def for_prefill(model) -> Float32Kernels | None:
    """Copies for a decoding adapter's prefill: on JAX on a CPU, for a model with kernels worth
    copying (16-bit ones; float32 ones in another axis order), when the copies fit in
    :data:`RAM_SHARE` of the RAM available ($KERAS_GEMMA_MEMORY where set); else None."""
    import jax
    import keras

    from keras_gemma_app.memory_guard import available_ram

    backbone = getattr(model, "backbone", None)
    if backbone is None or keras.config.backend() != "jax" or jax.default_backend() != "cpu":
        return None
    if backbone in _shared:  # one set of copies per model, whatever the programs and decoders
        return _shared[backbone]
    kernels = Float32Kernels(backbone)
    if not kernels.layers or not fits(kernels.nbytes, available_ram()):
        return None
    _shared[backbone] = kernels
    return kernels


def fits(nbytes: float, available_bytes: int | None) -> bool:
    """Whether copies of ``nbytes`` are made with ``available_bytes`` of RAM available (None: unknown,
    not made): while they take at most :data:`RAM_SHARE` of it."""
    return available_bytes is not None and nbytes <= RAM_SHARE * available_bytes


def _product_order(equation: str) -> tuple[int, ...]:
    """The kernel's axes in the order XLA multiplies them: the summed axes as the inputs list them,
    then the others as the output does. A copy kept in that order is not transposed at each call
    (XLA transposed each (heads, hidden, head_dim) query kernel of Gemma 3 at every call)."""
    inputs_spec, rest = equation.split(",")
    kernel_spec, output_spec = rest.split("->")
    summed = [kernel_spec.index(axis) for axis in inputs_spec if axis in kernel_spec and axis not in output_spec]
    kept = [kernel_spec.index(axis) for axis in output_spec if axis in kernel_spec]
    return tuple(summed + kept)


def _dispatching_call(layer):
    """The layer's own call, or the float32 product while :meth:`Float32Kernels.computing` holds
    a copy for it in this thread (tracing elsewhere, e.g. the decode loop's, is untouched)."""
    import jax
    from keras import ops

    own_call = type(layer).call.__get__(layer)
    inputs_spec, rest = layer.equation.split(",")
    kernel_spec, output_spec = rest.split("->")
    equation = f"{inputs_spec},{''.join(kernel_spec[i] for i in _product_order(layer.equation))}->{output_spec}"

    def call(inputs, training=None):
        kernel = (getattr(_active, "kernels", None) or {}).get(id(layer))
        if kernel is None:
            return own_call(inputs, training=training)
        inputs = jax.lax.optimization_barrier(ops.cast(inputs, layer.compute_dtype))
        product = ops.einsum(equation, ops.cast(inputs, "float32"), kernel)
        return ops.cast(product, layer.compute_dtype)

    return call
