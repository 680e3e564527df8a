"""The same prompt on the backend given as an argument.

    python examples/switch_backend.py torch [MODEL]
    for b in jax tensorflow torch; do python examples/switch_backend.py $b; done

Keras fixes its backend when it is first imported, so the choice comes first,
and a process runs one backend. MODEL defaults to $KERAS_GEMMA_MODEL, else
gemma3_instruct_270m.
"""

import argparse
import os
import sys
import time

import keras_gemma_app as kga


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=kga.BACKENDS)
    parser.add_argument("model", nargs="?", default=os.environ.get("KERAS_GEMMA_MODEL", "gemma3_instruct_270m"))
    parser.add_argument("--prompt", default="The capital of France is")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()

    kga.use_backend(args.backend)  # first, before anything imports keras
    import keras

    print(f"Loading {args.model} on {args.backend}…", file=sys.stderr)
    pipe = kga.load(args.model)
    start = time.perf_counter()
    text = pipe.generate(args.prompt, max_new_tokens=args.max_new_tokens)
    seconds = time.perf_counter() - start
    print(f"keras backend: {keras.config.backend()}")
    print(f"{args.prompt}{text}")
    print(f"{args.max_new_tokens} tokens in {seconds:.2f} s (first call, compiling included)")


if __name__ == "__main__":
    try:
        main()
    except kga.KerasGemmaError as error:  # a problem the user can fix: one line, no traceback
        sys.exit(f"Error: {error}")
