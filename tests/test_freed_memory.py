"""Handing freed memory back to the system."""

import platform

import pytest

from keras_gemma_app import freed_memory


def _resident() -> int:
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmRSS"))


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_blocks_go_back_to_the_system():
    # 3,000 blocks of 100 kB (below glibc's mmap threshold: from the heap), touched, then freed
    # but for the last, which keeps the heap from shrinking on its own.
    blocks = [bytearray(100_000) for _ in range(3000)]
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])
    last = blocks[-1]
    del blocks
    before = _resident()
    assert freed_memory.give_back() is True
    after = _resident()
    assert before - after > 200_000_000, (before, after)
    assert len(last) == 100_000


def test_does_nothing_without_the_c_library_call(monkeypatch):
    monkeypatch.setattr(freed_memory, "_malloc_trim", lambda: None)
    assert freed_memory.give_back() is False
