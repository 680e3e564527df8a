"""Sampler settings: small validated objects that build KerasHub samplers.

Each class is a frozen, keyword-only dataclass; constructing one with a value
out of range raises :class:`~keras_gemma_app.errors.SettingsError`. ``build()``
returns the matching ``keras_hub.samplers`` object (keras_hub is imported only
then). :func:`sampler_from_options` is the one factory from CLI-style flags.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from keras_gemma_app.errors import SettingsError


def _check_temperature(value: float) -> None:
    if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise SettingsError(
            f"temperature must be a number >= 0 (0 means greedy), but is {value!r}."
        )


def _check_seed(value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 0):
        raise SettingsError(f"seed must be an integer >= 0 or None, but is {value!r}.")


def _check_top_k(value: Any, name: str = "k") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(f"top-k `{name}` must be an integer >= 1, but is {value!r}.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sampler:
    """Base of the sampler settings; subclasses name a decoding strategy."""

    name: ClassVar[str] = ""

    def build(self):
        """Returns the ``keras_hub.samplers`` object for these settings."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``top_p(p=0.9, temperature=0.7)``."""
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        )
        return f"{self.name}({fields})"


def _randomness(temperature: float, seed: int | None) -> dict[str, Any]:
    _check_temperature(temperature)
    _check_seed(seed)
    return {"temperature": float(temperature), "seed": seed}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Greedy(Sampler):
    """Always picks the most likely next token (deterministic).

    Example:
        >>> pipe.generate("The capital of France is", sampler=Greedy())
    """

    name: ClassVar[str] = "greedy"

    def build(self):
        from keras_hub.samplers import GreedySampler

        return GreedySampler()


@dataclasses.dataclass(frozen=True, kw_only=True)
class TopK(Sampler):
    """Samples from the ``k`` most likely tokens.

    Args:
        k: how many candidates to keep (>= 1).
        temperature: softmax temperature (>= 0; 0 means greedy).
        seed: random seed for reproducible output, or None.
    """

    name: ClassVar[str] = "top_k"
    k: int = 5
    temperature: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        _check_top_k(self.k)
        _randomness(self.temperature, self.seed)

    def build(self):
        if self.temperature == 0:
            return Greedy().build()
        from keras_hub.samplers import TopKSampler

        return TopKSampler(k=self.k, seed=self.seed, temperature=self.temperature)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TopP(Sampler):
    """Nucleus sampling: the smallest set of tokens whose probability reaches ``p``.

    Args:
        p: cumulative probability, in (0, 1].
        k: optionally also cap the candidates at the ``k`` most likely.
        temperature: softmax temperature (>= 0; 0 means greedy).
        seed: random seed for reproducible output, or None.

    Example:
        >>> pipe.generate("Why is the sky blue?", sampler=TopP(p=0.9, temperature=0.7, seed=1))
    """

    name: ClassVar[str] = "top_p"
    p: float = 0.9
    k: int | None = None
    temperature: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        if (
            isinstance(self.p, bool)
            or not isinstance(self.p, (int, float))
            or not 0 < self.p <= 1
        ):
            raise SettingsError(f"top-p `p` must be in the interval (0, 1], but is {self.p!r}.")
        if self.k is not None:
            _check_top_k(self.k)
        _randomness(self.temperature, self.seed)

    def build(self):
        if self.temperature == 0:
            return Greedy().build()
        from keras_hub.samplers import TopPSampler

        return TopPSampler(p=self.p, k=self.k, seed=self.seed, temperature=self.temperature)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Random(Sampler):
    """Samples from the whole distribution.

    Args:
        temperature: softmax temperature (>= 0; 0 means greedy).
        seed: random seed for reproducible output, or None.
    """

    name: ClassVar[str] = "random"
    temperature: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        _randomness(self.temperature, self.seed)

    def build(self):
        if self.temperature == 0:
            return Greedy().build()
        from keras_hub.samplers import RandomSampler

        return RandomSampler(seed=self.seed, temperature=self.temperature)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Beam(Sampler):
    """Beam search: keeps the ``num_beams`` most likely sequences, returns the best.

    Args:
        num_beams: beams kept at each step (>= 1).
    """

    name: ClassVar[str] = "beam"
    num_beams: int = 5

    def __post_init__(self):
        if isinstance(self.num_beams, bool) or not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise SettingsError(f"num_beams must be an integer >= 1, but is {self.num_beams!r}.")

    def build(self):
        from keras_hub.samplers import BeamSampler

        from keras_gemma_app.beam_batching import grouped_sampler_class

        return grouped_sampler_class(BeamSampler)(num_beams=self.num_beams)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Contrastive(Sampler):
    """Contrastive search: trades likelihood against similarity to the past.

    Args:
        k: candidates considered at each step (>= 1).
        alpha: weight of the degeneration penalty, in [0, 1].
    """

    name: ClassVar[str] = "contrastive"
    k: int = 5
    alpha: float = 0.6

    def __post_init__(self):
        _check_top_k(self.k)
        if (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or not 0 <= self.alpha <= 1
        ):
            raise SettingsError(f"alpha must be in the interval [0, 1], but is {self.alpha!r}.")

    def build(self):
        from keras_hub.samplers import ContrastiveSampler

        from keras_gemma_app.beam_batching import grouped_sampler_class

        return grouped_sampler_class(ContrastiveSampler)(k=self.k, alpha=self.alpha)


SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls for cls in (Greedy, TopK, TopP, Random, Beam, Contrastive)
}

# The flag that sets each sampler field, for error messages.
_FLAG = {
    "temperature": "--temperature",
    "k": "--top-k",
    "p": "--top-p",
    "num_beams": "--num-beams",
    "alpha": "--alpha",
    "seed": "--seed",
}


def sampler_from_options(
    name: str | None = None,
    *,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    num_beams: int | None = None,
    alpha: float | None = None,
    seed: int | None = None,
) -> Sampler:
    """Builds sampler settings from flat options, as the CLI receives them.

    With no ``name`` the sampler is inferred: ``top_p`` if ``top_p`` is set,
    else ``top_k`` if ``top_k`` is set, ``random`` if only a non-zero
    temperature is set, else ``greedy``. A temperature of 0 always means
    greedy. An option that the chosen sampler does not take is an error.

    Raises:
        SettingsError: unknown sampler name, a value out of range, or an option
            the sampler does not use.
    """
    if name is None:
        if top_p is not None:
            name = "top_p"
        elif top_k is not None:
            name = "top_k"
        elif temperature:
            name = "random"
        else:
            name = "greedy"
    cls = SAMPLERS.get(name)
    if cls is None:
        raise SettingsError(
            f"Unknown sampler {name!r}: expected one of {', '.join(SAMPLERS)}."
        )
    given = {
        "temperature": temperature,
        "k": top_k,
        "p": top_p,
        "num_beams": num_beams,
        "alpha": alpha,
        "seed": seed,
    }
    given = {key: value for key, value in given.items() if value is not None}
    if cls is Greedy and given.get("temperature", 0) == 0:
        given.pop("temperature", None)
    accepted = {f.name for f in dataclasses.fields(cls)}
    for key in given:
        if key not in accepted:
            raise SettingsError(
                f"{_FLAG[key]} does not apply to the {name} sampler "
                f"(it takes: {', '.join(_FLAG[a] for a in sorted(accepted)) or 'no options'})."
            )
    return cls(**given)
