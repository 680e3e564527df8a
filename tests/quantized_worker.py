"""Loads the real model's int8/int4 presets (and, for perplexity, the float32 model) on one backend.

Usage: python quantized_worker.py BACKEND OUT.json FLOAT_PRESET INT8_PRESET INT4_PRESET [perplexity]
"""

import json
import sys

import keras_gemma_app as kga

PROMPT = "The capital of France is"


def main(backend: str, out: str, float_preset: str, int8: str, int4: str, *flags: str) -> None:
    kga.use_backend(backend)
    from keras_gemma_app.decoding import _model_adapter
    from keras_gemma_app.perplexity import perplexity
    from keras_gemma_app.quality_eval import default_text

    report = {}
    if "perplexity" in flags:
        pipe = kga.load(float_preset, dtype="float32")
        report["float32"] = {"perplexity": perplexity(pipe.causal_lm, default_text()).perplexity}
        del pipe
    for level, preset in (("int8", int8), ("int4", int4)):
        pipe = kga.load(preset)
        completion = pipe.completions(PROMPT, max_new_tokens=16)[0]
        entry = {"tokens": list(completion.token_ids), "text": completion.text,
                 "adapter": type(_model_adapter(pipe.causal_lm)).__name__,
                 "quantization": pipe.quantization, "dtype": str(pipe.causal_lm.compute_dtype)}
        if "perplexity" in flags:
            entry["perplexity"] = perplexity(pipe.causal_lm, default_text()).perplexity
        report[level] = entry
        del pipe
    with open(out, "w") as file:
        json.dump(report, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
