"""The same prompt on JAX, TensorFlow and PyTorch, each in its own process: texts and speed side by side.

    python examples/compare_backends.py [MODEL] [--backends jax,torch] [--new-tokens 32] [--runs 3]

MODEL defaults to $KERAS_GEMMA_MODEL, else gemma3_instruct_270m. This is
`keras-gemma bench` from Python; the report is plain data (`--json FILE`).
"""

import argparse
import json
import os
import sys

import rich

import keras_gemma_app as kga


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=os.environ.get("KERAS_GEMMA_MODEL", "gemma3_instruct_270m"))
    parser.add_argument("--backends", default=",".join(kga.BACKENDS))
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16"))
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None, help="Write the report to this file.")
    args = parser.parse_args()

    def started(engine, backend):
        print(f"Timing {engine} on {backend} (import, load, first call, {args.runs} runs)…", file=sys.stderr)

    report = kga.benchmark(args.model, backends=args.backends.split(","), dtype=args.dtype,
                       new_tokens=args.new_tokens, runs=args.runs, on_start=started)
    rich.print(report)  # a table, then each backend's text and whether they agree
    fastest = max((r for r in report["results"]), key=lambda r: r["decode_tok_s"], default=None)
    if fastest:
        print(f"fastest decode: {fastest['backend']} at {fastest['decode_tok_s']:.1f} tokens/s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=1)
    if report["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except kga.KerasGemmaError as error:  # a problem the user can fix: one line, no traceback
        sys.exit(f"Error: {error}")
