"""``keras-gemma bench``: the same model and prompt on each backend, timed."""

from __future__ import annotations

import json

import click
from keras_gemma_app.backend import BACKENDS
from keras_gemma_app.cli.console import status, stderr_console, stdout_console
from keras_gemma_app.cli.options import quiet_option
from keras_gemma_app.loading import DTYPES
from keras_gemma_app.model_ref import DEFAULT_MODEL
from keras_gemma_app.quantization import QUANTIZE_MODES


@click.command()
@click.option("-m", "--model", default=None, metavar="MODEL", help=f"The model [default: {DEFAULT_MODEL}].")
@click.option("--backends", default=",".join(BACKENDS), show_default=True, help="Backends to run, comma-separated.")
@click.option("--dtype", type=click.Choice(DTYPES), default=None, help="Compute dtype [default: float32].")
@click.option("--quantize", type=click.Choice(QUANTIZE_MODES), default=None,
              help="Quantize after loading (not needed for a preset saved by `keras-gemma quantize`).")
@click.option("--prompt-tokens", default="16", show_default=True, help="Prompt lengths in tokens, e.g. 16,256.")
@click.option("--new-tokens", type=int, default=64, show_default=True, help="Tokens generated per run.")
@click.option("--batch", default="1", show_default=True, help="Batch sizes, e.g. 1,4.")
@click.option("--runs", type=int, default=5, show_default=True, help="Timed runs per figure (after one first call).")
@click.option("--baseline", "baselines", type=click.Choice(["keras-hub", "llama.cpp"]), multiple=True,
              help="Also time plain KerasHub generate and/or llama.cpp on the same settings (repeatable).")
@click.option("--gguf", type=click.Path(exists=True, dir_okay=False), default=None,
              help="GGUF file for the llama.cpp baseline [default: MODEL if it is one, or the bundled model's].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the full report as JSON to FILE.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Draw decode speed and time to first token to FILE.png (needs matplotlib).")
@click.option("--force", is_flag=True, help="Load even if the model looks too large for the memory free.")
@quiet_option
def bench(model, backends, dtype, quantize, prompt_tokens, new_tokens, batch, runs, baselines, gguf, json_path, plot_path,
          force, quiet):
    """Time MODEL on each backend: import, load, compile, first token, decode speed, memory.

    Each backend runs in its own process. The greedy text of each backend is
    shown, with whether they agree.

    \b
    Examples:
      keras-gemma bench
      keras-gemma bench --backends jax,torch --dtype bfloat16 --baseline keras-hub --plot bench.png
    """
    from keras_gemma_app.bench import BenchSettings, llama_gguf, parse_counts, run_bench
    from keras_gemma_app.display import BenchReport
    from keras_gemma_app.cli.model_setup import check_model_options, prepare_model
    from keras_gemma_app.model_ref import model_or_default

    settings = BenchSettings(
        model=model_or_default(model), backends=tuple(b.strip().lower() for b in backends.split(",") if b.strip()),
        dtype=dtype, quantize=quantize, prompt_tokens=parse_counts(prompt_tokens, "--prompt-tokens"), new_tokens=new_tokens,
        batch=parse_counts(batch, "--batch"), runs=runs, baselines=tuple(dict.fromkeys(baselines)), gguf=gguf,
        force=force,
    ).check()
    if "llama.cpp" in settings.baselines:
        llama_gguf(settings)
    if plot_path:
        from keras_gemma_app.bench_plot import check_plotting

        check_plotting()
    ref, _ = check_model_options(settings.model, settings.backends[0], dtype, quantize)
    console = stderr_console(quiet)
    prepare_model(console, ref)

    def started(engine, backend):
        console.print(f"Benchmarking {engine}{' on ' + backend if backend else ''} "
                      f"(import, load, first call, {settings.runs} runs per shape)…")

    with status(console, "Benchmarking…"):
        report = run_bench(settings, on_start=started)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=1)
    if plot_path and report["results"]:
        from keras_gemma_app.bench_plot import plot_report

        plot_report(report, plot_path)
    _print(BenchReport(report))
    if json_path:
        console.print(f"Wrote {json_path}")
    if plot_path:
        console.print(f"Drew {plot_path}")
    if report["errors"] and not report["results"]:
        raise click.exceptions.Exit(1)


def _print(report) -> None:
    out = stdout_console()
    out.print(report.table())
    for line in report.texts():
        out.print(line, markup=False)
