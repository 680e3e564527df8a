"""Read GGUF files: metadata, tensor descriptors and dequantized tensors.

A small, dependency-light reader for the GGUF container used by llama.cpp.
It parses the header with `struct` over an `mmap` of the file (no copy of
the tensor data) and dequantizes one tensor at a time, a block of rows at a
time (`iter_rows`), so a caller can cast and store each block without ever
holding a float32 copy of a large tensor.

The common llama.cpp formats (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
Q4_K, Q5_K, Q6_K) are dequantized with vectorized numpy code here; any other
type is handed to `gguf.quants.dequantize` when the `gguf` package knows it.

Example:

```python
reader = GGUFReader("gemma-3-270m-q4_k_m.gguf")
reader.metadata["general.architecture"]     # "gemma3"
info = reader.tensors["blk.0.attn_q.weight"]
info.shape, info.type_name                  # (1024, 640), "Q5_0"
weights = reader.dequantize(info, "float32")
```
"""

from __future__ import annotations

import dataclasses
import os
import struct

from keras_gemma_app.errors import ConversionError

_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32

# GGUF metadata value types: id -> (struct format, size), strings/arrays aside.
_SCALAR_FORMATS = {
    0: ("<B", 1),  # UINT8
    1: ("<b", 1),  # INT8
    2: ("<H", 2),  # UINT16
    3: ("<h", 2),  # INT16
    4: ("<I", 4),  # UINT32
    5: ("<i", 4),  # INT32
    6: ("<f", 4),  # FLOAT32
    7: ("<?", 1),  # BOOL
    10: ("<Q", 8),  # UINT64
    11: ("<q", 8),  # INT64
    12: ("<d", 8),  # FLOAT64
}
_NUMPY_DTYPES = {
    0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4",
    6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8",
}  # fmt: skip
_STRING = 8
_ARRAY = 9

# ggml tensor types: id -> (name, elements per block, bytes per block).
GGML_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

# Output elements dequantized per step; bounds the float32 scratch memory.
_CHUNK_ELEMENTS = 1 << 22


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in a GGUF file.

    Attributes:
        name: The GGUF tensor name, e.g. `"blk.0.attn_q.weight"`.
        shape: Row-major shape (GGUF lists dimensions reversed; this is
            already flipped, so a Hugging Face `(out, in)` matrix reads
            `(out, in)`).
        type_id: The ggml type id.
        type_name: The ggml type name, e.g. `"Q4_K"`.
        offset: Absolute byte offset of the data in the file.
        nbytes: Size of the data in bytes.
    """

    name: str
    shape: tuple
    type_id: int
    type_name: str
    offset: int
    nbytes: int

    @property
    def size(self):
        """Number of elements."""
        n = 1
        for dim in self.shape:
            n *= dim
        return n


class GGUFReader:
    """A parsed GGUF file with lazily dequantized tensors.

    Args:
        path: Path to a `.gguf` file.

    Raises:
        ConversionError: The file is not GGUF, is truncated, or its header
            is malformed.
    """

    def __init__(self, path):
        import mmap

        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            try:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError as e:  # An empty file cannot be mapped.
                raise ConversionError(
                    f"Expected a GGUF file, received an empty file: "
                    f"{self.path}"
                ) from e
        self._size = len(self._mm)
        self._data = None
        self._pos = 0
        self.metadata = {}
        self.tensors = {}
        try:
            self._parse()
        except (struct.error, UnicodeDecodeError, OverflowError) as e:
            self.close()
            raise ConversionError(
                f"Expected a well-formed GGUF file, received a corrupt one "
                f"({e}): {self.path}"
            ) from e
        except BaseException:
            self.close()
            raise

    # Header parsing.

    def _advance(self, n):
        start = self._pos
        end = start + n
        if end > self._size:
            raise ConversionError(
                f"Expected a complete GGUF file, received one truncated at "
                f"byte {self._size} (its header needs {end}): {self.path}"
            )
        self._pos = end
        return start

    def _scalar(self, fmt, size):
        return struct.unpack_from(fmt, self._mm, self._advance(size))[0]

    def _string(self):
        length = self._scalar("<Q", 8)
        start = self._advance(length)
        return self._mm[start : start + length].decode("utf-8")

    def _value(self, vtype):
        if vtype in _SCALAR_FORMATS:
            return self._scalar(*_SCALAR_FORMATS[vtype])
        if vtype == _STRING:
            return self._string()
        if vtype == _ARRAY:
            import numpy as np

            etype = self._scalar("<I", 4)
            count = self._scalar("<Q", 8)
            if etype in _NUMPY_DTYPES:
                dtype = np.dtype(_NUMPY_DTYPES[etype])
                start = self._advance(count * dtype.itemsize)
                return np.frombuffer(
                    self._mm, dtype=dtype, count=count, offset=start
                ).copy()
            if etype == _STRING:
                return self._string_array(count)
            return [self._value(etype) for _ in range(count)]
        raise ConversionError(
            f"Expected a GGUF metadata value type 0-12, received {vtype}: "
            f"{self.path}"
        )

    def _string_array(self, count):
        mm, unpack, size = self._mm, struct.unpack_from, self._size
        pos = self._pos
        out = []
        append = out.append
        for _ in range(count):
            if pos + 8 > size:
                break
            (length,) = unpack("<Q", mm, pos)
            pos += 8
            if pos + length > size:
                break
            append(mm[pos : pos + length].decode("utf-8"))
            pos += length
        self._pos = pos
        if len(out) != count:
            self._advance(size + 1 - pos)  # Raises the truncation error.
        return out

    def _parse(self):
        magic = self._mm[:4]
        self._advance(4)
        if magic != _MAGIC:
            raise ConversionError(
                f"Expected a GGUF file (magic b'GGUF'), received magic "
                f"{magic!r}: {self.path}"
            )
        version = self._scalar("<I", 4)
        if version not in (2, 3):
            hint = " (big-endian?)" if version > 0xFFFF else ""
            raise ConversionError(
                f"Expected GGUF version 2 or 3, received {version}{hint}: "
                f"{self.path}"
            )
        self.version = version
        n_tensors = self._scalar("<Q", 8)
        n_kv = self._scalar("<Q", 8)
        for _ in range(n_kv):
            key = self._string()
            self.metadata[key] = self._value(self._scalar("<I", 4))

        infos = []
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._scalar("<I", 4)
            dims = [self._scalar("<Q", 8) for _ in range(n_dims)]
            type_id = self._scalar("<I", 4)
            offset = self._scalar("<Q", 8)
            infos.append((name, tuple(reversed(dims)), type_id, offset))

        alignment = int(
            self.metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
        )
        data_start = -(-self._pos // alignment) * alignment
        file_size = self._size
        for name, shape, type_id, offset in infos:
            type_name, block, type_size = GGML_TYPES.get(
                type_id, (f"type{type_id}", 1, 0)
            )
            n = 1
            for dim in shape:
                n *= dim
            if type_size and shape and shape[-1] % block:
                raise ConversionError(
                    f"Expected tensor '{name}' rows to be a multiple of the "
                    f"{type_name} block size {block}, received row length "
                    f"{shape[-1]}: {self.path}"
                )
            nbytes = n // block * type_size
            start = data_start + offset
            if start + nbytes > file_size:
                raise ConversionError(
                    f"Expected a complete GGUF file, received one truncated "
                    f"at byte {file_size} (tensor '{name}' ends at byte "
                    f"{start + nbytes}): {self.path}"
                )
            self.tensors[name] = TensorInfo(
                name, shape, type_id, type_name, start, nbytes
            )

    # Tensor access.

    def raw(self, info):
        """The undecoded bytes of a tensor, shaped `(rows, bytes_per_row)`."""
        import numpy as np

        if self._data is None:
            self._data = np.frombuffer(self._mm, dtype=np.uint8)
        data = self._data[info.offset : info.offset + info.nbytes]
        rows = info.size // info.shape[-1] if info.shape else 1
        return data.reshape(rows, -1)

    def iter_rows(self, info, multiple=1):
        """Dequantize a tensor a block of rows at a time.

        Rows are the leading dimensions flattened: a `(out, in)` matrix has
        `out` rows of `in` values. Each block holds at most about four
        million values, so the float32 scratch stays small.

        Args:
            info: A `TensorInfo` from `self.tensors`.
            multiple: Every block but the last starts and ends on a multiple
                of this many rows (e.g. a head dimension).

        Yields:
            `(start, stop, values)`: row range and a float32 array of shape
            `(stop - start, row_length)`.

        Raises:
            ConversionError: The tensor type cannot be dequantized.
        """
        decode = _decoder(info)
        raw = self.raw(info)
        rows = raw.shape[0]
        row_len = info.size // rows if rows else 0
        step = max(1, _CHUNK_ELEMENTS // max(row_len, 1))
        step = max(multiple, step // multiple * multiple)
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            values = decode(raw[start:stop])
            yield start, stop, values.reshape(stop - start, row_len)

    def check_decodable(self, info):
        """Raise `ConversionError` unless the tensor's type can be decoded.

        Decodes the first row, so a type the `gguf` fallback lacks is caught
        before any output is written.
        """
        decode = _decoder(info)
        if info.size:
            decode(self.raw(info)[:1])

    def dequantize(self, info, dtype="float32"):
        """Dequantize a whole tensor into a new array of `info.shape`.

        Args:
            info: A `TensorInfo` from `self.tensors`.
            dtype: `"float32"`, `"bfloat16"` or any numpy float dtype.

        Returns:
            A C-contiguous array of `dtype`.

        Raises:
            ConversionError: The tensor type cannot be dequantized.
        """
        import numpy as np

        out = np.empty(info.shape, dtype=numpy_dtype(dtype))
        flat = out.reshape(-1, info.shape[-1] if info.shape else 1)
        for start, stop, values in self.iter_rows(info):
            flat[start:stop] = values
        return out

    def close(self):
        """Release the file mapping (once no tensor view is alive)."""
        self._data = None
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # Views still alive; the GC closes it later.
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def numpy_dtype(dtype):
    """The numpy dtype for a name; `"bfloat16"` maps to ml_dtypes' type."""
    import numpy as np

    if dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def _decoder(info):
    """The function mapping raw rows (uint8, (rows, bytes)) to float32."""
    decoder = _DECODERS.get(info.type_name)
    if decoder is not None:
        return decoder
    if info.type_id not in GGML_TYPES:
        raise ConversionError(
            f"Expected a ggml tensor type this converter knows, received "
            f"type id {info.type_id} for tensor '{info.name}', which cannot "
            f"be dequantized"
        )
    try:
        import gguf.quants
        from gguf.constants import GGMLQuantizationType

        qtype = GGMLQuantizationType(info.type_id)
    except (ImportError, ValueError):
        qtype = None
    if qtype is None or info.type_name in ("I8", "I16", "I32", "I64"):
        raise ConversionError(
            f"Expected a float or quantized weight type, received "
            f"{info.type_name} for tensor '{info.name}', which cannot be "
            f"dequantized"
        )

    def fallback(raw):
        import numpy as np

        try:
            return np.asarray(gguf.quants.dequantize(raw, qtype), np.float32)
        except NotImplementedError as e:
            raise ConversionError(
                f"Expected a quantization type this converter can "
                f"dequantize, received {info.type_name} for tensor "
                f"'{info.name}'"
            ) from e

    return fallback


# Vectorized dequantizers. Each takes uint8 rows whose length is a multiple
# of the block size and returns float32 values of shape (blocks, elements).


def _blocks(raw, type_size):
    return raw.reshape(-1, type_size)


def _f16(blocks, start):
    import numpy as np

    return blocks[:, start : start + 2].copy().view(np.float16).astype(
        np.float32
    )


def _deq_f32(raw):
    import numpy as np

    return raw.view(np.float32)


def _deq_f16(raw):
    import numpy as np

    return raw.view(np.float16).astype(np.float32)


def _deq_bf16(raw):
    import numpy as np

    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _deq_f64(raw):
    import numpy as np

    return raw.view(np.float64).astype(np.float32)


def _deq_q8_0(raw):
    import numpy as np

    b = _blocks(raw, 34)
    d = _f16(b, 0)
    q = b[:, 2:].view(np.int8)
    return q * d


def _nibbles(qs):
    """Split 16-byte nibble arrays into 32 values: low nibbles first."""
    import numpy as np

    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _fifth_bits(qh_bytes):
    """The 32 fifth bits of a Q5_0/Q5_1 block, element order."""
    import numpy as np

    qh = qh_bytes.copy().view("<u4")
    shifts = np.arange(32, dtype=np.uint32)
    return ((qh >> shifts) & 1).astype(np.uint8) << 4


def _deq_q4_0(raw):
    import numpy as np

    b = _blocks(raw, 18)
    d = _f16(b, 0)
    q = _nibbles(b[:, 2:]).astype(np.int8) - np.int8(8)
    return q * d


def _deq_q4_1(raw):
    b = _blocks(raw, 20)
    d = _f16(b, 0)
    m = _f16(b, 2)
    return _nibbles(b[:, 4:]) * d + m


def _deq_q5_0(raw):
    import numpy as np

    b = _blocks(raw, 22)
    d = _f16(b, 0)
    q = (_nibbles(b[:, 6:]) | _fifth_bits(b[:, 2:6])).astype(np.int8)
    return (q - np.int8(16)) * d


def _deq_q5_1(raw):
    b = _blocks(raw, 24)
    d = _f16(b, 0)
    m = _f16(b, 2)
    q = _nibbles(b[:, 8:]) | _fifth_bits(b[:, 4:8])
    return q * d + m


def _k_scales(scales):
    """Unpack the 12-byte 6-bit scales and mins of Q4_K/Q5_K: (blocks, 8)."""
    import numpy as np

    s = scales.astype(np.uint8)
    lo = s[:, 0:4]
    hi = s[:, 4:8]
    extra = s[:, 8:12]
    sc = np.concatenate([lo & 63, (extra & 0x0F) | ((lo >> 6) << 4)], axis=1)
    mn = np.concatenate([hi & 63, (extra >> 4) | ((hi >> 6) << 4)], axis=1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _deq_q4_k(raw):
    import numpy as np

    b = _blocks(raw, 144)
    n = b.shape[0]
    d = _f16(b, 0)
    dmin = _f16(b, 2)
    sc, mn = _k_scales(b[:, 4:16])
    qs = b[:, 16:].reshape(n, 4, 1, 32)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32)
    scale = (d * sc)[:, :, None]
    offset = (dmin * mn)[:, :, None]
    return (q * scale - offset).reshape(n, 256)


def _deq_q5_k(raw):
    import numpy as np

    b = _blocks(raw, 176)
    n = b.shape[0]
    d = _f16(b, 0)
    dmin = _f16(b, 2)
    sc, mn = _k_scales(b[:, 4:16])
    qh = b[:, 16:48].reshape(n, 1, 32)
    qs = b[:, 48:].reshape(n, 4, 1, 32)
    low = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32)
    shifts = np.arange(8, dtype=np.uint8).reshape(1, 8, 1)
    high = ((qh >> shifts) & 1) << 4
    scale = (d * sc)[:, :, None]
    offset = (dmin * mn)[:, :, None]
    return ((low | high) * scale - offset).reshape(n, 256)


def _deq_q6_k(raw):
    import numpy as np

    b = _blocks(raw, 210)
    n = b.shape[0]
    ql = b[:, :128].reshape(n, 2, 1, 64)
    qh = b[:, 128:192].reshape(n, 2, 1, 32)
    scales = b[:, 192:208].view(np.int8).astype(np.float32)
    d = _f16(b, 208)
    # Per 128-element half: 4 groups of 32, low nibbles from ql[0:32],
    # ql[32:64], then high nibbles; two bits each from qh.
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=2).reshape(n, 2, 4, 32)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    high = ((qh >> shifts) & 3) << 4
    q = (low | high).astype(np.int8) - np.int8(32)
    scale = (d * scales).reshape(n, 2, 4, 2, 1)
    return (q.reshape(n, 2, 4, 2, 16) * scale).reshape(n, 256)


_DECODERS = {
    "F32": _deq_f32,
    "F16": _deq_f16,
    "BF16": _deq_bf16,
    "F64": _deq_f64,
    "Q8_0": _deq_q8_0,
    "Q4_0": _deq_q4_0,
    "Q4_1": _deq_q4_1,
    "Q5_0": _deq_q5_0,
    "Q5_1": _deq_q5_1,
    "Q4_K": _deq_q4_k,
    "Q5_K": _deq_q5_k,
    "Q6_K": _deq_q6_k,
}
