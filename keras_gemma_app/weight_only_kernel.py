"""Weight-only int4 and int8 product kernels for x86 CPUs with AVX-512, compiled once with the system's C compiler.

torch's CPU kernels for 4- and 8-bit weights (``aten._weight_int4pack_mm_for_cpu``,
``aten._weight_int8pack_mm``) are fast only with bfloat16 activations, so the
input is rounded to bfloat16 on the way in and the result on the way out. These
kernels (``weight_only_kernel.c``) take the same integers and scales (int4:
torch's ``(q - 8) * scale + zero`` per group of inputs, the scales and zeros kept
as bfloat16, as torch keeps them; int8: one float32 scale per output), keep the
activations and sums in float32, and read a layout of blocks of 16 outputs front
to back, ahead of use.

int4, on a 2-core CPU with AVX-512, Gemma 3 270M's gate product (640 -> 4096,
groups of 32): one row in ~48 us against torch's ~63 us, 16 rows in ~0.33 ms
against ~0.47 ms, with a relative error of ~2e-7 against float64 where torch's is
~3e-3. In a decode loop of the int4 preset, where the LM head has pushed the
blocks' weights out of cache, a token's int4 products took 4.0-4.5 ms against
5.2 ms.

They are built on first use (:mod:`keras_gemma_app.native_kernel`) and used only
where the CPU lists avx512f. Where they cannot be built or run, :func:`available`
is False and torch's kernels run instead. ``KERAS_GEMMA_WEIGHT_ONLY_KERNEL=0``
turns them off. Under ``KERAS_GEMMA_TORCH_COMPILE=1`` :mod:`keras_gemma_app.torch_packed`
keeps torch's kernels.
"""

from __future__ import annotations

import ctypes
import pathlib
import threading

from keras_gemma_app.native_kernel import NativeKernel

ENV = "KERAS_GEMMA_WEIGHT_ONLY_KERNEL"
KERNEL = NativeKernel(pathlib.Path(__file__).with_name("weight_only_kernel.c"), ("-mavx512f",), ("avx512f",), ENV)
# Outputs per block of the kernels' weight layout.
LANES = 16
_INT4_ARGTYPES = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                  ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
_INT8_ARGTYPES = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                  ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
_OPS = {}
_OP_LOCK = threading.Lock()


def cpu_supports(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo``'s text lists every instruction set the kernel uses."""
    return KERNEL.cpu_supports(cpuinfo)


def _int4_function():
    return KERNEL.function("int4_rows_product", _INT4_ARGTYPES)


def _int8_function():
    return KERNEL.function("int8_weights_product", _INT8_ARGTYPES)


def available() -> bool:
    """Whether the kernels run here (built on the first call)."""
    return _int4_function() is not None


def takes_group(group: int, in_features: int) -> bool:
    """Whether the kernel takes groups of ``group`` inputs for ``in_features`` inputs."""
    return group % 4 == 0 and in_features % group == 0


def _int4_product(x, weight, scale_zero, group: int, out_features: int):
    """x: (rows, in) float32, contiguous -> (rows, out_features) float32."""
    import torch

    rows, in_features = x.shape
    blocks = weight.shape[0]
    out = torch.empty((rows, blocks * LANES), dtype=torch.float32)
    _int4_function()(x.data_ptr(), rows, in_features, weight.data_ptr(), scale_zero.data_ptr(), in_features // group,
                group, blocks, out.data_ptr(), out.shape[1], torch.get_num_threads())
    return out if out.shape[1] == out_features else out[:, :out_features]


def _int8_product(x, weight, scale, out_features: int):
    """x: (rows, in) float32, contiguous -> (rows, out_features) float32."""
    import torch

    rows, in_features = x.shape
    blocks = weight.shape[0]
    out = torch.empty((rows, blocks * LANES), dtype=torch.float32)
    _int8_function()(x.data_ptr(), rows, in_features, weight.data_ptr(), scale.data_ptr(), blocks, out.data_ptr(),
                     out.shape[1], torch.get_num_threads())
    return out if out.shape[1] == out_features else out[:, :out_features]


def _compiled_ops():
    """The products as custom ops, for code compiled by ``torch.compile`` (registered once)."""
    with _OP_LOCK:
        if not _OPS:
            import torch

            # Explicit schemas: this module's annotations are strings.
            @torch.library.custom_op("keras_gemma_app::int4_blocked_mm", mutates_args=(),
                                     schema="(Tensor x, Tensor weight, Tensor scale_zero, int group, "
                                            "int out_features) -> Tensor")
            def int4_blocked_mm(x, weight, scale_zero, group, out_features):
                return _int4_product(x.contiguous(), weight, scale_zero, group, out_features).contiguous()

            @int4_blocked_mm.register_fake
            def _(x, weight, scale_zero, group, out_features):
                return x.new_empty((x.shape[0], out_features))

            @torch.library.custom_op("keras_gemma_app::int8_blocked_mm", mutates_args=(),
                                     schema="(Tensor x, Tensor weight, Tensor scale, int out_features) -> Tensor")
            def int8_blocked_mm(x, weight, scale, out_features):
                return _int8_product(x.contiguous(), weight, scale, out_features).contiguous()

            @int8_blocked_mm.register_fake
            def _(x, weight, scale, out_features):
                return x.new_empty((x.shape[0], out_features))

            _OPS.update(int4=int4_blocked_mm, int8=int8_blocked_mm)
        return _OPS


class BlockedInt4:
    """4-bit weights laid out for the kernel, from torch's int4 format in parts of rows.

    ``parts``: ``(codes, scale_zero)`` pairs, codes (rows, in) integers in 0..15 and scale_zero
    (groups, rows, 2) float, the rows of the parts following each other; every part but the last
    has a multiple of 16 rows.
    """

    def __init__(self, parts, group: int):
        import torch

        if not available():
            raise RuntimeError("The weight-only kernels do not run on this machine.")
        self.group = group
        weights, params = [], []
        self.out_features = 0
        last_rows = 0
        for codes, scale_zero in parts:
            if last_rows % LANES:
                raise ValueError(f"Expected parts of a multiple of {LANES} rows, received one of {last_rows}.")
            rows, in_features = codes.shape
            if not takes_group(group, in_features):
                raise ValueError(f"Expected groups of a multiple of 4 inputs dividing {in_features}, "
                                 f"received {group}.")
            self.in_features = in_features
            blocks = -(-rows // LANES)
            padded = blocks * LANES
            codes = codes.to(torch.uint8)
            scale_zero = scale_zero.to(torch.bfloat16)
            if padded != rows:
                # Zero codes with zero scales and zeros: the padding rows' weights are 0.
                codes = torch.cat([codes, codes.new_zeros((padded - rows, in_features))])
                scale_zero = torch.cat([scale_zero, scale_zero.new_zeros((scale_zero.shape[0], padded - rows, 2))],
                                       dim=1)
            pairs = codes.reshape(blocks, LANES, in_features // 2, 2)
            # (blocks, pairs, 16): a pair of inputs' 16 outputs side by side, one byte each.
            weights.append((pairs[..., 0] | (pairs[..., 1] << 4)).permute(0, 2, 1).contiguous())
            # (blocks, groups, 2, 16): a group's 16 scales, then its 16 zeros.
            params.append(scale_zero.reshape(-1, blocks, LANES, 2).permute(1, 0, 3, 2).contiguous())
            self.out_features += rows
            last_rows = rows
        # Registered here, before any tracing: torch.compile cannot register it (nor take the lock).
        self._op = _compiled_ops()["int4"]
        self.weight = torch.cat(weights) if len(weights) > 1 else weights[0]
        self.scale_zero = torch.cat(params) if len(params) > 1 else params[0]

    @property
    def nbytes(self) -> int:
        return (self.weight.numel() * self.weight.element_size()
                + self.scale_zero.numel() * self.scale_zero.element_size())

    def __call__(self, x):
        """x: (rows, in) float32 -> (rows, out) float32. Compiled code calls the kernel as a custom op."""
        import torch

        if torch.compiler.is_compiling():
            return self._op(x, self.weight, self.scale_zero, self.group, self.out_features)
        return _int4_product(x.contiguous(), self.weight, self.scale_zero, self.group, self.out_features)


class BlockedInt8:
    """8-bit weights (out, in) with one scale per output, laid out for the kernel (rows of 16 outputs
    side by side for each input)."""

    def __init__(self, weight, scale):
        import torch

        if not available():
            raise RuntimeError("The weight-only kernels do not run on this machine.")
        out_features, in_features = weight.shape
        self.out_features = out_features
        blocks = -(-out_features // LANES)
        padded = torch.zeros((blocks * LANES, in_features), dtype=torch.int8)
        padded[:out_features] = weight
        # (blocks, in, 16): an input's 16 outputs side by side.
        self.weight = padded.reshape(blocks, LANES, in_features).permute(0, 2, 1).contiguous()
        self.scale = torch.zeros(blocks * LANES, dtype=torch.float32)
        self.scale[:out_features] = scale.to(torch.float32)
        # Registered here, before any tracing.
        self._op = _compiled_ops()["int8"]

    @property
    def nbytes(self) -> int:
        return self.weight.numel() + self.scale.numel() * self.scale.element_size()

    def rows(self):
        """The weights (out, in) int8 and their scales (out,) float32, as given."""
        blocks, in_features, _ = self.weight.shape
        weight = self.weight.permute(0, 2, 1).reshape(blocks * LANES, in_features)
        return weight[:self.out_features].contiguous(), self.scale[:self.out_features]

    def __call__(self, x):
        """x: (rows, in) float32 -> (rows, out) float32. Compiled code calls the kernel as a custom op."""
        import torch

        if torch.compiler.is_compiling():
            return self._op(x, self.weight, self.scale, self.out_features)
        return _int8_product(x.contiguous(), self.weight, self.scale, self.out_features)
