"""Multi-turn conversations with history, on top of a pipeline's streaming core."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Iterator

from keras_gemma_app.errors import SettingsError
from keras_gemma_app.samplers import Sampler
from keras_gemma_app.templates import normalize, render


@dataclasses.dataclass
class ChatStats:
    """Figures of the last reply.

    Attributes:
        prompt_tokens: tokens of the rendered conversation sent to the model.
        new_tokens: tokens of the reply.
        ttft: seconds to the first token.
        seconds: seconds for the whole reply.
        dropped_turns: oldest user/model turn pairs dropped to fit the context.
    """

    prompt_tokens: int = 0
    new_tokens: int = 0
    ttft: float = 0.0
    seconds: float = 0.0
    dropped_turns: int = 0

    @property
    def tokens_per_second(self) -> float:
        decode = self.seconds - self.ttft
        return (self.new_tokens - 1) / decode if self.new_tokens > 1 and decode > 0 else 0.0


def turn_format(causal_lm) -> str:
    """The chat format of a model's generation, for models whose default is raw text."""
    name = type(causal_lm).__name__
    if name.startswith("Gemma4"):
        return "gemma4"
    if name.startswith("Gemma3"):
        return "gemma3"
    return "gemma"


class Chat:
    """A conversation with a loaded model.

    Args:
        pipe: a loaded :class:`~keras_gemma_app.pipeline.Pipeline`.
        system: an optional system instruction.
        sampler: sampler settings for replies (default: the pipeline's).
        max_new_tokens: longest reply, in tokens.
        context_length: tokens of context the conversation must fit in
            (default: the model's); when it outgrows it, the oldest turns are
            dropped and :attr:`stats` says how many.

    Example:
        >>> chat = pipe.chat(system="Answer in one sentence.")
        >>> chat.send("Why is the sky blue?")
        >>> for piece in chat.stream("And at sunset?"):
        ...     print(piece.text, end="", flush=True)
        >>> chat.messages  # plain {role, content} dicts
    """

    def __init__(self, pipe, *, system: str | None = None, sampler: Sampler | None = None,
                 max_new_tokens: int = 256, context_length: int | None = None, template: str | None = None):
        self.pipe = pipe
        self.sampler = sampler
        self.max_new_tokens = max_new_tokens
        self.context_length = context_length or pipe.context_length
        self.template = template or (pipe.template if pipe.template != "raw" else turn_format(pipe.causal_lm))
        self.messages: list[dict[str, str]] = []
        self.stats = ChatStats()
        if system:
            self.system = system

    @property
    def system(self) -> str | None:
        """The system instruction, or None; assign to change it."""
        return self.messages[0]["content"] if self.messages and self.messages[0]["role"] == "system" else None

    @system.setter
    def system(self, text: str | None) -> None:
        turns = self.messages[1:] if self.system is not None else self.messages
        self.messages = ([{"role": "system", "content": text}] if text else []) + turns

    def clear(self) -> None:
        """Forgets the turns, keeps the system instruction."""
        self.messages = self.messages[:1] if self.system is not None else []

    def _turns_start(self) -> int:
        return 1 if self.system is not None else 0

    def _fit(self, messages: list[dict[str, str]]) -> tuple[str, int, int]:
        """Renders ``messages``, dropping the oldest turn pairs until it fits the context."""
        dropped = 0
        start = self._turns_start()
        while True:
            prompt = render(messages, self.template)
            length = self.pipe.count_tokens(prompt)
            if length + self.max_new_tokens <= self.context_length:
                return prompt, length, dropped
            if len(messages) - start <= 1:
                raise SettingsError(
                    f"The message is {length} tokens; with {self.max_new_tokens} new tokens it does not fit "
                    f"the context of {self.context_length} tokens: shorten it or lower max_new_tokens."
                )
            messages = messages[:start] + messages[start + 2:]
            dropped += 1

    def stream(self, text: str, **options) -> Iterator:
        """Sends ``text`` and yields the reply piece by piece.

        The reply is added to :attr:`messages` when the stream ends, also when
        it is closed early (the partial reply is kept).
        """
        if not isinstance(text, str) or not text.strip():
            raise SettingsError("Expected a non-empty message, received an empty one.")
        messages = normalize(self.messages + [{"role": "user", "content": text}])
        prompt, length, dropped = self._fit(messages)
        if dropped:
            start = self._turns_start()
            self.messages = self.messages[:start] + self.messages[start + 2 * dropped:]
        self.messages.append({"role": "user", "content": text})
        stats = ChatStats(prompt_tokens=length, dropped_turns=dropped)
        self.stats = stats
        reply = []
        start_time = time.perf_counter()
        options.setdefault("max_new_tokens", self.max_new_tokens)
        if self.sampler is not None:
            options.setdefault("sampler", self.sampler)
        try:
            for piece in self.pipe.stream(prompt, raw=True, **options):
                if stats.new_tokens == 0:
                    stats.ttft = time.perf_counter() - start_time
                stats.new_tokens += 1
                reply.append(piece.text)
                yield piece
        finally:
            stats.seconds = time.perf_counter() - start_time
            self.messages.append({"role": "model", "content": "".join(reply)})

    def send(self, text: str, **options) -> str:
        """Sends ``text`` and returns the whole reply."""
        return "".join(piece.text for piece in self.stream(text, **options))

    def save(self, path: str | pathlib.Path) -> None:
        """Writes the transcript as JSON: ``{"messages": [{role, content}, …]}``."""
        pathlib.Path(path).write_text(json.dumps({"messages": self.messages}, indent=1, ensure_ascii=False))

    def load(self, path: str | pathlib.Path) -> None:
        """Replaces the conversation with a transcript written by :meth:`save`."""
        try:
            data = json.loads(pathlib.Path(path).read_text())
        except (OSError, ValueError) as error:
            raise SettingsError(f"Cannot read transcript {str(path)!r}: {error}") from None
        messages = data.get("messages") if isinstance(data, dict) else data
        if not isinstance(messages, list):
            raise SettingsError(f"Transcript {str(path)!r} must hold a list of messages, received {type(messages).__name__}.")
        self.messages = normalize(messages)
