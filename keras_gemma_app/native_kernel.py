"""A C kernel shipped as source, compiled once with the system's C compiler and loaded with ctypes.

The file is built on first use with ``cc`` (or ``$CC``) into the app's cache
folder (``$KERAS_GEMMA_CACHE/kernels/``), under a name keyed by a hash of the
source, the compiler and the flags, and moved into place whole. A kernel runs
only where ``/proc/cpuinfo`` lists every instruction set it uses; where it
cannot be built or run, or when its switch (an environment variable) is ``0``,
:meth:`NativeKernel.function` gives None and the caller takes torch's own path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading

from keras_gemma_app import cpu_flags
from keras_gemma_app.cache_dir import app_cache_dir

_COMMON_FLAGS = ("-O3", "-fopenmp", "-shared", "-fPIC")


def compiler() -> str | None:
    """The C compiler: ``$CC``, else ``cc``, else ``gcc``; None where none is found."""
    return shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")


class NativeKernel:
    """One C source file, its compiler flags, the CPU flags it needs and its switch."""

    def __init__(self, source: pathlib.Path, flags: tuple[str, ...], needs: tuple[str, ...], switch: str):
        self.source = source
        self.flags = (*flags, *_COMMON_FLAGS)
        self.needs = needs
        self.switch = switch
        self._lock = threading.Lock()
        self._loaded: dict[str, object] = {}
        self._library = None
        self._tried = False

    def cpu_supports(self, cpuinfo: str) -> bool:
        """Whether ``/proc/cpuinfo``'s text lists every instruction set the kernel uses."""
        return self._all_in(cpu_flags.parse(cpuinfo))

    def _all_in(self, flags: set[str] | None) -> bool:
        return flags is not None and all(flag in flags for flag in self.needs)

    def library_path(self, compiler_path: str) -> pathlib.Path:
        """Where the kernel built by ``compiler_path`` from this source and these flags is kept."""
        digest = hashlib.sha256(self.source.read_bytes()
                                + " ".join((compiler_path, *self.flags)).encode()).hexdigest()[:16]
        return app_cache_dir() / "kernels" / f"{self.source.stem}-{digest}.so"

    def _build(self, compiler_path: str, target: pathlib.Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            staged = pathlib.Path(scratch) / target.name
            subprocess.run([compiler_path, *self.flags, str(self.source), "-o", str(staged)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
            os.replace(staged, target)

    def _open(self):
        if os.environ.get(self.switch, "1") == "0" or not self._all_in(cpu_flags.read()):
            return None
        compiler_path = compiler()
        if compiler_path is None:
            return None
        target = self.library_path(compiler_path)
        try:
            if not target.exists():
                self._build(compiler_path, target)
            return ctypes.CDLL(str(target))
        except (OSError, subprocess.SubprocessError):
            return None

    def function(self, symbol: str, argtypes: list):
        """The loaded C function ``symbol`` (returning void), or None where the kernel cannot run here.
        Built on the first call of the process; later calls cost a dictionary lookup."""
        loaded = self._loaded.get(symbol)
        if loaded is not None or self._tried and self._library is None:
            return loaded
        with self._lock:
            if not self._tried:
                self._library = self._open()
                self._tried = True
            if self._library is None:
                return None
            function = getattr(self._library, symbol)
            function.restype = None
            function.argtypes = argtypes
            self._loaded[symbol] = function
            return function
