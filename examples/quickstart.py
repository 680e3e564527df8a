"""Load a Gemma model, generate, then swap the sampler and generate again.

    python examples/quickstart.py [MODEL]

MODEL is a preset name (`keras-gemma list`), a local preset folder or a .gguf
file; without it, $KERAS_GEMMA_MODEL, else gemma3_instruct_270m (downloaded
from Kaggle on first use). The backend is $KERAS_BACKEND, else JAX.
"""

import argparse
import os
import sys

import keras_gemma_app as kga


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=os.environ.get("KERAS_GEMMA_MODEL", "gemma3_instruct_270m"))
    parser.add_argument("--prompt", default="The three primary colours are")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()

    kga.use_backend()  # $KERAS_BACKEND, else jax: before anything imports keras
    print(f"Loading {args.model}…", file=sys.stderr)
    pipe = kga.load(args.model)
    print(pipe)

    # The pipeline's parts are KerasHub objects you can inspect.
    print("preprocessor:", type(pipe.preprocessor).__name__, "· model:", type(pipe.causal_lm).__name__)

    # Greedy is the default sampler: the same text every time.
    print(f"[{pipe.sampler}]", args.prompt + pipe.generate(args.prompt, max_new_tokens=args.max_new_tokens))

    # Swap the sampler; the model stays loaded. A fixed seed repeats the same text.
    pipe.sampler = kga.TopP(p=0.9, temperature=0.8, seed=7)
    print(f"[{pipe.sampler}]", args.prompt + pipe.generate(args.prompt, max_new_tokens=args.max_new_tokens))


if __name__ == "__main__":
    try:
        main()
    except kga.KerasGemmaError as error:  # a problem the user can fix: one line, no traceback
        sys.exit(f"Error: {error}")
