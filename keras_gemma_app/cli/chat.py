"""``keras-gemma chat``: an interactive conversation in the terminal."""

from __future__ import annotations

import dataclasses
import signal
import sys

import click

from keras_gemma_app.cli.console import stderr_console
from keras_gemma_app.cli.generate import sampler_from_flags
from keras_gemma_app.cli.model_setup import check_keep_alive, check_model_options, served_or_loaded
from keras_gemma_app.cli.options import model_options, quiet_option, sampler_options, server_options
from keras_gemma_app.errors import KerasGemmaError
from keras_gemma_app.samplers import SAMPLERS, sampler_from_options
from keras_gemma_app.templates import TEMPLATES

HELP = """Commands:
  /help                 this list
  /system TEXT          set the system instruction (empty: none)
  /set KEY VALUE        sampler: sampler, temperature, top_k, top_p, num_beams, alpha, seed;
                        or max_new_tokens
  /clear                forget the conversation (keeps the system instruction)
  /save FILE            write the transcript as JSON
  /load FILE            read a transcript written by /save
  /stats                prompt tokens, time to first token, tokens per second of the last reply
  /bye                  leave (Ctrl-D too); Ctrl-C stops a reply and keeps the conversation"""

_SETTINGS = {"temperature": float, "top_k": int, "top_p": float, "num_beams": int, "alpha": float, "seed": int}


class Session:
    """The REPL's state: the chat, the sampler options, and output."""

    def __init__(self, chat, options: dict, console):
        self.chat = chat
        self.options = options
        self.console = console

    def command(self, line: str) -> bool:
        """Runs a /command; returns False when the user leaves."""
        name, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        if name in ("bye", "exit", "quit"):
            return False
        if name == "help":
            self.say(HELP)
        elif name == "system":
            self.chat.system = argument or None
            self.say(f"System instruction {'set' if argument else 'removed'}.")
        elif name == "set":
            self.set(argument)
        elif name == "clear":
            self.chat.clear()
            self.say("Conversation cleared.")
        elif name == "save":
            self.need(argument, "/save FILE")
            self.chat.save(argument)
            self.say(f"Saved {len(self.chat.messages)} messages to {argument}.")
        elif name == "load":
            self.need(argument, "/load FILE")
            self.chat.load(argument)
            self.say(f"Loaded {len(self.chat.messages)} messages from {argument}.")
        elif name == "stats":
            stats = self.chat.stats
            self.say(f"prompt tokens {stats.prompt_tokens} · new tokens {stats.new_tokens} · "
                     f"time to first token {stats.ttft * 1000:.0f} ms · {stats.tokens_per_second:.1f} tok/s")
        else:
            raise KerasGemmaError(f"Unknown command /{name}: type /help for the list.")
        return True

    @staticmethod
    def need(argument: str, usage: str) -> None:
        if not argument:
            raise KerasGemmaError(f"Expected {usage}.")

    def set(self, argument: str) -> None:
        key, _, value = argument.partition(" ")
        key, value = key.strip().replace("-", "_"), value.strip()
        if not value:
            raise KerasGemmaError("Expected /set KEY VALUE, e.g. /set temperature 0.3.")
        if key == "max_new_tokens":
            number = self.number(int, key, value)
            if number < 1:
                raise KerasGemmaError(f"max_new_tokens must be >= 1, but is {number}.")
            self.chat.max_new_tokens = number
        elif key == "sampler":
            if value not in SAMPLERS:
                raise KerasGemmaError(f"Unknown sampler {value!r}: expected one of {', '.join(SAMPLERS)}.")
            self.apply({**self.options, "name": value})
        elif key in _SETTINGS:
            self.apply({**self.options, key: self.number(_SETTINGS[key], key, value)})
        else:
            raise KerasGemmaError(f"Unknown setting {key!r}: expected sampler, max_new_tokens, {', '.join(_SETTINGS)}.")
        self.say(f"{key} = {value}")

    @staticmethod
    def number(kind, key: str, value: str):
        try:
            return kind(value)
        except ValueError:
            raise KerasGemmaError(f"{key} takes {'an integer' if kind is int else 'a number'}, received {value!r}.") from None

    def apply(self, options: dict) -> None:
        """Builds the sampler from ``options``; the new sampler drops settings it does not take."""
        name = options.get("name")
        values = {k: v for k, v in options.items() if k != "name"}
        if name is not None:
            accepted = {field.name for field in dataclasses.fields(SAMPLERS[name])}
            values = {k: v for k, v in values.items() if _FIELD[k] in accepted}
        self.chat.sampler = sampler_from_options(name, **values)
        self.options = {**({"name": name} if name else {}), **values}

    def say(self, text: str) -> None:
        self.console.print(text, markup=False)

    def reply(self, text: str) -> None:
        pieces = self.chat.stream(text)
        try:
            for piece in pieces:
                sys.stdout.write(piece.text)
                sys.stdout.flush()
        except KeyboardInterrupt:
            pieces.close()
            sys.stdout.write("\n")
            self.say("[reply stopped; the conversation keeps it]")
            return
        sys.stdout.write("\n")
        sys.stdout.flush()
        if self.chat.stats.dropped_turns:
            self.say(f"[the conversation outgrew the context: the oldest {self.chat.stats.dropped_turns} "
                     "turn pair(s) were dropped]")


# REPL setting -> sampler settings field.
_FIELD = {"temperature": "temperature", "top_k": "k", "top_p": "p", "num_beams": "num_beams", "alpha": "alpha", "seed": "seed"}


def _read(prompt: str) -> str:
    if sys.stdin.isatty():
        return input(prompt)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


@click.command()
@model_options
@click.option("--system", default=None, help="A system instruction.")
@click.option("--template", type=click.Choice(TEMPLATES[1:]), default=None,
              help="Turn format [default: the model's].")
@click.option("--max-new-tokens", type=int, default=256, show_default=True, help="Longest reply, in tokens.")
@sampler_options
@server_options
@quiet_option
def chat(model, backend, dtype, quantize, offline, force, system, template, max_new_tokens, sampler_flags,
         keep_alive, no_server, quiet):
    """Talk with a model: streaming replies, history, /commands (/help lists them).

    When `keras-gemma serve` holds the same model, the replies come from it
    and nothing is loaded here (--no-server: load anyway); --keep-alive starts
    such a server when none is running. The conversation stays here.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background of a script, Ctrl-C arrives ignored; here it stops a reply.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sampler = sampler_from_flags(sampler_flags)
    options = {("name" if k == "sampler_name" else k): v for k, v in sampler_flags.items() if v is not None}
    if max_new_tokens < 1:
        raise KerasGemmaError(f"--max-new-tokens must be >= 1, but is {max_new_tokens}.")
    ref, chosen = check_model_options(model, backend, dtype, quantize)
    check_keep_alive(keep_alive)
    console = stderr_console(quiet)
    pipe, chosen, _ = served_or_loaded(console, ref, chosen, keep_alive=keep_alive, no_server=no_server,
                                       backend=backend, dtype=dtype, quantize=quantize, offline=offline, force=force)
    conversation = pipe.chat(system=system, sampler=sampler, max_new_tokens=max_new_tokens, template=template)
    session = Session(conversation, options, stderr_console())
    console.print(f"Chatting with {ref.text} on {chosen} ({conversation.template} turns). /help for commands, /bye to leave.")
    while True:
        try:
            line = _read(">>> ")
        except EOFError:
            break
        except KeyboardInterrupt:
            click.echo()
            continue
        if not line.strip():
            continue
        try:
            if line.startswith("/"):
                if not session.command(line.strip()):
                    break
            else:
                session.reply(line)
        except KerasGemmaError as error:
            session.say(f"Error: {error}")
