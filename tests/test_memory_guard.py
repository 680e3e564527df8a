"""Stopping a load that cannot fit, before any weight is read."""

import pytest

import keras_gemma_app as kga
from conftest import run_cli
from keras_gemma_app.catalogue import get
from keras_gemma_app.errors import InsufficientMemoryError, SettingsError
from keras_gemma_app.hardware import GIB, Accelerator, Machine
from keras_gemma_app.memory_guard import MEMORY_ENV, check_fits, memory_limit, params_in_directory
from keras_gemma_app.model_ref import parse_model

LAPTOP = Machine(16 * GIB, 12 * GIB)


def test_params_are_read_from_the_weights_of_a_local_preset(real_preset):
    counted = params_in_directory(real_preset)
    assert abs(counted - get("gemma3_270m_pypi").params) / counted < 0.01


def test_a_model_that_fits_passes():
    check_fits(parse_model("gemma3_instruct_1b"), "gemma3_instruct_1b", "bfloat16", "jax", LAPTOP)


def test_too_large_at_float32_suggests_bfloat16():
    with pytest.raises(InsufficientMemoryError) as caught:
        check_fits(parse_model("gemma3_instruct_4b"), "gemma3_instruct_4b", "float32", "jax", LAPTOP)
    message = str(caught.value)
    assert message.startswith("gemma3_instruct_4b needs about 16.9 GiB at float32 on jax, but only 12.0 GiB is free "
                              "(RAM available).")
    assert "At bfloat16 it needs about" in message and "add --dtype bfloat16" in message
    assert message.endswith("To try anyway, pass --force (force=True in Python).")
    assert "\n" not in message


def test_too_large_at_any_precision_names_the_nearest_model_that_fits():
    with pytest.raises(InsufficientMemoryError, match="The nearest model that fits is gemma3_instruct_4b "):
        check_fits(parse_model("gemma3_instruct_27b"), "gemma3_instruct_27b", "bfloat16", "jax", LAPTOP)


def test_on_a_gpu_the_device_memory_counts():
    gpu = Machine(256 * GIB, 200 * GIB, (Accelerator("gpu", "NVIDIA L4", 24 * GIB),))
    with pytest.raises(InsufficientMemoryError, match=r"but only 24.0 GiB is free \(NVIDIA L4 memory\)"):
        check_fits(parse_model("gemma3_instruct_27b"), "gemma3_instruct_27b", "bfloat16", "torch", gpu)


def test_memory_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "6GB")
    assert memory_limit() == 6 * GIB
    monkeypatch.setenv(MEMORY_ENV, "six")
    with pytest.raises(SettingsError, match="Expected an amount of memory"):
        memory_limit()


def test_load_stops_before_reading_weights(real_preset, monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "1.2GB")
    with pytest.raises(InsufficientMemoryError, match="needs about 1.6 GiB at float32 .* add --dtype bfloat16"):
        kga.load(str(real_preset))


def test_cli_refuses_with_one_line_and_force_loads_anyway():
    env = {MEMORY_ENV: "1.2GB"}
    refused = run_cli("generate", "The capital of France is", "--max-new-tokens", "4", env=env)
    assert refused.returncode == 2, refused.stderr
    error = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "gemma3_270m_pypi needs about" in error[0] and "add --dtype bfloat16" in error[0] and "--force" in error[0]
    assert "Traceback" not in refused.stderr and refused.stdout == ""
    forced = run_cli("generate", "The capital of France is", "--max-new-tokens", "4", "--force", "-q", env=env)
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert forced.stdout.strip()


def test_a_model_too_large_is_refused_before_any_download(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the memory check must come before the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv(MEMORY_ENV, "4GB")
    with pytest.raises(InsufficientMemoryError, match="gemma3_instruct_12b needs about .* The nearest model that fits"):
        kga.load("gemma3_instruct_12b", dtype="bfloat16")
