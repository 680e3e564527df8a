"""The variant guide: expected picks for typical machines."""

import pytest

import keras_gemma_app as kga
from keras_gemma_app.catalogue import get
from keras_gemma_app.errors import SettingsError
from keras_gemma_app.hardware import GIB, Accelerator, Machine
from keras_gemma_app.variant_guide import TASKS, candidates, usable_memory

LAPTOP = Machine(16 * GIB)
GPU_8GB = Machine(32 * GIB, None, (Accelerator("gpu", "GeForce RTX 4060", 8 * GIB),))
GPU_80GB = Machine(512 * GIB, None, (Accelerator("gpu", "NVIDIA H100", 80 * GIB),))
PI_4GB = Machine(4 * GIB)


@pytest.mark.parametrize("machine, task, expected", [
    (LAPTOP, "chat", "gemma4_instruct_2b"),
    (LAPTOP, "code", "code_gemma_1.1_2b_en"),
    (LAPTOP, "vision", "gemma4_instruct_2b"),
    (LAPTOP, "safety", "shieldgemma_2b_en"),
    (GPU_8GB, "chat", "gemma3_instruct_1b"),
    (GPU_8GB, "vision", "gemma4_instruct_2b"),  # only at int8
    (GPU_80GB, "chat", "gemma4_instruct_2b"),
    (GPU_80GB, "code", "code_gemma_1.1_instruct_7b_en"),
    (PI_4GB, "chat", "gemma3_instruct_270m"),
    (PI_4GB, "safety", None),
])
def test_expected_picks(machine, task, expected):
    advice = kga.recommend(task, machine=machine, backend="jax")
    assert (advice.pick.entry.name if advice.pick else None) == expected
    assert advice.device == machine.device
    if advice.pick:
        assert advice.pick.memory.total_bytes <= advice.usable_bytes
        quantized = (machine, task) == (GPU_8GB, "vision")
        assert advice.pick.memory.precision == advice.precision == ("int8" if quantized else "bfloat16")


def test_the_why_names_what_did_not_fit():
    advice = kga.recommend("chat", machine=GPU_8GB, backend="jax")
    assert advice.why.startswith("gemma4_instruct_2b needs about 11.4 GiB, more than the 7.0 GiB usable")
    pi = kga.recommend("chat", machine=PI_4GB, backend="jax")
    assert "gemma3_instruct_1b needs about 3.3 GiB" in pi.why and "narrow tasks" in pi.why
    quantized = kga.recommend("vision", machine=GPU_8GB, backend="jax")
    assert quantized.why.startswith("Nothing for questions about images fits in 7.0 GiB: the smallest, "
                                    "gemma3_instruct_4b, needs about 9.6 GiB at bfloat16; quantized to int8, ")
    assert quantized.precision == "int8" and quantized.pick.memory.precision == "int8"
    assert quantized.pick.memory.total_bytes <= quantized.usable_bytes < 9.6 * 2**30


def test_alternatives_all_fit_and_exclude_the_pick():
    advice = kga.recommend("chat", machine=GPU_80GB, backend="jax")
    names = [choice.entry.name for choice in advice.alternatives]
    assert names[:3] == ["gemma4_instruct_4b", "gemma4_instruct_26b_a4b", "gemma4_instruct_31b"]
    assert advice.pick.entry.name not in names
    assert all(choice.memory.total_bytes <= advice.usable_bytes for choice in advice.alternatives)


def test_memory_overrides_detection_and_accepts_text():
    as_text = kga.recommend("chat", memory="8GB", device="gpu", backend="jax")
    assert as_text.memory_bytes == 8 * GIB and as_text.pick.entry.name == "gemma3_instruct_1b"
    assert kga.recommend("chat", memory=8 * GIB, device="gpu", backend="jax") == as_text


def test_the_backend_changes_what_fits_on_a_cpu():
    # TensorFlow holds about twice the weights: on 16 GB the Gemma 4 E2B no longer fits.
    assert kga.recommend("chat", machine=LAPTOP, backend="jax").pick.entry.name == "gemma4_instruct_2b"
    assert kga.recommend("chat", machine=LAPTOP, backend="tensorflow").pick.entry.name == "gemma3_instruct_1b"


def test_detects_this_machine_by_default(backend):
    advice = kga.recommend("chat", backend=backend)
    assert advice.device == "cpu" and advice.memory_bytes > 0


def test_candidates_follow_the_guide():
    chat = candidates("chat")
    assert all(e.tuning == "it" and e.family in TASKS["chat"].families for e in chat)
    assert not any(e.is_draft for e in chat)  # speculative-decoding assistants are never picked
    assert chat[0].generation == max(e.generation for e in chat)
    assert chat[-1].name == "gemma3_instruct_270m"  # below 1B: offered last
    assert all(e.modality == "image+text" for e in candidates("vision"))
    assert {e.family for e in candidates("safety")} == {"shieldgemma"}
    assert get("gemma4_instruct_2b_assistant").is_draft


def test_usable_memory_keeps_some_free():
    assert usable_memory(4 * GIB) == 3 * GIB
    assert usable_memory(80 * GIB) == 72 * GIB


@pytest.mark.parametrize("kwargs, message", [
    ({"task": "poetry"}, "Unknown task 'poetry': expected one of chat, code, vision, safety"),
    ({"task": "chat", "memory": "lots"}, "Expected an amount of memory"),
    ({"task": "chat", "memory": "8GB", "device": "npu"}, "Unknown device 'npu'"),
])
def test_bad_inputs(kwargs, message):
    with pytest.raises(SettingsError, match=message):
        kga.recommend(**kwargs)
