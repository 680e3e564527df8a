"""A multi-turn chat with a system instruction, streamed as it is written.

    python examples/chat.py [MODEL]

Use an instruction-tuned model (`keras-gemma list --tuning it`); MODEL
defaults to $KERAS_GEMMA_MODEL, else gemma3_instruct_270m.
"""

import argparse
import os
import sys

import keras_gemma_app as kga

QUESTIONS = ("Name one planet of the solar system.", "How far is it from the Sun?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=os.environ.get("KERAS_GEMMA_MODEL", "gemma3_instruct_270m"))
    parser.add_argument("--system", default="You are a concise astronomy tutor. Answer in one sentence.")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--save", default=None, help="Write the conversation to this JSON file.")
    args = parser.parse_args()

    kga.use_backend()
    print(f"Loading {args.model}…", file=sys.stderr)
    pipe = kga.load(args.model)
    chat = pipe.chat(system=args.system, max_new_tokens=args.max_new_tokens)
    for question in QUESTIONS:
        print(f"user: {question}")
        print("model: ", end="", flush=True)
        for piece in chat.stream(question):  # each piece as soon as it is decoded
            print(piece.text, end="", flush=True)
        print()
    # The history is plain data: the next message sees both turns.
    print(f"{len(chat.messages)} messages in the history")
    if args.save:
        chat.save(args.save)


if __name__ == "__main__":
    try:
        main()
    except kga.KerasGemmaError as error:  # a problem the user can fix: one line, no traceback
        sys.exit(f"Error: {error}")
