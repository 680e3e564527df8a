"""Terminal output for the CLI: status lines and tables go to stderr, results to stdout."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console


def stderr_console(quiet: bool = False) -> Console:
    """A rich console on stderr; ``quiet`` silences it."""
    return Console(file=sys.stderr, quiet=quiet, highlight=False)


@contextlib.contextmanager
def status(console: Console, message: str):
    """Shows ``message`` while the block runs: a spinner on a terminal, else one line.

    Anything the wrapped code prints to stdout is sent to stderr, so stdout
    carries only results.
    """
    with contextlib.redirect_stdout(sys.stderr):
        if console.quiet:
            yield
        elif console.is_terminal:
            with console.status(message):
                yield
        else:
            console.print(message)
            yield
