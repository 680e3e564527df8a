"""Terminal output for the CLI: status lines and tables go to stderr, results to stdout."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console


def stderr_console(quiet: bool = False) -> Console:
    """A rich console on stderr; ``quiet`` silences it."""
    return Console(file=sys.stderr, quiet=quiet, highlight=False, soft_wrap=True)


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


@contextlib.contextmanager
def progress_bar(console: Console, description: str):
    """Yields a ``progress(stage, completed, total)`` callback drawing a rich bar."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    if console.quiet:
        yield lambda stage, completed, total: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, completed: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"{description}: {stage}", total=total or None)
            bar.update(tasks[stage], completed=completed, total=total or None)

        yield update


def stdout_console() -> Console:
    """A rich console for results on stdout; tables keep their width when piped."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200)
    return console
