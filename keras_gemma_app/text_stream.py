"""Turning a stream of token ids into a stream of text, and stopping at stop strings.

Text is decoded from all ids so far (SentencePiece pieces only make sense in
context) and only the part that can no longer change is released: a trailing
incomplete UTF-8 character, or a tail that could be the start of a stop
string, is held back until the next token settles it. A stop string may span
several tokens; it is never returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from keras_gemma_app.errors import SettingsError

_REPLACEMENT = "\ufffd"


def check_stop_strings(stop: Sequence[str] | str | None) -> tuple[str, ...]:
    """Validates stop strings; a single string is accepted as one."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = (stop,)
    stop = tuple(stop)
    for item in stop:
        if not isinstance(item, str) or not item:
            raise SettingsError(f"Stop strings must be non-empty text, received {item!r}.")
    return stop


def sentencepiece_decoder(tokenizer) -> Callable[[list[int]], str]:
    """A fast ``ids -> text`` function for a KerasHub SentencePiece tokenizer."""
    proto = getattr(tokenizer, "proto", None)
    if proto:
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
        return lambda ids: processor.decode(list(ids))

    def detokenize(ids):
        value = tokenizer.detokenize([list(ids)])[0] if ids else ""
        value = value.numpy() if hasattr(value, "numpy") else value
        return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)

    return detokenize


class TextAssembler:
    """Accumulates token ids and releases settled text.

    Args:
        decode: ``ids -> text``.
        stop: stop strings; generation should end once :attr:`stopped` is True.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()):
        self._decode = decode
        self._stop = tuple(stop)
        self.token_ids: list[int] = []
        self.text = ""  # released so far
        self.stopped = False

    def _held_back(self, text: str) -> int:
        """How many trailing characters of ``text`` may still change."""
        hold = len(text) - len(text.rstrip(_REPLACEMENT))
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:size]):
                    hold = max(hold, size)
                    break
        return hold

    def push(self, token_id: int) -> str:
        """Adds one token; returns the newly released text (maybe "")."""
        if self.stopped:
            return ""
        self.token_ids.append(int(token_id))
        decoded = self._decode(self.token_ids)
        cut = min((decoded.find(s) for s in self._stop if s in decoded), default=-1)
        if cut >= 0:
            self.stopped = True
            end = cut
        else:
            end = len(decoded) - self._held_back(decoded)
        end = max(end, len(self.text))
        piece = decoded[len(self.text):end]
        self.text = decoded[:end]
        return piece

    def finish(self) -> str:
        """Releases what was held back at the end of generation (never a stop string)."""
        if self.stopped or not self.token_ids:
            return ""
        decoded = self._decode(self.token_ids)
        piece = decoded[len(self.text):]
        self.text = decoded
        return piece
