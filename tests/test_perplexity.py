"""Perplexity through the decoder's forward pass equals KerasHub's own logits, and behaves like one."""

import math

import keras
import numpy as np
import pytest

from keras_gemma_app.perplexity import perplexity, token_ids

TEXT = "The quick brown fox jumps over the lazy dog. " * 6


def _keras_hub_nll(causal_lm, ids: np.ndarray) -> float:
    """Mean next-token negative log-likelihood from KerasHub's full forward call (no cache)."""
    inputs = {"token_ids": ids[None, :-1], "padding_mask": np.ones((1, len(ids) - 1), bool)}
    logits = keras.ops.convert_to_numpy(causal_lm(inputs)).astype(np.float64)[0]
    logits -= logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(ids) - 1), ids[1:]]))


def test_equals_exp_of_keras_hub_mean_nll(tiny_pipe):
    causal_lm = tiny_pipe.causal_lm
    ids = token_ids(causal_lm, TEXT)
    assert ids[0] == causal_lm.preprocessor.tokenizer.start_token_id
    result = perplexity(causal_lm, TEXT, window=1024)
    assert result.tokens == len(ids) - 1
    assert result.nll == pytest.approx(_keras_hub_nll(causal_lm, ids), rel=1e-4)
    assert result.perplexity == pytest.approx(math.exp(result.nll))


def test_windows_score_every_token_once(tiny_pipe):
    ids = token_ids(tiny_pipe.causal_lm, TEXT)
    small = perplexity(tiny_pipe.causal_lm, TEXT, window=16)
    assert small.tokens == len(ids) - 1
    # Later windows lose the context before them, so the figure moves, but stays finite.
    assert math.isfinite(small.perplexity) and small.perplexity > 1


def test_bad_window_and_empty_text(tiny_pipe):
    with pytest.raises(ValueError, match="window"):
        perplexity(tiny_pipe.causal_lm, TEXT, window=1)
    with pytest.raises(ValueError, match="empty"):
        perplexity(tiny_pipe.causal_lm, "")
