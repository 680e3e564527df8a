"""What a precision or quantization level costs: memory, perplexity, and agreement with float32.

:func:`evaluate` measures a loaded pipeline:

- memory: the bytes its weights take, the preset's size on disk (for a local
  folder) and the process's peak resident memory so far;
- quality: perplexity on a text (default: :data:`DEFAULT_TEXT`, the first
  chapter of *Alice's Adventures in Wonderland*, 1865, public domain), and the
  greedy tokens for :data:`PROMPTS`, to compare with float32's through
  :func:`agreement`.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import resource
import sys

from keras_gemma_app.perplexity import perplexity

# Ten prompts of different kinds for greedy agreement.
PROMPTS = (
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "The three primary colors are",
    "def fibonacci(n):",
    "Water boils at a temperature of",
    "The most important invention of the twentieth century was",
    "In 1492, Christopher Columbus",
    "The recipe calls for two cups of flour,",
    "Photosynthesis is the process by which",
    "Dear Sir or Madam, I am writing to",
)


def default_text() -> str:
    """The shipped evaluation text (about 3,000 Gemma tokens of public-domain English)."""
    return importlib.resources.files("keras_gemma_app").joinpath("data/alice_chapter1.txt").read_text("utf-8")


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Greedy tokens against a reference's, over the same prompts.

    Attributes:
        positions: share of token positions with the same token as the reference.
        identical: prompts whose tokens are all the reference's.
        prefix: mean number of tokens before the first difference.
        prompts: number of prompts compared.
    """

    positions: float
    identical: int
    prefix: float
    prompts: int


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One model at one precision on one backend.

    Attributes:
        model, backend, dtype, quantize: what was measured.
        weights_mb: megabytes the weights take in memory (as stored by Keras).
        disk_mb: size of the preset folder on disk, or None when not a local folder.
        peak_rss_mb: peak resident memory of the process after loading, in MB.
        perplexity: on the evaluation text; tokens: tokens scored.
        token_ids: greedy token ids per prompt (:data:`PROMPTS`).
        agreement: against the reference, when one was given.
    """

    model: str
    backend: str
    dtype: str
    quantize: str | None
    weights_mb: float
    disk_mb: float | None
    peak_rss_mb: float
    perplexity: float
    tokens: int
    token_ids: tuple[tuple[int, ...], ...]
    agreement: Agreement | None = None

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["token_ids"] = [list(ids) for ids in self.token_ids]
        return data


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def weights_mb(causal_lm) -> float:
    """Megabytes the model's variables take, at the dtypes Keras stores them in."""
    import numpy as np

    total = 0
    for variable in causal_lm.weights:
        total += int(np.prod(variable.shape)) * np.dtype(str(variable.dtype)).itemsize
    return total / 1e6


def greedy_tokens(pipe, prompts=PROMPTS, new_tokens: int = 64) -> tuple[tuple[int, ...], ...]:
    """Greedy token ids for each prompt (raw text, one batch), stop tokens ignored."""
    from keras_gemma_app.samplers import Greedy

    results = pipe.completions(list(prompts), max_new_tokens=new_tokens, sampler=Greedy(), raw=True)
    return tuple(tuple(result.token_ids) for result in results)


def agreement(tokens, reference) -> Agreement:
    """How far ``tokens`` follow ``reference`` (lists of token id sequences, one per prompt)."""
    if len(tokens) != len(reference):
        raise ValueError(f"Expected {len(reference)} sequences, as in the reference, received {len(tokens)}.")
    same = total = identical = 0
    prefixes = []
    for ours, theirs in zip(tokens, reference):
        length = max(len(ours), len(theirs))
        matches = [i < len(ours) and i < len(theirs) and ours[i] == theirs[i] for i in range(length)]
        same += sum(matches)
        total += length
        identical += all(matches)
        prefixes.append(matches.index(False) if False in matches else length)
    return Agreement(same / max(total, 1), identical, sum(prefixes) / max(len(prefixes), 1), len(reference))


def evaluate(pipe, *, text: str | None = None, new_tokens: int = 64, reference=None,
             disk_mb: float | None = None, peak_mb: float | None = None) -> Evaluation:
    """Measures ``pipe``: perplexity on ``text``, greedy tokens, memory.

    Args:
        pipe: a loaded :class:`~keras_gemma_app.pipeline.Pipeline`.
        text: evaluation text (default: :func:`default_text`).
        new_tokens: greedy tokens per prompt.
        reference: greedy token ids of the reference (float32) for :data:`PROMPTS`.
        disk_mb: the preset's size on disk, when known.
        peak_mb: peak RSS to report (default: this process's peak so far).
    """
    peak = peak_mb if peak_mb is not None else peak_rss_mb()
    score = perplexity(pipe.causal_lm, text if text is not None else default_text())
    tokens = greedy_tokens(pipe, PROMPTS, new_tokens)
    return Evaluation(
        model=pipe.model, backend=pipe.backend, dtype=str(pipe.causal_lm.compute_dtype),
        quantize=pipe.quantization, weights_mb=weights_mb(pipe.causal_lm), disk_mb=disk_mb,
        peak_rss_mb=peak, perplexity=score.perplexity, tokens=score.tokens, token_ids=tokens,
        agreement=agreement(tokens, reference) if reference is not None else None,
    )
