"""Runs every sampler through the Python API on one backend and prints JSON.

Usage: python backend_worker.py BACKEND PRESET_DIR
"""

import json
import sys

import keras_gemma_app as kga

PROMPTS = ["The capital of France", "hello"]
SAMPLERS = [
    kga.Greedy(),
    kga.TopK(k=3, temperature=2.0, seed=1),
    kga.TopP(p=0.9, temperature=2.0, seed=1),
    kga.Random(temperature=2.0, seed=1),
    kga.Beam(num_beams=2),
    kga.Contrastive(k=3, alpha=0.5),
]


def main(backend: str, preset: str) -> None:
    kga.use_backend(backend)
    pipe = kga.load(preset)
    results = {"backend": pipe.backend}
    for sampler in SAMPLERS:
        first = pipe.completions(PROMPTS, sampler=sampler, max_new_tokens=6)
        again = pipe.generate(PROMPTS, sampler=sampler, max_new_tokens=6)
        results[sampler.name] = {
            "texts": [r.text for r in first],
            "tokens": [list(r.token_ids) for r in first],
            "again": again,
        }
    import keras

    results["keras_backend"] = keras.config.backend()
    print(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:3])
