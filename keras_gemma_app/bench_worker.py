"""One backend's benchmark, in its own process: ``python -m keras_gemma_app.bench_worker SETTINGS_JSON``.

Keras fixes its backend per process, so :mod:`keras_gemma_app.bench` starts
this once per backend. It prints one JSON line, ``{"results": [...]}``, on
stdout, each result in the shape :mod:`keras_gemma_app.bench` documents.

What is timed, for every (batch, prompt length), greedy, no stop tokens:

- keras-gemma-app: :class:`~keras_gemma_app.decoding.Decoder` streaming; time
  to first token is the prefill and first sample; decode speed counts the
  tokens after the first over the time after it.
- keras-hub: ``CausalLM.generate``'s compiled function on the same token ids;
  it yields nothing until the end, so it is run for one new token (time to
  first token) and for all of them, and decode speed is the difference.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

# Enough distinct text for a prompt of any length the benchmark asks for (it is repeated if not).
PROMPT_TEXT = (
    "The history of astronomy spans thousands of years. Early observers tracked the motions of the Sun, "
    "the Moon and the planets against the fixed stars, and used them to keep calendars and to navigate. "
    "Greek astronomers proposed models of the heavens built from circles; centuries later, Copernicus "
    "placed the Sun at the centre, Kepler found that planets move in ellipses, and Galileo turned a "
    "telescope to the sky and saw the moons of Jupiter. Newton's law of gravitation explained all of "
    "these motions with one idea. In the twentieth century astronomers learned that the Milky Way is "
    "one galaxy among billions, that the universe is expanding, and that it began in a hot, dense state. "
)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompt_ids(tokenizer, length: int) -> list[int]:
    """Exactly ``length`` token ids: ``<bos>`` then the benchmark text, repeated as needed."""
    import numpy as np

    body = [int(t) for t in np.asarray(tokenizer(PROMPT_TEXT)).tolist()]
    ids = [tokenizer.start_token_id]
    while len(ids) < length:
        ids.extend(body)
    return ids[:length]


def _spread(values: list[float | None]) -> tuple[float | None, float | None, float | None]:
    """Median, min and max of the measured values (None where none could be measured)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def _app_engine(pipe, rows, new_tokens: int, runs: int) -> dict:
    from keras_gemma_app.decoding import Decoder
    from keras_gemma_app.samplers import Greedy

    decoder = Decoder(pipe.causal_lm)

    def once():
        start = time.perf_counter()
        first = last = None
        tokens = []
        for step in decoder.stream(rows, max_new_tokens=new_tokens, sampler=Greedy(), stop_token_ids=()):
            now = time.perf_counter() - start
            first = now if first is None else first
            last = now
            tokens.append(int(step.token_ids[0]))
        return first, last, tokens

    start = time.perf_counter()
    once()
    first_call = time.perf_counter() - start
    # Untimed too: a model used more than once builds what pays off over many calls at the second
    # (torch, bfloat16, greedy: the screened LM head).
    once()
    ttfts, speeds = [], []
    for _ in range(runs):
        first, last, tokens = once()
        ttfts.append(first)
        speeds.append(len(rows) * (new_tokens - 1) / max(last - first, 1e-9))
    return {"first_call_s": first_call, "ttfts": ttfts, "speeds": speeds, "tokens": tokens}


def _keras_hub_engine(pipe, rows, new_tokens: int, runs: int) -> dict:
    import numpy as np
    from keras import ops

    causal_lm = pipe.causal_lm
    causal_lm.compile(sampler="greedy")
    generate = causal_lm.make_generate_function()
    length = len(rows[0])

    def inputs(total: int):
        token_ids = np.zeros((len(rows), total), dtype="int32")
        token_ids[:, :length] = rows
        mask = np.zeros((len(rows), total), dtype=bool)
        mask[:, :length] = True
        return {"token_ids": ops.convert_to_tensor(token_ids), "padding_mask": ops.convert_to_tensor(mask)}

    one, full = inputs(length + 1), inputs(length + new_tokens)

    def timed(batch):
        start = time.perf_counter()
        out = generate(batch, stop_token_ids=None)
        token_ids = ops.convert_to_numpy(out["token_ids"])
        return time.perf_counter() - start, token_ids

    start = time.perf_counter()
    timed(full)
    first_call = time.perf_counter() - start
    timed(one)
    ttfts, speeds = [], []
    for _ in range(runs):
        ttft, _ = timed(one)
        total, token_ids = timed(full)
        ttfts.append(ttft)
        # Below a millisecond the difference is timer noise, not decoding.
        speeds.append(len(rows) * (new_tokens - 1) / (total - ttft) if total - ttft > 1e-3 else None)
    return {"first_call_s": first_call, "ttfts": ttfts, "speeds": speeds,
            "tokens": token_ids[0, length:].tolist()}


ENGINES = {"keras-gemma-app": _app_engine, "keras-hub": _keras_hub_engine}


def run(settings: dict) -> list[dict]:
    """Measures every engine and shape in ``settings`` on ``settings["backend"]``."""
    import keras_gemma_app as kga
    from keras_gemma_app.text_stream import sentencepiece_decoder

    backend = settings["backend"]
    kga.use_backend(backend)
    start = time.perf_counter()
    import keras_hub  # noqa: F401 - timed: what every run pays once

    import_s = time.perf_counter() - start
    if backend == "torch":
        import os

        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    pipe = kga.load(settings["model"], dtype=settings["dtype"], quantize=settings.get("quantize"),
                    force=settings.get("force", False))
    load_s = time.perf_counter() - start
    results = []
    for batch in settings["batch"]:
        for length in settings["prompt_tokens"]:
            rows = [prompt_ids(pipe.tokenizer, length)] * batch
            for engine in settings["engines"]:
                measured = ENGINES[engine](pipe, rows, settings["new_tokens"], settings["runs"])
                ttft, _, _ = _spread(measured["ttfts"])
                speed, slowest, fastest = _spread(measured["speeds"])
                results.append({
                    "engine": engine, "backend": backend, "dtype": str(pipe.causal_lm.compute_dtype),
                    "quantize": pipe.quantization, "batch": batch, "prompt_tokens": length,
                    "new_tokens": settings["new_tokens"], "import_s": import_s, "load_s": load_s,
                    "first_call_s": measured["first_call_s"], "ttft_ms": 1000 * ttft,
                    "decode_tok_s": speed, "decode_tok_s_min": slowest, "decode_tok_s_max": fastest,
                    "prefill_tok_s": batch * length / ttft, "peak_rss_mb": peak_rss_mb(),
                    "text": sentencepiece_decoder(pipe.tokenizer)(measured["tokens"]),
                    "token_ids": measured["tokens"],
                })
    return results


if __name__ == "__main__":
    print(json.dumps({"results": run(json.loads(sys.argv[1]))}), flush=True)
