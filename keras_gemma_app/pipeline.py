"""The generation pipeline: preprocessor → causal LM → sampler.

A :class:`Pipeline` wraps a loaded KerasHub ``CausalLM`` and exposes its three
parts. Sampler settings can be swapped without reloading the model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from keras_gemma_app.errors import SettingsError
from keras_gemma_app.samplers import Greedy, Sampler


@dataclasses.dataclass(frozen=True)
class Completion:
    """One prompt's result.

    Attributes:
        prompt: the prompt text.
        text: the generated text, without the prompt and without the stop token.
        token_ids: the generated token ids (stop token excluded).
        prompt_tokens: number of prompt tokens, including ``<bos>``.
        finish_reason: "stop" (a stop token was produced) or "length"
            (``max_new_tokens`` reached).
        seconds: wall time of the batch this completion was generated in.
    """

    prompt: str
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    finish_reason: str
    seconds: float


def _check_prompts(prompts: str | Sequence[str]) -> list[str]:
    batch = [prompts] if isinstance(prompts, str) else list(prompts)
    if not batch:
        raise SettingsError("Expected at least one prompt, received none.")
    for prompt in batch:
        if not isinstance(prompt, str):
            raise SettingsError(f"Expected a prompt string, received {type(prompt).__name__}.")
        if not prompt.strip():
            raise SettingsError("Expected a non-empty prompt, received an empty one.")
    return batch


def _check_max_new_tokens(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(f"max_new_tokens must be an integer >= 1, but is {value!r}.")
    return value


def _as_text(value) -> str:
    if hasattr(value, "numpy"):
        value = value.numpy()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class Pipeline:
    """A loaded Gemma model ready to generate.

    Build one with :func:`keras_gemma_app.load`. Its parts are
    ``preprocessor`` (tokenizer and packing), ``causal_lm`` (the KerasHub
    model) and ``sampler`` (the decoding settings, swappable at any time).

    Example:
        >>> import keras_gemma_app as kga
        >>> pipe = kga.load("gemma3_instruct_1b")
        >>> pipe.generate("Why is the sky blue?", max_new_tokens=32)
        >>> pipe.sampler = kga.TopP(p=0.9, temperature=0.7, seed=1)
        >>> pipe.generate(["Write a haiku.", "Name three rivers."])
    """

    def __init__(self, causal_lm, *, model: str, backend: str, sampler: Sampler | None = None):
        self.causal_lm = causal_lm
        self.model = model
        self.backend = backend
        self._sampler = self._check_sampler(sampler or Greedy())
        self._compiled: Sampler | None = None
        self._seed_state: list | None = None

    @property
    def preprocessor(self):
        """The KerasHub preprocessor (tokenizer + packer) of the model."""
        return self.causal_lm.preprocessor

    @property
    def tokenizer(self):
        """The model's tokenizer."""
        return self.causal_lm.preprocessor.tokenizer

    @property
    def sampler(self) -> Sampler:
        """The default sampler settings; assign a new one to swap it."""
        return self._sampler

    @sampler.setter
    def sampler(self, value: Sampler) -> None:
        self._sampler = self._check_sampler(value)

    @staticmethod
    def _check_sampler(value) -> Sampler:
        if not isinstance(value, Sampler):
            raise SettingsError(
                "Expected sampler settings such as kga.Greedy() or kga.TopP(p=0.9), "
                f"received {type(value).__name__}."
            )
        return value

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        """Token ids that end generation by default: ``<eos>`` and ``<end_of_turn>``."""
        tokenizer = self.tokenizer
        ids = [tokenizer.end_token_id]
        end_of_turn = self.token_id("<end_of_turn>")
        if end_of_turn is not None:
            ids.append(end_of_turn)
        return tuple(dict.fromkeys(int(i) for i in ids))

    def token_id(self, piece: str) -> int | None:
        """Returns the id of vocabulary piece ``piece``, or None if it has none."""
        try:
            token = int(self.tokenizer.token_to_id(piece))
        except (KeyError, ValueError):
            return None
        return token if _as_text(self.tokenizer.id_to_token(token)) == piece else None

    def _use_sampler(self, settings: Sampler) -> None:
        if settings != self._compiled:
            keras_sampler = settings.build()
            self.causal_lm.compile(sampler=keras_sampler)
            self._compiled = settings
            self._seed_state = None
            if getattr(settings, "seed", None) is not None:
                import keras

                self._seed_state = [keras.ops.convert_to_numpy(v.value) for v in keras_sampler.variables]
        if self._seed_state is not None:
            # A fixed seed gives the same output on every call.
            for variable, value in zip(self.causal_lm.sampler.variables, self._seed_state):
                variable.assign(value)

    def _prompt_lengths(self, batch: list[str]) -> list[int]:
        token_ids = self.tokenizer(batch)
        if hasattr(token_ids, "to_list"):
            token_ids = token_ids.to_list()
        extra = 1 if getattr(self.preprocessor, "add_start_token", True) else 0
        return [len(ids) + extra for ids in token_ids]

    def completions(
        self,
        prompts: str | Sequence[str],
        *,
        max_new_tokens: int = 64,
        sampler: Sampler | None = None,
        stop_token_ids: Sequence[int] = (),
    ) -> list[Completion]:
        """Generates one completion per prompt, as one batch.

        Args:
            prompts: a prompt or a list of prompts.
            max_new_tokens: the most tokens to generate per prompt (>= 1).
            sampler: settings for this call only; default: ``self.sampler``.
            stop_token_ids: extra token ids that end generation, in addition
                to :attr:`stop_token_ids`.

        Returns:
            A list of :class:`Completion`, in prompt order.
        """
        import keras

        batch = _check_prompts(prompts)
        max_new_tokens = _check_max_new_tokens(max_new_tokens)
        settings = self._check_sampler(sampler) if sampler is not None else self._sampler
        stops = tuple(dict.fromkeys((*self.stop_token_ids, *(int(t) for t in stop_token_ids))))
        self._use_sampler(settings)

        lengths = self._prompt_lengths(batch)
        sequence_length = max(lengths) + max_new_tokens
        start = time.perf_counter()
        inputs = self.preprocessor.generate_preprocess(batch, sequence_length=sequence_length)
        outputs = self.causal_lm.make_generate_function()(inputs, stop_token_ids=stops)
        token_ids = keras.ops.convert_to_numpy(outputs["token_ids"])
        mask = keras.ops.convert_to_numpy(outputs["padding_mask"])
        seconds = time.perf_counter() - start

        results = []
        for row, (prompt, length) in enumerate(zip(batch, lengths)):
            generated = [int(t) for t, m in zip(token_ids[row, length:], mask[row, length:]) if m]
            finish = "length"
            for index, token in enumerate(generated[:max_new_tokens]):
                if token in stops:
                    generated, finish = generated[:index], "stop"
                    break
            generated = generated[:max_new_tokens]
            text = _as_text(self.tokenizer.detokenize([generated])[0]) if generated else ""
            results.append(Completion(prompt, text, tuple(generated), length, finish, seconds))
        return results

    def generate(
        self,
        prompts: str | Sequence[str],
        *,
        max_new_tokens: int = 64,
        sampler: Sampler | None = None,
        stop_token_ids: Sequence[int] = (),
    ) -> str | list[str]:
        """Returns the completion text of a prompt, or a list for a list of prompts.

        Takes the same arguments as :meth:`completions`.
        """
        results = self.completions(
            prompts, max_new_tokens=max_new_tokens, sampler=sampler, stop_token_ids=stop_token_ids
        )
        texts = [result.text for result in results]
        return texts[0] if isinstance(prompts, str) else texts
