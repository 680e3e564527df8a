"""A small int8 product kernel for x86 CPUs with 512-bit VNNI, compiled once with the system's C compiler.

torch's x86 engine (fbgemm's ``quantized.linear_dynamic``) multiplies one row
of 8-bit activations by Gemma 3's 262k-row int8 LM head in ~6.7 ms on a 2-core
CPU, where reading its 168 MB from memory takes ~6 ms. Its weights are laid out
for matrix products of many rows; for a few rows, this kernel reads a layout of
blocks of 16 outputs front to back (``int8_kernel.c``) and gives the engine's
values for the same quantized input, bit for bit: the same 32-bit integer sums,
then the same scales in the same order. Measured in a decode loop of the int4
preset, the head took 5.7-6.0 ms instead of 6.4-6.9.

It is built on first use with ``cc`` (or ``$CC``) into the app's cache folder,
and used only where the CPU lists avx512f, avx512bw and avx512_vnni. Where it
cannot be built or run, :func:`available` is False and the engine runs instead.
``KERAS_GEMMA_INT8_KERNEL=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import pathlib

from keras_gemma_app.native_kernel import NativeKernel

ENV = "KERAS_GEMMA_INT8_KERNEL"
KERNEL = NativeKernel(pathlib.Path(__file__).with_name("int8_kernel.c"),
                      ("-mavx512f", "-mavx512bw", "-mavx512vnni"), ("avx512f", "avx512bw", "avx512_vnni"), ENV)
# Outputs per block and inputs per group of the kernel's weight layout.
LANES = 16
GROUP = 4
_SUM_ROWS = 4096
_ARGTYPES = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
             ctypes.c_int64, ctypes.c_int32, ctypes.c_float, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]


def cpu_supports(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo``'s text lists every instruction set the kernel uses."""
    return KERNEL.cpu_supports(cpuinfo)


def _function():
    """The loaded kernel, or None where it cannot be built or run here."""
    return KERNEL.function("int8_rows_product", _ARGTYPES)


def available() -> bool:
    """Whether the kernel runs here (built on the first call)."""
    return _function() is not None


class BlockedInt8:
    """int8 weights ``(out, in)`` with one float scale per output, laid out for the kernel."""

    def __init__(self, weight, scale):
        import torch

        if not available():
            raise RuntimeError("The int8 kernel does not run on this machine.")
        out_features, in_features = weight.shape
        self.out_features = out_features
        self.blocks = -(-out_features // LANES)
        self.groups = -(-in_features // GROUP)
        padded = weight
        if weight.shape != (self.blocks * LANES, self.groups * GROUP):
            padded = torch.zeros((self.blocks * LANES, self.groups * GROUP), dtype=torch.int8)
            padded[:out_features, :in_features] = weight
        # (blocks, 16, groups, 4) -> (blocks, groups, 16, 4): a group's 16 outputs side by side.
        self.weight = padded.reshape(self.blocks, LANES, self.groups, GROUP).permute(0, 2, 1, 3).contiguous()
        # In slices: a sum to int32 widens its whole input first (4 bytes a weight).
        self.row_sums = torch.cat([padded[start:start + _SUM_ROWS].sum(dim=1, dtype=torch.int32)
                                   for start in range(0, padded.shape[0], _SUM_ROWS)])
        self.scale = torch.zeros(self.blocks * LANES, dtype=torch.float32)
        self.scale[:out_features] = scale.to(torch.float32)

    def __call__(self, quantized, zero_point: int, scale: float):
        """``quantized``: (rows, in) uint8, read as ``(quantized - zero_point) * scale`` -> (rows, out) float32."""
        import torch

        rows = quantized.shape[0]
        if quantized.shape[1] != self.groups * GROUP:
            quantized = torch.nn.functional.pad(quantized, (0, self.groups * GROUP - quantized.shape[1]))
        quantized = quantized.contiguous()
        out = torch.empty((rows, self.blocks * LANES), dtype=torch.float32)
        _function()(quantized.data_ptr(), rows, self.groups, self.weight.data_ptr(), self.row_sums.data_ptr(),
                    self.scale.data_ptr(), self.blocks, int(zero_point), float(scale), out.data_ptr(),
                    out.shape[1], torch.get_num_threads())
        return out if out.shape[1] == self.out_features else out[:, :self.out_features]
