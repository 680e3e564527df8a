"""What this machine has to run a model with: RAM, and accelerator memory per backend.

Detection asks the backend's own library (never keras), so it is quick and
tells what that backend will actually see: JAX's devices, PyTorch's CUDA
devices, TensorFlow's GPUs (their memory read from ``nvidia-smi``, since
TensorFlow reports it only after allocating).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess

from keras_gemma_app.errors import SettingsError

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """One GPU or TPU: ``kind`` ("gpu" or "tpu"), a display ``name`` and its memory in bytes."""

    kind: str
    name: str
    memory_bytes: int


@dataclasses.dataclass(frozen=True)
class Machine:
    """The memory a model can use.

    Attributes:
        ram_bytes: total RAM.
        available_ram_bytes: RAM free for a new process now, or None if unknown.
        accelerators: the backend's GPUs/TPUs (empty on a CPU-only machine).
    """

    ram_bytes: int
    available_ram_bytes: int | None = None
    accelerators: tuple[Accelerator, ...] = ()

    @property
    def device(self) -> str:
        """"cpu", or the kind of the first accelerator."""
        return self.accelerators[0].kind if self.accelerators else "cpu"

    @property
    def model_memory_bytes(self) -> int:
        """Memory one model can live in: one accelerator's, else the RAM."""
        if self.accelerators:
            return max(accelerator.memory_bytes for accelerator in self.accelerators)
        return self.ram_bytes

    def describe(self) -> str:
        """e.g. "15.6 GiB RAM, no GPU" or "1 × NVIDIA H100 (80.0 GiB)"."""
        ram = f"{format_bytes(self.ram_bytes)} RAM"
        if not self.accelerators:
            return f"{ram}, no GPU or TPU"
        first = self.accelerators[0]
        count = len(self.accelerators)
        return f"{count} × {first.name} ({format_bytes(first.memory_bytes)} each), {ram}"


def format_bytes(size: float) -> str:
    """Bytes as GiB (or MiB below 1 GiB), one decimal."""
    if size < GIB:
        return f"{size / 2**20:.0f} MiB"
    return f"{size / GIB:.1f} GiB"


_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(k|m|g|t)?i?b?\s*$", re.IGNORECASE)
_UNITS = {None: GIB, "k": 2**10, "m": 2**20, "g": GIB, "t": 2**40}


def parse_memory(text: str) -> int:
    """Parses "8GB", "16g", "80 GiB" or "512MB" into bytes.

    GB and GiB both mean 2**30 bytes, as memory is sold; a bare number is GiB.
    """
    match = _MEMORY.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise SettingsError(f"Expected an amount of memory such as 8GB, 16GB or 512MB, received {text!r}.")
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _UNITS[unit])


def _meminfo() -> dict[str, int]:
    values = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    values[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return values


def ram() -> tuple[int, int | None]:
    """(total RAM, RAM available now or None) in bytes."""
    info = _meminfo()
    if "MemTotal" in info:
        return info["MemTotal"], info.get("MemAvailable")
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), None


def _nvidia_smi() -> list[Accelerator]:
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        result = subprocess.run(
            [tool, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in result.stdout.strip().splitlines():
        name, _, mib = line.rpartition(",")
        if mib.strip().isdigit():
            found.append(Accelerator("gpu", name.strip(), int(mib.strip()) * 2**20))
    return found


def _jax_accelerators() -> list[Accelerator]:
    import jax

    found = []
    for device in jax.devices():
        if device.platform not in ("gpu", "tpu", "cuda", "rocm"):
            continue
        stats = device.memory_stats() or {}
        memory = stats.get("bytes_limit", 0)
        kind = "tpu" if device.platform == "tpu" else "gpu"
        found.append(Accelerator(kind, getattr(device, "device_kind", device.platform), int(memory)))
    return found


def _torch_accelerators() -> list[Accelerator]:
    import torch

    if not torch.cuda.is_available():
        return []
    found = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        found.append(Accelerator("gpu", properties.name, int(properties.total_memory)))
    return found


def _tensorflow_accelerators() -> list[Accelerator]:
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return []
    return _nvidia_smi()


_DETECTORS = {"jax": _jax_accelerators, "torch": _torch_accelerators, "tensorflow": _tensorflow_accelerators}


def detect_machine(backend: str) -> Machine:
    """The machine as ``backend`` sees it: RAM and that backend's accelerators.

    An accelerator whose memory cannot be read is left out, so the advice
    errs towards the RAM.
    """
    total, available = ram()
    try:
        accelerators = [a for a in _DETECTORS[backend]() if a.memory_bytes > 0]
    except ImportError:
        accelerators = []
    return Machine(total, available, tuple(accelerators))
