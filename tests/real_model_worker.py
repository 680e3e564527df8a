"""Loads the real Gemma 3 270M on one backend; writes greedy tokens and logits to an .npz file.

Usage: python real_model_worker.py BACKEND PRESET_DIR OUT.npz
"""

import sys

import numpy as np

import keras_gemma_app as kga

PROMPT = "The capital of France is"


def main(backend: str, preset: str, out: str) -> None:
    kga.use_backend(backend)
    pipe = kga.load(preset, dtype="float32")
    completion = pipe.completions(PROMPT, max_new_tokens=16)[0]
    streamed = "".join(piece.text for piece in pipe.stream(PROMPT, max_new_tokens=16))
    stop = " of France"  # spans several tokens
    stopped = "".join(piece.text for piece in pipe.stream(PROMPT, max_new_tokens=16, stop=[stop]))
    inputs = pipe.preprocessor.generate_preprocess([PROMPT], sequence_length=8)
    import keras

    logits = keras.ops.convert_to_numpy(pipe.causal_lm(inputs))
    np.savez(out, tokens=np.array(completion.token_ids), logits=logits,
             text=np.array(completion.text), backend=np.array(keras.config.backend()),
             streamed=np.array(streamed), stopped=np.array(stopped), stop=np.array(stop))


if __name__ == "__main__":
    main(*sys.argv[1:4])
