"""CodeGemma fill-in-the-middle: the model writes the code between a prefix and a suffix.

    python examples/code_fim.py [MODEL]

MODEL defaults to $KERAS_GEMMA_MODEL, else code_gemma_1.1_2b_en (a pretrained
CodeGemma: those are trained on this task). Same as
`keras-gemma generate -m MODEL --fim-prefix … --fim-suffix …`.
"""

import argparse
import os
import sys

import keras_gemma_app as kga

PREFIX = '''def average(numbers):
    """The mean of a non-empty list of numbers."""
'''
SUFFIX = '''
    return total / len(numbers)
'''
# Tokens that end a CodeGemma completion.
STOP_PIECES = ("<|file_separator|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=os.environ.get("KERAS_GEMMA_MODEL", "code_gemma_1.1_2b_en"))
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    kga.use_backend()
    print(f"Loading {args.model}…", file=sys.stderr)
    pipe = kga.load(args.model)
    stops = [token for token in map(pipe.token_id, STOP_PIECES) if token is not None]
    prompt = kga.fim_prompt(PREFIX, SUFFIX)
    # raw=True: the FIM prompt goes to the model as is, without a chat template.
    middle = pipe.generate(prompt, raw=True, max_new_tokens=args.max_new_tokens, stop_token_ids=stops)
    print("--- prompt sent to the model ---")
    print(prompt)
    print("--- filled in ---")
    print(PREFIX + middle + SUFFIX)


if __name__ == "__main__":
    try:
        main()
    except kga.KerasGemmaError as error:  # a problem the user can fix: one line, no traceback
        sys.exit(f"Error: {error}")
