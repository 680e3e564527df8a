"""Memory sizes and machine detection."""

import pytest

from keras_gemma_app.errors import SettingsError
from keras_gemma_app.hardware import GIB, Accelerator, Machine, detect_machine, format_bytes, parse_memory, ram


@pytest.mark.parametrize("text, expected", [
    ("8GB", 8 * GIB), ("16g", 16 * GIB), ("80 GiB", 80 * GIB), ("512MB", 512 * 2**20),
    ("1.5GB", int(1.5 * GIB)), ("4", 4 * GIB), ("1TB", 2**40),
])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "8XB", "-1GB", "0GB", "lots"])
def test_parse_memory_rejects_nonsense(text):
    with pytest.raises(SettingsError, match="Expected an amount of memory"):
        parse_memory(text)


def test_format_bytes():
    assert format_bytes(16 * GIB) == "16.0 GiB"
    assert format_bytes(512 * 2**20) == "512 MiB"


def test_ram_matches_proc_meminfo():
    total, available = ram()
    with open("/proc/meminfo") as file:
        first = file.readline().split()
    assert first[0] == "MemTotal:" and total == int(first[1]) * 1024
    assert available is not None and 0 < available <= total


def test_detect_on_this_cpu_machine_sees_ram_and_no_accelerator(backend):
    machine = detect_machine(backend)
    assert machine.accelerators == ()
    assert machine.device == "cpu"
    assert machine.model_memory_bytes == machine.ram_bytes == ram()[0]
    assert machine.describe().endswith("RAM, no GPU or TPU")


def test_an_accelerator_is_where_the_model_lives():
    machine = Machine(64 * GIB, None, (Accelerator("gpu", "NVIDIA L4", 24 * GIB), Accelerator("gpu", "NVIDIA L4", 24 * GIB)))
    assert machine.device == "gpu"
    assert machine.model_memory_bytes == 24 * GIB
    assert machine.describe() == "2 × NVIDIA L4 (24.0 GiB each), 64.0 GiB RAM"


@pytest.mark.parametrize("name", ["jax", "tensorflow", "torch"])
def test_each_backend_reports_this_cpu_only_machine(name):
    from conftest import run_python

    code = ("import sys\nfrom keras_gemma_app.hardware import detect_machine\n"
            "m = detect_machine(sys.argv[1])\nprint(m.device, len(m.accelerators), m.ram_bytes > 0)")
    done = run_python(code, name)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["cpu", "0", "True"]
