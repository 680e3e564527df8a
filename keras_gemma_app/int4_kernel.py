"""A weight-only int4 product kernel for x86 CPUs with AVX-512, compiled once with the system's C compiler.

torch's CPU kernel for 4-bit weights (``aten._weight_int4pack_mm_for_cpu``) is
fast only with bfloat16 activations, so the input is rounded to bfloat16 on the
way in and the result on the way out. This kernel (``int4_kernel.c``) takes the
same 4-bit codes, scales and zeros (torch's ``(q - 8) * scale + zero`` per group
of inputs, the scales and zeros kept as bfloat16, as torch keeps them), keeps the
activations and sums in float32, and reads a layout of blocks of 16 outputs front
to back, ahead of use. On a 2-core CPU with AVX-512, Gemma 3 270M's gate product
(640 -> 4096, groups of 32): one row in ~48 us against torch's ~63 us, 16 rows in
~0.33 ms against ~0.47 ms, with a relative error of ~2e-7 against float64 where
torch's is ~3e-3. In a decode loop of the int4 preset, where the LM head has
pushed the blocks' weights out of cache, a token's int4 products took 4.0-4.5 ms
against 5.2 ms.

It is built on first use (:mod:`keras_gemma_app.native_kernel`) and used only
where the CPU lists avx512f. Where it cannot be built or run, :func:`available`
is False and torch's kernel runs instead. ``KERAS_GEMMA_INT4_KERNEL=0`` turns it off.
Under ``KERAS_GEMMA_TORCH_COMPILE=1`` :mod:`keras_gemma_app.torch_packed` keeps torch's kernel.
"""

from __future__ import annotations

import ctypes
import pathlib
import threading

from keras_gemma_app.native_kernel import NativeKernel

ENV = "KERAS_GEMMA_INT4_KERNEL"
KERNEL = NativeKernel(pathlib.Path(__file__).with_name("int4_kernel.c"), ("-mavx512f",), ("avx512f",), ENV)
# Outputs per block of the kernel's weight layout.
LANES = 16
_ARGTYPES = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
             ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
_OP = []
_OP_LOCK = threading.Lock()


def cpu_supports(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo``'s text lists every instruction set the kernel uses."""
    return KERNEL.cpu_supports(cpuinfo)


def _function():
    return KERNEL.function("int4_rows_product", _ARGTYPES)


def available() -> bool:
    """Whether the kernel runs here (built on the first call)."""
    return _function() is not None


def takes_group(group: int, in_features: int) -> bool:
    """Whether the kernel takes groups of ``group`` inputs for ``in_features`` inputs."""
    return group % 4 == 0 and in_features % group == 0


def _product(x, weight, scale_zero, group: int, out_features: int):
    """x: (rows, in) float32, contiguous -> (rows, out_features) float32."""
    import torch

    rows, in_features = x.shape
    blocks = weight.shape[0]
    out = torch.empty((rows, blocks * LANES), dtype=torch.float32)
    _function()(x.data_ptr(), rows, in_features, weight.data_ptr(), scale_zero.data_ptr(), in_features // group,
                group, blocks, out.data_ptr(), out.shape[1], torch.get_num_threads())
    return out if out.shape[1] == out_features else out[:, :out_features]


def _compiled_op():
    """The product as a custom op, for code compiled by ``torch.compile`` (registered once)."""
    with _OP_LOCK:
        if not _OP:
            import torch

            # An explicit schema: this module's annotations are strings.
            @torch.library.custom_op("keras_gemma_app::int4_blocked_mm", mutates_args=(),
                                     schema="(Tensor x, Tensor weight, Tensor scale_zero, int group, "
                                            "int out_features) -> Tensor")
            def int4_blocked_mm(x, weight, scale_zero, group, out_features):
                return _product(x.contiguous(), weight, scale_zero, group, out_features).contiguous()

            @int4_blocked_mm.register_fake
            def _(x, weight, scale_zero, group, out_features):
                return x.new_empty((x.shape[0], out_features))

            _OP.append(int4_blocked_mm)
        return _OP[0]


class BlockedInt4:
    """4-bit weights laid out for the kernel, from torch's int4 format in parts of rows.

    ``parts``: ``(codes, scale_zero)`` pairs, codes (rows, in) integers in 0..15 and scale_zero
    (groups, rows, 2) float, the rows of the parts following each other; every part but the last
    has a multiple of 16 rows.
    """

    def __init__(self, parts, group: int):
        import torch

        if not available():
            raise RuntimeError("The int4 kernel does not run on this machine.")
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
        self._op = _compiled_op()
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
        return _product(x.contiguous(), self.weight, self.scale_zero, self.group, self.out_features)
