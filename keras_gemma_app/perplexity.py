"""Perplexity of a loaded model on a text, through the same forward pass generation uses.

The text is tokenized once, a beginning-of-sequence token put in front, and
cut into windows of ``window`` tokens that do not overlap; each window is one
forward pass (the decoder's model adapter: on torch the app's own Gemma 3,
packed int kernels included). Perplexity is ``exp`` of the mean negative
log-likelihood of every token after the first, in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np

# Logit rows turned into log-probabilities at a time: bounds the (rows, vocabulary) float32 scratch.
_ROWS = 128


@dataclasses.dataclass(frozen=True)
class Perplexity:
    """Attributes: perplexity, mean negative log-likelihood (nats), tokens scored."""

    perplexity: float
    nll: float
    tokens: int


def _no_grad():
    import keras

    if keras.config.backend() == "torch":
        import torch

        return torch.inference_mode()
    return contextlib.nullcontext()


def token_ids(causal_lm, text: str) -> np.ndarray:
    """``text`` as token ids, after a beginning-of-sequence token."""
    tokenizer = causal_lm.preprocessor.tokenizer
    ids = np.asarray(tokenizer(text)).astype("int32").reshape(-1)
    return np.concatenate([[tokenizer.start_token_id], ids]).astype("int32")


def _window_nll(adapter, ids: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of ids[1:] given the ids before each, in one forward pass."""
    from keras import ops

    inputs = ids[None, :-1]
    cache = adapter.empty_cache(1, inputs.shape[1])
    hidden, _ = adapter.forward(ops.convert_to_tensor(inputs), cache, 0)
    losses = []
    for start in range(0, inputs.shape[1], _ROWS):
        logits = ops.cast(adapter.logits(hidden[:, start:start + _ROWS]), "float32")
        log_probs = ops.log_softmax(logits, axis=-1)
        targets = ops.convert_to_tensor(ids[None, start + 1:start + 1 + _ROWS, None])
        picked = ops.take_along_axis(log_probs, targets, axis=-1)
        losses.append(-ops.convert_to_numpy(picked).reshape(-1))
    return np.concatenate(losses)


def perplexity(causal_lm, text: str, window: int = 1024) -> Perplexity:
    """Perplexity of ``causal_lm`` on ``text``.

    Raises:
        ValueError: the text has fewer than two tokens, or ``window`` < 2.
    """
    from keras_gemma_app.decoding import _model_adapter

    if window < 2:
        raise ValueError(f"Expected a window of at least 2 tokens, received {window}.")
    ids = token_ids(causal_lm, text)
    if len(ids) < 2:
        raise ValueError("Expected a text of at least one token, received an empty one.")
    adapter = _model_adapter(causal_lm)
    losses = []
    with _no_grad():
        for start in range(0, len(ids) - 1, window):
            losses.append(_window_nll(adapter, ids[start:start + window + 1]))
    nll = float(np.mean(np.concatenate(losses)))
    return Perplexity(math.exp(nll), nll, int(sum(len(part) for part in losses)))
