"""The CPU's instruction sets, read from /proc/cpuinfo."""

import pathlib

import pytest

from keras_gemma_app import cpu_flags


def test_flags_come_from_the_flags_lines_only():
    text = "processor : 0\nflags\t\t: fpu avx2 avx512f\nbugs\t\t: spectre_v1 avx512_vnni_bug\n" \
           "processor : 1\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
    assert cpu_flags.parse(text) == {"fpu", "avx2", "avx512f", "avx512_vnni"}
    assert cpu_flags.parse("") == set()


@pytest.mark.skipif(not pathlib.Path("/proc/cpuinfo").exists(), reason="no /proc/cpuinfo here")
def test_this_machines_flags_are_read():
    flags = cpu_flags.read()
    assert flags == cpu_flags.parse(pathlib.Path("/proc/cpuinfo").read_text())
    assert flags
