"""``keras-gemma recommend``: which Gemma to run here, and why."""

from __future__ import annotations

import json

import click
from rich.table import Table

from keras_gemma_app.backend import BACKENDS
from keras_gemma_app.cli.console import status, stderr_console, stdout_console
from keras_gemma_app.hardware import format_bytes, parse_memory
from keras_gemma_app.variant_guide import DEVICES, TASKS


def _as_dict(advice, machine) -> dict:
    def choice(item):
        return {"name": item.entry.name, "params": item.entry.params, "memory_bytes": item.memory.total_bytes,
                "weights_bytes": item.memory.weights_bytes}

    return {
        "task": advice.task, "backend": advice.backend, "device": advice.device,
        "precision": advice.precision, "memory_bytes": advice.memory_bytes, "usable_bytes": advice.usable_bytes,
        "machine": machine.describe() if machine else None,
        "pick": choice(advice.pick) if advice.pick else None, "why": advice.why,
        "alternatives": [choice(item) for item in advice.alternatives],
    }


@click.command()
@click.option("--task", type=click.Choice(list(TASKS)), default="chat", show_default=True,
              help="What the model is for.")
@click.option("--memory", default=None, metavar="SIZE",
              help="Plan for this much memory (e.g. 8GB) instead of detecting it.")
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help="Where --memory is [default: the detected accelerator, else cpu].")
@click.option("--backend", type=click.Choice(BACKENDS, case_sensitive=False), default=None,
              help="Backend to plan for [default: $KERAS_BACKEND, else jax].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("-q", "--quiet", is_flag=True, help="No status on stderr.")
def recommend(task, memory, device, backend, as_json, quiet):
    """Recommend the Gemma to run on this machine for a task, with the alternatives that fit.

    \b
    Examples:
      keras-gemma recommend
      keras-gemma recommend --task vision --memory 24GB --device gpu
    """
    from keras_gemma_app.backend import requested_backend
    from keras_gemma_app.hardware import detect_machine
    from keras_gemma_app.variant_guide import recommend as advise

    backend = requested_backend(backend)
    machine = None
    if memory is not None:
        memory = parse_memory(memory)
    else:
        with status(stderr_console(quiet), f"Detecting memory and accelerators as {backend} sees them…"):
            machine = detect_machine(backend)
    advice = advise(task, memory=memory, machine=machine, backend=backend, device=device)
    if as_json:
        click.echo(json.dumps(_as_dict(advice, machine), indent=1))
        return
    out = stdout_console()
    where = machine.describe() if machine else f"{format_bytes(advice.memory_bytes)} ({advice.device}, given)"
    out.print(f"Machine: {where}; planning for {format_bytes(advice.usable_bytes)} on {advice.device} "
              f"with {advice.backend} at {advice.precision}.")
    if advice.pick is None:
        out.print(f"[bold red]No recommendation.[/] {advice.why}")
        return
    name = advice.pick.entry.name
    out.print(f"[bold]Recommended: {name}[/] — {advice.why}")
    if advice.alternatives:
        table = Table(title="Also fits")
        for column in ("name", "params", "memory", "description"):
            table.add_column(column, justify="right" if column in ("params", "memory") else "left")
        for item in advice.alternatives:
            table.add_row(item.entry.name, f"{item.entry.params / 1e9:.1f}B",
                          format_bytes(item.memory.total_bytes), item.entry.description[:70])
        out.print(table)
    precision = (f"--dtype bfloat16 --quantize {advice.precision}" if advice.precision in ("int8", "int4")
                 else f"--dtype {advice.precision}")
    out.print(f"Run it: keras-gemma pull {name} && "
              f"keras-gemma chat -m {name} --backend {advice.backend} {precision}")
