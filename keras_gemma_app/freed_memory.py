"""Memory a build has freed, handed back to the system.

glibc's allocator keeps what a process frees for the process's own later use,
and the arenas of threads that have ended keep theirs too. Packing a model's
weights for torch's kernels frees about as much scratch as it keeps: Gemma 3
270M int4 on torch held 2.0 GiB resident after its forward pass was built, 1.6
GiB once that scratch went back (an int8 LM head built in threads: 2.5 -> 1.8).
:func:`give_back` asks glibc to return it (``malloc_trim``); elsewhere it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc
        return None


def give_back() -> bool:
    """Returns the memory the process has freed to the system where the C library can; True if it did."""
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))
