"""Streaming decode speed versus KerasHub's compiled generate, on each backend.

For every (backend, dtype) a fresh subprocess (Keras fixes its backend per
process) loads the real Gemma 3 270M and measures, batch 1, greedy, 64 new
tokens, no stop tokens:

- KerasHub: ``causal_lm.generate(prompt, max_length=prompt + 64,
  stop_token_ids=None)``, warm (the first call compiles).
- stream: ``Decoder.stream`` consuming every Step, warm; its warm time to first
  token (prefill + first sample).
- stream+text: the prototype Pipeline integration below (incremental
  detokenization of every token), warm.

Warm figures are the best of ROUNDS calls, KerasHub and stream interleaved (the
machine may be shared).
- a second prompt of another length: time of its first call, and whether any
  compiled function was traced again.
- same tokens: whether the 64 greedy tokens equal KerasHub's. Expected in
  float32; in bfloat16 a prefill of another shape can round differently (on JAX
  a 16-token prefill bucket diverges from KerasHub's full-length prefill after
  11 tokens on this prompt; from 64 tokens up they agree).

Usage:
    python benchmarks/stream_bench.py [--backends jax,tensorflow,torch] [--preset DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

PROMPT = "The capital of France is"
OTHER_PROMPT = "Paris is the capital and the largest city of"
NEW_TOKENS = 64
ROUNDS = 3
RUNS = {
    "jax": ("bfloat16", "float32"),
    "tensorflow": ("float32", "bfloat16"),
    "torch": ("bfloat16", "float32"),
}


# --- Prototype Pipeline integration (benchmark only; the real one lives in pipeline.py). ---


def prototype_stream_text(pipe, decoder, prompt: str, max_new_tokens: int, stop_token_ids=()):
    """Yields the text of one prompt piece by piece, as a Pipeline.stream would."""
    from keras_gemma_app.samplers import Greedy

    ids = [int(t) for t in _as_list(pipe.tokenizer(prompt))]
    if getattr(pipe.preprocessor, "add_start_token", True):
        ids = [pipe.tokenizer.start_token_id, *ids]
    generated: list[int] = []
    shown = ""
    for step in decoder.stream([ids], max_new_tokens=max_new_tokens, sampler=Greedy(), stop_token_ids=stop_token_ids):
        if not step.emitted[0] or step.finish_reasons[0] == "stop":
            continue
        generated.append(int(step.token_ids[0]))
        text = _text(pipe.tokenizer.detokenize([generated])[0])
        if not text.endswith("\ufffd"):  # wait for the rest of a split UTF-8 character
            yield text[len(shown):]
            shown = text


def _as_list(values):
    if hasattr(values, "numpy"):
        values = values.numpy()
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _text(value) -> str:
    if hasattr(value, "numpy"):
        value = value.numpy()
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --- One backend, in its own process. ---


def _trace_count(decoder) -> int:
    """How many times the decoder's compiled functions were traced so far."""
    total = 0
    for program in decoder._programs.values():
        for name in ("_prefill", "_step", "_loop"):
            function = getattr(program, name, None)
            if hasattr(function, "_cache_size"):  # jax.jit
                total += function._cache_size()
            elif hasattr(function, "experimental_get_tracing_count"):  # tf.function
                total += function.experimental_get_tracing_count()
    return total


def worker(backend: str, dtype: str, preset: str) -> dict:
    import keras_gemma_app as kga

    kga.use_backend(backend)
    import keras

    from keras_gemma_app.decoding import Decoder

    if backend == "torch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    pipe = kga.load(preset, dtype=dtype)
    causal_lm = pipe.causal_lm
    causal_lm.compile(sampler="greedy")
    ids = [pipe.tokenizer.start_token_id, *[int(t) for t in _as_list(pipe.tokenizer(PROMPT))]]
    other = [pipe.tokenizer.start_token_id, *[int(t) for t in _as_list(pipe.tokenizer(OTHER_PROMPT))]]
    result = {"backend": backend, "dtype": dtype, "prompt_tokens": len(ids), "other_prompt_tokens": len(other)}

    def keras_hub_generate():
        start = time.perf_counter()
        out = causal_lm.generate([PROMPT], max_length=len(ids) + NEW_TOKENS, stop_token_ids=None)
        return time.perf_counter() - start, out

    def keras_hub_tokens():
        inputs = pipe.preprocessor.generate_preprocess([PROMPT], sequence_length=len(ids) + NEW_TOKENS)
        out = causal_lm.make_generate_function()(inputs, stop_token_ids=None)
        return keras.ops.convert_to_numpy(out["token_ids"])[0, len(ids):].tolist()

    decoder = Decoder(causal_lm)

    def stream(prompt_ids):
        start = time.perf_counter()
        first, tokens = None, []
        for step in decoder.stream([prompt_ids], max_new_tokens=NEW_TOKENS, sampler=kga.Greedy(), stop_token_ids=()):
            first = step.elapsed if first is None else first
            tokens.append(int(step.token_ids[0]))
        return time.perf_counter() - start, first, tokens

    def text_stream():
        start = time.perf_counter()
        text = "".join(prototype_stream_text(pipe, decoder, PROMPT, NEW_TOKENS))
        return time.perf_counter() - start, text

    # First calls compile.
    result["keras_hub_first_s"], _ = keras_hub_generate()
    result["stream_first_s"], _, _ = stream(ids)
    text_stream()
    reference = keras_hub_tokens()

    # Warm calls, interleaved so that load from elsewhere hits both; best of ROUNDS.
    times: dict[str, list[float]] = {"keras_hub": [], "stream": [], "ttft": [], "text": []}
    for _ in range(ROUNDS):
        times["keras_hub"].append(keras_hub_generate()[0])
        seconds, ttft, tokens = stream(ids)
        times["stream"].append(seconds)
        times["ttft"].append(ttft)
        seconds, text = text_stream()
        times["text"].append(seconds)
    result["keras_hub_tok_s"] = NEW_TOKENS / min(times["keras_hub"])
    result["stream_tok_s"] = NEW_TOKENS / min(times["stream"])
    result["stream_ttft_s"] = min(times["ttft"])
    result["text_tok_s"] = NEW_TOKENS / min(times["text"])
    result["all_seconds"] = times
    result["same_tokens"] = tokens == reference
    result["text"] = text[:80]

    traces = _trace_count(decoder)
    seconds, _, _ = stream(other)
    result["other_first_s"] = seconds
    result["other_retraced"] = _trace_count(decoder) > traces
    return result


# --- The table. ---


def _run_worker(backend: str, dtype: str, preset: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", backend, dtype, preset],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"backend": backend, "dtype": dtype, "error": (done.stderr or done.stdout)[-2000:]}


def _table(results: list[dict]) -> str:
    header = (
        "| backend | dtype | KerasHub tok/s | stream tok/s | ratio | stream+text tok/s | warm TTFT s "
        "| 1st call s (KerasHub / stream) | same tokens | new length: 1st call s | retraced |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['dtype']} | error: {r['error'].splitlines()[-1] if r['error'] else '?'} |")
            continue
        lines.append(
            f"| {r['backend']} | {r['dtype']} | {r['keras_hub_tok_s']:.1f} | {r['stream_tok_s']:.1f} "
            f"| {r['stream_tok_s'] / r['keras_hub_tok_s']:.2f}x | {r['text_tok_s']:.1f} | {r['stream_ttft_s']:.3f} "
            f"| {r['keras_hub_first_s']:.1f} / {r['stream_first_s']:.1f} | {'yes' if r['same_tokens'] else 'NO'} | {r['other_first_s']:.2f} | {'yes' if r['other_retraced'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(RUNS))
    parser.add_argument("--preset", default=None, help="Keras preset dir (default: the bundled Gemma 3 270M)")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the raw results here")
    args = parser.parse_args()
    preset = args.preset
    if preset is None:
        from keras_gemma_app.bundled import ensure_bundled

        preset = str(ensure_bundled())
    results = []
    for backend in args.backends.split(","):
        for dtype in RUNS[backend]:
            results.append(_run_worker(backend, dtype, preset))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(f"Gemma 3 270M, batch 1, greedy, {NEW_TOKENS} new tokens, prompt {PROMPT!r}; best of {ROUNDS} warm calls.")
    print(_table(results))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(json.dumps(worker(*sys.argv[2:5])), flush=True)
    else:
        main()
