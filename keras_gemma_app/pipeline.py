"""The generation pipeline: preprocessor → causal LM → sampler.

A :class:`Pipeline` wraps a loaded KerasHub ``CausalLM`` and exposes its three
parts. Sampler settings can be swapped without reloading the model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence

from keras_gemma_app.errors import SettingsError
from keras_gemma_app.samplers import Greedy, Sampler
from keras_gemma_app.templates import build_prompt, check_template
from keras_gemma_app.text_stream import TextAssembler, check_stop_strings, sentencepiece_decoder

# Context assumed for models whose context length the catalogue does not know.
DEFAULT_CONTEXT_LENGTH = 8192


@dataclasses.dataclass(frozen=True)
class StreamPiece:
    """One step of :meth:`Pipeline.stream`.

    Attributes:
        text: text released by this token (may be "" while a character or a
            possible stop string is incomplete).
        token_id: the token generated.
        index: 0 for the first new token.
        elapsed: seconds since the call started (prefill included).
    """

    text: str
    token_id: int
    index: int
    elapsed: float


@dataclasses.dataclass(frozen=True)
class Completion:
    """One prompt's result.

    Attributes:
        prompt: the prompt text.
        text: the generated text, without the prompt, stop token or stop string.
        token_ids: the generated token ids (stop token excluded).
        prompt_tokens: number of prompt tokens, including ``<bos>``.
        finish_reason: "stop" (a stop token or stop string was produced) or
            "length" (``max_new_tokens`` reached).
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

    def __init__(self, causal_lm, *, model: str, backend: str, sampler: Sampler | None = None,
                 template: str = "raw", context_length: int | None = None):
        self.causal_lm = causal_lm
        self.model = model
        self.backend = backend
        self._sampler = self._check_sampler(sampler or Greedy())
        self.template = check_template(template)
        self.context_length = context_length or DEFAULT_CONTEXT_LENGTH
        self._compiled: Sampler | None = None
        self._seed_state: list | None = None
        self._decoder = None
        self._decode_text = sentencepiece_decoder(self.tokenizer)

    def __repr__(self) -> str:
        dtype = self.causal_lm.dtype_policy.compute_dtype
        level = f", quantization={self.quantization!r}" if self.quantization else ""
        return (f"Pipeline(model={self.model!r}, backend={self.backend!r}, dtype={dtype!r}{level}, "
                f"template={self.template!r}, sampler={self.sampler!r})")

    @property
    def quantization(self) -> str | None:
        """"int8" or "int4" when the weights are quantized, None for float weights."""
        from keras_gemma_app.quantization import quantization_of

        return quantization_of(self.causal_lm)

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

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        token_ids = self.tokenizer(texts)
        if hasattr(token_ids, "to_list"):
            token_ids = token_ids.to_list()
        start = [int(self.tokenizer.start_token_id)] if getattr(self.preprocessor, "add_start_token", True) else []
        return [start + [int(t) for t in ids] for ids in token_ids]

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes as a prompt, ``<bos>`` included."""
        return len(self._token_ids([text])[0])

    def format_prompt(self, prompt: str | None, *, system: str | None = None, raw: bool = False,
                      fim_prefix: str | None = None, fim_suffix: str | None = None) -> str:
        """The exact text sent to the tokenizer: ``prompt`` in the model's prompt format.

        Args:
            prompt: the user's text.
            system: an optional system instruction.
            raw: send ``prompt`` as it is.
            fim_prefix, fim_suffix: a CodeGemma fill-in-the-middle request instead of ``prompt``.
        """
        return build_prompt(prompt, self.template, system=system, raw=raw,
                            fim_prefix=fim_prefix, fim_suffix=fim_suffix)

    def _streaming_decoder(self, settings: Sampler):
        """The compiled token-by-token decoder, or None where it does not apply."""
        from keras_gemma_app import decoding

        if not decoding.supports_sampler(settings):
            return None
        if self._decoder is None:
            if not decoding.supports_model(self.causal_lm):
                return None
            self._decoder = decoding.Decoder(self.causal_lm)
        return self._decoder

    def _prepare(self, prompts, max_new_tokens, sampler, stop_token_ids, stop, system, raw):
        batch = _check_prompts(prompts)
        max_new_tokens = _check_max_new_tokens(max_new_tokens)
        settings = self._check_sampler(sampler) if sampler is not None else self._sampler
        stops = tuple(dict.fromkeys((*self.stop_token_ids, *(int(t) for t in stop_token_ids))))
        texts = [self.format_prompt(prompt, system=system, raw=raw) for prompt in batch]
        return batch, texts, max_new_tokens, settings, stops, check_stop_strings(stop)

    def completions(
        self,
        prompts: str | Sequence[str],
        *,
        max_new_tokens: int = 64,
        sampler: Sampler | None = None,
        stop_token_ids: Sequence[int] = (),
        stop: Sequence[str] | str = (),
        system: str | None = None,
        raw: bool = False,
    ) -> list[Completion]:
        """Generates one completion per prompt, as one batch.

        Args:
            prompts: a prompt or a list of prompts.
            max_new_tokens: the most tokens to generate per prompt (>= 1).
            sampler: settings for this call only; default: ``self.sampler``.
            stop_token_ids: extra token ids that end generation, in addition
                to :attr:`stop_token_ids`.
            stop: strings that end generation once the text contains them
                (even across tokens); the string is not returned.
            system: a system instruction, in the model's prompt format.
            raw: send the prompts as they are, whatever the model's format.

        Returns:
            A list of :class:`Completion`, in prompt order.
        """
        batch, texts, max_new_tokens, settings, stops, stop_strings = self._prepare(
            prompts, max_new_tokens, sampler, stop_token_ids, stop, system, raw)
        token_ids = self._token_ids(texts)
        decoder = self._streaming_decoder(settings)
        start = time.perf_counter()
        if decoder is not None:
            rows = self._decode_rows(decoder, token_ids, max_new_tokens, settings, stops, stop_strings)
        else:
            rows = self._generate_rows(texts, token_ids, max_new_tokens, settings, stops, stop_strings)
        seconds = time.perf_counter() - start
        return [
            Completion(prompt, assembler.text, tuple(ids), len(prompt_ids), finish, seconds)
            for prompt, prompt_ids, (assembler, ids, finish) in zip(batch, token_ids, rows)
        ]

    def _decode_rows(self, decoder, token_ids, max_new_tokens, settings, stops, stop_strings):
        assemblers = [TextAssembler(self._decode_text, stop_strings) for _ in token_ids]
        generated = [[] for _ in token_ids]
        finish = ["length"] * len(token_ids)
        done = [False] * len(token_ids)
        steps = decoder.stream(token_ids, max_new_tokens=max_new_tokens, sampler=settings, stop_token_ids=stops)
        try:
            for step in steps:
                for row, assembler in enumerate(assemblers):
                    if done[row] or not step.emitted[row]:
                        continue
                    token = int(step.token_ids[row])
                    if token in stops:
                        done[row], finish[row] = True, "stop"
                        continue
                    generated[row].append(token)
                    assembler.push(token)
                    if assembler.stopped:
                        done[row], finish[row] = True, "stop"
                    elif step.finish_reasons[row] is not None:
                        done[row] = True
                if all(done):
                    break
        finally:
            steps.close()
        for assembler in assemblers:
            assembler.finish()
        return [(a, ids[:len(a.token_ids)], f) for a, ids, f in zip(assemblers, generated, finish)]

    def _generate_rows(self, texts, token_ids, max_new_tokens, settings, stops, stop_strings):
        """Beam and contrastive search: KerasHub's own compiled generate, then stop strings."""
        import keras

        self._use_sampler(settings)
        lengths = [len(ids) for ids in token_ids]
        inputs = self.preprocessor.generate_preprocess(texts, sequence_length=max(lengths) + max_new_tokens)
        outputs = self.causal_lm.make_generate_function()(inputs, stop_token_ids=stops)
        out_ids = keras.ops.convert_to_numpy(outputs["token_ids"])
        mask = keras.ops.convert_to_numpy(outputs["padding_mask"])
        rows = []
        for row, length in enumerate(lengths):
            generated = [int(t) for t, m in zip(out_ids[row, length:], mask[row, length:]) if m][:max_new_tokens]
            finish = "length"
            for index, token in enumerate(generated):
                if token in stops:
                    generated, finish = generated[:index], "stop"
                    break
            assembler = TextAssembler(self._decode_text, stop_strings)
            for token in generated:
                assembler.push(token)
                if assembler.stopped:
                    finish = "stop"
                    break
            assembler.finish()
            rows.append((assembler, assembler.token_ids, finish))
        return rows

    def stream(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 64,
        sampler: Sampler | None = None,
        stop_token_ids: Sequence[int] = (),
        stop: Sequence[str] | str = (),
        system: str | None = None,
        raw: bool = False,
    ) -> Iterator[StreamPiece]:
        """Yields the completion of one prompt piece by piece, as tokens are produced.

        Takes the arguments of :meth:`completions` (for a single prompt). The
        pieces' texts concatenate to the completion's text. Beam and
        contrastive search cannot stream: their whole result arrives at once.

        Example:
            >>> for piece in pipe.stream("Once upon a time", max_new_tokens=32):
            ...     print(piece.text, end="", flush=True)
        """
        if not isinstance(prompt, str):
            raise SettingsError(f"stream() takes one prompt string, received {type(prompt).__name__}.")
        _, texts, max_new_tokens, settings, stops, stop_strings = self._prepare(
            prompt, max_new_tokens, sampler, stop_token_ids, stop, system, raw)
        token_ids = self._token_ids(texts)
        decoder = self._streaming_decoder(settings)
        start = time.perf_counter()
        if decoder is None:
            ((assembler, ids, _),) = self._generate_rows(texts, token_ids, max_new_tokens, settings, stops, stop_strings)
            for index, token in enumerate(ids):
                last = index == len(ids) - 1
                yield StreamPiece(assembler.text if last else "", token, index, time.perf_counter() - start)
            return
        assembler = TextAssembler(self._decode_text, stop_strings)
        steps = decoder.stream(token_ids, max_new_tokens=max_new_tokens, sampler=settings, stop_token_ids=stops)
        index = 0
        try:
            for step in steps:
                if not step.emitted[0]:
                    continue
                token = int(step.token_ids[0])
                if token in stops:
                    break
                piece = assembler.push(token)
                if not assembler.stopped and step.finish_reasons[0] is not None:
                    piece += assembler.finish()
                yield StreamPiece(piece, token, index, time.perf_counter() - start)
                index += 1
                if assembler.stopped or step.finish_reasons[0] is not None:
                    break
            tail = assembler.finish()
            if tail:
                yield StreamPiece(tail, token, index, time.perf_counter() - start)
        finally:
            steps.close()

    def generate(
        self,
        prompts: str | Sequence[str],
        *,
        max_new_tokens: int = 64,
        sampler: Sampler | None = None,
        stop_token_ids: Sequence[int] = (),
        stop: Sequence[str] | str = (),
        system: str | None = None,
        raw: bool = False,
    ) -> str | list[str]:
        """Returns the completion text of a prompt, or a list for a list of prompts.

        Takes the same arguments as :meth:`completions`.
        """
        results = self.completions(
            prompts, max_new_tokens=max_new_tokens, sampler=sampler, stop_token_ids=stop_token_ids,
            stop=stop, system=system, raw=raw,
        )
        texts = [result.text for result in results]
        return texts[0] if isinstance(prompts, str) else texts

    def chat(self, *, system: str | None = None, **options):
        """Starts a multi-turn :class:`~keras_gemma_app.chat.Chat` with this model.

        Args:
            system: an optional system instruction.
            **options: ``sampler``, ``max_new_tokens``, ``context_length``, ``template``.
        """
        from keras_gemma_app.chat import Chat

        return Chat(self, system=system, **options)
