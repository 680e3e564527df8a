"""Greedy decoding's next token without reading the whole bfloat16 LM head.

Greedy decoding needs only the index of the largest logit. On a CPU a bfloat16
token of Gemma 3 spends about 40% of its time in the tied LM head (262k rows,
335 MB read a token), and the largest logit usually stands well above the rest.
This module finds it in two passes that give the full product's index exactly:

1. A screen: an int8 copy of the table (one scale per row) multiplied by the
   hidden state quantized at the call (:mod:`keras_gemma_app.dynamic_int8`),
   with a proven bound on how far each approximate logit can be from the
   bfloat16 one: the error of the int8 rows (Cauchy-Schwarz with each row's
   stored error norm), of the quantized input (read back from the engine
   through an int8 identity), of float32 accumulation, and of the final
   rounding to bfloat16. Rows whose upper bound stays below the best
   lower bound can be neither the largest nor tied with it.
2. The remaining rows multiplied exactly as the full product does (the same
   bfloat16 kernel gives a row the same value whatever the other rows are; the
   tests check it), and the first largest taken, as ``argmax`` does.

The bound holds for any per-channel rescaling ``x @ W.T = (x / c) @ (W * c).T``;
the rescaling only decides how many rows survive. The hidden state's channels
differ in size by three orders of magnitude (Gemma 3 270M's final norm gain
alone spans 0.19 to 301), and quantizing it on one range would leave most rows
in: ``c = sqrt(max|x_i| / max|W_i|)`` (SmoothQuant's balance,
:mod:`keras_gemma_app.channel_balance`) evens the input's channels out against
the table's, measured once on sample hidden states.

Gemma 3 270M, 512 greedy steps of 8 prompts on 2 cores: median 36 rows left of
262,144 (mean 139, at most 6,109; ~32,000 without the rescaling), the same token
at every step, 7.8 ms a token against 13.8 ms for the full product and argmax
(median, in one sitting). The int8 copy costs 0.17 GB and ~2.5 s to build.
"""

from __future__ import annotations

from keras_gemma_app.short_threads import side_by_side

# The most a float32 value moves when rounded to nearest bfloat16, relative to its size: half a unit
# in the 8-bit significand (oneDNN and torch round to nearest even; a test checks the kernel does).
_BFLOAT16_ROUNDING = 2.0 ** -8
_ROWS_PER_CHUNK = 16384


class ScreenedArgmax:
    """``argmax(x @ table.T)`` per row of ``x``, equal to the bfloat16 product's, mostly without it.

    ``table``: bfloat16 (rows, in); ``scale``: the channel balance ``c`` (in,), see
    :func:`keras_gemma_app.channel_balance.channel_scale`. Built in as many parts as torch has
    threads, side by side (Gemma 3 270M: ~2 s on 2 cores; torch's engine packs int8 weights on one core).
    """

    def __init__(self, table, scale):
        import torch

        from keras_gemma_app import dynamic_int8

        self.table = table
        self.in_features = table.shape[1]
        self.scale = scale.to(torch.float32)
        rows = table.shape[0]
        size = -(-rows // max(torch.get_num_threads(), 1))
        parts = side_by_side([lambda start=start: self._part(start, min(start + size, rows))
                               for start in range(0, rows, size)])
        self.screens = [screen for screen, _, _ in parts]
        # The engine's own quantization of an input, read back through an int8 identity: the input
        # error that the bound takes is then the real one (~58% of the worst case half a step a value
        # allows, which left 6x more rows in on Gemma 3 270M).
        self._identity = dynamic_int8.DynamicInt8Linear(
            torch.eye(self.in_features, dtype=torch.int8), torch.ones(self.in_features, dtype=torch.float64))
        self.row_norm = torch.cat([norms for _, norms, _ in parts])
        self.error_norm = torch.cat([errors for _, _, errors in parts])
        # Upper bounds of both norms, for the first coarse pass of the screen.
        self._max_row_norm = float(self.row_norm.max())
        self._max_error_norm = float(self.error_norm.max())
        self.last_candidates = 0

    @staticmethod
    def extra_bytes(rows: int, in_features: int, threads: int) -> int:
        """Memory the screen of a (rows, in_features) table takes: its int8 rows, their scales and
        norms, and while it is built, each thread's float32 scratch."""
        return rows * (in_features + 12) + threads * min(rows, _ROWS_PER_CHUNK) * in_features * 12

    def _part(self, start: int, stop: int):
        """The int8 screen of rows start..stop, their norms, and the norms of their int8 errors."""
        import torch

        from keras_gemma_app import dynamic_int8

        with torch.inference_mode():
            values = torch.empty((stop - start, self.in_features), dtype=torch.int8)
            row_scale = torch.empty(stop - start, dtype=torch.float32)
            row_norm = torch.empty(stop - start, dtype=torch.float32)
            error_norm = torch.empty(stop - start, dtype=torch.float32)
            for first in range(0, stop - start, _ROWS_PER_CHUNK):
                chunk = self.table[start + first:min(start + first + _ROWS_PER_CHUNK, stop)].to(torch.float32) * self.scale
                q, step = dynamic_int8.int8_rows(chunk)
                end = first + chunk.shape[0]
                values[first:end] = q.to(torch.int8)
                row_scale[first:end] = step
                row_norm[first:end] = torch.linalg.vector_norm(chunk, dim=1)
                error_norm[first:end] = torch.linalg.vector_norm(chunk.sub_(q.mul_(step[:, None])), dim=1)
            return dynamic_int8.DynamicInt8Linear(values, row_scale.to(torch.float64)), row_norm, error_norm

    def _screen(self, x):
        """The int8 logits of every row for one row ``x`` (1, in), and the two factors of their
        error bounds for this ``x`` (see :meth:`_bounds`)."""
        import torch

        scaled = x.reshape(1, -1).to(torch.float32) / self.scale
        approx = torch.cat([screen(scaled) for screen in self.screens], dim=-1).reshape(-1)
        norm = float(torch.linalg.vector_norm(scaled))
        # The engine quantizes the input from its own range at every call, the same way for any
        # weight: what it multiplies is what it gives back through the identity (each value a whole
        # number of steps times the step, rounded once more to float32: the last term).
        dequantized = self._identity(scaled)
        input_error = float(torch.linalg.vector_norm(scaled - dequantized)) * (1 + 2.0 ** -10) + norm * 2.0 ** -22
        # float32 sums of n terms err by at most ~n * 2**-24 of the sum of the terms' magnitudes, at
        # most |x| |w| (Cauchy-Schwarz); 8 more cover the roundings of x / c, w * c and the engine's
        # float scaling.
        accumulation = (self.in_features + 8) * 2.0 ** -24 * 1.01
        return approx, input_error + accumulation * norm, norm + input_error

    def _bounds(self, approx, rows, row_term: float, error_term: float):
        """How far the bfloat16 logits of ``rows`` can be from their int8 ``approx``:
        ``input error * |w| + (|x| + input error) * |w - w_int8|`` plus float32 accumulation, then
        the final rounding to bfloat16 (relative)."""
        bound = self.row_norm[rows] * row_term + self.error_norm[rows] * error_term
        return bound.mul_(1 + _BFLOAT16_ROUNDING).add_(approx.abs(), alpha=_BFLOAT16_ROUNDING)

    def candidates(self, x):
        """Indices (ascending) of the rows that can hold the largest logit of one row ``x`` (1, in)."""
        import torch

        approx, row_term, error_term = self._screen(x)
        top = float(torch.max(approx))
        # Every bound is at most ``widest + |approx| * rounding``. A row that can reach the best lower
        # bound (at least ``top - widest - |top| * rounding``) then has ``approx >= top - 2 widest -
        # 2 |top| rounding``, or, below 0 where its own allowance grows with |approx|, a little less:
        # the threshold below holds in both cases.
        widest = (self._max_row_norm * row_term + self._max_error_norm * error_term) * (1 + _BFLOAT16_ROUNDING)
        near = torch.nonzero(approx >= top - 2.05 * widest - 4 * abs(top) * _BFLOAT16_ROUNDING).reshape(-1)
        a = approx[near]
        bound = self._bounds(a, near, row_term, error_term)
        floor = torch.max(a - bound)
        return near[a + bound >= floor]

    def __call__(self, x, exact_rows):
        """One index per row of ``x`` (rows, in): the first largest logit, as ``argmax`` gives it."""
        import torch

        flat = x.reshape(-1, self.in_features)
        picks = []
        counts = 0
        for row in flat:
            rows = self.candidates(row)
            counts += len(rows)
            logits = exact_rows(row.reshape(1, -1), rows).reshape(-1)
            # Candidates are in ascending order: the first largest among them is argmax's.
            picks.append(rows[torch.argmax(logits.to(torch.float32))])
        self.last_candidates = counts
        return torch.stack(picks)
