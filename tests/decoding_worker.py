"""Greedy tokens of KerasHub's generate and of Decoder.stream on one backend, as JSON.

Usage: python decoding_worker.py BACKEND PRESET_DIR OUT.json [DTYPE]
"""

import json
import sys

import numpy as np

import keras_gemma_app as kga

PROMPTS = ["The capital of France is", "Write a short poem about the sea and the wind"]
NEW_TOKENS = 24


def main(backend: str, preset: str, out: str, dtype: str = "float32") -> None:
    kga.use_backend(backend)
    import keras

    from keras_gemma_app.decoding import Decoder

    pipe = kga.load(preset, dtype=dtype)
    causal_lm = pipe.causal_lm
    causal_lm.compile(sampler="greedy")
    rows = [[pipe.tokenizer.start_token_id, *np.asarray(pipe.tokenizer(p)).tolist()] for p in PROMPTS]
    length = max(len(row) for row in rows) + NEW_TOKENS
    inputs = pipe.preprocessor.generate_preprocess(PROMPTS, sequence_length=length)
    outputs = keras.ops.convert_to_numpy(causal_lm.make_generate_function()(inputs, stop_token_ids=None)["token_ids"])
    reference = [outputs[i, len(row): len(row) + NEW_TOKENS].tolist() for i, row in enumerate(rows)]

    streamed = [[] for _ in rows]
    decoder = Decoder(causal_lm)
    for step in decoder.stream(rows, max_new_tokens=NEW_TOKENS, sampler=kga.Greedy(), stop_token_ids=()):
        for row in np.flatnonzero(step.emitted):
            streamed[row].append(int(step.token_ids[row]))
    with open(out, "w") as file:
        json.dump({"backend": keras.config.backend(), "reference": reference, "streamed": streamed,
                   "adapter": type(decoder._model).__name__,
                   "xla": bool(getattr(decoder._model, "xla_friendly", False)),
                   "float32_kernels": any(getattr(program, "_kernels", None) is not None
                                          for program in decoder._programs.values())}, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
