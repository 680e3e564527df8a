"""Balancing a product's input channels against its weights' (SmoothQuant's rescaling).

``x @ W.T = (x / c) @ (W * c).T`` for any positive per-channel ``c``. When
``x`` is quantized on one range at each call, a few large channels leave the
small ones with almost no levels; Gemma 3's LM head input is such a case (the
final norm's gain alone spans 0.19 to 301 on Gemma 3 270M). ``c = sqrt(max|x_i|
/ max|W_i|)`` evens the channels out between the two sides, measured once on
sample inputs: hidden states of a short fixed text, :func:`calibration_text`.

Used by the int8 LM head (:mod:`keras_gemma_app.dynamic_int8`), where it
changes the values, and by the screened greedy head
(:mod:`keras_gemma_app.screened_head`), where it changes only the speed.
"""

from __future__ import annotations

import importlib.resources

_ROWS_PER_CHUNK = 16384


def calibration_text() -> str:
    """The text whose hidden states calibrate ``c``: the Gettysburg Address (1863, public domain).

    Not the evaluation text (:func:`keras_gemma_app.quality_eval.default_text`), so a perplexity
    measured on that one is not measured on what the model was tuned with.
    """
    return importlib.resources.files("keras_gemma_app").joinpath("data/calibration.txt").read_text("utf-8")


def column_peaks(table, row_scale=None):
    """``max |W_i|`` over the rows of ``table`` (rows, channels), a chunk of rows at a time.

    With ``row_scale`` (one per row), a row reads back as ``table[r] / row_scale[r]`` (Keras's int8
    embedding); without, the table's values are compared in their own dtype, where magnitudes and
    maxima are exact.
    """
    import torch

    peaks = []
    for start in range(0, table.shape[0], _ROWS_PER_CHUNK):
        rows = table[start:start + _ROWS_PER_CHUNK]
        if row_scale is not None:
            rows = rows.to(torch.float32) / row_scale[start:start + _ROWS_PER_CHUNK, None].to(torch.float32)
        peaks.append(rows.abs().amax(dim=0))
    return torch.stack(peaks).amax(dim=0).to(torch.float32)


def channel_scale(peaks, samples):
    """``c`` that balances the channels of ``samples`` (rows of inputs) against column ``peaks``."""
    import torch

    x_peak = samples.to(torch.float32).abs().amax(dim=0).clamp(min=1e-6)
    return torch.sqrt(x_peak / peaks.to(torch.float32).clamp(min=1e-6))


class InputPeaks:
    """A product that also keeps the largest ``|x_i|`` of each input channel it is called on (``peaks``)."""

    def __init__(self, product):
        self.product = product
        self.peaks = None

    def __call__(self, x):
        import torch

        peaks = x.detach().reshape(-1, x.shape[-1]).abs().amax(dim=0).to(torch.float32)
        self.peaks = peaks if self.peaks is None else torch.maximum(self.peaks, peaks)
        return self.product(x)
