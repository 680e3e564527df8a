"""The llama.cpp baseline, in its own process: ``python -m keras_gemma_app.bench_llama SETTINGS_JSON``.

Runs llama-cpp-python on the GGUF file with the same prompt token ids as the
Keras engines (the GGUF carries the same vocabulary), greedy, all CPU threads.
Prints one JSON line, ``{"results": [...]}``, in :mod:`keras_gemma_app.bench`'s shape.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time


def run(settings: dict) -> list[dict]:
    start = time.perf_counter()
    import llama_cpp

    import_s = time.perf_counter() - start
    from keras_gemma_app.bench_worker import PROMPT_TEXT, peak_rss_mb

    longest = max(settings["prompt_tokens"]) + settings["new_tokens"] + 8
    start = time.perf_counter()
    llm = llama_cpp.Llama(model_path=settings["gguf"], n_ctx=max(512, longest), n_threads=os.cpu_count(),
                          n_batch=max(settings["prompt_tokens"]), verbose=False, logits_all=False)
    load_s = time.perf_counter() - start
    body = llm.tokenize(PROMPT_TEXT.encode("utf-8"), add_bos=False, special=False)
    results = []
    for length in settings["prompt_tokens"]:
        ids = [llm.token_bos()]
        while len(ids) < length:
            ids.extend(body)
        ids = ids[:length]

        def once():
            llm.reset()
            start = time.perf_counter()
            first = last = None
            tokens = []
            for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
                now = time.perf_counter() - start
                first = now if first is None else first
                last = now
                tokens.append(token)
                if len(tokens) == settings["new_tokens"]:
                    break
            return first, last, tokens

        start = time.perf_counter()
        once()
        first_call = time.perf_counter() - start
        ttfts, speeds = [], []
        for _ in range(settings["runs"]):
            first, last, tokens = once()
            ttfts.append(first)
            speeds.append((settings["new_tokens"] - 1) / max(last - first, 1e-9))
        ttft = statistics.median(ttfts)
        results.append({
            "engine": "llama.cpp", "backend": None, "dtype": None, "quantize": "gguf", "batch": 1,
            "prompt_tokens": length, "new_tokens": settings["new_tokens"], "import_s": import_s,
            "load_s": load_s, "first_call_s": first_call, "ttft_ms": 1000 * ttft,
            "decode_tok_s": statistics.median(speeds), "decode_tok_s_min": min(speeds),
            "decode_tok_s_max": max(speeds), "prefill_tok_s": length / ttft, "peak_rss_mb": peak_rss_mb(),
            "text": llm.detokenize(tokens).decode("utf-8", "replace"), "token_ids": tokens,
        })
    return results


if __name__ == "__main__":
    print(json.dumps({"results": run(json.loads(sys.argv[1]))}), flush=True)
