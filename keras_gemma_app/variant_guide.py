"""Which Gemma to run on this machine: the variant guide as code.

The guide's rules, in order:

1. The task picks the candidates: ``chat`` — the core instruction-tuned
   Gemma models; ``code`` — CodeGemma (instruction-tuned first, then the
   code-completion models); ``vision`` — the core instruction-tuned models
   that read images; ``safety`` — ShieldGemma.
2. The latest generation first, and within it the fewest parameters that
   serve the task (for chat, at least 1B: the 270M models are meant as a
   base for fine-tuning, and are offered only when nothing larger fits).
3. 16-bit weights (bfloat16): half the memory of float32, and what the
   models were trained in. Quantized weights are for when nothing fits.
4. It must fit: the estimate of :mod:`keras_gemma_app.memory_estimate`,
   keeping 10% of the memory (at least 1 GiB) for everything else.
"""

from __future__ import annotations

import dataclasses

from keras_gemma_app.catalogue import Entry, entries, human_count
from keras_gemma_app.errors import SettingsError
from keras_gemma_app.hardware import GIB, Machine, format_bytes
from keras_gemma_app.memory_estimate import MemoryEstimate, estimate_memory

CORE_FAMILIES = ("gemma", "gemma2", "gemma3", "gemma3n", "gemma4")
PRECISION = "bfloat16"
DEVICES = ("cpu", "gpu", "tpu")


@dataclasses.dataclass(frozen=True)
class Task:
    """What a task asks of a model."""

    description: str
    families: tuple[str, ...]
    tunings: tuple[str, ...]
    modality: str | None = None
    min_params: int = 0


TASKS = {
    "chat": Task("a general assistant", CORE_FAMILIES, ("it",), min_params=900_000_000),
    "code": Task("writing and completing code", ("codegemma",), ("it", "pt")),
    "vision": Task("questions about images", CORE_FAMILIES, ("it",), modality="image+text"),
    "safety": Task("classifying prompts and replies against safety policies", ("shieldgemma",), ("ft",)),
}


@dataclasses.dataclass(frozen=True)
class Choice:
    """A catalogue entry with the memory it needs here."""

    entry: Entry
    memory: MemoryEstimate


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """The guide's answer.

    Attributes:
        task: chat, code, vision or safety.
        pick: the model to run, or None when nothing fits.
        why: one line saying why (or why nothing fits).
        alternatives: other models that also fit, best first.
        memory_bytes: the memory the advice is for.
        usable_bytes: the part of it a model may take.
        device: "cpu", "gpu" or "tpu".
        backend: the backend the estimates are for.
        precision: the precision the estimates are for.
    """

    task: str
    pick: Choice | None
    why: str
    alternatives: tuple[Choice, ...]
    memory_bytes: int
    usable_bytes: int
    device: str
    backend: str
    precision: str = PRECISION


# Quantization levels tried, in order, when nothing fits at PRECISION.
QUANTIZED_FALLBACK = ("int8", "int4")


def usable_memory(memory_bytes: int) -> int:
    """The part of ``memory_bytes`` a model may take: all but 10%, and at least 1 GiB, is kept free."""
    return int(memory_bytes - max(GIB, 0.1 * memory_bytes))


def _revision(entry: Entry) -> int:
    return 1 if "_1.1_" in entry.name or "_1.5_" in entry.name else 0


def candidates(task: str) -> list[Entry]:
    """The catalogue entries that serve ``task``, in the guide's order of preference."""
    if task not in TASKS:
        raise SettingsError(f"Unknown task {task!r}: expected one of {', '.join(TASKS)}.")
    spec = TASKS[task]
    found = [
        entry for entry in entries()
        if entry.family in spec.families
        and entry.tuning in spec.tunings
        and (spec.modality is None or entry.modality == spec.modality)
        and entry.kaggle_handle is not None
        and not entry.is_draft
    ]
    return sorted(found, key=lambda e: (
        e.params < spec.min_params,
        -e.generation,
        spec.tunings.index(e.tuning),
        e.params,
        -_revision(e),
        e.name,
    ))


def recommend(
    task: str = "chat",
    *,
    memory: int | str | None = None,
    machine: Machine | None = None,
    backend: str | None = None,
    device: str | None = None,
) -> Recommendation:
    """Recommends the Gemma model to run for ``task``.

    Args:
        task: "chat", "code", "vision" or "safety".
        memory: memory to plan for, in bytes or as text ("8GB"); overrides ``machine``.
        machine: the machine to plan for (default: this one, as ``backend`` sees it).
        backend: jax, tensorflow or torch (default: the requested backend).
        device: "cpu", "gpu" or "tpu" for ``memory`` (default: the machine's,
            else "cpu").

    Returns:
        A :class:`Recommendation`; ``pick`` is None when nothing fits.

    Example:
        >>> import keras_gemma_app as kga
        >>> advice = kga.recommend("chat", memory="16GB")
        >>> advice.pick.entry.name
    """
    from keras_gemma_app.backend import requested_backend
    from keras_gemma_app.hardware import detect_machine, parse_memory

    backend = requested_backend(backend)
    if isinstance(memory, str):
        memory = parse_memory(memory)
    ordered = candidates(task)
    if memory is None:
        machine = machine if machine is not None else detect_machine(backend)
        memory = machine.model_memory_bytes
        device = device or machine.device
    device = device or "cpu"
    if device not in DEVICES:
        raise SettingsError(f"Unknown device {device!r}: expected one of {', '.join(DEVICES)}.")
    usable = usable_memory(memory)
    choices = [Choice(entry, estimate_memory(entry.params, PRECISION, backend, device, usable,
                                             entry.int4_eight_bit_params)) for entry in ordered]
    fitting = [choice for choice in choices if choice.memory.total_bytes <= usable]
    common = dict(task=task, memory_bytes=memory, usable_bytes=usable, device=device, backend=backend)
    if not fitting:
        smallest = min(choices, key=lambda choice: choice.memory.total_bytes)
        why = (f"Nothing for {TASKS[task].description} fits in {format_bytes(usable)}: the smallest, "
               f"{smallest.entry.name}, needs about {format_bytes(smallest.memory.total_bytes)} at {PRECISION}.")
        # Quantized weights, when nothing fits at 16 bits: int8 first, then int4.
        for mode in QUANTIZED_FALLBACK:
            quantized = [Choice(entry, estimate_memory(entry.params, mode, backend, device, usable,
                                                       entry.int4_eight_bit_params)) for entry in ordered]
            fits = [choice for choice in quantized if choice.memory.total_bytes <= usable]
            if fits:
                pick = fits[0]
                why = (f"{why[:-1]}; quantized to {mode}, {pick.entry.name} needs about "
                       f"{format_bytes(pick.memory.total_bytes)}. Quantized weights cost quality: "
                       f"measure it with keras-gemma eval.")
                return Recommendation(pick=pick, why=why, alternatives=tuple(fits[1:5]), precision=mode, **common)
        return Recommendation(pick=None, why=why, alternatives=(), **common)
    pick = fitting[0]
    return Recommendation(pick=pick, why=_why(task, pick, choices, usable), alternatives=tuple(fitting[1:5]),
                          **common)


def _why(task: str, pick: Choice, choices: list[Choice], usable: int) -> str:
    spec = TASKS[task]
    entry = pick.entry
    size = human_count(entry.params)
    fits = f"needs about {format_bytes(pick.memory.total_bytes)} of the {format_bytes(usable)} usable"
    skipped = [c for c in choices[:choices.index(pick)] if c.memory.total_bytes > usable]
    if not skipped:
        return (f"The newest model for {spec.description} with the fewest parameters "
                f"(Gemma {entry.generation}, {size}); it {fits} at {PRECISION}.")
    best = min(skipped, key=lambda choice: choice.memory.total_bytes)
    small = " It is small: expect it to do best on narrow tasks it is fine-tuned for." \
        if entry.params < spec.min_params else ""
    return (f"{best.entry.name} needs about {format_bytes(best.memory.total_bytes)}, more than the "
            f"{format_bytes(usable)} usable; {entry.name} (Gemma {entry.generation}, {size}) is the best "
            f"choice left for {spec.description} and {fits} at {PRECISION}.{small}")
