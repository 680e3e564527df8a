"""Rich tables for the catalogue and for benchmark reports, shared by the CLI and notebooks."""

from __future__ import annotations

from rich.table import Table

from keras_gemma_app.bench import ENGINE, result_key
from keras_gemma_app.catalogue import human_count

BENCH_COLUMNS = ("engine", "backend", "dtype", "batch", "prompt", "import s", "load s", "1st call s", "TTFT ms",
                 "decode tok/s", "min–max", "× keras-hub", "prefill tok/s", "peak RSS MB")


def _figure(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def models_table(rows) -> Table:
    """``rows``: dicts as :func:`keras_gemma_app.list_models` gives them."""
    table = Table(title=f"Gemma models ({len(rows)})")
    for column in ("name", "family", "params", "tuning", "modality", "context", "cached"):
        table.add_column(column, justify="right" if column in ("params", "context") else "left")
    for row in rows:
        table.add_row(
            row["name"], row["family"], human_count(row["params"]), row["tuning"], row["modality"],
            f"{row['context_length']:,}" if row["context_length"] else "-", "yes" if row["cached"] else "",
        )
    return table


def bench_table(report: dict, ratios: dict) -> Table:
    """One row per engine, backend and shape; ``ratios`` from :func:`keras_gemma_app.bench.speedups`."""
    settings = report["settings"]
    table = Table(title=f"{report['model']} · {settings['new_tokens']} new tokens · greedy · "
                        f"median of {settings['runs']} runs")
    for column in BENCH_COLUMNS:
        table.add_column(column, justify="left" if column in ("engine", "backend", "dtype") else "right")
    for r in report["results"]:
        ratio = ratios.get(result_key(r)) if r["engine"] == ENGINE else None
        table.add_row(
            r["engine"], r["backend"] or "-", " ".join(filter(None, [r["dtype"], r.get("quantize")])) or "-",
            str(r["batch"]), str(r["prompt_tokens"]),
            _figure(r["import_s"]), _figure(r["load_s"]), _figure(r["first_call_s"]), _figure(r["ttft_ms"], 0),
            _figure(r["decode_tok_s"]), f"{_figure(r['decode_tok_s_min'])}–{_figure(r['decode_tok_s_max'])}",
            f"{ratio:.2f}×" if ratio else "-", _figure(r["prefill_tok_s"], 0), _figure(r["peak_rss_mb"], 0),
        )
    return table
